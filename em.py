"""BoLT: bootstrapping latent thoughts by EM (Ruan et al. 2025, "Reasoning to Learn from Latent Thoughts").

    python em.py --iters 3                      # the built-in world on CPU, baselines and report included
    torchrun --standalone --nproc_per_node=N em.py ...   # E-step sharded over ranks, M-steps with DDP
    python em.py --eval --ckpt DIR [--questions Q.jsonl]   # evaluate any checkpoint, raw or latent
    python em.py --iters 3 --seeds 0,1,2 --out DIR          # one run per seed in DIR/seed{S}, combined report

The loop (spec: ../shared/docs/BOLT.md):
  base      pretrain once on the base corpus (or --init: our checkpoint / a Hugging Face GPT-2 directory)
  warm      train from base on the warm-start set with teacher latents (random layout)
  for t in 1..iters:
    E-step  for every chunk of the target corpus: K latents from the posterior prompt with log q, joint scores
            log p, log w = log p - log q, one latent resampled from softmax(log w) by an RNG keyed by
            (seed, t, doc, chunk)
    M-step  train from the *base* weights on the target corpus with those latents, same budget every iteration
    eval    accuracy on held-out questions (data/questions.py: questions and answer rules are data), raw NLL /
            IW-ELBO_K on held-out documents (the spec's bound, and the mode-conditional one beside it)
  baselines the base model, raw token-matched and FLOP-matched (raw arms asked directly and asked to reason in
            their training text's format), and the oracle (teacher latents on the whole target corpus)
The report (report.md, metrics.jsonl, plot.svg) is written by data/report.py.
Every phase writes atomically and records completion under --out, so re-running after a kill resumes.
Every flag of every phase and every input file is checked before anything is written (check_inputs): a bad
command prints one line `error: <what> (<flag or file:line>)`, exits 2 and leaves --out as it was. The chosen
latents travel to the M-step as token ids ("latent_ids" beside the text in latents.jsonl), and out/data/DONE
records a sha256 of every input file, so changed inputs are prepared again (or refused once trained on).
"""
import argparse
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.distributed as dist

from data import questions as Q
from data import report as R
from data import world as W
from data.corpus import (out_dir_error, parser_error, read_docs, read_json, sha256_file, write_atomic, write_docs,
                         write_json)
from data.layout import MODE_MARKS, encode_doc, estep_prompts, joint_continuation, sequence, think_prompt
from data.tokenizer import TOKENIZERS, check_tokenizer, get_tokenizer
from model import load_model
from sample import generate, score
from train import TrainConfig, train, value_errors as train_value_errors


@dataclass
class EMConfig:
    iters: int = 3  # EM iterations
    k: int = 4  # Monte-Carlo latents per chunk in the E-step
    seed: int = 0
    out: str = "out/em"
    quick: bool = False  # tiny world, tiny model: a smoke test in about a minute
    corpus: str = ""  # target corpus (JSONL text or the authors' chunks format); default: the built-in world
    teacher_latents: str = ""  # warm-start set with latents (authors' format); default: the world's teacher
    val: str = ""  # held-out documents for NLL / IW-ELBO; default: the world's
    init: str = ""  # base weights (our checkpoint or HF GPT-2 dir); skips base pretraining
    tokenizer: str = "bytes"
    bpe_dir: str = ""
    m_step: str = "fresh"  # fresh: every M-step starts from base (the paper); continue: from the previous model
    # how chunk i sees the chunks before it (data/layout.context): paper = their raw text (BOLT.md); sequential =
    # laid out as in training with the latents already chosen for them, sampled chunk by chunk (an SMC sampler)
    estep: str = "paper"
    no_baselines: bool = False
    # model (from scratch) and budgets
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 128
    batch_size: int = 16  # sequences per optimizer step
    lr: float = 1e-3
    base_lr: float = 2e-3  # from scratch: at 1e-3 one seed's base sat on a plateau for 2,000 steps
    base_steps: int = 2000
    warm_steps: int = 500
    m_steps: int = 1000  # every M-step, the oracle and the FLOP-matched raw baseline
    # E-step and evaluation
    max_latent: int = 32  # sampled tokens per latent, EoL included
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    drop_capped: bool = False  # drop latents that hit max_latent instead of keeping them (the authors keep)
    gen_batch: int = 256
    eval_ks: str = "1,2,4"
    questions: str = ""  # held-out questions JSONL (data/questions.py); default: the world's, none for --corpus
    answer_regex: str = ""  # overrides every question's answer rule (group 1 if it has one, else the match)
    raw_prompt_prefix: str = ""  # text file put before each question's "prompt" when a raw model may reason
    seeds: str = ""  # "0,1,2": one run per seed in out/seed{S}, then a combined report (instead of --seed)
    # the built-in world
    world_target: int = 2000
    world_warm: int = 800
    world_heldout: int = 200
    world_questions: int = 1000
    world_shape: str = "compact"  # compact: one problem, two chunks; prose: problems in words over chunks


QUICK = dict(n_layer=2, n_head=2, n_embd=64, batch_size=16, base_steps=150, warm_steps=60, m_steps=60,
             world_target=120, world_warm=60, world_heldout=32, world_questions=64, max_latent=32)
# changing these between runs in the same --out would mix results; iters and report options may change
RESUMABLE_KEYS = {"iters", "no_baselines", "gen_batch", "out"}
# evaluation only: changing them re-evaluates (eval.json records an eval_id) and never mixes training results
EVAL_KEYS = {"eval_ks", "questions", "answer_regex", "raw_prompt_prefix", "seeds"}
DIRECT_TOKENS = 24  # what a raw model asked directly may write: an answer sentence ("The result is 5." is 16 bytes)
EVAL_VERSION = 3  # 2: questions as data, raw arms asked to reason, the spec bound; 3: DIRECT_TOKENS 8 -> 24


# ----------------------------------------------------------------------------- distributed helpers

def rank_world():
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def print0(*a):
    if rank_world()[0] == 0:
        print(*a, flush=True)


def barrier():
    if dist.is_initialized():
        dist.barrier()


def device():
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return "cpu"


# ----------------------------------------------------------------------------- small utilities

def key_int(*parts):
    """A 63-bit integer from a tuple of keys: request ids and RNG seeds that no rank or batch can change."""
    return int.from_bytes(hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest(), "big") >> 1


