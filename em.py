"""BoLT: bootstrapping latent thoughts by EM (Ruan et al. 2025, "Reasoning to Learn from Latent Thoughts").

    python em.py --iters 3                      # the built-in world on CPU, baselines and report included
    torchrun --standalone --nproc_per_node=N em.py ...   # E-step sharded over ranks, M-steps with DDP
    python em.py --eval --ckpt DIR [--questions Q.jsonl]   # evaluate any checkpoint, raw or latent
    python em.py --iters 3 --seeds 0,1,2 --out DIR          # one run per seed in DIR/seed{S}, combined report
    python em.py --world-shape prose --block-size 256 --batch-size 8 --warm-steps 1500 ...  # the realistic world

The loop (spec: ../shared/docs/BOLT.md), in this file's order:
  run         base: pretrain once on the base corpus (or --init: our checkpoint / a Hugging Face directory);
              warm: train from base on the warm-start set with teacher latents (random layout); then for
              t in 1..iters an E-step, an M-step and an evaluation; then the baselines and the report
  E-step      BOLT.md's steps, one function each: posterior_samples (2: Z_k ~ q with log q_k), joint_scores
              (3: log p_k), importance_weights (4: log w_k = log p_k - log q_k), resample (4: k* ~ softmax(log w)
              by an RNG keyed by (seed, t, doc, chunk)), ess (5), iw_elbo (4: the held-out bound);
              sample_latents / pick_latent apply them to chunks; sample_sequential (--estep sequential, the
              default) runs them chunk by chunk, each chunk conditioned on the latents chosen before it (an
              SMC sampler); --estep paper conditions on the raw previous chunks as BOLT.md does; estep /
              run_estep are the mechanics
  M-step      run_train: from the *base* weights on the target corpus with the chosen latents, same budget and
              schedule() every iteration (--m-step continue: from the previous model instead)
  evaluation  eval_nll (raw NLL, IW-ELBO_K: the spec's bound and the PRIOR-conditional one, each mark's cost,
              standard errors over documents), eval_questions (accuracy on test and dev questions as data,
              data/questions.py, a latent model thinking before every chunk as in training: think_answers),
              run_eval (cached per phase)
  baselines   the base model, the raw arms of --raw-arms (raw_arm: token- and FLOP-matched, the warm set's walks
              inline, the warm start continued on raw text, the pipeline's compute; each asked directly and asked
              to reason in its training text's format), and the oracle (gold walks on the whole target corpus)
Not the method, kept apart: data/rundir.py checks every flag and input before anything is written (a bad command
prints one line `error: <what> (<flag or file:line>)`, exits 2 and leaves --out as it was), prepares out/data
(a sha256 of every input recorded: changed inputs are prepared again, or refused once trained on; the target
corpus also as token shards, out/data/target/) and runs the E-step in resumable units sharded over ranks, each
reading its documents from the shards; data/report.py writes report.md, metrics.jsonl and plot.svg.
Every phase writes atomically and records completion under --out, so re-running after a kill resumes. The chosen
latents travel to the M-step as token ids: iter{t}/latents/, token shards train.py memmaps (rundir.write_latents;
the text for reading in iter{t}/latents.jsonl, beside the same ids as "latent_ids").
"""
import argparse
import contextlib
import hashlib
import itertools
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace

import torch

from data import questions as Q
from data import report as R
from data import rundir as D
from data.corpus import HelpFormatter, add_flags, opt, out_lock, parser_error, read_json, write_atomic, \
    write_json
from data.layout import MODE_MARKS, encode_doc, estep_prompts, joint_continuation, latent_marks, raw_pair, \
    think_layout
from data.shards import is_shard_dir, open_shards
from data.tokenizer import check_tokenizer
from model import GPTConfig, load_model
from sample import generate, latent, score
from common import barrier, pick_device, print0, rank_world, setup_dist
from data.loader import Rows, open_corpus
from train import TrainConfig, train


RUN, INPUTS, MODEL, BUDGETS, ESTEP, EVAL, WORLD = "run", "inputs", "model (from scratch)", "budgets", "E-step", \
    "evaluation", "the built-in world"


