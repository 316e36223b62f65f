"""The report's plots (matplotlib, PNG bytes); none is drawn where its data is missing."""
from __future__ import annotations

import io

from ...model.published import A100_EAGER_MS, BASELINE_MODEL
from .records import (
    Row,
    _peak_gmacs,
)
from .tables import (
    Table,
    _interval,
    _pick,
)

# ============================================================================ plots

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _png(fig) -> bytes:
    from matplotlib.text import Text

    # Labels come from records (model and file names): draw them as written. With mathtext on,
    # a '$' starts a formula, and a name such as '$\\foo{$' would crash the whole report.
    for text in fig.findobj(Text):
        text.set_parse_math(False)
    for ax in fig.axes:                    # tick labels that exist only once ticks are made
        for text in ax.get_xticklabels() + ax.get_yticklabels():
            text.set_parse_math(False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def plot_latency(lat: list[Row]) -> bytes:
    plt = _plt()
    models = sorted({(r.family != "vanillanet", r.model, r.input_size) for r in lat})
    configs = sorted({r.config for r in lat})
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(models) * max(1, len(configs)) / 2 + 3), 4.5))
    width = 0.8 / max(1, len(configs))
    for j, cfg in enumerate(configs):
        xs, ys, lo, hi = [], [], [], []
        for i, (_, model, size) in enumerate(models):
            rows = [r for r in lat if (r.model, r.input_size, r.config) == (model, size, cfg)]
            r = _pick(rows)
            if r is None:
                continue
            med = r.median_ms
            low, high = _interval(r)
            xs.append(i + (j - (len(configs) - 1) / 2) * width)
            ys.append(med)
            lo.append(max(0.0, med - low))
            hi.append(max(0.0, high - med))
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=cfg)
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels([f"{m}\n@{s}" for _, m, s in models], fontsize=8)
    ax.set_ylabel("median latency (ms)")
    ax.set_title("Latency per model, runtime and precision (error bars: min/max round median)")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def plot_scaling(lat: list[Row]) -> bytes:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    configs = sorted({r.config for r in lat})
    markers = "os^Dv<>pP*hX"
    colors = {"vanillanet": "tab:blue", "baseline": "tab:red"}
    skipped_depth = set()
    for j, cfg in enumerate(configs):
        for family in ("vanillanet", "baseline"):
            rows: dict[tuple[str, int | None], list[Row]] = {}
            for r in lat:
                if r.config == cfg and r.family == family:
                    rows.setdefault((r.model, r.input_size), []).append(r)
            picked = [one for v in rows.values() if (one := _pick(v))]      # every list holds a row
            for ax, attr in zip(axes, ("depth", "macs")):
                pts = [(getattr(r, attr), r.median_ms, r.model) for r in picked
                       if getattr(r, attr) is not None]
                if attr == "depth":
                    skipped_depth |= {r.model for r in picked if r.depth is None}
                if not pts:
                    continue
                pts.sort()
                xs = [p[0] / (1e9 if attr == "macs" else 1) for p in pts]
                if family == "vanillanet" and len(pts) > 1:
                    ax.plot(xs, [p[1] for p in pts], color=colors[family], lw=0.8, alpha=0.5)
                ax.scatter(xs, [p[1] for p in pts], marker=markers[j % len(markers)],
                           color=colors.get(family, "gray"), label=f"{family}: {cfg}")
                for x, p in zip(xs, pts):
                    ax.annotate(p[2], (x, p[1]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    axes[0].set_xlabel("depth (paper's sense: non-linear layers + 1 / weighted layers)")
    axes[1].set_xlabel("GMACs per image")
    for ax in axes:
        ax.set_ylabel("median latency (ms)")
        ax.grid(alpha=0.3)
    axes[0].set_title("Latency against depth" + (f" (no depth: {', '.join(sorted(skipped_depth))})"
                                                 if skipped_depth else ""), fontsize=9)
    axes[1].set_title("Latency against MACs", fontsize=9)
    handles, labels = axes[1].get_legend_handles_labels()
    if handles:
        uniq = dict(zip(labels, handles))
        axes[1].legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return _png(fig)


def plot_roofline(lat: list[Row], peaks: list[Row]) -> bytes | None:
    rated = [(r, g, *_peak_gmacs(peaks, r)) for r in lat if (g := r.latency.get("gmacs_per_s"))]
    shares = sorted([(g / peak, r, peak, of) for r, g, peak, of in rated if peak], key=lambda x: x[0])
    rows = [(r, peak, of) for _, r, peak, of in shares]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, max(3, 0.3 * len(rows) + 1.5)))
    vals = [100 * share for share, *_ in shares]
    ax.barh(range(len(rows)), vals, color=["tab:blue" if r.family == "vanillanet" else "tab:red" for r, _, _ in rows])
    for i, (v, (_, peak, of)) in enumerate(zip(vals, rows)):
        ax.text(v, i, f" {v:.0f}% of {peak:.0f} GMAC/s ({of})", va="center", fontsize=6)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r.model}@{r.input_size} {r.config}" for r, _, _ in rows], fontsize=7)
    ax.set_xlabel("% of the matmul peak of the precision each artifact computes in")
    ax.set_title("Roofline efficiency: achieved rate against the measured peak")
    return _png(fig)


