"""BoLT reports (no torch): one run's report.md + metrics.jsonl + plot.svg, the combined report over seeds, the K curve,
and finished runs side by side (--estep paper against sequential on one world and seed).

A result row is one model's metrics (em.py's run_eval) plus its name and either "iter" (warm start = 0, BoLT
iterations) or "baseline" (base, a raw arm raw_*, oracle). NOTE, printed in every report, says what each column
is: accuracy (acc; a raw model also asked to reason, acc_reason, the way better on dev counting), dev accuracy
(dev_ keys), NLL K=k (nll_k{K}: exact for raw models, the spec's IW-ELBO_K bound for latent ones, ± its standard
error over documents), PRIOR-cond. NLL (nll_np_k{K}, still a bound on raw text), SoL / PRIOR (sol_nats,
prior_nats: their difference is the PRIOR cost), answer NLL (ans_nll: it rises when accuracy falls, which a bound
over whole documents can hardly show), the E-step's gold match, ESS and capped fraction. The multi-seed report
adds what tells seeds apart (`seed_criteria`): accuracy per iteration, whether the seed bootstrapped, and paired
differences on the same questions and documents, from each phase's eval_questions.jsonl and eval_docs.jsonl.

    python -m data.report --k-curve out/k1 out/k2 out/em out/k8 --out out/kcurve   # K curve (runs or --seeds dirs)
    python -m data.report --compare out/seq out/paper --out out/estep    # finished runs side by side
"""
import argparse
import json
import math
import os
import sys

from data import plot as P
from data.corpus import read_json, read_jsonl, write_atomic

def best_acc(r, dev=False):
    """(accuracy, how it was asked) of a row on the test questions (dev: the dev ones): a raw arm is asked the
    way (direct or reasoning) that is better on the dev questions when it has them, else on the test ones."""
    pre = "dev_" if dev else ""
    if f"{pre}acc_best" in r:  # the combined report's mean of each seed's choice
        return r[f"{pre}acc_best"], ""
    pick = "dev_" if "dev_acc" in r else pre
    if f"{pick}acc_reason" in r and r[f"{pick}acc_reason"] > r.get(f"{pick}acc", -1) and f"{pre}acc_reason" in r:
        return r[f"{pre}acc_reason"], "reasoning"
    return (r[f"{pre}acc"], "direct" if "acc_reason" in r else "") if f"{pre}acc" in r else (None, "")


def fmt_metrics(m):
    s = [f"acc {100 * m['acc']:.1f}% (±{100 * m['acc_se']:.1f})"] if "acc" in m else []
    s += [f"acc reasoning {100 * m['acc_reason']:.1f}% (±{100 * m['acc_reason_se']:.1f})"] if "acc_reason" in m else []
    s += [f"dev acc {100 * m['dev_acc']:.1f}%"] if "dev_acc" in m else []
    s += [f"{k} {v:.4f}" for k, v in m.items() if k.startswith("nll") and not k.endswith("_se")]
    s += [f"answer NLL {m['ans_nll']:.3f}"] if "ans_nll" in m else []
    s += [f"E-step gold match {100 * m['estep_gold_match']:.1f}%"] if "estep_gold_match" in m else []
    return ", ".join(s)


def row_key(r):
    return r.get("baseline") or f"iter{r['iter']}"


# ----------------------------------------------------------------------------- one run

def columns(ks):
    return ["model", "accuracy (test)", "dev accuracy", "raw: direct / reasoning", *[f"NLL K={k}" for k in ks],
            "bits/byte", *[f"PRIOR-cond. NLL K={k}" for k in ks], "SoL / PRIOR nats per chunk", "answer NLL",
            "E-step gold match", "ESS", "capped"]