@dataclass
class EMConfig:
    iters: int = opt(3, "EM iterations", group=RUN)
    seed: int = opt(0, "seed of the world, inits, data order and E-step draws", group=RUN)
    seeds: str = opt("", "'0,1,2': a run per seed in OUT/seed{S}, one report", group=RUN, metavar="LIST")
    out: str = opt("out/em", "run directory; the same command resumes it", group=RUN, metavar="DIR")
    quick: bool = opt(False, "tiny world and model: a one-minute smoke test", group=RUN)
    no_baselines: bool = opt(False, "skip the base and raw arms (and the oracle)", group=RUN)
    raw_arms: str = opt("default", "raw baselines: a comma list of " + ", ".join(D.RAW_ARMS) + ", each optionally "
                        "+replay (mixed 1:1 with the base corpus); empty: none; default: "
                        f"{D.DEFAULT_RAW_ARMS} (a --corpus run: without +replay)", group=RUN, metavar="LIST")
    oracle: bool = opt(False, "also train the oracle (gold walks; built-in worlds)", group=RUN)
    corpus: str = opt("", "target corpus ({'text'} or chunks); default: the world", group=INPUTS, metavar="JSONL")
    teacher_latents: str = opt("", "warm-start set with latents; default: the world's",
                               group=INPUTS, metavar="JSONL")
    val: str = opt("", "held-out documents; default: the world's", group=INPUTS, metavar="JSONL")
    init: str = opt("", "base weights (ours or a HF dir); no pretraining", group=INPUTS, metavar="DIR")
    tokenizer: str = opt("bytes", "bytes | gpt2 | a HF tokenizer dir", group=MODEL, metavar="NAME")
    bpe_dir: str = opt("", "dir with GPT-2's vocab.bpe + encoder.json", group=MODEL, metavar="DIR")
    n_layer: int = opt(GPTConfig.n_layer, "layers", group=MODEL)
    n_head: int = opt(GPTConfig.n_head, "attention heads", group=MODEL)
    n_embd: int = opt(GPTConfig.n_embd, "width", group=MODEL)
    block_size: int = opt(256, "window of every phase", group=MODEL)
    batch_size: int = opt(8, "rows per optimizer step", group=BUDGETS)
    lr: float = opt(1e-3, "peak lr of every phase after the base", group=BUDGETS)
    base_lr: float = opt(2e-3, "peak lr of base pretraining", group=BUDGETS)
    base_steps: int = opt(2000, "base pretraining steps", group=BUDGETS)
    warm_epochs: float = opt(20.0, "warm-start epochs", group=BUDGETS)
    m_epochs: float = opt(8.0, "epochs of every M-step", group=BUDGETS)
    warm_steps: int = opt(0, "fixed steps, not --warm-epochs", group=BUDGETS)
    m_steps: int = opt(0, "fixed steps, not --m-epochs", group=BUDGETS)
    m_step: str = opt("fresh", "fresh: every M-step from the base (BOLT.md); continue: from the previous model",
                      ("fresh", "continue"), group=BUDGETS)
    k: int = opt(4, "Monte-Carlo latents per chunk", group=ESTEP)
    estep: str = opt("sequential", "chunk i's context: earlier chunks with their chosen latents, or raw (BOLT.md)",
                     ("sequential", "paper"), group=ESTEP)
    max_latent: int = opt(32, "tokens per latent, EoL included", group=ESTEP)
    temperature: float = opt(1.0, "0 = greedy, only with --k 1", group=ESTEP)
    top_k: int = opt(0, "0 = off", group=ESTEP)
    top_p: float = opt(1.0, "1 = off", group=ESTEP)
    drop_capped: bool = opt(False, "drop latents that hit --max-latent", group=ESTEP)
    gen_batch: int = opt(256, "rows per sampling / scoring batch", group=ESTEP)
    eval_ks: str = opt("1,2,4", "K of the IW-ELBO_K bounds", group=EVAL, metavar="LIST")
    questions: str = opt("", "test questions JSONL; default: the world's", group=EVAL, metavar="JSONL")
    dev_questions: str = opt("", "dev questions JSONL, to choose a recipe on; default: the world's", group=EVAL,
                             metavar="JSONL")
    answer_regex: str = opt("", "overrides each question's answer rule", group=EVAL, metavar="RE")
    raw_prompt_prefix: str = opt("", "file put before a raw arm's reasoning prompt", group=EVAL, metavar="FILE")
    world_target: int = opt(1000, "target documents", group=WORLD)
    world_warm: int = opt(400, "warm-start documents", group=WORLD)
    world_heldout: int = opt(100, "held-out documents", group=WORLD)
    world_questions: int = opt(500, "test questions", group=WORLD)
    world_dev: int = opt(500, "dev questions (disjoint from the test ones)", group=WORLD)
    world_shape: str = opt("prose", "prose: problems in words over chunks; compact: one problem, two chunks",
                           ("prose", "compact"), group=WORLD)


QUICK = dict(n_layer=2, n_head=2, n_embd=64, block_size=128, batch_size=16, base_steps=150, warm_epochs=16,
             world_target=120, world_warm=60, world_heldout=32, world_questions=32, world_dev=32,
             world_shape="compact", max_latent=32)
DIRECT_TOKENS = 24  # what a raw model asked directly may write: an answer sentence ("The result is 5." is 16 bytes)


# ----------------------------------------------------------------------------- the loop (BOLT.md)

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
    warm = run_train(cfg, "warm", data["paths"]["warm"], "random", base,
                     phase_steps(cfg, tok, cfg.warm_steps, cfg.warm_epochs, data["paths"]["warm"]))
    results = [{"name": "warm start", "iter": 0, **run_eval(cfg, "warm", warm, tok, data, True)}]
    prev = warm
    for it in range(1, cfg.iters + 1):
        print0(f"== iteration {it}/{cfg.iters} ({time.time() - t_start:.0f}s elapsed)")
        latents, diag = run_estep(cfg, tok, data, it, prev)
        init = base if cfg.m_step == "fresh" else prev
        prev = run_train(cfg, f"iter{it}", latents, "random", init, m_steps(cfg, tok))
        results.append({"name": f"BoLT iter {it}", "iter": it, **run_eval(cfg, f"iter{it}", prev, tok, data, True),
                        **{f"estep_{k}": v for k, v in diag.items()}})
        print0(f"   iter {it}: " + R.fmt_metrics(results[-1]))
    if not cfg.no_baselines:
        results += run_baselines(cfg, tok, data, base, warm)
    if rank_world()[0] == 0:
        report(cfg, results, time.time() - t_start, resumed)
    return results


def run_baselines(cfg, tok, data, base, warm):
    """The base model as it is; the raw arms of --raw-arms (raw_arm), each evaluated as a raw model (asked
    directly and asked to reason; an arm that would train what an earlier one trains is not trained twice);
    and with --oracle the oracle, trained on the gold walks for the whole corpus."""
    out = [{"name": "base (no target training)", "baseline": "base", **run_eval(cfg, "base", base, tok, data, False)}]
    done = set()
    for arm, replay in D.raw_arms(cfg):
        name, label, path, init, steps = raw_arm(cfg, tok, data, arm, replay, base, warm)
        if (path, init, steps) in done:  # document-aligned rows: token- and FLOP-matching often agree
            continue
        done.add((path, init, steps))
        phase = pipeline_phase(cfg, name) if arm == "pipeline" else name
        ck = run_train(cfg, phase, path, "raw", init, steps)
        out.append({"name": label, "baseline": name, "phase": phase, "steps": steps,
                    **run_eval(cfg, phase, ck, tok, data, False)})
    if data["gold"] is not None and cfg.oracle:
        ck = run_train(cfg, "oracle", data["paths"]["target_gold"], "random", base, m_steps(cfg, tok))
        out.append({"name": "oracle (the corpus' latents)" if cfg.corpus else "oracle (gold walks)",
                    "baseline": "oracle", **run_eval(cfg, "oracle", ck, tok, data, True)})
    for r in out:
        print0(f"   {r['name']}: " + R.fmt_metrics(r))
    return out


