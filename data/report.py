"""BoLT reports (no torch): one run's report.md + metrics.jsonl + plot.svg, the combined report over seeds, the K curve,
and finished runs side by side (--estep paper against sequential on one world and seed).

A result row is one model's metrics (em.py's run_eval) plus its name and either "iter" (warm start = 0, BoLT
iterations) or "baseline" (base, raw_tokens, raw_flops, oracle). Columns:
  accuracy          latent models: the answer after their thought. Raw models: the better of asked directly
                    (acc) and asked to reason in their training text's format (acc_reason); both are shown.
  NLL K=k           per raw text token: exact for raw models; for latent models the spec's IW-ELBO_K bound
                    (log p of every token after P_i, the mode marks SoL PRIOR included)
  mode-cond. NLL    the bound with the two mode marks left out (what the E-step weighs; not a bound on raw text)

    python -m data.report --k-curve out/k1 out/k2 out/em out/k8 --out out/kcurve   # K curve from finished runs
    python -m data.report --compare out/seq out/paper --out out/estep    # finished runs side by side
"""
import argparse
import json
import math
import os
import sys

from data.corpus import write_atomic

COLORS = {"base": "#8c564b", "raw_tokens": "#d62728", "raw_flops": "#ff7f0e", "oracle": "#2ca02c"}


def best_acc(r):
    """(accuracy, how it was asked) of a row: raw arms take the better of direct and reasoning."""
    if "acc_best" in r:
        return r["acc_best"], ""
    if "acc_reason" in r and r["acc_reason"] > r.get("acc", -1):
        return r["acc_reason"], "reasoning"
    return (r["acc"], "direct" if "acc_reason" in r else "") if "acc" in r else (None, "")


def fmt_metrics(m):
    s = [f"acc {100 * m['acc']:.1f}% (±{100 * m['acc_se']:.1f})"] if "acc" in m else []
    if "acc_reason" in m:
        s.append(f"acc reasoning {100 * m['acc_reason']:.1f}% (±{100 * m['acc_reason_se']:.1f})")
    s += [f"{k} {v:.4f}" for k, v in m.items() if k.startswith("nll")]
    if "estep_gold_match" in m:
        s.append(f"E-step gold match {100 * m['estep_gold_match']:.1f}%")
    return ", ".join(s)


def row_key(r):
    return r.get("baseline") or f"iter{r['iter']}"


# ----------------------------------------------------------------------------- one run

def columns(ks):
    return ["model", "accuracy", "raw: direct / reasoning", *[f"NLL K={k}" for k in ks], "bits/byte",
            *[f"mode-cond. NLL K={k}" for k in ks], "E-step gold match", "ESS", "capped"]


def cells(r, ks, show=None):
    """One row's table cells. show(key, percent) formats one metric of r ("-" when absent); the combined report
    passes one that prints mean ± sd over seeds."""
    def one(key, pct):
        v = r.get(key)
        return "-" if v is None else f"{100 * v:.1f}%" if pct else f"{v:.4f}"
    show = show or one
    acc, how = best_acc(r)
    se = "acc_reason_se" if how == "reasoning" else "acc_se"
    acc_s = show("acc_best", True) if "acc_best" in r else "-" if acc is None else \
        f"{100 * acc:.1f}% ± {100 * r[se]:.1f}" + (f" ({how})" if how else "")
    nll = lambda tag, k: f"{tag}_k{k}" if f"{tag}_k{k}" in r else tag.split("_")[0]  # raw models: exact nll
    return [r["name"], acc_s, f"{show('acc', True)} / {show('acc_reason', True)}" if "acc_reason" in r else "-",
            *[show(nll("nll", k), False) for k in ks], show(nll("bpb", max(ks)), False),
            *[show(f"nll_mc_k{k}", False) if "nll_mc_k1" in r or f"nll_mc_k{k}" in r else "-" for k in ks],
            f"{show('estep_gold_match', True)} (of {show('estep_gold_exists', True)} possible"
            + (f"; steps {show('estep_gold_steps', True)})" if "estep_gold_steps" in r else ")")
            if "estep_gold_match" in r else "-",
            f"{r['estep_ess_mean']:.2f}" if "estep_ess_mean" in r else "-",
            show("estep_capped_frac", True) if "estep_capped_frac" in r else "-"]


