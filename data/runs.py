"""em.py's run around the method: the run's config.json, out/data (prepared once on rank 0, read back by every
rank), the report, and the CLI's two other modes: --seeds (a run per seed, then the combined report) and --eval
(every metric for one checkpoint). em.py passes in its own run and evaluate, so this module never imports it;
torch comes with common.py and checkpoint.py."""
import hashlib
import json
import os
import time
from dataclasses import asdict, replace

from checkpoint import load_checked
from common import print0, rank0_phase, rank_world
from data import config as C
from data import questions as Q
from data import report as R
from data import rundir as D
from data.corpus import write_atomic, write_json


def save_config(cfg):
    """config.json, written only after check_inputs passed (a refused command leaves --out as it was)."""
    os.makedirs(cfg.out, exist_ok=True)
    if rank_world()[0] == 0:
        write_json(os.path.join(cfg.out, "config.json"), asdict(cfg))
    print0("config: " + json.dumps(asdict(cfg)))


def resumed(cfg):
    """Whether this run resumes phases an earlier one finished (their time is missing from its clock: the report
    says so instead of giving a total)."""
    return any(os.path.exists(os.path.join(cfg.out, name, "DONE")) for name in ("base", "warm", "iter1"))


def prepare_data(cfg, checked):
    """out/data (data/rundir.write_data, on rank 0) and what every rank reads back from it; `checked`:
    check_inputs' result, whose documents and questions are reused rather than read twice."""
    ddir = os.path.join(cfg.out, "data")
    data = rank0_phase(lambda: False, lambda _: D.write_data(cfg, checked, ddir),
                       lambda: D.read_data(cfg, checked, ddir))
    print0(f"data: {len(data['target'])} target docs, {len(data['warm'])} warm-start docs, "
           f"{len(data['heldout'])} held-out docs, {len(data['questions'])} questions")
    return data


def report(cfg, results, seconds, resumed=False):
    """report.md (a table per model), metrics.jsonl, and plot.svg (accuracy and NLL bound per iteration), on rank
    0."""
    if rank_world()[0] != 0:
        return
    clock = (f"{seconds / 60:.1f} min in this invocation (it resumed phases an earlier run finished; their time is "
             "not counted)" if resumed else f"total {seconds / 60:.1f} min")
    print(R.report(cfg.out, results, D.eval_ks(cfg), f"seed {cfg.seed}, K {cfg.k}, {cfg.iters} iterations, {clock}."))


def eval_id(cfg, data):
    """What an eval.json was computed with (evaluation flags, questions, the E-step's context rule), hashed: a
    cached one with another id is recomputed."""
    setup = [cfg.eval_ks, cfg.answer_regex, data.get("questions") or [], data.get("dev_questions") or [], cfg.estep]
    return hashlib.blake2b(json.dumps(setup, sort_keys=True).encode(), digest_size=8).hexdigest()


def run_seeds(cfg, run):
    """--seeds: one full run (em.run) per seed in out/seed{S} (in sequence, each resumable), then the combined
    report. Every seed's --out and data are checked before the first seed starts."""
    t0, per = time.time(), {}
    runs = {s: replace(cfg, seed=s, seeds="", out=os.path.join(cfg.out, f"seed{s}"))
            for s in [int(x) for x in cfg.seeds.split(",")]}
    checks = {s: C.check_inputs(c) for s, c in runs.items()}
    for s, c in runs.items():
        print0(f"==== seed {s}")
        per[s] = run(c, checks[s])
    if rank_world()[0] == 0:
        print(R.combined_report(cfg.out, per, D.eval_ks(cfg),
                                f"K {cfg.k}, {cfg.iters} iterations, {(time.time() - t0) / 60:.1f} min in this "
                                "invocation (phases finished earlier are not counted)."))
    return per


def eval_only(cfg, ckpt, checked, evaluate):
    """`--eval --ckpt DIR`: every metric for one checkpoint (em.evaluate; latent or raw, from its training
    layout), printed, and its per-question rows written beside the run's files."""
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