def raw_arm(cfg, tok, data, arm, replay, base, warm):
    """One raw baseline of --raw-arms -> (name, label, train.py --data, init, steps); every one trains in the
    raw layout and costs the steps given:
      tokens    the target from base, as many epochs over its documents as an M-step makes over the latents
      flops     the target from base, one M-step's steps (m_steps)
      inline    (a) the target plus the warm set with the teacher's walks inline in the base text's format
                (data/world.py warm_inline), from base, m_steps: the worked examples the latent arms see
      warm      (b) the warm-start model continued on the target, m_steps
      pipeline  (c) inline's data, from base, for as many training tokens as the warm start and every M-step
                trained (pipeline_tokens; the E-step's sampling is not training and is not counted)
    +replay: the same data mixed 1:1 by documents with the base corpus (data/rundir.raw_docs); the token-matched
    arm then makes its epochs over the mix."""
    path, rep, steps = data["paths"][arm + "+replay" * replay], ", base replay" if replay else "", m_steps(cfg, tok)
    name = f"raw_{arm}" + "_replay" * replay
    if arm == "tokens":
        epochs = steps * cfg.batch_size / n_rows(tok, cfg, latent_path(cfg), "random")
        n = max(1, round(epochs * n_rows(tok, cfg, path, "raw") / cfg.batch_size))
        both = " and FLOP" if n == steps else ""  # document-aligned rows: a raw document takes a row as its twin
        return name, f"raw, token{both}-matched{rep} ({epochs:.1f} epochs)", path, base, n
    if arm == "pipeline":
        n = steps_for_tokens(tok, cfg, pipeline_phase(cfg, name), path, "raw", pipeline_tokens(cfg, tok, data))
        return name, f"raw + warm walks inline, pipeline tokens{rep} ({n} steps)", path, base, n
    label = {"flops": "raw, FLOP-matched", "inline": "raw + warm walks inline", "warm": "warm start, then raw"}[arm]
    return name, f"{label}{rep} (one M-step)", path, warm if arm == "warm" else base, steps


def pipeline_phase(cfg, name):
    """The pipeline arm's phase directory: its steps follow --iters, which a resumed run may change."""
    return f"{name}_iters{cfg.iters}"


def pipeline_tokens(cfg, tok, data):
    """Tokens the pipeline trains after base: the warm start's steps and every M-step's, each over its own
    corpus (the warm set; iteration t's latents) as train.py's rows lay it out."""
    warm = phase_steps(cfg, tok, cfg.warm_steps, cfg.warm_epochs, data["paths"]["warm"])
    return phase_tokens(tok, cfg, "warm", data["paths"]["warm"], "random", warm) + sum(
        phase_tokens(tok, cfg, f"iter{t}", os.path.join(cfg.out, f"iter{t}", "latents"), "random", m_steps(cfg, tok))
        for t in range(1, cfg.iters + 1))


def phase_rows(tok, cfg, name, path, layout):
    """The tokens (targets) of each row phase `name` trains on, in training order: train.Rows with the phase's
    seed (train_config), planned from lengths alone; endless, --batch-size rows to a step."""
    rows = Rows(tok, open_corpus(tok, path), layout, key_int(cfg.seed, name) % 2**31, cfg.block_size)
    for e in itertools.count():
        for row in rows.plan(e):
            yield sum(end - start - 1 for _, start, end in row)


def phase_tokens(tok, cfg, name, path, layout, steps):
    """Tokens phase `name` trains in `steps` optimizer steps."""
    return sum(itertools.islice(phase_rows(tok, cfg, name, path, layout), steps * cfg.batch_size))


def steps_for_tokens(tok, cfg, name, path, layout, tokens):
    """The step count (>= 1) whose training tokens in phase `name` come nearest `tokens`: within half a step's."""
    rows, done, steps = phase_rows(tok, cfg, name, path, layout), 0, 0
    while True:
        step = sum(itertools.islice(rows, cfg.batch_size))
        if done + step / 2 >= tokens:
            return max(1, steps)
        done, steps = done + step, steps + 1


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
        print(R.combined_report(cfg.out, per, D.eval_ks(cfg),
                                f"K {cfg.k}, {cfg.iters} iterations, {(time.time() - t0) / 60:.1f} min in this "
                                "invocation (phases finished earlier are not counted)."))
    return per


# ----------------------------------------------------------------------------- E-step: the mathematics (BOLT.md)
# Pure functions of one batch of chunks: what the E-step and the IW-ELBO evaluation compute, nothing about files,
# ranks or units. BOLT.md "E-step", for chunk i with prefix P_i and text X_i, K samples k = 1..K:

def posterior_samples(model, tok, cfg, prompts, ids, temperature=None):
    """BOLT.md E-step 2: Z_k ~ q(Z | P_i, X_i) from the posterior prompt P_i SoL EoL X_i SoL POST, up to
    cfg.max_latent tokens ending at EoL, the layout marks banned (layout.latent_marks: log q is under that masked
    distribution). ids: one keyed request id per sample (sample.generate), so no batch or rank changes a draw.
    -> (zs: token ids without EoL, log_q: summed sampling log-probs, capped: hit the cap)."""
    outs = generate(model, prompts, cfg.max_latent, stop_tokens=(tok.eol,), banned=latent_marks(tok),
                    temperature=cfg.temperature if temperature is None else temperature,
                    top_k=cfg.top_k, top_p=cfg.top_p, seed=cfg.seed, ids=ids, batch_size=cfg.gen_batch)
    return [latent(o) for o in outs], [float(sum(o["logprobs"])) for o in outs], [not o["stopped"] for o in outs]


def joint_scores(model, tok, cfg, prefixes, zs, xs):
    """BOLT.md E-step 3: log p_k = log p(Z_k, X_i | P_i), teacher-forcing P_i SoL PRIOR Z_k EoL X_i
    (data/layout.joint_continuation). -> one dict per sample: log_p_all (every token after P_i: BOLT.md's, the
    evaluation's headline bound), log_p_np (PRIOR left out: SoL ends X_{i-1}, part of raw text's chunking, so
    this still bounds raw text, for a model that always takes the prior mode), log_p (both marks left out:
    what the E-step weighs) and marks (log p of SoL, of PRIOR after it). Both marks come before Z_k, after the
    same P_i for every sample of a chunk: leaving either out adds one constant to every log w, which softmax
    cancels, so the pick is the one the E-step has always made (it keeps weighing without both: another sum
    could round a near-tie the other way)."""
    scores = score(model, prefixes, [joint_continuation(tok, z, x) for z, x in zip(zs, xs)],
                   batch_size=cfg.gen_batch)
    return [{"log_p_all": s["sum"], "log_p_np": s["sum"] - s["logprobs"][1],
             "log_p": s["sum"] - sum(s["logprobs"][:MODE_MARKS]), "marks": s["logprobs"][:MODE_MARKS]}
            for s in scores]