def table(rows, ks, cell_fn=cells):
    head = columns(ks)
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + \
           ["| " + " | ".join(cell_fn(r, ks)) + " |" for r in rows]


def claims(rows, ks):
    """The comparison lines: the last BoLT iteration against the strongest raw arm (accuracy and NLL)."""
    last = [r for r in rows if r.get("iter")]
    raw = [r for r in rows if r.get("baseline") in ("base", "raw_tokens", "raw_flops")]
    if not last or not raw:
        return []
    last, out = last[-1], []
    if best_acc(last)[0] is not None and any(best_acc(r)[0] is not None for r in raw):
        top = max((r for r in raw if best_acc(r)[0] is not None), key=lambda r: best_acc(r)[0])
        a, how = best_acc(top)
        how = {"reasoning": " asked to reason", "direct": " asked directly"}.get(how, " (its better prompt)")
        out.append(f"- Accuracy: {last['name']} {100 * best_acc(last)[0]:.1f}% vs the strongest raw arm, {top['name']}"
                   f"{how}, {100 * a:.1f}% ({100 * (best_acc(last)[0] - a):+.1f} points).")
    k = max(ks)
    if f"nll_k{k}" in last:
        top = min(raw, key=lambda r: r["nll"])
        out.append(f"- NLL: {last['name']}'s spec bound (K={k}) {last[f'nll_k{k}']:.4f} vs the best raw model, "
                   f"{top['name']}, {top['nll']:.4f} (exact); the mode-conditional bound is "
                   f"{last[f'nll_mc_k{k}']:.4f}. Lower is better; a bound below a raw NLL is a win for the latent "
                   "model, a bound above it is inconclusive.")
    return out


NOTE = ("Accuracy: latent models answer after writing a thought; raw models are asked directly and asked to reason in "
        "their training text's format, and the better is the accuracy (both shown). NLL is per raw text token: exact "
        "for raw models, for latent models the spec's IW-ELBO_K bound (log p of every token after the prefix, the mode "
        "marks SoL PRIOR included). Mode-cond. NLL leaves the two marks out (what the E-step weighs). E-step gold "
        "match: chosen latents equal to the gold derivation, over the chunks whose gold latent is not empty; steps: "
        "those whose steps match it, values left out (the latent follows the problem).")


