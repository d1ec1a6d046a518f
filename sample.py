"""Batched generation with a static KV cache, teacher-forced scoring, and a sampling CLI.

References: gpt-fast generate.py (static cache, sync-free sampling), nanochat engine.py (KVCache prefill/decode,
CPU tests), vLLM (continuous batching: refill finished rows from a queue). See ../shared/docs/ANCHORS.md.

generate(model, prompts, max_new_tokens, ...) is the E-step's sampler: ragged prompts, one cache allocated per
call, rows finish independently at a stop token and are refilled with waiting prompts (prefilled straight into
the freed rows). Every draw is keyed by (seed, request id, step) in kernels.sampling, so results never depend
on the batch, batch_size or order. Identical prompts (the K samples of one E-step prompt) are prefilled once.
`banned` token ids get zero probability (kernels.sampling masks their logits), until `ban_until` is sampled: a
latent is generated with data/layout.latent_marks banned until its EoL, so a thought holds no layout mark.
score(model, prefixes, continuations) is the E-step's log p: teacher-forced log-probs of each continuation,
with logits materialised only at continuation positions, a slice at a time.

think(), explain(): the two ways to watch a latent model (prompts from data/layout, never a second copy):
  python sample.py --ckpt out/ckpt --prompt "Once upon a time" --num-samples 3 --max-new-tokens 64
  python sample.py --ckpt out/em/iter3/model/ckpt --think --prompt "..."            # a thought, then text
  python sample.py --ckpt out/em/iter3/model/ckpt --explain --score --prompt "..."  # posterior thoughts, weighed
Each thought prints indented under a `thought:` label (dim on a terminal); --raw prints the tokens as they are.
"""
import argparse
import contextlib
import math
import os
import sys

import torch

from checkpoint import check_checkpoint, fit_tokenizer, load_checked
from common import device_error
from data.cli import ascii_float, ascii_int, fail, parser_error
from data.layout import MODE_MARKS, explain_prompt, joint_continuation, latent_marks, segments, think_prompt
from data.tokenizer import get_tokenizer, tokenizer_error
from kernels.sampling import sample
from memory import sample_errors
from model import KVCache

PREFILL_TOKENS = 4096  # padded tokens per prefill call: large matmuls, yet little padding on length-sorted prompts
SCORE_TOKENS = 8192  # padded tokens per scoring forward
LOGIT_ELEMS = 1 << 24  # fp32 logits materialised at once when scoring (64 MB; ~330 positions of GPT-2's vocab)
CHECK_EVERY = 4  # decode steps between looks at which rows have stopped (a host sync on GPU)


# ----------------------------------------------------------------------------- batching (generation and scoring)