def cells(r, ks, show=None):
    """One row's table cells. show(key, percent) formats one metric of r ("-" when absent; a bound with its
    standard error over documents); the combined report passes one that prints mean ± sd over seeds."""
    def one(key, pct):
        v, se = r.get(key), r.get(key + "_se")
        return "-" if v is None else f"{100 * v:.1f}%" if pct else f"{v:.4f}" + (f" ± {se:.4f}" if se else "")
    show = show or one

    def acc_cell(dev):
        acc, how = best_acc(r, dev)
        pre = "dev_" if dev else ""
        se = r.get(f"{pre}acc_reason_se" if how == "reasoning" else f"{pre}acc_se")
        return show(f"{pre}acc_best", True) if f"{pre}acc_best" in r else "-" if acc is None else \
            f"{100 * acc:.1f}% ± {100 * se:.1f}" + (f" ({how})" if how else "")
    nll = lambda tag, k: f"{tag}_k{k}" if f"{tag}_k{k}" in r else tag.split("_")[0]  # raw models: exact nll
    return [r["name"], acc_cell(False), acc_cell(True),
            f"{show('acc', True)} / {show('acc_reason', True)}" if "acc_reason" in r else "-",
            *[show(nll("nll", k), False) for k in ks], show(nll("bpb", max(ks)), False),
            *[show(f"nll_np_k{k}", False) if f"nll_np_k{k}" in r else "-" for k in ks],
            f"{show('sol_nats', False)} / {show('prior_nats', False)}" if "sol_nats" in r else "-",
            show("ans_nll", False) if "ans_nll" in r else "-",
            f"{show('estep_gold_match', True)} (of {show('estep_gold_exists', True)} possible"
            + (f"; steps {show('estep_gold_steps', True)})" if "estep_gold_steps" in r else ")")
            if "estep_gold_match" in r else "-",
            f"{r['estep_ess_mean']:.2f}" if "estep_ess_mean" in r else "-",
            show("estep_capped_frac", True) if "estep_capped_frac" in r else "-"]


def md_table(head, rows):
    """A markdown table's lines: the header, its rule, a line per row of cells."""
    line = lambda cells: "| " + " | ".join(cells) + " |"
    return [line(head), "|" + "---|" * len(head)] + [line(r) for r in rows]


def table(rows, ks, cell_fn=cells):
    return md_table(columns(ks), [cell_fn(r, ks) for r in rows])


def is_raw(r):
    """A raw model's row: the base model or a raw arm (em.py raw_arm; phase names raw_*)."""
    return r.get("baseline") == "base" or r.get("baseline", "").startswith("raw_")


def best_raw(rows):
    """The raw arm with the best accuracy on the dev questions (on the test ones when an arm has no dev split)."""
    raw = [r for r in rows if is_raw(r) and best_acc(r)[0] is not None]
    dev = all(best_acc(r, True)[0] is not None for r in raw)
    return max(raw, key=lambda r: best_acc(r, dev)[0], default=None), dev


def claims(rows, ks, run_dir=None):
    """The comparison lines: the last BoLT iteration against the warm start and the raw arm best on dev (accuracy,
    paired over the same test questions when run_dir holds the per-question files), and its bounds against the
    best raw NLL."""
    last = [r for r in rows if r.get("iter")]
    raw = [r for r in rows if is_raw(r) and "nll" in r]
    if not last:
        return []
    last, out = last[-1], []
    warm = next((r for r in rows if r.get("iter") == 0), None)
    top, on_dev = best_raw(rows)
    for other, what in ((warm, "the warm start"), (top, "the raw arm best on dev" if on_dev else "the best raw arm")):
        if other is not None and best_acc(last)[0] is not None and best_acc(other)[0] is not None:
            a, how = best_acc(other)
            how = {"reasoning": " asked to reason", "direct": " asked directly"}.get(how, "")
            d, se, kind = paired(run_dir, last, other)
            out.append(f"- Accuracy: {last['name']} {100 * best_acc(last)[0]:.1f}% vs {what}, {other['name']}{how}, "
                       f"{100 * a:.1f}%: {100 * d:+.1f} points ± {100 * se:.1f} ({kind} standard error).")
    k = max(ks)
    if f"nll_k{k}" in last and raw:
        top = min(raw, key=lambda r: r["nll"])
        out.append(f"- NLL: {last['name']}'s spec bound (K={k}) {last[f'nll_k{k}']:.4f} vs the best raw model, "
                   f"{top['name']}, {top['nll']:.4f} (exact); the PRIOR-conditional bound is "
                   f"{last.get(f'nll_np_k{k}', float('nan')):.4f}. Lower is better; a bound below a raw NLL is a win "
                   "for the latent model, a bound above it is inconclusive.")
    return out