def report(out, results, ks, header, plot=True):
    """report.md, metrics.jsonl and plot.svg for one run under `out`; returns the report text."""
    write_atomic(os.path.join(out, "metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in results))
    lines = [f"# BoLT report: `{' '.join(sys.argv)}`", "", header + " " + NOTE, "", *table(results, ks), "",
             *claims(results, ks), "", "![accuracy and NLL per iteration](plot.svg)", ""]
    text = "\n".join(lines)
    write_atomic(os.path.join(out, "report.md"), text)
    if plot:
        write_atomic(os.path.join(out, "plot.svg"), svg_plot(results, f"nll_k{max(ks)}"))
    return text


# ----------------------------------------------------------------------------- over seeds

def mean_sd(xs):
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0


def combine(per_seed):
    """{seed: rows} -> (rows of mean values, rows of {metric: [value per seed]}) for the rows every seed has and
    their numeric metrics; acc_best is each seed's better raw prompt (or the latent accuracy)."""
    first = next(iter(per_seed.values()))
    means, spreads = [], []
    for r in first:
        same = [next((x for x in rows if row_key(x) == row_key(r)), None) for rows in per_seed.values()]
        if any(x is None for x in same):
            continue
        same = [{**x, "acc_best": best_acc(x)[0]} if best_acc(x)[0] is not None else x for x in same]
        keys = [k for k, v in same[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                and k not in ("iter", "steps") and all(isinstance(x.get(k), (int, float)) for x in same)]
        vals = {k: [x[k] for x in same] for k in keys}
        tags = {k: r[k] for k in ("iter", "baseline") if k in r}
        means.append({"name": r["name"].split(" (")[0], **tags, **{k: sum(v) / len(v) for k, v in vals.items()}})
        spreads.append(vals)
    return means, spreads


def correct_vector(run_dir, name, row):
    """Per-question correctness (0/1, question order) of one model of a run: its eval_questions.jsonl rows of the
    mode its accuracy was read from (a raw arm: the better of direct and reasoning)."""
    how = best_acc(row)[1]
    mode = "reason" if how == "reasoning" else "direct" if how == "direct" else "latent"
    with open(os.path.join(run_dir, name, "eval_questions.jsonl")) as f:
        return [int(r["correct"]) for r in map(json.loads, f) if r["mode"] == mode]


def paired(a, b):
    """Mean of b - a over the same questions and its standard error (paired: per-question differences)."""
    d = [y - x for x, y in zip(a, b)]
    m = sum(d) / len(d)
    return m, math.sqrt(sum((x - m) ** 2 for x in d) / max(len(d) - 1, 1) / len(d))


def seed_criteria(out, per_seed):
    """Per seed: (b) accuracy rises warm -> 1 -> ... -> last by > 2 paired SE at every step; (d) the last iteration
    beats the strongest raw arm (the base model and the trained raw arms, each at its better prompt) by > 2 paired
    SE. -> (markdown lines, {seed: passed})."""
    lines = ["| seed | accuracy warm -> iterations | smallest step (paired SE) | (b) | strongest raw arm | "
             "last - raw (paired SE) | (d) |", "|---|---|---|---|---|---|---|"]
    ok = {}
    for s, rs in per_seed.items():
        d = os.path.join(out, f"seed{s}")
        its = sorted((r for r in rs if "iter" in r), key=lambda r: r["iter"])
        raw = [r for r in rs if r.get("baseline") in ("base", "raw_tokens", "raw_flops")]
        if len(its) < 2 or not raw or "acc" not in its[0]:
            continue
        vec = {r["iter"]: correct_vector(d, "warm" if r["iter"] == 0 else f"iter{r['iter']}", r) for r in its}
        steps = [paired(vec[a["iter"]], vec[b["iter"]]) for a, b in zip(its, its[1:])]
        small = min(steps, key=lambda m_se: m_se[0] - 2 * m_se[1])
        b_ok = all(m > 2 * se for m, se in steps)
        top = max(raw, key=lambda r: best_acc(r)[0])
        dm, dse = paired(correct_vector(d, top["baseline"], top), vec[its[-1]["iter"]])
        d_ok = dm > 2 * dse
        ok[s] = b_ok and d_ok
        path = " -> ".join(f"{100 * r['acc']:.1f}" for r in its)
        lines.append(f"| {s} | {path}% | {100 * small[0]:+.1f} ({100 * small[1]:.1f}) | {'yes' if b_ok else 'NO'} | "
                     f"{top['name']}, {100 * best_acc(top)[0]:.1f}% | {100 * dm:+.1f} ({100 * dse:.1f}) | "
                     f"{'yes' if d_ok else 'NO'} |")
    head = [f"**Bootstrapped on {sum(ok.values())} of {len(ok)} seeds** ((b) and (d) both met; every seed run is "
            "listed):", ""]
    return head + lines, ok


def combined_report(out, per_seed, ks, header):
    """out/report.md: every metric as mean ± sd over seeds, then each seed's table; out/plot.svg: the means
    with each seed drawn thin; out/metrics.jsonl: the mean rows. Returns the text."""
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
             "seed's better prompt. " + NOTE, "", *table(means, ks, cell_fn), "", *claims(means, ks), "",
             "![accuracy and NLL per iteration, mean over seeds](plot.svg)", "", *seed_criteria(out, per_seed)[0], ""]
    for s, rs in per_seed.items():
        lines += [f"## seed {s} (seed{s}/report.md)", "", *table(rs, ks), ""]
    text = "\n".join(lines)
    write_atomic(os.path.join(out, "metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in means))
    write_atomic(os.path.join(out, "report.md"), text)
    write_atomic(os.path.join(out, "plot.svg"), svg_plot(means, f"nll_k{max(ks)}", list(per_seed.values())))
    return text


# ----------------------------------------------------------------------------- plot

def svg_plot(results, nll_key, runs=(), x_key="iter", x_label="EM iteration",
             foot="iteration 0 = warm start; blue = BoLT"):
    """Two panels (accuracy, NLL) against EM iteration; baselines as dashed horizontal lines (raw arms at their
    better accuracy); `runs` (one row list per seed) drawn thin behind the blue line. Plain SVG."""
    iters = [r for r in results if x_key in r]
    base = [r for r in results if "baseline" in r]
    xs = sorted({r[x_key] for r in iters}) or [0]
    W_, H_, pad = 360, 240, 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W_}" height="{H_ + 30}" font-size="11" '
             'font-family="sans-serif">']
    for p, (title, get) in enumerate((("accuracy", lambda r: best_acc(r)[0]),
                                      ("NLL per token (bound)", lambda r: r.get(nll_key, r.get("nll"))))):
        ys = [get(r) for r in iters + base + [x for rs in runs for x in rs if x_key in x] if get(r) is not None]
        if not ys:
            continue
        lo, hi = min(ys), max(ys)
        lo, hi = lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9)
        n = max(len(xs) - 1, 1)
        x = lambda v: p * W_ + pad + (W_ - 2 * pad) * xs.index(v) / n
        y = lambda v: H_ - pad + 10 - (H_ - 2 * pad) * (v - lo) / (hi - lo)
        x0, x1 = p * W_ + pad, p * W_ + W_ - pad
        parts.append(f'<text x="{p * W_ + W_ / 2}" y="14" text-anchor="middle">{title} vs {x_label}</text>')
        parts.append(f'<rect x="{x0}" y="{y(hi)}" width="{x1 - x0}" height="{y(lo) - y(hi)}" '
                     'fill="none" stroke="#999"/>')
        for v in (lo, hi):
            parts.append(f'<text x="{x0 - 3}" y="{y(v) + 4}" text-anchor="end">{v:.3g}</text>')
        for v in xs:
            parts.append(f'<text x="{x(v)}" y="{y(lo) + 14}" text-anchor="middle">{v}</text>')
        for r in base:
            if get(r) is not None:
                c = COLORS.get(r["baseline"], "#777")
                parts.append(f'<line x1="{x0}" x2="{x1}" y1="{y(get(r))}" y2="{y(get(r))}" stroke="{c}" '
                             f'stroke-dasharray="5,3"/><text x="{x1 - 2}" y="{y(get(r)) - 3}" fill="{c}" '
                             f'text-anchor="end">{r["name"]}</text>')
        for rs, color, width in [(rs, "#9ecae1", 1) for rs in runs] + [(iters, "#1f77b4", 2)]:
            pts = " ".join(f"{x(r[x_key])},{y(get(r))}" for r in rs if x_key in r and get(r) is not None)
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="{width}"/>')
        parts += [f'<circle cx="{x(r[x_key])}" cy="{y(get(r))}" r="3" fill="#1f77b4"/>'
                  for r in iters if get(r) is not None]
    parts.append(f'<text x="{W_}" y="{H_ + 24}" text-anchor="middle">{foot}</text>')
    return "\n".join(parts + ["</svg>"])


# ----------------------------------------------------------------------------- K curve

def k_curve(dirs, out, iteration=None):
    """One BoLT iteration (default: the last) of each run dir (its config.json gives K) -> out/kcurve.md and
    out/kcurve.svg. A fixed `iteration` compares runs of different lengths at the same point."""
    rows = []
    for d in dirs:
        with open(os.path.join(d, "config.json")) as f:
            k = json.load(f)["k"]
        with open(os.path.join(d, "metrics.jsonl")) as f:
            ms = [json.loads(line) for line in f if line.strip()]
        last = [m for m in ms if m.get("iter") and iteration in (None, m["iter"])]
        if not last:
            raise ValueError(f"no BoLT iteration {iteration or ''} in its metrics.jsonl ({d})")
        warm = next((m for m in ms if m.get("iter") == 0), None)
        rows.append({**last[-1], "name": f"K={k}", "k": k, "dir": d,
                     "warm_acc": warm.get("acc") if warm else None})
    rows.sort(key=lambda r: r["k"])
    ks = sorted({int(x[len("nll_k"):]) for r in rows for x in r if x.startswith("nll_k")})
    head = ["E-step K", "run", "iteration", "accuracy", *[f"NLL K={k}" for k in ks], "warm start accuracy"]
    at = "the last iteration" if iteration is None else f"iteration {iteration}"
    lines = [f"# BoLT: more E-step samples (K) at {at}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([str(r["k"]), r["dir"], str(r["iter"]),
                                        f"{100 * r['acc']:.1f}% ± {100 * r['acc_se']:.1f}" if "acc" in r else "-",
                                        *[f"{r[f'nll_k{k}']:.4f}" if f"nll_k{k}" in r else "-" for k in ks],
                                        "-" if r["warm_acc"] is None else f"{100 * r['warm_acc']:.1f}%"]) + " |")
    lines += ["", "![accuracy and NLL against K](kcurve.svg)", ""]
    os.makedirs(out, exist_ok=True)
    text = "\n".join(lines)
    write_atomic(os.path.join(out, "kcurve.md"), text)
    nll = f"nll_k{max(ks)}" if ks else "nll"
    write_atomic(os.path.join(out, "kcurve.svg"), svg_plot(rows, nll, x_key="k", x_label="E-step K",
                                                           foot=f"each point: {at} of one run"))
    return text