def logsumexp(xs):
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def choose(log_w, key):
    """Resample one index from softmax(log_w) with an RNG keyed by `key` (never by rank or batch)."""
    g = torch.Generator().manual_seed(key_int(*key))
    p = torch.softmax(torch.tensor(log_w, dtype=torch.float64), 0)
    return int(torch.multinomial(p, 1, generator=g))


def ess(log_w):
    """Effective sample size of normalised importance weights, in [1, K]."""
    p = torch.softmax(torch.tensor(log_w, dtype=torch.float64), 0)
    return float(1.0 / (p * p).sum())


# ----------------------------------------------------------------------------- E-step

def sample_latents(model, tok, cfg, edocs, keys, k, temperature=None, zs=None):
    """For each (doc, chunk) in keys: k posterior samples with log q and their joint scores log p.
    zs: per document the latents chosen so far (the sequential E-step's context), None for the raw prefix.
    Returns per key a list of k dicts {z, log_q, log_p, capped} (z: latent token ids without EoL)."""
    prompts, prefixes, xs, ids, dropped = [], [], [], [], []
    for (d, c, tag) in keys:
        prompt, prefix, x, drop = estep_prompts(tok, edocs[d]["x"], c, cfg.max_latent, cfg.block_size,
                                                zs=None if zs is None else zs[d])
        for j in range(k):
            prompts.append(prompt); prefixes.append(prefix); xs.append(x)
            ids.append(key_int(cfg.seed, tag, edocs[d]["id"], c, j))
        dropped.append(drop)
    outs = generate(model, prompts, cfg.max_latent, stop_tokens=(tok.eol,),
                    temperature=cfg.temperature if temperature is None else temperature,
                    top_k=cfg.top_k, top_p=cfg.top_p, seed=cfg.seed, ids=ids, batch_size=cfg.gen_batch)
    zs = [o["tokens"][:-1] if o["stopped"] else o["tokens"] for o in outs]
    scores = score(model, prefixes, [joint_continuation(tok, z, x) for z, x in zip(zs, xs)],
                   batch_size=cfg.gen_batch)
    # log p (what the E-step weighs) scores Z, EoL and X_i but not the leading SoL PRIOR: those mark the layout's
    # mode, a coin of the training recipe, not text. Scoring them adds one constant to every sample's log w (the
    # pick is unchanged) and a tax to the bound: log 2 at best, up to 5.8 nats per chunk measured where the raw
    # prefix P_i made a model expect the posterior mode. log_p_all (every token after P_i) is BOLT.md's log p:
    # the evaluation's headline bound. The pick keeps log_p so rounding can never flip a draw.
    mode = lambda s: sum(s["logprobs"][:MODE_MARKS])
    res = []
    for i in range(len(keys)):
        res.append([{"z": zs[i * k + j], "log_q": float(sum(outs[i * k + j]["logprobs"])),
                     "log_p": scores[i * k + j]["sum"] - mode(scores[i * k + j]),
                     "log_p_all": scores[i * k + j]["sum"],
                     "capped": not outs[i * k + j]["stopped"],
                     "n_x": len(xs[i * k + j]), "dropped": dropped[i]} for j in range(k)])
    return res


def pick_latent(samples, key, drop_capped=False):
    """Resample one of a chunk's K samples from softmax(log w), log w = log p - log q (None if all dropped)."""
    ok = [j for j, s in enumerate(samples) if not (drop_capped and s["capped"])]
    return ok[choose([samples[j]["log_p"] - samples[j]["log_q"] for j in ok], key)] if ok else None


def sample_sequential(model, tok, cfg, edocs, k, tag, key, temperature=None):
    """Sequential importance resampling over each document's chunks, batched across documents: chunk i's K
    samples see chunks < i laid out with the latents chosen for them (layout.context), one of them is
    resampled from softmax(log w) by an RNG keyed by key(doc, chunk), and it becomes the context of chunk i+1.
    Picking one ancestor with probability w_j / sum(w) and extending it K times gives every sample an expected
    K * w_j / sum(w) descendants, as multinomial resampling does, so prod_i mean_k w_ik stays an unbiased
    estimate of p(X) and sum_i log mean_k w_ik a lower bound on log p(X) (the IW-ELBO of eval_nll).
    -> ({(d, c): samples}, {(d, c): pick})."""
    chosen = [[None] * len(ed["x"]) for ed in edocs]
    res, picks = {}, {}
    for c in range(max((len(ed["x"]) for ed in edocs), default=0)):
        keys = [(d, c, tag) for d, ed in enumerate(edocs) if c < len(ed["x"])]
        for (d, _, _), samples in zip(keys, sample_latents(model, tok, cfg, edocs, keys, k, temperature, chosen)):
            pick = pick_latent(samples, key(d, c), cfg.drop_capped)
            chosen[d][c] = None if pick is None else list(samples[pick]["z"])
            res[d, c], picks[d, c] = samples, pick
    return res, picks


