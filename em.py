"""BoLT: bootstrapping latent thoughts by EM (Ruan et al. 2025, "Reasoning to Learn from Latent Thoughts").
Read top to bottom beside the spec, ../shared/docs/BOLT.md (usage: python em.py --help):
  run         base: pretrain on the base corpus (or --init); warm start: train from the base on the teacher's
              latents; then for t in 1..iters an E-step, an M-step and an evaluation; the baselines; the report
  E-step      one function per BOLT.md step: posterior_samples (2: Z_k ~ q, log q_k), joint_scores (3: log p_k),
              importance_weights and resample (4: log w_k, k* ~ softmax(log w)), ess (5), iw_elbo (4: the bound);
              propose and pick apply them to chunks, estep_docs to documents with the context rule a parameter:
              'sequential' (chunk i sees the chunks before it with their chosen latents, as training lays them
              out: a sequential Monte Carlo sampler) or 'paper' (their raw text, BOLT.md's P_i)
  M-step      run_train from the *base* weights on the corpus with the chosen latents, one schedule and budget
  evaluation  eval_nll (raw NLL; the IW-ELBO_K bounds, the spec's and the PRIOR-conditional one, each mark's
              cost, standard errors over documents), accuracy.py (test and dev questions), run_eval (once a phase)
  baselines   the base model, the raw arms of --raw-arms (data/config.raw_arm), the oracle (--oracle)
Not the method: data/config.py (flags, budgets, phase configs), data/rundir.py (inputs checked before any work,
out/data), data/estep_files.py (resumable E-step units over ranks, latents as shards and text), data/runs.py
(config.json, report, --seeds, --eval), data/report.py, common.py (ranks, the resumable rank-0 phase).
"""
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass

import torch

from accuracy import eval_questions
from checkpoint import load_checked
from common import barrier, print0, rank0_phase, rank_world, setup_dist
from data import config as C
from data import estep_files as E
from data import report as R
from data import rundir as D
from data import runs
from data.corpus import out_lock, read_json, write_atomic, write_json
from data.layout import MODE_MARKS, estep_prompts, joint_continuation, key_int, latent_marks, raw_pair
from data.loader import doc_groups
from data.shards import is_shard_dir
from sample import generate, latent, score
from train import train


# ----------------------------------------------------------------------------- the loop (BOLT.md)

def run(cfg, checked=None):
    """The whole loop. `checked`: check_inputs' result (main validates before anything is written)."""
    checked = checked or C.check_inputs(cfg)
    tok = checked["tok"]
    runs.save_config(cfg)
    t_start, resumed = time.time(), runs.resumed(cfg)
    data = runs.prepare_data(cfg, checked)
    base = cfg.init or run_train(cfg, "base", data["paths"]["base"], "raw", "", cfg.base_steps, cfg.base_lr)
    warm = run_train(cfg, "warm", data["paths"]["warm"], "random", base, cfg.warm_steps)
    results = [{"name": "warm start", "iter": 0, **run_eval(cfg, "warm", warm, tok, data, True)}]
    prev = warm
    for it in range(1, cfg.iters + 1):
        print0(f"== iteration {it}/{cfg.iters} ({time.time() - t_start:.0f}s elapsed)")
        latents, diag = run_estep(cfg, tok, data, it, prev)
        prev = run_train(cfg, f"iter{it}", latents, "random", base, C.m_steps(cfg, tok))
        results.append({"name": f"BoLT iter {it}", "iter": it, **run_eval(cfg, f"iter{it}", prev, tok, data, True),
                        **{f"estep_{k}": v for k, v in diag.items()}})
        print0(f"   iter {it}: " + R.fmt_metrics(results[-1]))
    if not cfg.no_baselines:
        results += run_baselines(cfg, tok, data, base, warm)
    runs.report(cfg, results, time.time() - t_start, resumed)
    return results