def _spread(value: float, low: float, high: float) -> list[list[float]]:
    """Error-bar extents around `value`; a side never goes negative (bounds built from unpaired
    rounds are not guaranteed to hold the point estimate)."""
    return [[max(0.0, value - low)], [max(0.0, high - value)]]


def plot_ratio(table: Table) -> bytes | None:
    heads = [h for h, _ in table.columns]
    rows = [dict(zip(heads, r)) for r in table.rows]
    rows = sorted([r for r in rows if r["ratio"] is not None],
                  key=lambda r: (r["device"], r["runtime"], r["precision"], r["comparison"], r["settings"]))
    if not rows:
        return None
    plt = _plt()
    devices = sorted({r["device"] for r in rows})
    colors = {d: plt.cm.tab10(k % 10) for k, d in enumerate(devices)}
    fig, ax = plt.subplots(figsize=(9, max(3, 0.35 * len(rows) + 1.5)))
    for i, r in enumerate(rows):
        ax.errorbar(r["ratio"], i, xerr=_spread(r["ratio"], r["95% low"], r["95% high"]), fmt="o", capsize=3,
                    color=colors[r["device"]],
                    label=r["device"] if r["device"] not in ax.get_legend_handles_labels()[1] else None)
        a100 = A100_EAGER_MS.get(r["VanillaNet"])
        if a100 is not None:
            ax.plot(a100 / A100_EAGER_MS[BASELINE_MODEL], i, "x", color="tab:green")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([(f"{r['device']}: " if len(devices) > 1 else "")
                        + f"{r['VanillaNet']}, {r['runtime']} {r['precision']} {r['comparison']} "
                          f"({r['settings']}) @{r['input']}" for r in rows], fontsize=7)
    ax.set_xlabel("latency ratio, 95% interval (< 1: VanillaNet faster); x = published A100 eager ratio")
    if len(devices) > 1:
        ax.legend(title="device", fontsize=7)
        ax.set_title("VanillaNet / ResNet-50 on each device")
    else:
        ax.set_title(f"VanillaNet / ResNet-50 on this machine ({devices[0]})")
    return _png(fig)


def plot_int8(table: Table) -> bytes | None:
    rows = [r for r in table.rows if r[6] is not None]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, max(3, 0.35 * len(rows) + 1.5)))
    for i, r in enumerate(rows):
        ax.barh(i, r[6], color="tab:purple")
        ax.errorbar(r[6], i, xerr=_spread(r[6], r[7], r[8]), fmt="none", capsize=3, color="k")
        if r[12] is not None:
            ax.text(r[8], i, f"  top-1 {r[12]:+.2f} pts", va="center", fontsize=7)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r[0]}@{r[1]} {r[2]} (fp32 in {r[3]})" for r in rows], fontsize=7)
    ax.set_xlabel("INT8 speed-up over FP32 (x)")
    ax.set_title("INT8 speed-up per runtime (and top-1 change where measured)")
    return _png(fig)