NOTE = ("Accuracy is on the test questions, dev accuracy beside it (recipe choices are made on dev): latent models "
        "answer after writing a thought before each chunk of the question, as training lays out a document; raw "
        "models are asked directly and asked to reason in their training text's format, and the way better on dev is "
        "the accuracy (both shown). NLL is per raw text token, ± its standard error over the held-out documents: "
        "exact for raw models, for latent models the spec's IW-ELBO_K bound (log p of every token after the prefix, "
        "the marks SoL PRIOR included). PRIOR-cond. NLL leaves PRIOR out (SoL, which ends the previous chunk, is "
        "kept: still a bound on raw text); SoL / PRIOR: each mark's mean cost per chunk. Answer NLL: nats per test "
        "question of the answer's text after the model's own thoughts. E-step gold match: chosen latents equal to the "
        "gold derivation, over the chunks whose gold latent is not empty; steps: those whose steps match it, values "
        "left out (the latent follows the problem).")


# ----------------------------------------------------------------------------- paired differences

def phase_dir(r):
    """The directory under a run's --out that holds a result row's evaluation files (a raw arm's "phase")."""
    return "warm" if r.get("iter") == 0 else f"iter{r['iter']}" if "iter" in r else r.get("phase", r["baseline"])


def read_rows(run_dir, r, name):
    """A row's evaluation file `name` (eval_questions.jsonl, eval_docs.jsonl) under run_dir, None without it."""
    path = os.path.join(run_dir, phase_dir(r), name) if run_dir else ""
    return read_jsonl(path) if os.path.exists(path) else None


def question_correct(run_dir, r):
    """{question index: correct} of a row on the test questions, asked the way its accuracy is (best_acc), or
    None without its eval_questions.jsonl."""
    rows = read_rows(run_dir, r, "eval_questions.jsonl")
    mode = "latent" if "acc_reason" not in r else "reason" if best_acc(r)[1] == "reasoning" else "direct"
    return {x["q"]: x["correct"] for x in rows or () if x["split"] == "test" and x["mode"] == mode} or None


def paired(run_dir, a, b, run_dir_b=None):
    """Test accuracy of row a minus row b -> (difference, standard error, "paired" or "unpaired"): paired over the
    same questions (the per-question differences' standard error) when both rows' files are there (b's under
    run_dir_b when given), else from the two accuracies' own standard errors."""
    qa, qb = question_correct(run_dir, a), question_correct(run_dir_b or run_dir, b)
    if qa and qb and qa.keys() == qb.keys():
        m, sd = mean_sd([qa[q] - qb[q] for q in qa])
        return m, sd / math.sqrt(len(qa)), "paired"
    (x, hx), (y, hy) = best_acc(a), best_acc(b)
    se = lambda r, how: r.get("acc_reason_se" if how == "reasoning" else "acc_se", 0.0)
    return x - y, math.sqrt(se(a, hx) ** 2 + se(b, hy) ** 2), "unpaired"