# ----------------------------------------------------------------------------- runs side by side

def read_run(d):
    """A finished em.py run dir -> (config, metric rows); a --seeds dir gives its mean rows."""
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(d, "metrics.jsonl")) as f:
        return cfg, [json.loads(line) for line in f if line.strip()]


def labels(cfgs, dirs):
    """What tells the runs apart: the config keys whose values differ ("estep=paper, k=1"), else the dir."""
    skip = {"out", "seeds", "iters", "no_baselines", "gen_batch"}
    keys = [k for k in cfgs[0] if k not in skip and len({json.dumps(c.get(k)) for c in cfgs}) > 1]
    return [", ".join(f"{k}={c.get(k)}" for k in keys) or d for c, d in zip(cfgs, dirs)]


def compare(dirs, out):
    """Finished runs (e.g. --estep paper and sequential on the same world and seed) side by side -> out/compare.md
    and out/compare.svg: one row per model (warm start, each iteration, each baseline any run has), per run its
    accuracy, the spec's bound and the mode-conditional one at the largest K, and the E-step's gold match."""
    runs = [read_run(d) for d in dirs]
    names = labels([c for c, _ in runs], dirs)
    k = max((int(x[len("nll_k"):]) for _, rows in runs for r in rows for x in r if x.startswith("nll_k")),
            default=None)
    if k is None:
        raise ValueError(f"no latent model's bound (nll_k*) in the metrics.jsonl of {', '.join(dirs)}")
    keys = []
    for _, rows in runs:
        keys += [row_key(r) for r in rows if row_key(r) not in keys]
    keys.sort(key=lambda key: (not key.startswith("iter"), key))  # iterations in order, then the baselines

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
                f"{r[f'nll_mc_k{k}']:.4f}" if f"nll_mc_k{k}" in r else "-", gold]
    head = ["model"] + [f"{n}: {c}" for n in names for c in ("accuracy", f"NLL K={k}", f"mode-cond. K={k}",
                                                               "E-step gold match")]
    lines = ["# BoLT runs side by side", "", "Runs: " + "; ".join(f"`{d}` ({n})" for d, n in zip(dirs, names))
             + f". NLL: the spec's bound for latent models, exact for raw ones. " + NOTE, "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in keys:
        found = [next((r for r in rows if row_key(r) == key), None) for _, rows in runs]
        name = next(r for r in found if r is not None)["name"].split(" (")[0]
        lines.append("| " + " | ".join([name] + [c for r in found for c in cell(r)]) + " |")
    lines += ["", f"![accuracy and NLL per iteration: {names[0]} bold, the others thin](compare.svg)", ""]
    os.makedirs(out, exist_ok=True)
    text = "\n".join(lines)
    write_atomic(os.path.join(out, "compare.md"), text)
    write_atomic(os.path.join(out, "compare.svg"), svg_plot(
        runs[0][1], f"nll_k{k}", [rows for _, rows in runs[1:]],
        foot=f"bold: {names[0]}; thin: {'; '.join(names[1:])}; iteration 0 = warm start"))
    return text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--k-curve", nargs="+", metavar="DIR", help="finished em.py runs, one per K")
    what.add_argument("--compare", nargs="+", metavar="DIR", help="finished em.py runs to put side by side")
    ap.add_argument("--out", required=True, help="where kcurve.md/.svg or compare.md/.svg go")
    ap.add_argument("--iter", type=int, default=None, help="--k-curve: this iteration (default: each run's last)")
    args = ap.parse_args(argv)
    dirs, flag = (args.k_curve, "--k-curve") if args.k_curve else (args.compare, "--compare")
    missing = [d for d in dirs if not os.path.exists(os.path.join(d, "metrics.jsonl"))
               or not os.path.exists(os.path.join(d, "config.json"))]
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