@contextlib.contextmanager
def eval_mode(model):
    """The model in eval mode inside the block and back in its own mode after (a caller may be training it)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def padded_batches(seqs, order, max_tokens, max_rows, dev):
    """Yield (group, idx) over `order` (indices into seqs, longest first): groups of at most max_rows sequences
    and max_tokens padded tokens, idx (g, T) the group right-padded with 0 to its longest, T. Length-sorted, so
    ragged lengths waste little padding."""
    start = 0
    while start < len(order):
        T = len(seqs[order[start]])
        group = order[start:start + max(1, min(max_rows, max_tokens // T))]
        start += len(group)
        yield group, torch.tensor([seqs[i] + [0] * (T - len(seqs[i])) for i in group], device=dev)


# ----------------------------------------------------------------------------- generation

def _prefill(model, cache, rows, prompts):
    """Prefill `prompts` (lists of ids) into cache rows `rows` (list of ints) -> next-token logits (b, V) fp32.
    Identical prompts are run once and their cache rows copied; the rest go longest first in chunks of at most
    PREFILL_TOKENS padded tokens, so ragged lengths waste little padding."""
    dev = cache.k.device
    first, src = {}, []  # src[i]: index in `rows` of the first occurrence of prompts[i]
    for i, p in enumerate(prompts):
        src.append(first.setdefault(tuple(p), i))
    uniq = sorted(set(src), key=lambda i: -len(prompts[i]))
    logits = torch.empty(len(prompts), model.config.vocab_size, device=dev)
    for group, idx in padded_batches(prompts, uniq, PREFILL_TOKENS, len(uniq), dev):  # idx (g, T)
        lengths = torch.tensor([len(prompts[i]) for i in group], device=dev)
        g = torch.tensor(group, device=dev)
        logits[g] = model(idx, cache=cache, rows=torch.tensor([rows[i] for i in group], device=dev), lengths=lengths)
    dups = [i for i in range(len(prompts)) if src[i] != i]
    if dups:
        T = max(len(prompts[i]) for i in dups)
        dst_r = torch.tensor([rows[i] for i in dups], device=dev)
        src_r = torch.tensor([rows[src[i]] for i in dups], device=dev)
        cache.k[:, dst_r, :T] = cache.k[:, src_r, :T]  # (L, d, T, H, D)
        cache.v[:, dst_r, :T] = cache.v[:, src_r, :T]
        cache.seqlens[dst_r] = cache.seqlens[src_r]
        logits[torch.tensor(dups, device=dev)] = logits[torch.tensor([src[i] for i in dups], device=dev)]
    return logits


def _check_prompts(model, prompts, max_new_tokens, ids):
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if len(ids) != len(prompts):
        raise ValueError(f"got {len(ids)} ids for {len(prompts)} prompts")
    bs = model.config.block_size
    for i, p in enumerate(prompts):
        if not p:
            raise ValueError(f"prompt {i} is empty (start it with BOS)")
        if len(p) + max_new_tokens > bs:
            raise ValueError(f"prompt {i} has {len(p)} tokens; with max_new_tokens={max_new_tokens} it exceeds the "
                             f"model's block_size {bs}")


def _ban_lists(model, prompts, banned, ban_until):
    """`banned` (one collection of token ids for every prompt, or a list of one per prompt) -> a list per prompt,
    checked against the vocabulary and ban_until (which must stay sampleable to lift the ban)."""
    banned = list(banned)
    per = [sorted(set(map(int, b))) for b in banned] if banned and not all(isinstance(t, int) for t in banned) \
        else [sorted(set(banned))] * len(prompts)
    if len(per) != len(prompts):
        raise ValueError(f"got {len(per)} banned sets for {len(prompts)} prompts")
    V = model.config.vocab_size
    for b in per:
        if any(not 0 <= t < V for t in b):
            raise ValueError(f"banned tokens {b} outside the vocabulary [0, {V})")
        if ban_until in b:
            raise ValueError(f"ban_until {ban_until} is banned itself: the ban could never lift")
    return per


@torch.inference_mode()
def generate(model, prompts, max_new_tokens, stop_tokens=(), temperature=1.0, top_k=0, top_p=1.0, seed=0,
             ids=None, batch_size=64, banned=(), ban_until=None):
    """Sample up to max_new_tokens after each prompt. ids: a stable int64 request id per prompt (default its index)
    that keys the sampler's noise with the step. banned: token ids given zero probability, one collection for
    every prompt or a list of one per prompt; ban_until: a token id whose sampling lifts that row's ban for the
    tokens after it (None: the ban holds throughout). Returns, in input order, dicts {'tokens' (incl. the stop
    token if hit), 'logprobs' (log q under the distribution sampled from, banned ids masked), 'raw_logprobs'
    (untempered, unmasked), 'stopped'}."""
    prompts = [list(p) for p in prompts]
    ids = list(range(len(prompts))) if ids is None else [int(i) for i in ids]
    _check_prompts(model, prompts, max_new_tokens, ids)
    banned = _ban_lists(model, prompts, banned, ban_until)
    if not prompts or max_new_tokens == 0:
        return [dict(tokens=[], logprobs=[], raw_logprobs=[], stopped=False) for _ in prompts]
    with eval_mode(model):
        return _generate(model, prompts, max_new_tokens, tuple(stop_tokens), (temperature, top_k, top_p), seed,
                         ids, batch_size, banned, ban_until)


def _generate(model, prompts, M, stop_tokens, sampling, seed, ids, batch_size, banned, ban_until):
    p0 = next(model.parameters())
    n, V, dev = len(prompts), model.config.vocab_size, p0.device
    order = sorted(range(n), key=lambda i: (-len(prompts[i]), prompts[i]))  # longest first, duplicates adjacent
    B = min(batch_size, n)
    cache = full = KVCache(model.config, B, max(map(len, prompts)) + M - 1, dev, p0.dtype)  # last token never fed
    is_stop = _stop_lookup(stop_tokens, V, dev)
    ids_t = torch.tensor(ids, dtype=torch.int64, device=dev)
    NB = max(map(len, banned))
    ban_t = torch.tensor([b + [-1] * (NB - len(b)) for b in banned], dtype=torch.int64, device=dev)  # (n, NB)
    st = _row_state(B, M, NB, dev)
    req, deadline = [-1] * B, [0] * B  # host: request in each row (-1 = free), iteration at which it must end
    results, nxt, it = [None] * n, 0, 0
    logits = torch.zeros(B, V, device=dev)

    def assign(free):
        nonlocal nxt
        free = free[:n - nxt]
        reqs = order[nxt:nxt + len(free)]
        nxt += len(free)
        r = torch.tensor(free, device=dev)
        logits[r] = _prefill(model, cache, free, [prompts[i] for i in reqs])
        st["ids"][r] = ids_t[torch.tensor(reqs, device=dev)]
        st["ban"][r] = ban_t[torch.tensor(reqs, device=dev)]
        st["steps"][r], st["live"][r], st["stopped"][r] = 0, True, False
        for row, i in zip(free, reqs):
            req[row], deadline[row] = i, it + M

    assign(list(range(B)))
    next_check, n_busy, ar = (CHECK_EVERY if stop_tokens else M), B, torch.arange(B, device=dev)
    while True:
        tok, lp, raw = sample(logits, *sampling, seed, st["ids"], st["steps"], st["ban"] if NB else None)  # (B,)
        _advance(st, tok, lp, raw, ar, M, is_stop if stop_tokens else None, ban_until if NB else None)
        it += 1
        free = []
        if it >= next_check:
            free = _harvest(st, req, results)
            n_busy = len(req) - len(free)
            if nxt >= n and n_busy == 0:
                break
            if nxt >= n and 2 * n_busy <= len(req) and len(req) >= 8:
                cache, tok, req, deadline = _compact(full, st, req, deadline, tok)
                logits, free, ar = logits[:n_busy], [], torch.arange(n_busy, device=dev)
            busy = [deadline[r] for r in range(len(req)) if req[r] >= 0]
            next_check = min(busy + [it + (CHECK_EVERY if stop_tokens else M)])
        if n_busy:
            logits = model(tok[:, None], cache=cache)  # (B, V) decode one token for every row
        if free and nxt < n:
            n_busy += min(len(free), n - nxt)
            assign(free)
    return results


def _advance(st, tok, lp, raw, ar, M, is_stop, ban_until):
    """One sampled token per row (B,): written to the live rows' outputs (finished rows write to the spare
    column), their step counts advanced; rows end at a stop token (is_stop: the lookup, None for none) or at M
    tokens; a row's ban lifts once it samples ban_until."""
    if ban_until is not None:
        st["ban"].masked_fill_((tok == ban_until)[:, None], -1)
    live, steps = st["live"], st["steps"]
    col = torch.where(live, steps, M)
    st["tok"][ar, col], st["lp"][ar, col], st["raw"][ar, col] = tok, lp, raw
    steps += live
    if is_stop is not None:
        hit = is_stop[tok] & live
        st["stopped"] |= hit
        live &= ~hit
    live &= steps < M