def importance_weights(log_p, log_q):
    """BOLT.md E-step 4: log w_k = log p_k - log q_k = log p(Z_k, X_i | P_i) - log q(Z_k | P_i, X_i)."""
    return [p - q for p, q in zip(log_p, log_q)]


def resample(log_w, key):
    """BOLT.md E-step 4: k* ~ softmax(log w) (sampled, not argmax) by an RNG keyed by `key` = (seed, t, doc,
    chunk), never by rank or batch, so any number of ranks picks the same latents."""
    g = torch.Generator().manual_seed(key_int(*key))
    p = torch.softmax(torch.tensor(log_w, dtype=torch.float64), 0)
    return int(torch.multinomial(p, 1, generator=g))


def ess(log_w):
    """BOLT.md E-step 5: effective sample size of the normalised weights w_k, in [1, K]: 1 / sum_k w_k^2."""
    p = torch.softmax(torch.tensor(log_w, dtype=torch.float64), 0)
    return float(1.0 / (p * p).sum())


def iw_elbo(log_w):
    """BOLT.md E-step 4: the importance-weighted ELBO of one chunk (the held-out metric), K = len(log_w):
    log (1/K sum_k exp(log w_k)) <= log p(X_i | P_i)."""
    return float(torch.logsumexp(torch.tensor(log_w, dtype=torch.float64), 0)) - math.log(len(log_w))


def key_int(*parts):
    """A 63-bit integer from a tuple of keys: request ids and RNG seeds that no rank or batch can change."""
    return int.from_bytes(hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest(), "big") >> 1


# ----------------------------------------------------------------------------- E-step: per chunk

def sample_latents(model, tok, cfg, edocs, keys, k, temperature=None, zs=None):
    """E-steps 1-3 for each (doc, chunk, tag) in keys, all chunks in one batch (P_i and the prompts:
    data/layout.estep_prompts; zs: per document the latents chosen so far, the sequential E-step's context, or
    None for the paper's raw prefix) -> per key a list of k dicts {z, log_q, log_p (without the marks SoL
    PRIOR: what the E-step weighs), log_p_np (without PRIOR), log_p_all (BOLT.md's), marks, capped, n_x,
    dropped} (joint_scores)."""
    prompts, prefixes, xs, ids, dropped = [], [], [], [], []
    for d, c, tag in keys:
        prompt, prefix, x, drop = estep_prompts(tok, edocs[d]["x"], c, cfg.max_latent, cfg.block_size,
                                                zs=None if zs is None else zs[d])
        prompts += [prompt] * k
        prefixes += [prefix] * k
        xs += [x] * k
        ids += [key_int(cfg.seed, tag, edocs[d]["id"], c, j) for j in range(k)]
        dropped.append(drop)
    zs, log_q, capped = posterior_samples(model, tok, cfg, prompts, ids, temperature)
    flat = [{"z": z, "log_q": lq, **lp, "capped": cp, "n_x": len(x)}
            for z, lq, lp, cp, x in zip(zs, log_q, joint_scores(model, tok, cfg, prefixes, zs, xs), capped, xs)]
    return [[{**s, "dropped": dropped[i]} for s in flat[i * k:(i + 1) * k]] for i in range(len(keys))]


def pick_latent(tok, cfg, samples, key):
    """E-steps 4-5 for one chunk -> its row in the E-step's units: log w of every sample, ESS, the pick and its
    latent (text for reading, ids for training). --drop-capped leaves capped samples out of the draw."""
    ok = [j for j, s in enumerate(samples) if not (cfg.drop_capped and s["capped"])]
    log_w = importance_weights([samples[j]["log_p"] for j in ok], [samples[j]["log_q"] for j in ok])
    pick = ok[resample(log_w, key)] if ok else None
    return {"log_w": importance_weights([s["log_p"] for s in samples], [s["log_q"] for s in samples]),
            "ess": ess(log_w) if ok else 0.0, "capped": sum(s["capped"] for s in samples),
            "pick": pick, "latent": tok.decode(samples[pick]["z"]) if ok else None,
            "latent_ids": list(samples[pick]["z"]) if ok else None,  # what was scored, exactly
            "samples": [tok.decode(s["z"]) for s in samples]}


def sample_sequential(model, tok, cfg, edocs, k, tag, key, temperature=None):
    """--estep sequential: E-steps 1-5 over each document's chunks in order, batched across documents. Chunk i's
    K samples see chunks < i laid out as in training with the latents chosen for them (layout.context); one is
    resampled by weight (key(doc, chunk) keys the RNG) and becomes the context of chunk i + 1. Picking one
    ancestor with probability w_j / sum(w) and extending it K times gives each sample K w_j / sum(w) expected
    descendants, as multinomial resampling does, so prod_i mean_k w_ik stays an unbiased estimate of p(X) and
    sum_i iw_elbo a lower bound on log p(X) (tests/test_sequential.py checks this on a model with an exact
    marginal). -> ({(d, c): samples}, {(d, c): pick_latent's row})."""
    chosen = [[None] * len(ed["x"]) for ed in edocs]
    res, rows = {}, {}
    for c in range(max((len(ed["x"]) for ed in edocs), default=0)):
        keys = [(d, c, tag) for d, ed in enumerate(edocs) if c < len(ed["x"])]
        for (d, _, _), samples in zip(keys, sample_latents(model, tok, cfg, edocs, keys, k, temperature, chosen)):
            res[d, c], rows[d, c] = samples, pick_latent(tok, cfg, samples, key(d, c))
            chosen[d][c] = rows[d, c]["latent_ids"]  # None (all dropped): the chunk's no-latent form
    return res, rows


# ----------------------------------------------------------------------------- E-step: mechanics
# Not the method: chunks cut into units, units sharded over ranks, each saved atomically (a killed E-step
# resumes), progress and ETA, the latents written next to the chunks, diagnostics.