def estep(model, tok, cfg, docs, it, out_dir, unit=512):
    """Sample, weight and resample one latent for every chunk of `docs`; returns docs with latents + diagnostics.
    Work is cut into units of `unit` chunks; unit u runs on rank u % world and is saved atomically, so a killed
    E-step resumes and any number of ranks produce the same latents (ids and RNG are keyed, not positional)."""
    rank, world = rank_world()
    edocs = [encode_doc(tok, d) for d in docs]
    keys = [(d, c, f"estep{it}") for d, ed in enumerate(edocs) for c in range(len(ed["x"]))]
    units = [keys[i:i + unit] for i in range(0, len(keys), unit)]
    if cfg.estep == "sequential":  # a document's chunks are sampled in order: a unit holds whole documents
        units = [[]]
        for key in keys:
            if key[1] == 0 and len(units[-1]) >= unit:
                units.append([])
            units[-1].append(key)
    os.makedirs(out_dir, exist_ok=True)
    t0, mine = time.time(), [u for u in range(len(units)) if u % world == rank]
    for n, u in enumerate(mine):
        path = os.path.join(out_dir, f"unit{u:05d}.json")
        if os.path.exists(path) and all("latent_ids" in r for r in read_json(path)):  # older units: text only
            continue
        if cfg.estep == "sequential":
            docs_u = sorted({d for d, _, _ in units[u]})
            res, picks = sample_sequential(model, tok, cfg, [edocs[d] for d in docs_u], cfg.k, f"estep{it}",
                                           lambda i, c: (cfg.seed, it, edocs[docs_u[i]]["id"], c))
            at = {d: i for i, d in enumerate(docs_u)}
            res, picks = [res[at[d], c] for d, c, _ in units[u]], [picks[at[d], c] for d, c, _ in units[u]]
        else:
            res = sample_latents(model, tok, cfg, edocs, units[u], cfg.k)
            picks = [pick_latent(s, (cfg.seed, it, edocs[d]["id"], c), cfg.drop_capped)
                     for (d, c, _), s in zip(units[u], res)]
        rows = []
        for (d, c, _), samples, pick in zip(units[u], res, picks):
            ok = [j for j, s in enumerate(samples) if not (cfg.drop_capped and s["capped"])]
            log_w = [samples[j]["log_p"] - samples[j]["log_q"] for j in ok]
            rows.append({"doc": d, "chunk": c, "log_w": [s["log_p"] - s["log_q"] for s in samples],
                         "ess": ess(log_w) if ok else 0.0, "capped": sum(s["capped"] for s in samples),
                         "pick": pick, "latent": tok.decode(samples[pick]["z"]) if ok else None,
                         "latent_ids": list(samples[pick]["z"]) if ok else None,  # what was scored, exactly
                         "samples": [tok.decode(s["z"]) for s in samples]})
        write_json(path, rows)
        el = time.time() - t0
        print(f"  E-step {it}: unit {n + 1}/{len(mine)} on rank {rank}, {el:.0f}s, "
              f"ETA {el / (n + 1) * (len(mine) - n - 1):.0f}s", flush=True)
    barrier()
    rows = [r for u in range(len(units)) for r in read_json(os.path.join(out_dir, f"unit{u:05d}.json"))]
    new = [{"id": d["id"], "chunks": [dict(c) for c in d["chunks"]]} for d in docs]
    for r in rows:  # the text is for reading; the M-step trains on latent_ids (layout.encode_doc)
        new[r["doc"]]["chunks"][r["chunk"]].update(latent=r["latent"], latent_ids=r["latent_ids"])
    return new, rows


# ----------------------------------------------------------------------------- evaluation

def eval_questions(model, tok, cfg, questions, mode, prefix=""):
    """Greedy accuracy on held-out questions and one row per question (prompt, generated text, extracted answer,
    correct). mode 'latent': the model writes its reasoning inside SoL PRIOR ... EoL first (the paper's
    evaluation) and the rule reads the text after EoL; 'direct': a raw model answers in DIRECT_TOKENS tokens;
    'reason': a raw model is asked in its training text's format (prefix + the question's "prompt") and may
    write max_latent + 8 tokens (up to a "prompt_stop" token). The answer rule is data/questions.py's
    (--answer-regex overrides the file's)."""
    reason = mode == "reason"
    texts = [prefix + q.get("prompt", q["question"]) if reason else q["question"] for q in questions]
    n_new = DIRECT_TOKENS if mode == "direct" else cfg.max_latent + 8
    # a latent model sees the question laid out as in training, a chunk with an empty thought, then starts one;
    # a long few-shot prefix loses its oldest tokens so the prompt and the answer fit in the context
    # a question the chunker split ("chunks") is laid out chunk by chunk, each with an empty thought
    prompts = [think_prompt(tok, [tok.encode(c) for c in q.get("chunks") or [t]]) if mode == "latent"
               else [tok.bos] + tok.encode(t) for q, t in zip(questions, texts)]
    room = cfg.block_size - n_new
    prompts = [p if len(p) <= room else [tok.bos] + p[len(p) - room + 1:] for p in prompts]
    stops = [tok.eos, tok.sol] if mode == "latent" else [tok.eos]
    for s in sorted({q["prompt_stop"] for q in questions if "prompt_stop" in q} if reason else ()):
        if len(tok.encode(s)) != 1:
            raise ValueError(f"prompt_stop {s!r} is not one token of the {tok.name} tokenizer")
        stops += tok.encode(s)  # the reasoning ends there: the world's walk is one line, a tenth of the budget
    outs = generate(model, prompts, n_new, stop_tokens=tuple(stops), temperature=0.0, seed=cfg.seed,
                    batch_size=cfg.gen_batch)
    rows = []
    for q, asked, o in zip(questions, texts, outs):
        toks, closed = o["tokens"], mode != "latent" or tok.eol in o["tokens"]
        if mode == "latent":  # the answer is the text after the thought (none if the thought never closed)
            toks = toks[toks.index(tok.eol) + 1:] if closed else []
        text = tok.decode([t for t in toks if t not in tok.special_ids])
        regex = cfg.answer_regex or q.get("prompt_regex" if reason else "answer_regex")
        got = Q.extract(text, q["answer"], regex) if closed else None
        rows.append({"mode": mode, "prompt": asked, "generated": tok.decode(o["tokens"]), "answer_text": text,
                     "extracted": got, "answer": q["answer"], "correct": Q.correct(got, q["answer"], regex)})
    n = max(len(rows), 1)
    acc = sum(r["correct"] for r in rows) / n
    tag = "_reason" if reason else ""
    return {f"acc{tag}": acc, f"acc{tag}_se": math.sqrt(acc * (1 - acc) / n), "n_questions": len(rows)}, rows


def elbo(samples, k, key):
    """log( mean_k exp(log p_k - log q_k) ) over the first k samples of one chunk, log p from samples[j][key]."""
    return logsumexp([s[key] - s["log_q"] for s in samples[:k]]) - math.log(k)