def _stop_lookup(stop_tokens, V, dev):
    """(V + 1,) bool: is a token a stop token (one gather per step)."""
    if any(not 0 <= t < V for t in stop_tokens):
        raise ValueError(f"stop tokens {stop_tokens} outside the vocabulary [0, {V})")
    is_stop = torch.zeros(V + 1, dtype=torch.bool, device=dev)
    is_stop[list(stop_tokens)] = True
    return is_stop


def _row_state(B, M, NB, dev):
    """Per-row state: request id, steps taken, live, stopped, each (B,); the outputs (B, M + 1), whose last
    column takes the writes of finished rows; each row's NB banned ids (B, NB), -1 = none."""
    z = lambda *shape, dtype=torch.int64: torch.zeros(*shape, dtype=dtype, device=dev)
    return dict(ids=z(B), steps=z(B), live=z(B, dtype=torch.bool), stopped=z(B, dtype=torch.bool),
                tok=z(B, M + 1), lp=z(B, M + 1, dtype=torch.float32), raw=z(B, M + 1, dtype=torch.float32),
                ban=torch.full((B, NB), -1, dtype=torch.int64, device=dev))


def _harvest(st, req, results):
    """Move finished rows' outputs to `results`; returns the rows now free (finished or never used)."""
    live = st["live"].tolist()
    done = [r for r in range(len(req)) if req[r] >= 0 and not live[r]]
    if done:
        d = torch.tensor(done, device=st["live"].device)
        lens, stopped = st["steps"][d].tolist(), st["stopped"][d].tolist()
        toks, lps, raws = st["tok"][d].tolist(), st["lp"][d].tolist(), st["raw"][d].tolist()
        for j, r in enumerate(done):
            k = lens[j]
            results[req[r]] = dict(tokens=toks[j][:k], logprobs=lps[j][:k], raw_logprobs=raws[j][:k],
                                   stopped=bool(stopped[j]))
            req[r] = -1
    return [r for r in range(len(req)) if req[r] < 0]