def paired_bound(run_dir, a, b, key):
    """Bound `key` (nll_k{K}; a raw model's exact nll) of row a minus row b on the same held-out documents ->
    (difference per token, its standard error over documents), from eval_docs.jsonl; None without the files."""
    docs = [read_rows(run_dir, r, "eval_docs.jsonl") for r in (a, b)]
    if not all(docs) or [d["id"] for d in docs[0]] != [d["id"] for d in docs[1]]:
        return None
    k = [key if key in ds[0] else "nll" for ds in docs]
    delta = [x[k[0]] - y[k[1]] for x, y in zip(*docs)]
    n_tok = [x["n_tok"] for x in docs[0]]
    diff = -sum(delta) / max(sum(n_tok), 1)
    dev = sum((d + diff * n) ** 2 for d, n in zip(delta, n_tok))
    return diff, math.sqrt(dev * len(delta) / max(len(delta) - 1, 1)) / max(sum(n_tok), 1)


def bootstrapped(run_dir, rows):
    """Whether a run bootstrapped: its test accuracy rises at every step, warm start -> iteration 1 -> ... -> the
    last, each step by more than twice its standard error (paired when the files are there) -> (bool, steps)."""
    its = sorted((r for r in rows if "iter" in r and "acc" in r), key=lambda r: r["iter"])
    steps = [paired(run_dir, b, a) for a, b in zip(its, its[1:])]
    return bool(steps) and all(d > 2 * se for d, se, _ in steps), steps


def pct_cell(r, dev=False):
    acc = None if r is None else best_acc(r, dev)[0]
    return "-" if acc is None else f"{100 * acc:.1f}%"


def diff_cell(run_dir, a, b):
    """'+12.0 ± 1.5 (paired)': test accuracy of row a minus row b, in points."""
    if a is None or b is None or best_acc(a)[0] is None or best_acc(b)[0] is None:
        return "-"
    d, se, kind = paired(run_dir, a, b)
    return f"{100 * d:+.1f} ± {100 * se:.1f} ({kind})"


def seed_criteria(out, per_seed, ks):
    """The multi-seed report's verdict -> (markdown lines, {seed: bootstrapped}). Every seed is a row (out/seed{S}):
    its test accuracy per iteration; (b) every step warm start -> 1 -> ... -> last up by more than twice its
    paired standard error; (d) the last iteration above the raw arm best on dev by more than twice the paired
    standard error (on the test questions both); bootstrapped = (b) and (d) ((b) alone when the run has no raw
    arm); the last iteration's difference from the warm start and its bound's, paired over the same documents.
    The head line counts the seeds that bootstrapped ("k of n") and gives the last iteration's test accuracy as
    mean ± sd over all of them."""
    k, its = max(ks), sorted({r["iter"] for rs in per_seed.values() for r in rs if "iter" in r})
    ok, rows, finals = {}, [], []
    for s, rs in per_seed.items():
        d = os.path.join(out, f"seed{s}")
        b_ok, steps = bootstrapped(d, rs)
        by_it = {r["iter"]: r for r in rs if "iter" in r}
        last, warm = by_it.get(its[-1]) if its else None, by_it.get(0)
        top, _ = best_raw(rs)
        vs_top = paired(d, last, top) if top is not None and last is not None and best_acc(last)[0] is not None \
            else None
        d_ok = None if vs_top is None else vs_top[0] > 2 * vs_top[1]
        ok[s] = b_ok and d_ok is not False
        small = min(steps, key=lambda step: step[0] - 2 * step[1], default=None)
        gap = paired_bound(d, last, warm, f"nll_k{k}") if last and warm else None
        yes = lambda v: "-" if v is None else "yes" if v else "NO"
        rows.append([str(s), *[pct_cell(by_it.get(t)) for t in its], pct_cell(last, True),
                     "-" if small is None else f"{100 * small[0]:+.1f} ± {100 * small[1]:.1f} ({small[2]})",
                     yes(b_ok if steps else None), "-" if top is None else f"{top['name']}, {pct_cell(top)}",
                     "-" if vs_top is None else f"{100 * vs_top[0]:+.1f} ± {100 * vs_top[1]:.1f} ({vs_top[2]})",
                     yes(d_ok), diff_cell(d, last, warm), "-" if gap is None else f"{gap[0]:+.4f} ± {gap[1]:.4f}"])
        if last is not None and best_acc(last)[0] is not None:
            finals.append(best_acc(last)[0])
    m, sd = mean_sd(finals) if finals else (0.0, 0.0)
    head = ["seed", *["warm start" if t == 0 else f"iter {t}" for t in its], "dev, last", "smallest step", "(b)",
            "raw arm best on dev", "last - raw", "(d)", "last - warm start", f"NLL K={k}: last - warm start"]
    return [f"**Bootstrapped on {sum(ok.values())} of {len(ok)} seeds** (every seed run is listed; bootstrapped = "
            "(b) test accuracy up at every step, warm start -> 1 -> ... -> the last iteration, each step by more "
            "than twice its standard error, and (d) the last iteration above the raw arm best on dev by more than "
            "twice the standard error of the difference; standard errors paired over the same test questions). "
            f"Last iteration's test accuracy over all {len(finals)} seeds: {100 * m:.1f}% ± {100 * sd:.1f} (mean ± "
            "sd). The bound's difference is paired over the same held-out documents (± its standard error over "
            "them).", "", *md_table(head, rows)], ok