def run_baselines(cfg, tok, data, base, warm):
    """The base model as it is; the raw arms of --raw-arms (data/config.raw_arm), each evaluated as a raw model (asked
    directly and asked to reason; an arm that would train what an earlier one trains is not trained twice);
    and with --oracle the oracle, trained on the gold walks for the whole corpus."""
    out = [{"name": "base (no target training)", "baseline": "base", **run_eval(cfg, "base", base, tok, data, False)}]
    done = set()
    for arm, replay in D.raw_arms(cfg):
        name, label, path, init, steps = C.raw_arm(cfg, tok, data, arm, replay, base, warm)
        if (path, init, steps) in done:  # document-aligned rows: token- and FLOP-matching often agree
            continue
        done.add((path, init, steps))
        phase = C.pipeline_phase(cfg, name) if arm == "pipeline" else name
        ck = run_train(cfg, phase, path, "raw", init, steps)
        out.append({"name": label, "baseline": name, "phase": phase, "steps": steps,
                    **run_eval(cfg, phase, ck, tok, data, False)})
    if data["gold"] is not None and cfg.oracle:
        ck = run_train(cfg, "oracle", data["paths"]["target_gold"], "random", base, C.m_steps(cfg, tok))
        out.append({"name": "oracle (the corpus' latents)" if cfg.corpus else "oracle (gold walks)",
                    "baseline": "oracle", **run_eval(cfg, "oracle", ck, tok, data, True)})
    for r in out:
        print0(f"   {r['name']}: " + R.fmt_metrics(r))
    return out