def unit_work(model, tok, cfg, target, it, bounds):
    """work(u) for data/rundir.run_units: unit u's global chunks bounds[u]:bounds[u + 1] of the target corpus
    (data/shards.Shards), its documents read from the shards (only the unit's), -> one row per chunk."""
    def work(u):
        keys = D.unit_keys(target.a["doc_off"], bounds[u], bounds[u + 1])
        edocs = {d: target.doc(d) for d in sorted({d for d, _ in keys})}  # the unit's documents only
        if cfg.estep == "sequential":  # the unit's documents, chunk position by chunk position
            docs_u = list(edocs)
            _, rows = sample_sequential(model, tok, cfg, [edocs[d] for d in docs_u], cfg.k, f"estep{it}",
                                        lambda i, c: (cfg.seed, it, edocs[docs_u[i]]["id"], c))
            return [{"doc": docs_u[i], "chunk": c, **row} for (i, c), row in sorted(rows.items())]
        res = sample_latents(model, tok, cfg, edocs, [(d, c, f"estep{it}") for d, c in keys], cfg.k)
        return [{"doc": d, "chunk": c, **pick_latent(tok, cfg, samples, (cfg.seed, it, edocs[d]["id"], c))}
                for (d, c), samples in zip(keys, res)]
    return work


def estep(model, tok, cfg, target, it, out_dir, unit=D.UNIT):
    """Sample, weight and resample one latent for every chunk of `target` (data/shards.Shards); -> an iterator
    over every chunk's row in (doc, chunk) order, read back one unit at a time. The chunks run in units
    (data/rundir.run_units: sharded over ranks, saved atomically, resumed after a kill; --estep sequential: whole
    documents per unit); any number of ranks produce the same latents (ids and RNG are keyed, not positional)."""
    bounds = D.cut_units(target.a["doc_off"], unit, whole=cfg.estep == "sequential")
    return D.run_units(len(bounds) - 1, out_dir, unit_work(model, tok, cfg, target, it, bounds), *rank_world(),
                       barrier, f"E-step {it}")


def run_estep(cfg, tok, data, it, prev_ckpt):
    """Iteration `it`'s E-step with the previous model, once: iter{it}/latents/ (the M-step's shards),
    latents.jsonl and estep.json (last: it says the other two are complete). -> (the shard directory, diag)."""
    idir = os.path.join(cfg.out, f"iter{it}")
    shards = os.path.join(idir, "latents")
    if os.path.exists(os.path.join(idir, "estep.json")) and is_shard_dir(shards):
        return shards, read_json(os.path.join(idir, "estep.json"))
    model, _ = load_checked(prev_ckpt, tok)
    t0 = time.time()
    rows = estep(model, tok, cfg, data["target"], it, os.path.join(idir, "estep_units"))
    if rank_world()[0] == 0:
        diag, gold = D.write_latents(cfg, data, rows, idir)
        write_json(os.path.join(idir, "estep.json"), {**diag, "seconds": round(time.time() - t0, 1), **gold})
    barrier()
    return shards, read_json(os.path.join(idir, "estep.json"))


def load_checked(ckpt, tok):
    """-> (model on this rank's device in eval mode, meta), its tokenizer checked against `tok`."""
    model, meta = load_model(ckpt, tok.n_vocab, pick_device())
    check_tokenizer(meta, tok)
    return model.eval(), meta


# ----------------------------------------------------------------------------- M-step (and every training phase)

# the model fields a phase takes from EMConfig as they are (the rest are derived in train_config)
MODEL_FIELDS = ("tokenizer", "bpe_dir", "n_layer", "n_head", "n_embd", "block_size")