def _compact(full, st, req, deadline, tok):
    """Once the queue is empty and at most half the rows are busy, move the busy rows to the front of the cache and
    decode only those from then on."""
    keep = [r for r in range(len(req)) if req[r] >= 0]
    m, perm = len(keep), torch.tensor(keep, device=full.k.device)
    full.k[:, :m] = full.k[:, perm]  # the right side is gathered into a temporary first, so overlap is safe
    full.v[:, :m] = full.v[:, perm]
    full.seqlens[:m] = full.seqlens[perm]
    for k in st:
        st[k] = st[k][perm]
    return full.first_rows(m), tok[perm], [req[r] for r in keep], [deadline[r] for r in keep]


# ----------------------------------------------------------------------------- scoring

def head_logprobs(model, h, targets):
    """log p(targets) from hidden states h (N, C) -> (N,) fp32, LOGIT_ELEMS logits at a time."""
    V = model.config.vocab_size
    out = torch.empty(h.size(0), device=h.device)
    step = max(1, LOGIT_ELEMS // V)
    for s in range(0, h.size(0), step):
        logits = model.lm_head(h[s:s + step]).float()[:, :V]  # (n, V)
        t = targets[s:s + step, None]
        out[s:s + step] = (logits.gather(1, t) - torch.logsumexp(logits, dim=-1, keepdim=True)).squeeze(1)
    return out


@torch.inference_mode()
def score(model, prefixes, continuations, batch_size=64):
    """Teacher-forced log-probs of each continuation given its prefix -> [{'sum', 'logprobs': [per token]}]."""
    if len(prefixes) != len(continuations):
        raise ValueError(f"{len(prefixes)} prefixes but {len(continuations)} continuations")
    seqs = [list(p) + list(c) for p, c in zip(prefixes, continuations)]
    for i, (p, s) in enumerate(zip(prefixes, seqs)):
        if not p:
            raise ValueError(f"prefix {i} is empty (start it with BOS)")
        if len(s) > model.config.block_size:
            raise ValueError(f"pair {i} has {len(s)} tokens, more than block_size {model.config.block_size}")
    dev = next(model.parameters()).device
    out = [None] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    with eval_mode(model):
        for group, idx in padded_batches(seqs, order, SCORE_TOKENS, batch_size, dev):  # idx (g, T)
            pos = torch.tensor([[len(prefixes[i]) - 1 + j, r] for r, i in enumerate(group)
                                for j in range(len(continuations[i]))], dtype=torch.int64, device=dev)
            lp = torch.empty(0, device=dev)
            if len(pos):  # positions predicting each continuation token: row r, position t -> token t + 1
                h = model.trunk(idx)[pos[:, 1], pos[:, 0]]  # (N, C): lm_head only where wanted
                lp = head_logprobs(model, h, idx[pos[:, 1], pos[:, 0] + 1])
            lp = lp.tolist()
            k = 0
            for i in group:
                n = len(continuations[i])
                out[i] = dict(sum=float(sum(lp[k:k + n])), logprobs=lp[k:k + n])
                k += n
    return out


# ----------------------------------------------------------------------------- latent modes (--think, --explain)

def think(model, tok, x, n, max_new_tokens, **sampling):
    """n samples of the model thinking about text x (ids), laid out as a one-chunk document in prior mode:
    think_prompt = BOS [SoL PRIOR EoL X] SoL PRIOR; the model writes Z (the layout marks banned until EoL), EoL,
    then its text, and stops at EOS or at the SoL opening the next chunk. -> (prompt, generate() outputs)."""
    prompt = think_prompt(tok, x)
    return prompt, generate(model, [prompt] * n, max_new_tokens, stop_tokens=(tok.eos, tok.sol),
                            banned=latent_marks(tok), ban_until=tok.eol, **sampling)


def latent(out):
    """A latent sampled by generate() until EoL: its tokens without that EoL (a capped latent has none)."""
    return out["tokens"][:-1] if out["stopped"] else out["tokens"]


def explain(model, tok, x, k, max_new_tokens, with_score=False, **sampling):
    """k posterior latents for text x (ids) from the E-step's prompt for a first chunk, explain_prompt =
    BOS SoL EoL X SoL POST, each {'z' (without EoL), 'tokens', 'log_q' (incl. EoL, under the distribution sampled
    from: the layout marks banned), 'capped'}. with_score adds what em.py computes from the joint pair (BOS,
    SoL PRIOR Z EoL X): 'log_p' = log p(SoL PRIOR Z EoL X | BOS), BOLT.md's log p(Z, X) as em.py's Sample.log_p;
    'log_marks' = log p(SoL PRIOR | BOS), its MODE_MARKS' share, the same for every sample; 'log_w' = log_p -
    log_q, the importance weight."""
    prompt = explain_prompt(tok, x)
    outs = generate(model, [prompt] * k, max_new_tokens, stop_tokens=(tok.eol,), banned=latent_marks(tok),
                    **sampling)
    res = [dict(z=latent(o), tokens=o["tokens"],
                log_q=float(sum(o["logprobs"])), capped=not o["stopped"]) for o in outs]
    if with_score:
        scores = score(model, [[tok.bos]] * k, [joint_continuation(tok, r["z"], x) for r in res])
        for r, s in zip(res, scores):
            r["log_marks"] = float(sum(s["logprobs"][:MODE_MARKS]))
            r["log_p"] = s["sum"]
            r["log_w"] = r["log_p"] - r["log_q"]
    return prompt, res


def render(tok, ids, dim=False):
    """Thought and text apart: text as is, each thought indented under its label; dim (ANSI) for a terminal."""
    lines = []
    for kind, piece, closed in segments(tok, ids):
        text = tok.decode(piece).rstrip("\n")  # a chunk's closing newline: the next piece starts a line anyway
        if kind == "text":
            lines.append(text)
            continue
        body = "\n".join("    " + ln for ln in text.split("\n"))
        lines += [f"{kind}:" if closed else f"{kind}, unfinished (no EoL):", f"\033[2m{body}\033[0m" if dim else body]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI

def build_parser():
    ap = argparse.ArgumentParser(description="Sample from a checkpoint (ours or a Hugging Face GPT-2 / Llama "
                                 "directory); with a latent model, --think or --explain.")
    ap.add_argument("--ckpt", required=True, help="checkpoint directory (train.py output or HF GPT-2 / Llama dir)")
    ap.add_argument("--prompt", default="", help="text to continue (BOS is prepended); --think: the question; "
                    "--explain: the text to explain")
    ap.add_argument("--think", action="store_true", help="latent model: write a thought (SoL PRIOR Z EoL), then text")
    ap.add_argument("--explain", action="store_true", help="latent model: sample posterior thoughts Z for --prompt "
                    "(SoL EoL X SoL POST Z EoL), each with log q")
    ap.add_argument("--score", action="store_true", help="with --explain: each sample's log p and log w as the "
                    "E-step computes them, and the resampling weights")
    ap.add_argument("--raw", action="store_true", help="print the token stream as is (special tokens by name)")
    ap.add_argument("--num-samples", type=ascii_int, default=1, help="samples (--explain: K)")
    ap.add_argument("--max-new-tokens", type=ascii_int, default=None,
                    help="default: min(128, what fits in block_size)")
    ap.add_argument("--temperature", type=ascii_float, default=1.0, help="0 = greedy")
    ap.add_argument("--top-k", type=ascii_int, default=0, help="0 = off")
    ap.add_argument("--top-p", type=ascii_float, default=1.0, help="1.0 = off")
    ap.add_argument("--seed", type=ascii_int, default=0, help="seed of the sampler's keyed noise (default: 0)")
    ap.add_argument("--tokenizer", default=None, help="bytes | gpt2 | a dir with tokenizer.json / tokenizer.model "
                    "(default: the checkpoint's; gpt2 for a HF GPT-2 dir, the dir itself for a Llama one)")
    ap.add_argument("--bpe-dir", default=None, help="directory with GPT-2's vocab.bpe + encoder.json")
    ap.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default: cpu)")
    ap.error = parser_error  # 'invalid int value: ... (--flag)', as every CLI says it
    return ap