def eval_nll(model, tok, cfg, docs, latent, ks):
    """Held-out NLL per raw X token (and bits per byte). Raw model: exact -log p(X_i | BOS P_i). Latent model:
    -IW-ELBO_K = -(sum_i [logsumexp_k(log p_k - log q_k) - log K]) with fresh samples at temperature 1, for each
    K in ks (the first K of max(ks) samples), with the same prefix rule (P_i = up to 3 previous chunks).
    Two bounds: nll_k{K}, the spec's (log p of every token after P_i, the mode marks SoL PRIOR included: a bound
    on the raw text's NLL), and nll_mc_k{K}, mode-conditional (the marks left out, as the E-step weighs)."""
    edocs = [encode_doc(tok, d) for d in docs]
    keys = [(d, c, "eval") for d, ed in enumerate(edocs) for c in range(len(ed["x"]))]
    n_bytes = sum(len(ch["suffix"].encode()) for d in docs for ch in d["chunks"])
    if not latent:
        pairs = [estep_prompts(tok, edocs[d]["x"], c, cfg.max_latent, cfg.block_size)[1:3] for d, c, _ in keys]
        lp = sum(s["sum"] for s in score(model, [p for p, _ in pairs], [x for _, x in pairs], cfg.gen_batch))
        n_tok = sum(len(x) for _, x in pairs)
        return {"nll": -lp / n_tok, "bpb": -lp / math.log(2) / n_bytes}
    if cfg.estep == "sequential":  # one SMC run per K: the ancestors a run keeps depend on its K samples
        runs = {k: [s for s in sample_sequential(model, tok, cfg, edocs, k, f"eval{k}",
                                                 lambda d, c: (cfg.seed, "eval", k, edocs[d]["id"], c), 1.0)[0]
                                .values()] for k in ks}
    else:  # independent chunks: the first K of max(ks) samples
        res = sample_latents(model, tok, cfg, edocs, keys, max(ks), temperature=1.0)
        runs = {k: res for k in ks}
    n_tok = sum(s[0]["n_x"] for s in runs[ks[0]])
    out = {}
    for tag, key in (("", "log_p_all"), ("_mc", "log_p")):
        for k in ks:
            e = sum(elbo(samples, k, key) for samples in runs[k])
            out[f"nll{tag}_k{k}"], out[f"bpb{tag}_k{k}"] = -e / n_tok, -e / math.log(2) / n_bytes
    return out


def evaluate(model, tok, cfg, data, latent):
    """Every metric for one model -> (metrics, per-question rows): NLL / IW-ELBO, and accuracy when questions
    exist (a raw model twice: asked directly, and asked to reason in its training text's format)."""
    model.eval()
    ks = [int(k) for k in cfg.eval_ks.split(",")]
    m, rows = eval_nll(model, tok, cfg, data["heldout"], latent, ks), []
    qs = data.get("questions") or []
    if qs:
        prefix = read_text(cfg.raw_prompt_prefix) if cfg.raw_prompt_prefix else ""
        for mode in (("latent",) if latent else ("direct", "reason")):
            mm, rr = eval_questions(model, tok, cfg, qs, mode, prefix)
            m.update(mm)
            rows += rr
    return m, rows


def eval_id(cfg, data):
    """What an eval.json was computed with: a cached one from other questions, rules or code is recomputed."""
    setup = [EVAL_VERSION, cfg.eval_ks, cfg.answer_regex, data.get("questions") or [],
             read_text(cfg.raw_prompt_prefix) if cfg.raw_prompt_prefix else ""]
    setup += [cfg.estep] if cfg.estep != "paper" else []  # the bound's sampler (paper: ids of older runs kept)
    return hashlib.blake2b(json.dumps(setup, sort_keys=True).encode(), digest_size=8).hexdigest()


def read_text(path):
    with open(path) as f:
        return f.read()


# ----------------------------------------------------------------------------- phases

def run_train(cfg, name, data_path, layout, init, steps, lr=None):
    """One training phase (resumable: a killed phase continues from its last checkpoint)."""
    out = os.path.join(cfg.out, name)
    if os.path.exists(os.path.join(out, "DONE")):  # the path is derived, so a moved --out still resumes
        return os.path.join(out, "model", "ckpt")
    tc = train_config(cfg, name, data_path, layout, init, steps, lr)
    print0(f"[{name}] training {steps} steps, layout {layout}, init {tc.init}")
    res = train(tc)
    if rank_world()[0] == 0:
        write_json(os.path.join(out, "DONE"), {k: v for k, v in res.items() if isinstance(v, (int, float, str))})
    barrier()
    return res["ckpt"]


