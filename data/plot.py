"""The reports' figure (no torch): two panels side by side, each a value of the result rows against EM iteration
(or K), as plain SVG; data/report.py draws accuracy and the NLL bound with it."""

COLORS = {"base": "#8c564b", "raw_tokens": "#d62728", "raw_flops": "#ff7f0e", "raw_inline": "#9467bd",
          "raw_warm": "#e377c2", "raw_pipeline": "#17becf", "oracle": "#2ca02c"}


def svg_plot(results, panels, runs=(), x_key="iter", x_label="EM iteration",
             foot="iteration 0 = warm start; blue = BoLT"):
    """Two panels side by side, `panels` = [(title, get)], get(row) -> its value (None: not drawn), against the rows'
    x_key: rows with x_key form the blue line, rows with a "baseline" dashed horizontal lines in their colour, `runs`
    (one row list per seed) thin lines behind the blue one."""
    iters = [r for r in results if x_key in r]
    base = [r for r in results if "baseline" in r]
    xs = sorted({r[x_key] for r in iters}) or [0]
    W_, H_, pad = 360, 240, 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W_}" height="{H_ + 30}" font-size="11" '
             'font-family="sans-serif">']
    for p, (title, get) in enumerate(panels):
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
        parts += [f'<text x="{x0 - 3}" y="{y(v) + 4}" text-anchor="end">{v:.3g}</text>' for v in (lo, hi)]
        parts += [f'<text x="{x(v)}" y="{y(lo) + 14}" text-anchor="middle">{v}</text>' for v in xs]
        for r in base:
            if get(r) is not None:
                c = COLORS.get(r["baseline"].removesuffix("_replay"), "#777")
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