def parse_args(argv=None):
    """Flags -> args, every flag checked before the checkpoint is read."""
    try:
        a = build_parser().parse_args(argv)
    except ValueError as e:
        fail(str(e))
    mode = "--think" if a.think else "--explain"
    errors = [msg for bad, msg in (
        (a.think and a.explain, "--think writes a thought then text, --explain thoughts for a given text: pick one "
                                "(--think, --explain)"),
        (a.score and not a.explain, "--score scores the samples of --explain (--score)"),
        ((a.think or a.explain) and not a.prompt.strip(), f"{mode} needs a non-empty --prompt (--prompt)"),
        (a.num_samples < 1, f"need at least one sample, got {a.num_samples} (--num-samples)"),
        (a.max_new_tokens is not None and a.max_new_tokens < 1,
         f"need at least one new token, got {a.max_new_tokens} (--max-new-tokens)"),
        (not (math.isfinite(a.temperature) and a.temperature >= 0),
         f"temperature must be a finite number >= 0 (0 = greedy), got {a.temperature} (--temperature)"),
        (a.top_k < 0, f"top-k must be >= 0 (0 = off), got {a.top_k} (--top-k)"),
        (not 0 < a.top_p <= 1, f"top-p must be in (0, 1] (1 = off), got {a.top_p} (--top-p)"),
        (not 0 <= a.seed < 2 ** 63, f"seed must be in [0, 2^63), got {a.seed} (--seed)"),
        (not os.path.isdir(a.ckpt), f"no checkpoint directory {a.ckpt} (--ckpt)"),
        (a.tokenizer is not None and tokenizer_error(a.tokenizer), f"{tokenizer_error(a.tokenizer or 'bytes')} "
                                                                  "(--tokenizer)"),
        (a.bpe_dir is not None and not os.path.isdir(a.bpe_dir), f"no directory {a.bpe_dir} (--bpe-dir)"),
        (device_error(a.device) is not None, device_error(a.device)),
    ) if bad]
    if errors:
        fail("; ".join(errors))
    return a