# ----------------------------------------------------------------------------- E-step (BOLT.md), step by step
# Pure functions of one batch of chunks: what the E-step and the IW-ELBO evaluation compute, nothing about files,
# ranks or units. For chunk i with context P_i and text X_i, K samples k = 1..K:

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
    (data/layout.joint_continuation), every token after P_i scored (BOLT.md's log p, the headline bound's).
    -> (log_p, marks: per sample the log p of its two mode marks SoL and PRIOR, included in log_p)."""
    scores = score(model, prefixes, [joint_continuation(tok, z, x) for z, x in zip(zs, xs)],
                   batch_size=cfg.gen_batch)
    return [s["sum"] for s in scores], [s["logprobs"][:MODE_MARKS] for s in scores]


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


# ----------------------------------------------------------------------------- E-step: chunks and documents

@dataclass
class Sample:
    """One posterior sample of a chunk: z (token ids, EoL left out), log_q (its tokens and EoL under the
    distribution sampled from), log_p (BOLT.md's: every token of SoL PRIOR Z EoL X_i after P_i), marks (the log p
    of the two mode marks SoL and PRIOR, included in log_p) and capped (hit --max-latent; EoL added to score)."""
    z: list
    log_q: float
    log_p: float
    marks: list
    capped: bool

    def without_prior(self):
        """log p with PRIOR left out, the PRIOR-conditional bound's: SoL ends X_{i-1}, part of raw text's
        chunking, so this still bounds raw text (for a model that always takes the prior mode)."""
        return self.log_p - self.marks[1]

    def without_marks(self):
        """log p with both marks left out, what the E-step weighs: both come before Z after the same P_i for every
        sample of a chunk, one constant added to every log w that softmax cancels (the same pick as BOLT.md's)."""
        return self.log_p - sum(self.marks)


def propose(model, tok, cfg, edocs, keys, k, tag, zs=None, temperature=None):
    """E-steps 1-3 for the chunks keys = [(doc, chunk)] of edocs (encoded documents), in one batch: the context
    and the prompts (data/layout.estep_prompts; zs: per document the latents chosen so far, the sequential
    context; None: the raw prefix), K posterior samples each (request ids keyed by (seed, tag, doc id, chunk,
    k)), their joint scores. -> per key, its K Samples."""
    prompts, prefixes, xs, ids = [], [], [], []
    for d, c in keys:
        prompt, prefix, x, _ = estep_prompts(tok, edocs[d]["x"], c, cfg.max_latent, cfg.block_size,
                                             zs=None if zs is None else zs[d])
        prompts, prefixes, xs = prompts + [prompt] * k, prefixes + [prefix] * k, xs + [x] * k
        ids += [key_int(cfg.seed, tag, edocs[d]["id"], c, j) for j in range(k)]
    z, log_q, capped = posterior_samples(model, tok, cfg, prompts, ids, temperature)
    flat = [Sample(*s) for s in zip(z, log_q, *joint_scores(model, tok, cfg, prefixes, z, xs), capped)]
    return [flat[i * k:(i + 1) * k] for i in range(len(keys))]


def pick(tok, samples, key):
    """E-steps 4-5 for one chunk -> its row in the E-step's units: the weights (log p without the marks: the same
    pick as BOLT.md's), the ESS, the resampled sample and its latent (text to read, ids to train on: exactly
    what was scored)."""
    log_w = importance_weights([s.without_marks() for s in samples], [s.log_q for s in samples])
    j = resample(log_w, key)
    return {"log_w": log_w, "ess": ess(log_w), "capped": sum(s.capped for s in samples), "pick": j,
            "latent": tok.decode(samples[j].z), "latent_ids": list(samples[j].z),
            "samples": [tok.decode(s.z) for s in samples]}


def estep_docs(model, tok, cfg, edocs, keys, k, tag, key, context, temperature=None):
    """E-steps 1-5 for the chunks keys = [(doc, chunk)] of edocs, batched across documents; the context rule:
    'paper': chunk i sees the raw text of the chunks before it (BOLT.md's P_i), so every chunk runs in one batch;
    'sequential': chunk i sees them laid out as in training, in prior mode with the latents chosen for them
    (data/layout.context), so the chunks run position by position (keys: whole documents) and each pick is the
    next chunk's context. Picking one ancestor with probability w_j / sum(w) and extending it K times gives each
    sample K w_j / sum(w) expected descendants, as multinomial resampling does, so prod_i mean_k w_ik stays
    unbiased for p(X) and sum_i iw_elbo a lower bound on log p(X) (tests/test_sequential.py checks it).
    key(d, c): the resampling RNG's key. -> {(d, c): (Samples, pick's row)}, in the order the chunks ran."""
    chosen = {d: [None] * len(edocs[d]["x"]) for d, _ in keys} if context == "sequential" else None
    waves = [keys] if chosen is None else [[(d, c) for d, c in keys if c == i]
                                           for i in range(max((c for _, c in keys), default=-1) + 1)]
    out = {}
    for wave in waves:
        for (d, c), samples in zip(wave, propose(model, tok, cfg, edocs, wave, k, tag, chosen, temperature)):
            out[d, c] = samples, pick(tok, samples, key(d, c))
            if chosen is not None:
                chosen[d][c] = out[d, c][1]["latent_ids"]
    return out


def unit_work(model, tok, cfg, target, it, bounds):
    """work(u) for data/estep_files.run_units: the E-step on unit u, global chunks bounds[u]:bounds[u + 1] of the
    target corpus (data/shards.Shards; only the unit's documents are read) -> one row per chunk."""
    def work(u):
        keys = E.unit_keys(target.a["doc_off"], bounds[u], bounds[u + 1])
        edocs = {d: target.doc(d) for d in sorted({d for d, _ in keys})}
        res = estep_docs(model, tok, cfg, edocs, keys, cfg.k, f"estep{it}",
                         lambda d, c: (cfg.seed, it, edocs[d]["id"], c), cfg.estep)
        return [{"doc": d, "chunk": c, **row} for (d, c), (_, row) in sorted(res.items())]
    return work


def estep(model, tok, cfg, target, it, out_dir, unit=D.UNIT):
    """The E-step over every chunk of `target` (data/shards.Shards) in units (data/estep_files.run_units: sharded over
    ranks, saved atomically, resumed after a kill; sequential: whole documents per unit) -> an iterator over every
    chunk's row in (doc, chunk) order. Ids and RNG are keyed, so any number of ranks picks the same latents."""
    bounds = E.cut_units(target.a["doc_off"], unit, whole=cfg.estep == "sequential")
    return E.run_units(len(bounds) - 1, out_dir, unit_work(model, tok, cfg, target, it, bounds), *rank_world(),
                       barrier, f"E-step {it}")


def run_estep(cfg, tok, data, it, prev_ckpt):
    """Iteration `it`'s E-step with the previous model, once: iter{it}/latents/ (the M-step's shards),
    latents.jsonl and estep.json (last: the other two are complete). -> (the shard directory, diagnostics)."""
    idir = os.path.join(cfg.out, f"iter{it}")
    shards, path, t0 = os.path.join(idir, "latents"), os.path.join(idir, "estep.json"), [0.0]

    def work():
        model, t0[0] = load_checked(prev_ckpt, tok)[0], time.time()
        return estep(model, tok, cfg, data["target"], it, os.path.join(idir, "estep_units"))

    def write(rows):
        diag, gold = E.write_latents(cfg, data, rows, idir)
        write_json(path, {**diag, "seconds": round(time.time() - t0[0], 1), **gold})
    return rank0_phase(lambda: os.path.exists(path) and is_shard_dir(shards), write,
                       lambda: (shards, read_json(path)), work)


# ----------------------------------------------------------------------------- M-step (and every training phase)

def run_train(cfg, name, data_path, layout, init, steps, lr=None):
    """One training phase, once (resumable: a killed phase continues from its last checkpoint)."""
    out = os.path.join(cfg.out, name)

    def work():
        tc = C.train_config(cfg, name, data_path, layout, init, steps, lr)
        print0(f"[{name}] training {steps} steps, layout {layout}, init {tc.init}")
        return train(tc)
    return rank0_phase(lambda: os.path.exists(os.path.join(out, "DONE")),
                       lambda res: write_json(os.path.join(out, "DONE"),
                                              {k: v for k, v in res.items() if isinstance(v, (int, float, str))}),
                       lambda: os.path.join(out, "model", "ckpt"), work)


# ----------------------------------------------------------------------------- evaluation

def eval_nll(model, tok, cfg, docs, latent, ks, unit=D.UNIT, per_doc=None):
    """Held-out NLL per raw X token (and bits per byte). Raw model: exact -log p(X_i | BOS P_i). Latent model:
    -IW-ELBO_K = -(sum_i [logsumexp_k(log p_k - log q_k) - log K]) with fresh samples at temperature 1, for each
    K in ks, with the E-step's context rule. Two bounds on the raw text's NLL: nll_k{K}, the spec's (log p of
    every token after P_i, the marks SoL PRIOR included), and nll_np_k{K}, PRIOR-conditional (PRIOR left out, SoL
    kept); sol_nats and prior_nats are each mark's mean cost per chunk (largest K's run). Each has its standard
    error over documents (key + "_se"). `docs`: any iterable of documents, evaluated in groups of whole documents
    of about `unit` chunks (data/loader.doc_groups; sampling is keyed: the grouping changes no draw); per_doc (a
    list) gets one row of sums per document (nll_docs)."""
    rows = []
    for group, n_bytes in doc_groups(tok, docs, unit):
        rows += [{"id": ed["id"], "bytes": b, **r} for ed, b, r in zip(group, n_bytes, nll_docs(model, tok, cfg,
                                                                                                  group, latent, ks))]
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
    'sol', 'prior': the marks' log p (largest K's run)} summed over its chunks. n_tok: the X tokens scored, cut
    by the E-step's budget the same way for both."""
    keys = [(d, c) for d, ed in enumerate(edocs) for c in range(len(ed["x"]))]
    pairs = [raw_pair(tok, edocs[d]["x"], c, cfg.max_latent, cfg.block_size) for d, c in keys]
    rows = [{"n_tok": 0} for _ in edocs]
    add = lambda d, key, v: rows[d].__setitem__(key, rows[d].get(key, 0.0) + v)
    if not latent:
        for (d, _), (_, x), s in zip(keys, pairs, score(model, [p for p, _ in pairs], [x for _, x in pairs],
                                                        cfg.gen_batch)):
            add(d, "n_tok", len(x))
            add(d, "nll", s["sum"])
        return rows
    key = lambda k: lambda d, c: (cfg.seed, "eval", k, edocs[d]["id"], c)
    if cfg.estep == "sequential":  # one SMC run per K: the ancestors it keeps depend on its K samples
        runs = {k: estep_docs(model, tok, cfg, edocs, keys, k, f"eval{k}", key(k), "sequential", 1.0) for k in ks}
    else:  # the first K of max(ks) samples
        res = estep_docs(model, tok, cfg, edocs, keys, max(ks), "eval", key(max(ks)), "paper", 1.0)
        runs = {k: res for k in ks}
    for (d, c), (_, x) in zip(keys, pairs):
        add(d, "n_tok", len(x))
        add(d, "chunks", 1)
        for tag, log_p in (("", lambda s: s.log_p), ("_np", Sample.without_prior)):
            for k in ks:
                samples = runs[k][d, c][0][:k]
                add(d, f"nll{tag}_k{k}", iw_elbo(importance_weights([log_p(s) for s in samples],
                                                                    [s.log_q for s in samples])))
        for mark, lp in zip(("sol", "prior"), runs[max(ks)][d, c][0][0].marks):
            add(d, mark, lp)
    return rows