def schedule(lr, steps):
    """The one learning-rate schedule of every phase (base, warm, M-steps, baselines, oracle), so each M-step
    gets the same budget: warmup over the first 5% of the steps (at least 1), then cosine decay from lr to
    lr / 10; a checkpoint every quarter of the steps (never closer than 50 steps apart) and a progress line
    every fifth."""
    return dict(lr=lr, min_lr=lr / 10, warmup_steps=max(1, steps // 20), ckpt_every=max(50, steps // 4),
                log_every=max(1, steps // 5))


def train_config(cfg, name, data_path, layout, init, steps, lr=None, world=None):
    """The train.py configuration of one phase (check_inputs checks these before any phase runs)."""
    world = world or rank_world()[1]
    return TrainConfig(data=data_path, layout=layout, out=os.path.join(cfg.out, name, "model"),
                       init=init or "scratch", **{k: getattr(cfg, k) for k in MODEL_FIELDS}, max_steps=steps,
                       batch_size=cfg.batch_size // world, total_batch_tokens=cfg.batch_size * cfg.block_size,
                       seed=key_int(cfg.seed, name) % 2**31, resume=True, **schedule(lr or cfg.lr, steps))


def phase_errors(cfg):
    """What train.py would refuse in the M-step's config, which carries every flag the phases share (a safety
    net under rundir.flag_errors, which checks the base's and warm start's own steps and rates)."""
    tc = train_config(cfg, "iter1", "", "random", "", cfg.m_steps or 1, world=int(os.environ.get("WORLD_SIZE", "1")))
    return [f"train.py would refuse the M-step: {e}" for e in tc.errors()]


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


# ----------------------------------------------------------------------------- evaluation

def eval_questions(model, tok, cfg, questions, mode, prefix=""):
    """Greedy accuracy on held-out questions and one row per question (prompt, generated text, extracted answer,
    correct). mode 'latent': the model answers laid out as training lays out a document (think_answers), and the
    rule reads the text it writes after its last thought; 'direct': a raw model answers in DIRECT_TOKENS tokens;
    'reason': a raw model is asked in its training text's format (prefix + the question's "prompt") and may
    write max_latent + 8 tokens (up to a "prompt_stop" token). The answer rule is data/questions.py's
    (--answer-regex overrides the file's). A latent model's metrics add ans_nll: nats per question of the
    answer as documents write it ("answer_text") after its own thoughts, which falls with accuracy where a
    bound over whole documents barely moves (the answer is one token of a chunk)."""
    if mode == "latent":
        return eval_latent(model, tok, cfg, questions)
    reason = mode == "reason"
    texts = [prefix + q.get("prompt", q["question"]) if reason else q["question"] for q in questions]
    n_new = DIRECT_TOKENS if mode == "direct" else cfg.max_latent + 8
    # a long few-shot prefix loses its oldest tokens so the prompt and the answer fit in the context
    prompts = [fit(tok, [tok.bos] + tok.encode(t), cfg.block_size - n_new) for t in texts]
    stops = [tok.eos]
    for s in sorted({q["prompt_stop"] for q in questions if "prompt_stop" in q} if reason else ()):
        if len(tok.encode(s)) != 1:
            raise ValueError(f"prompt_stop {s!r} is not one token of the {tok.name} tokenizer")
        stops += tok.encode(s)  # the reasoning ends there: the world's walk is one line, a tenth of the budget
    outs = generate(model, prompts, n_new, stop_tokens=tuple(stops), temperature=0.0, seed=cfg.seed,
                    batch_size=cfg.gen_batch)
    rows = []
    for i, (q, asked, o) in enumerate(zip(questions, texts, outs)):
        text = tok.decode([t for t in o["tokens"] if t not in tok.special_ids])
        regex = cfg.answer_regex or q.get("prompt_regex" if reason else "answer_regex")
        got = Q.extract(text, q["answer"], regex)
        rows.append({"mode": mode, "q": i, "prompt": asked, "generated": tok.decode(o["tokens"]),
                     "answer_text": text, "extracted": got, "answer": q["answer"],
                     "correct": Q.correct(got, q["answer"], regex)})
    return accuracy(rows, "_reason" if reason else ""), rows


def fit(tok, p, room):
    """A prompt cut to `room` tokens by dropping its oldest tokens after BOS."""
    return p if len(p) <= room else [tok.bos] + p[len(p) - room + 1:]


def accuracy(rows, tag=""):
    n = max(len(rows), 1)
    acc = sum(r["correct"] for r in rows) / n
    return {f"acc{tag}": acc, f"acc{tag}_se": math.sqrt(acc * (1 - acc) / n), "n_questions": len(rows)}


def think_answers(model, tok, cfg, questions):
    """A latent model answers each question laid out as training lays out a document in prior mode
    (data/layout.think_layout): before each of the question's chunks in turn it writes a thought (greedy, up to
    max_latent tokens ending at EoL, the layout marks banned as in the E-step), the last one before the chunk
    that holds the answer (the question's last, "open"; else a chunk of its own after them), then it continues
    that chunk with the answer (DIRECT_TOKENS tokens, up to the SoL of a next chunk or EOS). Prompts lose their
    oldest tokens to fit the context.
    -> (thoughts per question, whether all of them closed, the answer prompts, the answers' generate() outputs)."""
    chunks = [[tok.encode(c) for c in q.get("chunks") or [q["question"]]] + ([] if q.get("open") else [[]])
              for q in questions]
    thoughts, closed = [[] for _ in questions], [True] * len(questions)
    for j in range(max(map(len, chunks), default=0)):
        todo = [i for i, c in enumerate(chunks) if j < len(c)]
        prompts = [fit(tok, think_layout(tok, chunks[i], thoughts[i]), cfg.block_size - cfg.max_latent)
                   for i in todo]
        for i, o in zip(todo, generate(model, prompts, cfg.max_latent, stop_tokens=(tok.eol,), temperature=0.0,
                                       seed=cfg.seed, batch_size=cfg.gen_batch, banned=latent_marks(tok))):
            thoughts[i].append(latent(o))
            closed[i] = closed[i] and o["stopped"]
    prompts = [fit(tok, think_layout(tok, c, z), cfg.block_size - DIRECT_TOKENS) for c, z in zip(chunks, thoughts)]
    outs = generate(model, prompts, DIRECT_TOKENS, stop_tokens=(tok.eos, tok.sol), temperature=0.0, seed=cfg.seed,
                    batch_size=cfg.gen_batch)
    return thoughts, closed, prompts, outs


def eval_latent(model, tok, cfg, questions):
    """eval_questions for a latent model: think_answers, the answer rule on the text after the last thought (no
    answer when a thought never closed), and the answer's text scored after the answer prompt (ans_nll)."""
    thoughts, closed, prompts, outs = think_answers(model, tok, cfg, questions)
    gold = [tok.encode(q.get("answer_text", Q.answer_text(q["answer"])))[:DIRECT_TOKENS] for q in questions]
    scores = score(model, prompts, gold, batch_size=cfg.gen_batch)
    rows = []
    for i, (q, zs, ok, o, s) in enumerate(zip(questions, thoughts, closed, outs, scores)):
        text = tok.decode([t for t in o["tokens"] if t not in tok.special_ids])
        regex = cfg.answer_regex or q.get("answer_regex")
        got = Q.extract(text, q["answer"], regex) if ok else None
        rows.append({"mode": "latent", "q": i, "prompt": q["question"], "thoughts": [tok.decode(z) for z in zs],
                     "closed": ok, "generated": tok.decode(o["tokens"]), "answer_text": text, "extracted": got,
                     "answer": q["answer"], "correct": Q.correct(got, q["answer"], regex), "ans_logp": s["sum"]})
    nll = [-r["ans_logp"] for r in rows]
    m, sd = R.mean_sd(nll) if nll else (0.0, 0.0)
    return {**accuracy(rows), "ans_nll": m, "ans_nll_se": sd / math.sqrt(max(len(nll), 1))}, rows


def eval_nll(model, tok, cfg, docs, latent, ks, unit=D.UNIT, per_doc=None):
    """Held-out NLL per raw X token (and bits per byte). Raw model: exact -log p(X_i | BOS P_i). Latent model:
    -IW-ELBO_K = -(sum_i [logsumexp_k(log p_k - log q_k) - log K]) with fresh samples at temperature 1, for each
    K in ks (the first K of max(ks) samples; --estep sequential: one SMC run per K, whose kept ancestors depend
    on its K samples), with the same prefix rule (P_i = up to 3 previous chunks, raw or with their latents).
    Two bounds on the raw text's NLL (joint_scores): nll_k{K}, the spec's (log p of every token after P_i, the
    marks SoL PRIOR included), and nll_np_k{K}, PRIOR-conditional (PRIOR left out, SoL kept); sol_nats and
    prior_nats are each mark's mean cost per chunk (largest K's run: nll_k - nll_np is prior_nats x chunks per
    token). Each has its standard error over documents (key + "_se"). `docs` is any iterable of documents,
    evaluated in groups of whole documents of about `unit` chunks, so the work held at once does not grow with
    the held-out set (sampling is keyed: the grouping changes no draw); per_doc (a list) gets one row of sums
    per document (nll_docs)."""
    rows, group, n = [], [], 0
    for doc in itertools.chain(docs, [None]):  # None: flush the last group
        if doc is not None:
            group.append((encode_doc(tok, doc), sum(len(ch["suffix"].encode()) for ch in doc["chunks"])))
            n += len(doc["chunks"])
        if group and (doc is None or n >= unit):
            for (ed, n_bytes), r in zip(group, nll_docs(model, tok, cfg, [ed for ed, _ in group], latent, ks)):
                rows.append({"id": ed["id"], "bytes": n_bytes, **r})
            group, n = [], 0
    if per_doc is not None:
        per_doc += rows
    total = lambda key: sum(r[key] for r in rows)
    n_tok, n_bytes = max(total("n_tok"), 1), max(total("bytes"), 1)
    out = {}
    for key in [k for k in (rows[0] if rows else {}) if k.startswith("nll")]:
        out[key] = -total(key) / n_tok
        out[key.replace("nll", "bpb")] = -total(key) / math.log(2) / n_bytes
        if len(rows) > 1:  # a ratio of sums: its delta-method standard error over documents
            dev = sum((r[key] + out[key] * r["n_tok"]) ** 2 for r in rows)
            out[key + "_se"] = math.sqrt(dev * len(rows) / (len(rows) - 1)) / n_tok
    if latent and rows:
        out.update({f"{mark}_nats": -total(mark) / max(total("chunks"), 1) for mark in ("sol", "prior")})
    return out


def nll_docs(model, tok, cfg, edocs, latent, ks):
    """One group of encoded documents -> per document its summed log-likelihoods: {'n_tok', 'nll': log p} for a
    raw model, else {'n_tok', 'chunks', 'nll_k{K}': IW-ELBO_K, 'nll_np_k{K}': its PRIOR-conditional twin,
    'sol', 'prior': the marks' log p (largest K's run)} summed over its chunks."""
    keys = [(d, c, "eval") for d, ed in enumerate(edocs) for c in range(len(ed["x"]))]
    rows = [{"n_tok": 0} for _ in edocs]
    add = lambda d, key, v: rows[d].__setitem__(key, rows[d].get(key, 0.0) + v)
    if not latent:
        pairs = [raw_pair(tok, edocs[d]["x"], c, cfg.max_latent, cfg.block_size) for d, c, _ in keys]
        for (d, _, _), (_, x), s in zip(keys, pairs, score(model, [p for p, _ in pairs], [x for _, x in pairs],
                                                           cfg.gen_batch)):
            add(d, "n_tok", len(x))
            add(d, "nll", s["sum"])
        return rows
    if cfg.estep == "sequential":
        runs = {k: sample_sequential(model, tok, cfg, edocs, k, f"eval{k}", lambda d, c: (
            cfg.seed, "eval", k, edocs[d]["id"], c), 1.0)[0] for k in ks}
    else:
        res = dict(zip([(d, c) for d, c, _ in keys], sample_latents(model, tok, cfg, edocs, keys, max(ks),
                                                                  temperature=1.0)))
        runs = {k: res for k in ks}
    for d, c, _ in keys:
        add(d, "n_tok", runs[ks[0]][d, c][0]["n_x"])
        add(d, "chunks", 1)
        for tag, key in (("", "log_p_all"), ("_np", "log_p_np")):
            for k in ks:
                samples = runs[k][d, c][:k]
                add(d, f"nll{tag}_k{k}", iw_elbo(importance_weights([s[key] for s in samples],
                                                                    [s["log_q"] for s in samples])))
        for mark, lp in zip(("sol", "prior"), runs[max(ks)][d, c][0]["marks"]):
            add(d, mark, lp)
    return rows


def evaluate(model, tok, cfg, data, latent):
    """Every metric for one model -> (metrics, per-question rows, per-document rows): NLL / IW-ELBO, and accuracy
    on the test questions and the dev ones (keys prefixed dev_) when they exist (a raw model twice: asked
    directly, and asked to reason in its training text's format)."""
    model.eval()
    docs, rows = [], []
    m = eval_nll(model, tok, cfg, data["heldout"], latent, D.eval_ks(cfg), per_doc=docs)
    prefix = D.read_text(cfg.raw_prompt_prefix) if cfg.raw_prompt_prefix else ""
    for split, qs in (("test", data.get("questions") or []), ("dev", data.get("dev_questions") or [])):
        for mode in (("latent",) if latent else ("direct", "reason")) if qs else ():
            mm, rr = eval_questions(model, tok, cfg, qs, mode, prefix)
            m.update({k if split == "test" else f"dev_{k}": v for k, v in mm.items()})
            rows += [{"split": split, **r} for r in rr]
    return m, rows, docs


def run_eval(cfg, name, ckpt, tok, data, latent):
    """Evaluate one phase's model once: eval.json, eval_questions.jsonl (one row per question, test and dev) and
    eval_docs.jsonl (one row per held-out document: its summed log-likelihoods, for paired comparisons) under
    out/name. A cached eval.json computed with other questions, rules or evaluation settings (another eval_id) is
    recomputed."""
    path = os.path.join(cfg.out, name, "eval.json")
    setup = [cfg.eval_ks, cfg.answer_regex, data.get("questions") or [], data.get("dev_questions") or [],
             D.read_text(cfg.raw_prompt_prefix) if cfg.raw_prompt_prefix else "", cfg.estep]
    eid = hashlib.blake2b(json.dumps(setup, sort_keys=True).encode(), digest_size=8).hexdigest()
    cached = read_json(path) if os.path.exists(path) else {}
    if cached.get("eval_id") != eid and rank_world()[0] == 0:
        t0 = time.time()
        m, rows, docs = evaluate(load_checked(ckpt, tok)[0], tok, cfg, data, latent)
        m["eval_seconds"] = round(time.time() - t0, 1)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        for f, rs in (("eval_questions.jsonl", rows), ("eval_docs.jsonl", docs)):
            write_atomic(os.path.join(os.path.dirname(path), f), "".join(json.dumps(r) + "\n" for r in rs))
        write_json(path, {**m, "eval_id": eid})  # last: its eval_id says both files are complete
    barrier()
    m = read_json(path)
    m.pop("eval_id")
    return m


# ----------------------------------------------------------------------------- run directory and report

def check_inputs(cfg, ckpt="", eval_only=False):
    """data/rundir.check_inputs with train.py's word on every phase: one validation pass before any work."""
    return D.check_inputs(cfg, ckpt, eval_only, phase_errors)


def prepare_data(cfg, tok, checked=None):
    """out/data (data/rundir.write_data, on rank 0) and what every rank reads back from it. `checked`:
    check_inputs' result, whose documents and questions are reused rather than read twice."""
    checked = checked or check_inputs(cfg)
    ddir = os.path.join(cfg.out, "data")
    if rank_world()[0] == 0:
        D.write_data(cfg, checked, ddir)
    barrier()
    return D.read_data(cfg, checked, ddir)


def n_rows(tok, cfg, path, layout):
    """Document-aligned training rows in one epoch of a corpus (train.Rows' plan, from lengths alone)."""
    return len(Rows(tok, open_corpus(tok, path), layout, key_int(cfg.seed, "rows") % 2**31, cfg.block_size).plan(0))


def phase_steps(cfg, tok, steps, epochs, path):
    """A phase's optimizer steps: `steps` if > 0, else `epochs` of its corpus (rows / --batch-size)."""
    return steps or max(1, math.ceil(epochs * n_rows(tok, cfg, path, "random") / cfg.batch_size))


def latent_path(cfg):
    """Iteration 1's E-step latents (the target corpus with latents), which set every M-step's budget (the raw
    target corpus without iterations)."""
    return os.path.join(cfg.out, "iter1", "latents") if cfg.iters else os.path.join(cfg.out, "data", "target")


def m_steps(cfg, tok):
    """Every M-step's steps (the same each iteration): --m-steps, else --m-epochs of iteration 1's corpus."""
    return phase_steps(cfg, tok, cfg.m_steps, cfg.m_epochs, latent_path(cfg))


def save_config(cfg):
    """config.json, written only after check_inputs passed (a refused command leaves --out as it was)."""
    os.makedirs(cfg.out, exist_ok=True)
    if rank_world()[0] == 0:
        write_json(os.path.join(cfg.out, "config.json"), asdict(cfg))
    print0("config: " + json.dumps(asdict(cfg)))


def report(cfg, results, seconds, resumed=False):
    """report.md (a table per model), metrics.jsonl, and plot.svg (accuracy and NLL bound per iteration)."""
    clock = (f"{seconds / 60:.1f} min in this invocation (it resumed phases an earlier run finished; their time is "
             "not counted)" if resumed else f"total {seconds / 60:.1f} min")
    print(R.report(cfg.out, results, D.eval_ks(cfg), f"seed {cfg.seed}, K {cfg.k}, {cfg.iters} iterations, {clock}."))


# ----------------------------------------------------------------------------- CLI

def eval_only(cfg, ckpt, checked):
    """`--eval --ckpt DIR`: every metric for one checkpoint (latent or raw, from its training layout)."""
    tok = checked["tok"]
    model, meta = load_checked(ckpt, tok)
    latent = meta.get("train_config", {}).get("layout", "random") != "raw"
    ddir = os.path.join(cfg.out, "data")
    # the run's questions belong with its held-out docs: another --val gets questions only from --questions
    data = {"heldout": checked["docs"]["val"]}  # --val, else the run's held-out docs
    for name in ("questions", "dev_questions"):
        data[name] = checked[name] if getattr(cfg, name) else [] if cfg.val else Q.load_prepared(ddir, name)
    m, rows, _ = evaluate(model, tok, cfg, data, latent)
    print(json.dumps({"ckpt": ckpt, "latent": latent, **m}, indent=1))
    if rows:  # beside the checkpoint's eval, never over a run's own eval_questions.jsonl
        path = os.path.join(cfg.out, "eval_only_questions.jsonl")
        os.makedirs(cfg.out, exist_ok=True)
        write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
        print(f"per-question outputs: {path}")


def build_parser():
    """em.py's flags, grouped as EMConfig's fields are, plus --eval / --ckpt."""
    usage = "%(prog)s [--quick] [--iters N] [--out DIR] [flags]  |  %(prog)s --eval --ckpt DIR"
    ap = argparse.ArgumentParser(usage=usage,
                                 description="\n\n".join(__doc__.split("\n\n")[:2]),
                                 formatter_class=HelpFormatter)
    ap.error = parser_error  # one line via main(), not argparse's usage block
    groups = {}
    add_flags(ap, EMConfig, given_only=True, groups=groups)
    groups[EVAL].add_argument("--eval", action="store_true", help="evaluate --ckpt only, then stop")
    groups[EVAL].add_argument("--ckpt", default="", metavar="DIR", help="the checkpoint --eval evaluates")
    return ap


def parse_args(argv=None):
    """Flags -> (EMConfig, args); raises ValueError (argparse's own errors included) with every problem."""
    ap = build_parser()
    args = ap.parse_args(argv)
    given = {k: v for k, v in vars(args).items() if k in asdict(EMConfig()) and v is not None and v is not False}
    cfg = EMConfig(**{**(QUICK if given.get("quick") else {}), **given})  # 0 is a value, None is "not given"
    errors = D.flag_errors(cfg, args.eval, args.ckpt, phase_errors) + D.arg_errors(cfg, given, args.eval, args.ckpt)
    if errors:
        raise ValueError("; ".join(errors))
    return cfg, args


def main(argv=None):
    lock = contextlib.ExitStack()
    try:
        cfg, args = parse_args(argv)
        # --seeds: each seed's run is checked (run_seeds), every one before the first starts
        checked = None if cfg.seeds else check_inputs(cfg, args.ckpt, args.eval)
        if not args.eval and int(os.environ.get("RANK", "0")) == 0:  # one run per --out; --eval only reads it
            lock.enter_context(out_lock(cfg.out))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    with lock:  # released however the run ends
        owned = setup_dist()[3]  # torchrun: E-step sharded over ranks, M-steps with DDP
        try:
            eval_only(cfg, args.ckpt, checked) if args.eval else run_seeds(cfg) if cfg.seeds else run(cfg, checked)
        except (ValueError, OSError) as e:  # a problem no validation could see (a full disk, a changed file)
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        finally:
            if owned:
                torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