def report(out, results, ks, header):
    """report.md, metrics.jsonl and plot.svg for one run under `out`; returns the report text."""
    write_atomic(os.path.join(out, "metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in results))
    lines = [f"# BoLT report: `{' '.join(sys.argv)}`", "", header + " " + NOTE, "", *table(results, ks), "",
             *claims(results, ks, out), "", "![accuracy and NLL per iteration](plot.svg)", ""]
    text = "\n".join(lines)
    write_atomic(os.path.join(out, "report.md"), text)
    write_atomic(os.path.join(out, "plot.svg"), svg_plot(results, f"nll_k{max(ks)}"))
    return text


# ----------------------------------------------------------------------------- over seeds

def mean_sd(xs):
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0


def combine(per_seed):
    """{seed: rows} -> (rows of mean values, rows of {metric: [value per seed]}) for the rows every seed has and
    their numeric metrics; acc_best (dev_acc_best) is each seed's test (dev) accuracy as best_acc gives it."""
    first = next(iter(per_seed.values()))
    means, spreads = [], []
    for r in first:
        same = [next((x for x in rows if row_key(x) == row_key(r)), None) for rows in per_seed.values()]
        if any(x is None for x in same):
            continue
        same = [{**x, **{f"{pre}acc_best": best_acc(x, dev)[0] for pre, dev in (("", False), ("dev_", True))
                         if best_acc(x, dev)[0] is not None}} for x in same]
        keys = [k for k, v in same[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                and k not in ("iter", "steps") and all(isinstance(x.get(k), (int, float)) for x in same)]
        vals = {k: [x[k] for x in same] for k in keys}
        tags = {k: r[k] for k in ("iter", "baseline") if k in r}
        means.append({"name": r["name"].split(" (")[0], **tags, **{k: sum(v) / len(v) for k, v in vals.items()}})
        spreads.append(vals)
    return means, spreads


def combined_report(out, per_seed, ks, header):
    """out/report.md: how many seeds bootstrapped and each seed's paired differences (seed_criteria), every metric
    as mean ± sd over all seeds, then each seed's table and claims; out/plot.svg: the means with each seed drawn
    thin; out/metrics.jsonl: the mean rows. Returns the text."""
    means, spreads = combine(per_seed)
    rows = iter(spreads)

    def cell_fn(r, ks):
        vals = next(rows)

        def show(key, pct):
            if key not in vals:
                return "-"
            m, sd = mean_sd(vals[key])
            return f"{100 * m:.1f}% ± {100 * sd:.1f}" if pct else f"{m:.4f} ± {sd:.4f}"
        return cells(r, ks, show)

    lines = [f"# BoLT over {len(per_seed)} seeds: `{' '.join(sys.argv)}`", "", header + " Cells are mean ± standard "
             f"deviation over the seeds {', '.join(map(str, per_seed))}; a raw arm's accuracy is the mean of each "
             "seed's prompt chosen on dev. " + NOTE, "", *seed_criteria(out, per_seed, ks)[0], "",
             *table(means, ks, cell_fn), "",
             "![accuracy and NLL per iteration, mean over seeds](plot.svg)", ""]
    for s, rs in per_seed.items():
        lines += [f"## seed {s} (seed{s}/report.md)", "", *table(rs, ks), "",
                  *claims(rs, ks, os.path.join(out, f"seed{s}")), ""]
    text = "\n".join(lines)
    write_atomic(os.path.join(out, "metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in means))
    write_atomic(os.path.join(out, "report.md"), text)
    write_atomic(os.path.join(out, "plot.svg"), svg_plot(means, f"nll_k{max(ks)}", list(per_seed.values())))
    return text


# ----------------------------------------------------------------------------- plot

def svg_plot(results, nll_key, runs=(), **kw):
    """Every report's figure (data/plot.py): accuracy (best_acc: a raw arm at its better way of asking) and the NLL
    bound `nll_key` (a raw model's exact nll)."""
    return P.svg_plot(results, (("accuracy", lambda r: best_acc(r)[0]),
                                ("NLL per token (bound)", lambda r: r.get(nll_key, r.get("nll")))), runs, **kw)


# ----------------------------------------------------------------------------- K curve

def seed_runs(d):
    """A finished em.py run dir -> {None: d}; a --seeds dir (no metrics.jsonl of its own) -> {seed: d/seed{S}} for
    every seed{S}/ that holds a finished run."""
    done = lambda p: all(os.path.exists(os.path.join(p, f)) for f in ("metrics.jsonl", "config.json"))
    if done(d):
        return {None: d}
    subs = sorted(int(n[4:]) for n in os.listdir(d) if n[:4] == "seed" and n[4:].isdigit()) if os.path.isdir(d) else []
    runs = {s: os.path.join(d, f"seed{s}") for s in subs if done(os.path.join(d, f"seed{s}"))}
    if not runs:
        raise ValueError(f"no finished run (metrics.jsonl, config.json) in {d} nor in its seed*/")
    return runs


def k_curve(dirs, out, iteration=None):
    """One BoLT iteration (default: the last) of each run dir, or of every seed of a --seeds dir (their config.json
    gives K) -> out/kcurve.md and out/kcurve.svg. A fixed `iteration` compares runs of different lengths at the same
    point. Seeds that every dir has get a row each: accuracy per K and (c), the largest K above the smallest by more
    than twice the standard error of the difference, paired over the same test questions."""
    rows, per_seed, by_k = [], {}, {}
    for d in dirs:
        for s, run in seed_runs(d).items():
            cfg, ms = read_run(run)
            k = cfg["k"]
            last = [m for m in ms if m.get("iter") and iteration in (None, m["iter"])]
            if not last:
                raise ValueError(f"no BoLT iteration {iteration or ''} in its metrics.jsonl ({run})")
            warm = next((m for m in ms if m.get("iter") == 0), None)
            per_seed.setdefault(s, {})[k] = (run, last[-1])
            rows.append({**last[-1], "k": k, "dir": d, "seed": s, "warm_acc": warm.get("acc") if warm else None})
            by_k.setdefault(k, []).append(rows[-1])
    ks = sorted({int(x[5:]) for r in rows for x in r if x.startswith("nll_k") and x[5:].isdigit()})  # not _se
    at = "the last iteration" if iteration is None else f"iteration {iteration}"
    head = ["E-step K", "run", "iteration", "accuracy", *[f"NLL K={k}" for k in ks], "warm start accuracy"]
    lines = [f"# BoLT: more E-step samples (K) at {at}", "", "One run: accuracy ± its standard error; several "
             "seeds: mean ± sd over them (seeds listed).", ""]
    cells, curve = [], []
    for k, rs in sorted(by_k.items()):
        one = len(rs) == 1

        def cell(key, pct=False):
            vals = [r.get(key) for r in rs]
            if any(v is None for v in vals):
                return "-"
            m, sd = (vals[0], rs[0].get("acc_se") if key == "acc" else None) if one else mean_sd(vals)
            if pct:
                return f"{100 * m:.1f}%" + ("" if sd is None else f" ± {100 * sd:.1f}")
            return f"{m:.4f}" + ("" if sd is None else f" ± {sd:.4f}")
        where = rs[0]["dir"] if one else f"{rs[0]['dir']} (seeds {', '.join(str(r['seed']) for r in rs)})"
        iters = sorted({str(r["iter"]) for r in rs})
        cells.append([str(k), where, ", ".join(iters), cell("acc", True), *[cell(f"nll_k{j}") for j in ks],
                      cell("warm_acc", True)])
        curve.append({"k": k, "iter": rs[0]["iter"], "name": f"K={k}", **{key: sum(r[key] for r in rs) / len(rs)
                      for key in ("acc", *[f"nll_k{j}" for j in ks]) if all(key in r for r in rs)}})
    lines += md_table(head, cells)
    common = {s: v for s, v in per_seed.items() if s is not None and len(v) == len(by_k) > 1}
    if common:
        lo, hi = min(by_k), max(by_k)
        cells = []
        for s, v in sorted(common.items()):
            (da, a), (db, b) = v[hi], v[lo]
            d, se, kind = paired(da, a, b, db)
            cells.append([str(s), *[pct_cell(v[k][1]) for k in sorted(v)], f"{100 * d:+.1f} ± {100 * se:.1f} ({kind})",
                          "yes" if d > 2 * se else "NO"])
        lines += ["", f"Per seed: (c) K={hi} above K={lo} by more than twice the standard error of the difference.",
                  "", *md_table(["seed", *[f"K={k}" for k in sorted(by_k)], f"K={hi} - K={lo}", "(c)"], cells)]
    lines += ["", "![accuracy and NLL against K](kcurve.svg)", ""]
    os.makedirs(out, exist_ok=True)
    text = "\n".join(lines)
    write_atomic(os.path.join(out, "kcurve.md"), text)
    nll = f"nll_k{max(ks)}" if ks else "nll"
    write_atomic(os.path.join(out, "kcurve.svg"), svg_plot(curve, nll, x_key="k", x_label="E-step K",
                                                           foot=f"each point: {at}, mean over its runs"))
    return text


# ----------------------------------------------------------------------------- runs side by side

def read_run(d):
    """A finished em.py run dir -> (config, metric rows); a --seeds dir gives its mean rows."""
    return read_json(os.path.join(d, "config.json")), read_jsonl(os.path.join(d, "metrics.jsonl"))


def labels(cfgs, dirs):
    """What tells the runs apart: the config keys whose values differ ("estep=paper, k=1"), else the dir."""
    skip = {"out", "seeds", "iters", "no_baselines", "gen_batch"}
    keys = [k for k in cfgs[0] if k not in skip and len({json.dumps(c.get(k)) for c in cfgs}) > 1]
    return [", ".join(f"{k}={c.get(k)}" for k in keys) or d for c, d in zip(cfgs, dirs)]


def compare(dirs, out):
    """Finished runs (e.g. --estep paper and sequential on the same world and seed) side by side -> out/compare.md
    and out/compare.svg: one row per model (warm start, each iteration, each baseline any run has), per run its
    accuracy, the spec's bound and the PRIOR-conditional one at the largest K, and the E-step's gold match."""
    runs = [read_run(d) for d in dirs]
    names = labels([c for c, _ in runs], dirs)
    k = max((int(x[5:]) for _, rows in runs for r in rows for x in r if x.startswith("nll_k") and x[5:].isdigit()),
            default=None)
    if k is None:
        raise ValueError(f"no latent model's bound (nll_k*) in the metrics.jsonl of {', '.join(dirs)}")
    keys = sorted({row_key(r) for _, rows in runs for r in rows},
                  key=lambda key: (not key.startswith("iter"), key))  # iterations in order, then the baselines

    def cell(r):
        if r is None:
            return ["-"] * 4
        acc, how = best_acc(r)
        se = r.get("acc_reason_se" if how == "reasoning" else "acc_se")
        a = "-" if acc is None else f"{100 * acc:.1f}%" + (f" ± {100 * se:.1f}" if se is not None else "")
        nll = r.get(f"nll_k{k}", r.get("nll"))
        gold = "-" if "estep_gold_match" not in r else f"{100 * r['estep_gold_match']:.1f}%" + (
            f" (steps {100 * r['estep_gold_steps']:.1f}%)" if "estep_gold_steps" in r else "")
        return [a, "-" if nll is None else f"{nll:.4f}",
                f"{r[f'nll_np_k{k}']:.4f}" if f"nll_np_k{k}" in r else "-", gold]
    head = ["model"] + [f"{n}: {c}" for n in names for c in ("accuracy", f"NLL K={k}", f"PRIOR-cond. K={k}",
                                                               "E-step gold match")]
    found = [[next((r for r in rows if row_key(r) == key), None) for _, rows in runs] for key in keys]
    lines = ["# BoLT runs side by side", "", "Runs: " + "; ".join(f"`{d}` ({n})" for d, n in zip(dirs, names))
             + f". NLL: the spec's bound for latent models, exact for raw ones. " + NOTE, "",
             *md_table(head, [[next(r for r in rs if r is not None)["name"].split(" (")[0]] +
                              [c for r in rs for c in cell(r)] for rs in found])]
    lines += ["", f"![accuracy and NLL per iteration: {names[0]} bold, the others thin](compare.svg)", ""]
    os.makedirs(out, exist_ok=True)
    text = "\n".join(lines)
    write_atomic(os.path.join(out, "compare.md"), text)
    write_atomic(os.path.join(out, "compare.svg"), svg_plot(
        runs[0][1], f"nll_k{k}", [rows for _, rows in runs[1:]],
        foot=f"bold: {names[0]}; thin: {'; '.join(names[1:])}; iteration 0 = warm start"))
    return text


def build_parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--k-curve", nargs="+", metavar="DIR", help="finished em.py runs or --seeds dirs, one per K")
    what.add_argument("--compare", nargs="+", metavar="DIR", help="finished em.py runs to put side by side")
    ap.add_argument("--out", required=True, help="where kcurve.md/.svg or compare.md/.svg go")
    ap.add_argument("--iter", type=int, default=None, help="--k-curve: this iteration (default: each run's last)")
    return ap


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    dirs, flag = (args.k_curve, "--k-curve") if args.k_curve else (args.compare, "--compare")
    done = lambda d: os.path.exists(os.path.join(d, "metrics.jsonl")) and os.path.exists(os.path.join(d, "config.json"))
    missing = [d for d in dirs if not done(d) and not (args.k_curve and os.path.isdir(d) and any(
        n.startswith("seed") and done(os.path.join(d, n)) for n in os.listdir(d)))]
    if missing:
        ap.exit(2, f"error: no finished run (metrics.jsonl, config.json) in {', '.join(missing)} ({flag})\n")
    if args.compare and args.iter is not None:
        ap.exit(2, "error: --iter goes with --k-curve (--compare shows every iteration)\n")
    try:
        print(k_curve(dirs, args.out, args.iter) if args.k_curve else compare(dirs, args.out))
    except (ValueError, KeyError, json.JSONDecodeError) as e:
        ap.exit(2, f"error: {e} ({flag})\n")


if __name__ == "__main__":
    main()