def train_config(cfg, name, data_path, layout, init, steps, lr=None, world=None):
    """The train.py configuration of one phase (check_inputs checks these before any phase runs)."""
    lr, world = lr or cfg.lr, world or rank_world()[1]
    return TrainConfig(data=data_path, layout=layout, out=os.path.join(cfg.out, name, "model"),
                       init=init or "scratch", tokenizer=cfg.tokenizer, bpe_dir=cfg.bpe_dir, n_layer=cfg.n_layer,
                       n_head=cfg.n_head, n_embd=cfg.n_embd, block_size=cfg.block_size, max_steps=steps,
                       batch_size=cfg.batch_size // world, total_batch_tokens=cfg.batch_size * cfg.block_size, lr=lr,
                       min_lr=lr / 10, warmup_steps=max(1, steps // 20), seed=key_int(cfg.seed, name) % 2**31,
                       ckpt_every=max(50, steps // 4), log_every=max(1, steps // 5), resume=True)


def run_eval(cfg, name, ckpt, tok, data, latent):
    """Evaluate one phase's model once: eval.json and eval_questions.jsonl under out/name. A cached eval.json
    computed with other questions, rules or an older evaluation (no or another eval_id) is recomputed."""
    path = os.path.join(cfg.out, name, "eval.json")
    eid = eval_id(cfg, data)
    cached = read_json(path) if os.path.exists(path) else {}
    if cached.get("eval_id") != eid and rank_world()[0] == 0:
        model, meta = load_model(ckpt, tok.n_vocab, device())
        check_tokenizer(meta, tok)
        t0 = time.time()
        m, rows = evaluate(model, tok, cfg, data, latent)
        m["eval_seconds"] = round(time.time() - t0, 1)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(os.path.join(os.path.dirname(path), "eval_questions.jsonl"),
                     "".join(json.dumps(r) + "\n" for r in rows))
        write_json(path, {**m, "eval_id": eid})  # last: its eval_id says both files are complete
    barrier()
    m = read_json(path)
    m.pop("eval_id")
    return m


# ----------------------------------------------------------------------------- data

def prepare_data(cfg, tok, checked=None):
    """The target corpus (latents stripped), warm-start set, held-out docs and questions, under out/data.
    out/data/DONE records what shaped them (data_fingerprint); data prepared from other inputs or flags is
    prepared again (check_inputs has refused that already if a phase trained on it). `checked`: check_inputs'
    result, whose documents are reused rather than read twice."""
    checked = checked or check_inputs(cfg)
    ddir, docs_in, fp = os.path.join(cfg.out, "data"), checked["docs"], checked["fingerprint"]
    done = os.path.join(ddir, "DONE")
    stale = os.path.exists(done) and read_json(done).get("fingerprint", fp) != fp  # no fingerprint: older run
    if rank_world()[0] == 0 and (stale or not os.path.exists(done)):
        if stale:
            print0(f"data: {ddir} was prepared from other inputs or flags; preparing it again")
            shutil.rmtree(ddir)  # none of it may survive: a stale target_gold.jsonl would feed the oracle
        if cfg.corpus:
            docs = docs_in["corpus"]
            if cfg.val:
                heldout = docs_in["val"]
            else:  # no --val: the last 5% of the corpus is held out (at least one document)
                n = max(1, len(docs) // 20)
                docs, heldout = docs[:-n], docs[-n:]
            os.makedirs(ddir, exist_ok=True)
            if any(c["latent"] is not None for d in docs for c in d["chunks"]):
                write_docs(os.path.join(ddir, "target_gold.jsonl"), docs)  # the oracle's teacher latents
            strip = lambda ds: [{"id": d["id"], "chunks": [{"suffix": c["suffix"], "latent": None}
                                                            for c in d["chunks"]]} for d in ds]
            write_docs(os.path.join(ddir, "target.jsonl"), strip(docs))
            write_docs(os.path.join(ddir, "heldout.jsonl"), heldout)
        else:
            W.write(world_config(cfg), ddir, tok)
            if cfg.val:
                write_docs(os.path.join(ddir, "heldout.jsonl"), docs_in["val"])
        if cfg.teacher_latents:
            write_docs(os.path.join(ddir, "warm.jsonl"), docs_in["teacher_latents"])
        write_json(done, {"corpus": cfg.corpus or "built-in world", "fingerprint": fp})
    barrier()
    p = lambda name: os.path.join(ddir, name)
    data = {name: read_docs(p(f"{name}.jsonl")) for name in ("target", "warm", "heldout")}
    data["gold"] = read_docs(p("target_gold.jsonl")) if os.path.exists(p("target_gold.jsonl")) else None
    data["questions"] = Q.read_questions(cfg.questions) if cfg.questions else Q.load_prepared(ddir)
    data["paths"] = {name: p(f"{name}.jsonl") for name in ("base", "target", "warm", "target_gold")}
    return data


def corpus_tokens(tok, docs, layout, seed=0):
    return sum(len(sequence(tok, encode_doc(tok, d), layout, seed, 0)) for d in docs)


# ----------------------------------------------------------------------------- the loop

def run_estep(cfg, tok, data, it, prev_ckpt):
    idir = os.path.join(cfg.out, f"iter{it}")
    path = os.path.join(idir, "latents.jsonl")
    if os.path.exists(os.path.join(idir, "estep.json")):
        return path, read_json(os.path.join(idir, "estep.json"))
    model, meta = load_model(prev_ckpt, tok.n_vocab, device())
    check_tokenizer(meta, tok)
    model.eval()
    t0 = time.time()
    new, rows = estep(model, tok, cfg, data["target"], it, os.path.join(idir, "estep_units"))
    diag = {"chunks": len(rows), "ess_mean": sum(r["ess"] for r in rows) / max(len(rows), 1),
            "capped_frac": sum(r["capped"] for r in rows) / max(len(rows) * cfg.k, 1),
            "dropped": sum(r["latent"] is None for r in rows), "seconds": round(time.time() - t0, 1)}
    if data["gold"] is not None:  # diagnostics only: the E-step above never saw these
        gold = {(d["id"], i): c["latent"] for d in data["gold"] for i, c in enumerate(d["chunks"])}
        # chunks with something to think only: an empty gold latent (nothing to derive) would be a free match
        pairs = [(r, gold[(new[r["doc"]]["id"], r["chunk"])]) for r in rows]
        rows_g = [(r, g) for r, g in pairs if g]
        hit = [r["latent"] == g for r, g in rows_g]
        exists = [g in r["samples"] for r, g in rows_g]
        diag["gold_match"] = sum(hit) / max(len(hit), 1)  # the chosen latent is the gold derivation
        diag["gold_exists"] = sum(exists) / max(len(exists), 1)  # some sample among the K is
        diag["gold_chunks"] = len(rows_g)
        # the chosen latent follows the problem: the gold's steps with every value left out (a digit right after
        # a letter: for the built-in world the start and the operators, whatever facts it got wrong)
        steps = lambda z: re.sub(r"(?<=[^\d\s])\d", "#", z or "")
        diag["gold_steps"] = sum(steps(r["latent"]) == steps(g) for r, g in rows_g) / max(len(rows_g), 1)
    if rank_world()[0] == 0:
        write_docs(path, new)
        write_json(os.path.join(idir, "estep.json"), diag)
    barrier()
    return path, diag


def run(cfg, checked=None):
    """The whole loop. `checked`: check_inputs' result (main validates before anything is written)."""
    checked = checked or check_inputs(cfg)
    tok = checked["tok"]
    save_config(cfg)
    t_start = time.time()
    # a resumed run's clock misses the phases an earlier run finished: the report says so instead of a total
    resumed = any(os.path.exists(os.path.join(cfg.out, name, "DONE")) for name in ("base", "warm", "iter1"))
    data = prepare_data(cfg, tok, checked)
    print0(f"data: {len(data['target'])} target docs, {len(data['warm'])} warm-start docs, "
           f"{len(data['heldout'])} held-out docs, {len(data['questions'])} questions")
    base = cfg.init or run_train(cfg, "base", data["paths"]["base"], "raw", "", cfg.base_steps, cfg.base_lr)
    warm = run_train(cfg, "warm", data["paths"]["warm"], "random", base, cfg.warm_steps)
    results = [{"name": "warm start", "iter": 0, **run_eval(cfg, "warm", warm, tok, data, True)}]
    prev = warm
    for it in range(1, cfg.iters + 1):
        print0(f"== iteration {it}/{cfg.iters} ({time.time() - t_start:.0f}s elapsed)")
        latents, diag = run_estep(cfg, tok, data, it, prev)
        init = base if cfg.m_step == "fresh" else prev
        prev = run_train(cfg, f"iter{it}", latents, "random", init, cfg.m_steps)
        results.append({"name": f"BoLT iter {it}", "iter": it, **run_eval(cfg, f"iter{it}", prev, tok, data, True),
                        **{f"estep_{k}": v for k, v in diag.items()}})
        print0(f"   iter {it}: " + R.fmt_metrics(results[-1]))
    if not cfg.no_baselines:
        results += run_baselines(cfg, tok, data, base)
    if rank_world()[0] == 0:
        report(cfg, results, time.time() - t_start, resumed)
    return results


def run_baselines(cfg, tok, data, base):
    """The base model as it is; raw data from base, token-matched (same epochs over the target documents as an M-step) and FLOP-matched
    (same steps x tokens as an M-step); and the oracle, trained on teacher latents for the whole corpus."""
    batch_tokens = cfg.batch_size * cfg.block_size
    latent_docs = read_docs(os.path.join(cfg.out, "iter1", "latents.jsonl")) if cfg.iters else data["target"]
    epochs = cfg.m_steps * batch_tokens / corpus_tokens(tok, latent_docs, "random", cfg.seed)
    raw_steps = max(1, round(epochs * corpus_tokens(tok, data["target"], "raw") / batch_tokens))
    out = [{"name": "base (no target training)", "baseline": "base", **run_eval(cfg, "base", base, tok, data, False)}]
    for name, label, steps in (("raw_tokens", f"raw, token-matched ({epochs:.1f} epochs)", raw_steps),
                               ("raw_flops", "raw, FLOP-matched", cfg.m_steps)):
        ck = run_train(cfg, name, data["paths"]["target"], "raw", base, steps)
        out.append({"name": label, "baseline": name, "steps": steps, **run_eval(cfg, name, ck, tok, data, False)})
    if data["gold"] is not None:
        ck = run_train(cfg, "oracle", data["paths"]["target_gold"], "random", base, cfg.m_steps)
        out.append({"name": "oracle (teacher latents)", "baseline": "oracle",
                    **run_eval(cfg, "oracle", ck, tok, data, True)})
    for r in out:
        print0(f"   {r['name']}: " + R.fmt_metrics(r))
    return out


def save_config(cfg):
    """config.json, written only after check_inputs passed (a refused command leaves --out as it was)."""
    os.makedirs(cfg.out, exist_ok=True)
    if rank_world()[0] == 0:
        write_json(os.path.join(cfg.out, "config.json"), asdict(cfg))
    print0("config: " + json.dumps(asdict(cfg)))


# ----------------------------------------------------------------------------- report

def report(cfg, results, seconds, resumed=False):
    """report.md (a table per model), metrics.jsonl, and plot.svg (accuracy and NLL bound per iteration)."""
    clock = (f"{seconds / 60:.1f} min in this invocation (it resumed phases an earlier run finished; their time is "
             "not counted)" if resumed else f"total {seconds / 60:.1f} min")
    print(R.report(cfg.out, results, [int(k) for k in cfg.eval_ks.split(",")],
                   f"seed {cfg.seed}, K {cfg.k}, {cfg.iters} iterations, {clock}."))


def run_seeds(cfg):
    """--seeds: one full run per seed in out/seed{S} (in sequence, each resumable), then the combined report.
    Every seed's --out and data are checked before the first seed starts."""
    t0, per = time.time(), {}
    runs = {s: replace(cfg, seed=s, seeds="", out=os.path.join(cfg.out, f"seed{s}"))
            for s in [int(x) for x in cfg.seeds.split(",")]}
    checks = {s: check_inputs(c) for s, c in runs.items()}
    for s, c in runs.items():
        print0(f"==== seed {s}")
        per[s] = run(c, checks[s])
    if rank_world()[0] == 0:
        print(R.combined_report(cfg.out, per, [int(k) for k in cfg.eval_ks.split(",")],
                                f"K {cfg.k}, {cfg.iters} iterations, {(time.time() - t0) / 60:.1f} min in this "
                                "invocation (phases finished earlier are not counted)."))
    return per


# ----------------------------------------------------------------------------- validation (before any work)

# the flags that shape out/data besides its input files; data/DONE records them (data_fingerprint)
DATA_FLAGS = ("tokenizer", "block_size", "seed", "world_target", "world_warm", "world_heldout", "world_questions",
              "world_shape")
# smallest value of each integer flag; base_steps is checked apart (unused with --init)
MINIMUM = dict(iters=0, k=1, n_layer=1, n_head=1, n_embd=1, block_size=1, batch_size=1, warm_steps=1, m_steps=1,
               max_latent=1, top_k=0, gen_batch=1, world_target=1, world_warm=1, world_heldout=1, world_questions=0)


def flag(name):
    return "--" + name.replace("_", "-")


def flag_errors(cfg, eval_only=False, ckpt=""):
    """Every range and cross-flag rule for every phase em.py will run (base, warm, M-steps, oracle, baselines,
    E-step, evaluation), named as em.py's flags. -> list of one-line messages."""
    errors = [f"must be >= {lo}, got {getattr(cfg, k)} ({flag(k)})" for k, lo in MINIMUM.items()
              if getattr(cfg, k) < lo]
    positive = lambda v: math.isfinite(v) and v > 0
    ks = cfg.eval_ks.split(",")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    errors += [msg for bad, msg in (
        (not cfg.init and cfg.base_steps < 1, f"must be >= 1 without --init, got {cfg.base_steps} (--base-steps)"),
        (not positive(cfg.lr), f"must be a positive number, got {cfg.lr} (--lr)"),
        (not positive(cfg.base_lr), f"must be a positive number, got {cfg.base_lr} (--base-lr)"),
        # temperature 0 is greedy: K identical samples whose weights say nothing, so only K = 1 may use it
        (not (math.isfinite(cfg.temperature) and cfg.temperature >= 0),
         f"must be a number >= 0, got {cfg.temperature} (--temperature)"),
        (cfg.temperature == 0 and cfg.k > 1, "0 (greedy) draws K identical latents: use --k 1 or a temperature > 0 "
                                             "(--temperature)"),
        (not 0 < cfg.top_p <= 1, f"must be in (0, 1], got {cfg.top_p} (--top-p)"),
        (cfg.n_head >= 1 and cfg.n_embd % cfg.n_head != 0, f"{cfg.n_embd} is not divisible by --n-head "
                                                           f"{cfg.n_head} (--n-embd)"),
        (cfg.batch_size % world != 0, f"{cfg.batch_size} is not divisible by the {world} ranks (--batch-size)"),
        (not all(k.strip().isdigit() and int(k) >= 1 for k in ks), f"must be a comma list of integers >= 1, got "
                                                                  f"{cfg.eval_ks!r} (--eval-ks)"),
        (cfg.tokenizer not in TOKENIZERS and not os.path.isdir(cfg.tokenizer),
         f"{cfg.tokenizer!r}: choose one of {', '.join(TOKENIZERS)} or a tokenizer directory (--tokenizer)"),
        (cfg.m_step not in ("fresh", "continue"), "must be fresh or continue (--m-step)"),
        (cfg.estep not in ("paper", "sequential"), "must be paper or sequential (--estep)"),
        (cfg.world_shape not in W.SHAPES, f"must be one of {', '.join(W.SHAPES)}, got {cfg.world_shape!r} "
                                          "(--world-shape)"),
        (bool(cfg.corpus) and not cfg.init and not eval_only, "--corpus needs --init (base weights for that corpus)"),
        (bool(cfg.corpus) and not cfg.teacher_latents and not eval_only,
         "--corpus needs --teacher-latents (the warm-start set)"),
        (cfg.max_latent + 8 > cfg.block_size, f"{cfg.max_latent} leaves no room in --block-size {cfg.block_size} "
                                              "(--max-latent)"),
        (eval_only and not ckpt, "--eval needs --ckpt DIR (--ckpt)"),
        (not 0 <= cfg.seed < 2**63, f"must be in [0, 2**63), got {cfg.seed} (--seed)"),
    ) if bad]
    if not errors:  # a safety net: em.py's own checks above should leave train.py nothing to refuse
        world = int(os.environ.get("WORLD_SIZE", "1"))
        for name, steps, lr in (("base", cfg.base_steps, cfg.base_lr), ("warm", cfg.warm_steps, None),
                                ("iter1", cfg.m_steps, None))[1 if cfg.init else 0:]:
            errors += [f"phase {name} would give train.py {e}" for e in
                       train_value_errors(train_config(cfg, name, "", "random", "", steps, lr, world))]
    n = W.n_problems(world_config(cfg))  # a prose document holds several problems
    if not cfg.corpus and n >= W.problem_space(world_config(cfg)):
        errors.append(f"the built-in world has {W.problem_space(world_config(cfg))} problems, fewer than {n} "
                      "(--world-target + --world-warm + --world-heldout + --world-questions)")
    return errors


def world_config(cfg):
    return W.WorldConfig(seed=cfg.seed, n_target=cfg.world_target, n_warm=cfg.world_warm,
                         n_heldout=cfg.world_heldout, n_questions=cfg.world_questions, shape=cfg.world_shape,
                         chunk_tokens=cfg.block_size // 4)  # prose: chunked as prepare_data chunks --corpus


def read_input(path, name, **kw):
    """Read one input corpus whole (every line checked); -> (docs, error or None)."""
    try:
        docs = read_docs(path, **kw)
    except ValueError as e:  # read_docs names the file and line
        return [], str(e)
    except OSError as e:
        return [], f"{path}: {e.strerror or e} ({flag(name)})"
    return docs, None if docs else f"{path} holds no documents ({flag(name)})"


def checkpoint_error(path, name, tok, block_size):
    """Why `path` cannot be loaded as a model for this run (None when it can): files, config, weights,
    tokenizer, vocabulary and context length are all checked by loading it once on the CPU."""
    try:
        model, meta = load_model(path, tok.n_vocab)
        check_tokenizer(meta, tok)
    except (ValueError, OSError) as e:  # FileNotFoundError: a missing file
        return f"{e} ({flag(name)})"
    if model.config.vocab_size != tok.n_vocab:
        return f"{path}: vocabulary {model.config.vocab_size} is not tokenizer {tok.name}'s {tok.n_vocab} ({flag(name)})"
    if block_size > model.config.block_size:
        return f"--block-size {block_size} exceeds the model's block_size {model.config.block_size} ({flag(name)})"
    return None


def data_fingerprint(cfg):
    """What shaped out/data: a sha256 of every input file and the flags that chunk or build the documents."""
    return {"inputs": {name: sha256_file(getattr(cfg, name)) for name in ("corpus", "teacher_latents", "val")
                       if getattr(cfg, name)},
            "flags": {k: getattr(cfg, k) for k in DATA_FLAGS}}


def out_errors(cfg, fp):
    """An existing --out must hold this configuration, and data that phases trained on must be what the
    inputs give now (else the corrected or changed command would silently mix results)."""
    path, done = os.path.join(cfg.out, "config.json"), os.path.join(cfg.out, "data", "DONE")
    errors = []
    for p in filter(os.path.isfile, (path, done)):
        try:
            read_json(p)
        except (ValueError, OSError) as e:
            return [f"{p} is unreadable ({e}); use another --out or delete it (--out)"]
    if os.path.isfile(path):
        old, mine, default = read_json(path), asdict(cfg), asdict(EMConfig())
        # a field an older em.py did not have is compatible at its default (it did what the default does)
        diff = [k for k in mine if k not in RESUMABLE_KEYS | EVAL_KEYS and old.get(k, default[k]) != mine[k]]
        if diff:
            errors.append(f"{cfg.out} holds a run with another configuration ("
                          + ", ".join(f"{k}: {old.get(k)!r} -> {mine[k]!r}" for k in diff)
                          + "); use another --out or delete it (--out)")
    if os.path.isfile(done):
        old = read_json(done).get("fingerprint")
        if old is None:
            print0(f"warning: {done} predates content hashes: its data is reused unchecked")
        elif old != fp:
            changed = [flag(k) for k in fp["inputs"].keys() | old["inputs"].keys()
                       if fp["inputs"].get(k) != old["inputs"].get(k)]
            changed += [flag(k) for k in fp["flags"] if fp["flags"][k] != old["flags"].get(k)]
            trained = sorted(n for n in os.listdir(cfg.out) if n != "data" and os.path.isdir(os.path.join(cfg.out, n)))
            if trained:
                errors.append(f"{', '.join(changed)} changed since {cfg.out} prepared its data, and {trained[0]} "
                              f"trained on the old data; use another --out or delete it ({', '.join(changed)})")
    return errors


def check_inputs(cfg, ckpt="", eval_only=False):
    """One validation pass before anything is written or trained: flags, tokenizer, --out, every input file
    read whole, every checkpoint loaded once, and an existing --out's configuration and data. Raises ValueError
    with every problem on one line; -> {'tok', 'docs': {flag name: documents}, 'fingerprint'}."""
    errors = flag_errors(cfg, eval_only, ckpt)
    if errors:  # the files below are read with these flags: they must make sense first
        raise ValueError("; ".join(errors))
    try:
        tok = get_tokenizer(cfg.tokenizer, cfg.bpe_dir or None)
    except (ValueError, OSError) as e:
        raise ValueError(f"{e} (--tokenizer {cfg.tokenizer})") from None
    budget = dict(tok=tok, max_tokens=cfg.block_size // 4)  # what prepare_data chunks {"text"} documents with
    heldout = cfg.val or os.path.join(cfg.out, "data", "heldout.jsonl")
    reads = ({"val": (heldout, {})} if eval_only else
             {"corpus": (cfg.corpus, budget), "val": (cfg.val, budget if cfg.corpus else {}),
              "teacher_latents": (cfg.teacher_latents, {})})
    docs, errors = {}, [] if eval_only else [out_dir_error(cfg.out)]
    if eval_only and not os.path.isfile(heldout):
        errors.append(f"no held-out documents: pass --val PATH (or --out of a run that prepared {heldout})")
    for name, (path, kw) in reads.items():
        if path and not (eval_only and not os.path.isfile(path)):
            docs[name], err = read_input(path, name, **kw)
            errors.append(err)
    if cfg.corpus and not cfg.val and not eval_only and 0 < len(docs["corpus"]) < 2:
        errors.append(f"{cfg.corpus} holds one document: a target corpus and held-out docs need 2 (--corpus)")
    if docs.get("teacher_latents") and \
            not any(c["latent"] for d in docs["teacher_latents"] for c in d["chunks"]):
        errors.append(f"{cfg.teacher_latents} holds no latents: the warm start needs them (--teacher-latents)")
    for name, path in (("init", cfg.init), ("ckpt", ckpt if eval_only else "")):
        if path:
            errors.append(checkpoint_error(path, name, tok, cfg.block_size))
    fp = None
    if not eval_only and not any(errors):  # every input is a readable file by now
        fp = data_fingerprint(cfg)
        errors += out_errors(cfg, fp) if os.path.isdir(cfg.out) else []
    errors = [e for e in errors if e]
    if errors:
        raise ValueError("; ".join(errors))
    return {"tok": tok, "docs": docs, "fingerprint": fp}


# ----------------------------------------------------------------------------- CLI

def eval_only(cfg, ckpt):
    """`--eval --ckpt DIR`: every metric for one checkpoint (latent or raw, from its training layout)."""
    tok = get_tokenizer(cfg.tokenizer, cfg.bpe_dir or None)
    model, meta = load_model(ckpt, tok.n_vocab, device())
    check_tokenizer(meta, tok)
    latent = meta.get("train_config", {}).get("layout", "random") != "raw"
    ddir = os.path.join(cfg.out, "data")
    heldout = cfg.val or os.path.join(ddir, "heldout.jsonl")  # check_inputs has read it
    # the run's questions belong with its held-out docs: another --val gets questions only from --questions
    questions = Q.read_questions(cfg.questions) if cfg.questions else [] if cfg.val else Q.load_prepared(ddir)
    data = {"heldout": read_docs(heldout), "questions": questions}
    m, rows = evaluate(model, tok, cfg, data, latent)
    print(json.dumps({"ckpt": ckpt, "latent": latent, **m}, indent=1))
    if rows:  # beside the checkpoint's eval, never over a run's own eval_questions.jsonl
        path = os.path.join(cfg.out, "eval_only_questions.jsonl")
        os.makedirs(cfg.out, exist_ok=True)
        write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
        print(f"per-question outputs: {path}")


def parse_args(argv=None):
    """Flags -> (EMConfig, args); raises ValueError (argparse's own errors included) with every problem."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.error = parser_error  # one line via main(), not argparse's usage block
    for f in fields(EMConfig):
        if f.type is bool or f.type == "bool":
            ap.add_argument(flag(f.name), action="store_true")
        else:
            ap.add_argument(flag(f.name), type=type(f.default), default=None, help=f"default {f.default!r}")
    ap.add_argument("--eval", action="store_true", help="evaluate --ckpt only")
    ap.add_argument("--ckpt", default="", help="checkpoint for --eval")
    args = ap.parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in fields(EMConfig)
             if getattr(args, f.name) is not None and getattr(args, f.name) is not False}  # 0 is a value
    cfg = EMConfig(**{**(QUICK if given.get("quick") else {}), **given})
    errors = flag_errors(cfg, args.eval, args.ckpt)
    errors += [msg for bad, msg in (
        (bool(cfg.seeds) and not all(x.strip().isdigit() for x in cfg.seeds.split(",")),
         "must be comma-separated integers >= 0, e.g. 0,1,2 (--seeds)"),
        (bool(cfg.seeds) and len(set(cfg.seeds.split(","))) != len(cfg.seeds.split(",")), "repeats a seed (--seeds)"),
        (bool(cfg.seeds) and "seed" in given, "pass --seed or --seeds, not both (--seeds)"),
        (bool(cfg.seeds) and args.eval, "--eval evaluates one --ckpt: drop --seeds (--seeds)"),
    ) if bad]
    for name, p in (("corpus", cfg.corpus), ("teacher_latents", cfg.teacher_latents), ("val", cfg.val),
                    ("init", cfg.init), ("ckpt", args.ckpt), ("questions", cfg.questions),
                    ("raw_prompt_prefix", cfg.raw_prompt_prefix)):
        if p and not os.path.exists(p):
            errors.append(f"{p}: no such file or directory ({flag(name)})")
    try:  # the questions and the rule are inputs: read them now, not after hours of training
        if cfg.answer_regex:
            Q.check_regex(cfg.answer_regex, "--answer-regex")
    except ValueError as e:
        errors.append(str(e))
    try:
        if cfg.questions and os.path.isfile(cfg.questions):
            Q.read_questions(cfg.questions)
    except ValueError as e:
        errors.append(f"{e} (--questions)")
    if errors:
        raise ValueError("; ".join(errors))
    return cfg, args


def main(argv=None):
    try:
        cfg, args = parse_args(argv)
        checked = check_inputs(cfg, args.ckpt, args.eval)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if "RANK" in os.environ and not dist.is_initialized():  # torchrun
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        eval_only(cfg, args.ckpt) if args.eval else run_seeds(cfg) if cfg.seeds else run(cfg, checked)
    except (ValueError, OSError) as e:  # a problem no validation could see (a full disk, a file changed meanwhile)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