def check_latent(meta, mode):
    """Refuse --think / --explain on a model that never saw that layout (raw text, a HF GPT-2 directory)."""
    need = {"--think": ("prior", "random"), "--explain": ("posterior", "random")}[mode]
    if "train_config" not in meta:
        what = "a Hugging Face GPT-2 directory: its vocabulary has no latent tokens" if "init" in meta else \
            "the checkpoint records no training layout (train_config)"
        raise ValueError(f"{mode} needs a model trained with latents; {what}")
    layout = meta["train_config"].get("layout")
    if layout not in need:
        raise ValueError(f"{mode} needs a model trained with layout {' or '.join(need)}; this checkpoint's "
                         f"train_config layout is {layout!r}" + (" (raw text, no latents)" if layout == "raw" else ""))


def check(a):
    """The checkpoint and its tokenizer, before any weight is read (checkpoint.check_checkpoint: config, tensor
    names and shapes, vocabulary) -> (GPTConfig, meta, tok); refused if the mode needs latents the model lacks."""
    config, meta = check_checkpoint(a.ckpt)
    if a.think or a.explain:
        check_latent(meta, "--think" if a.think else "--explain")
    tok = get_tokenizer(a.tokenizer or meta.get("tokenizer_dir") or meta.get("tokenizer") or "bytes", a.bpe_dir)
    fit_tokenizer(a.ckpt, config, meta, tok)
    return config, meta, tok