def evaluate(model, tok, cfg, data, latent):
    """Every metric for one model -> (metrics, per-question rows, per-document rows): NLL / IW-ELBO, and accuracy
    on the test questions and the dev ones (keys prefixed dev_) when they exist (accuracy.py: a raw model twice,
    asked directly and asked to reason in its training text's format)."""
    model.eval()
    docs, rows = [], []
    m = eval_nll(model, tok, cfg, data["heldout"], latent, D.eval_ks(cfg), per_doc=docs)
    for split, qs in (("test", data.get("questions") or []), ("dev", data.get("dev_questions") or [])):
        for mode in (("latent",) if latent else ("direct", "reason")) if qs else ():
            mm, rr = eval_questions(model, tok, cfg, qs, mode)
            m.update({k if split == "test" else f"dev_{k}": v for k, v in mm.items()})
            rows += [{"split": split, **r} for r in rr]
    return m, rows, docs


def run_eval(cfg, name, ckpt, tok, data, latent):
    """Evaluate one phase's model once, on rank 0: eval.json, eval_questions.jsonl (one row per question, test and
    dev) and eval_docs.jsonl (one row per held-out document: its summed log-likelihoods, for paired comparisons)
    under out/name. A cached eval.json computed with other questions, rules or evaluation settings (another
    eval_id) is recomputed."""
    path, eid = os.path.join(cfg.out, name, "eval.json"), runs.eval_id(cfg, data)

    def write(_):
        t0 = time.time()
        m, rows, docs = evaluate(load_checked(ckpt, tok)[0], tok, cfg, data, latent)
        m["eval_seconds"] = round(time.time() - t0, 1)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        for f, rs in (("eval_questions.jsonl", rows), ("eval_docs.jsonl", docs)):
            write_atomic(os.path.join(os.path.dirname(path), f), "".join(json.dumps(r) + "\n" for r in rs))
        write_json(path, {**m, "eval_id": eid})  # last: its eval_id says the other files are complete
    m = rank0_phase(lambda: os.path.exists(path) and read_json(path).get("eval_id") == eid, write,
                    lambda: read_json(path))
    m.pop("eval_id")
    return m


# ----------------------------------------------------------------------------- CLI

def main(argv=None):
    lock = contextlib.ExitStack()
    try:
        cfg, args = C.parse_args(argv)
        # --seeds: each seed's run is checked (run_seeds), every one before the first starts
        checked = None if cfg.seeds else C.check_inputs(cfg, args.ckpt, args.eval)
        if not args.eval and int(os.environ.get("RANK", "0")) == 0:  # one run per --out; --eval only reads it
            lock.enter_context(out_lock(cfg.out))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    with lock:  # released however the run ends
        owned = setup_dist()[3]  # torchrun: E-step sharded over ranks, M-steps with DDP
        try:
            if args.eval:
                runs.eval_only(cfg, args.ckpt, checked, evaluate)
            else:
                runs.run_seeds(cfg, run) if cfg.seeds else run(cfg, checked)
        except (ValueError, OSError) as e:  # a problem no validation could see (a full disk, a changed file)
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        finally:
            if owned:
                torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