def main(argv=None):
    a = parse_args(argv)
    try:
        config, _, tok = check(a)
    except (OSError, ValueError, KeyError) as e:
        fail(f"{e} (--ckpt)")
    x = tok.encode(a.prompt)
    prompt = think_prompt(tok, x) if a.think else explain_prompt(tok, x) if a.explain else [tok.bos] + x
    room = config.block_size - len(prompt)
    if room < 1 or (a.max_new_tokens or 0) > room:
        fail(f"the prompt takes {len(prompt)} of the model's {config.block_size} positions, leaving {room} "
             f"for new tokens (--prompt, --max-new-tokens)")
    M = min(128, room) if a.max_new_tokens is None else a.max_new_tokens
    err = sample_errors(config, a.num_samples, M)
    if err:
        fail(err)
    try:  # on --device, the vocabulary grown to the tokenizer's (a HF directory: the latent tokens)
        model = load_checked(a.ckpt, tok, a.device)[0]
    except (OSError, ValueError, KeyError) as e:  # weights the header did not show broken (a corrupt payload)
        fail(f"{e} (--ckpt)")
    kw = dict(temperature=a.temperature, top_k=a.top_k, top_p=a.top_p, seed=a.seed)
    if a.explain:
        prompt, outs = explain(model, tok, x, a.num_samples, M, with_score=a.score, **kw)
    elif a.think:
        prompt, outs = think(model, tok, x, a.num_samples, M, **kw)
    else:
        outs = generate(model, [prompt] * a.num_samples, M, stop_tokens=(tok.eos,), **kw)
    show(tok, prompt, outs, a)


def show(tok, prompt, outs, a):
    """Print the samples: rendered (thought apart from text) or --raw; --explain --score adds the E-step's numbers."""
    dim = sys.stdout.isatty() and not a.raw
    if a.score:
        print(f"# log q: Z and its EoL under the distribution sampled from\n"
              f"# log p: SoL PRIOR Z EoL X after BOS, as em.py scores it, the {MODE_MARKS} mode marks included "
              f"(log p(SoL PRIOR | BOS) = {outs[0]['log_marks']:.2f})\n"
              f"# log w = log p - log q; weight = softmax(log w), its chance to be picked (the marks shift every "
              f"log w alike)")
        lw = torch.tensor([o["log_w"] for o in outs], dtype=torch.float64)
        w = torch.softmax(lw, 0)
    for i, o in enumerate(outs):
        lq = o["log_q"] if a.explain else sum(o["logprobs"])
        head = f"--- sample {i} ({len(o['tokens'])} tokens, log q = {lq:.2f}"
        if a.score:
            head += f", log p = {o['log_p']:.2f}, log w = {o['log_w']:.2f}, weight = {float(w[i]):.3f}"
        print(head + ")")
        ids = prompt + o["tokens"]
        print(tok.decode(ids) if a.raw else render(tok, ids, dim))
    if a.score:
        print(f"# ESS = {float(1 / (w * w).sum()):.2f} of K = {len(outs)}; log mean w = "
              f"{float(torch.logsumexp(lw, 0)) - math.log(len(outs)):.2f} (this text's IW-ELBO_K, as em.py's bound)")


if __name__ == "__main__":
    main()
