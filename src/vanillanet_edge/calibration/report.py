"""`calibrate`: per-layer statistics and INT8 sensitivity, as JSON and a bar chart."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..fileio import atomic_path, claim_folder, write_json
from ..metrics import at_least, finite, within
from .dataset import CalibrationSet
from .sensitivity import activation_statistics, layer_sensitivity

# A layer is worth keeping in float when quantizing it alone costs clearly more than is typical:
# over twice the median layer's error, or any top-1 flip beyond 1% of the images.
KEEP_FLOAT_FACTOR = 2.0
KEEP_FLOAT_AGREEMENT = 0.99


def keep_in_float(rows: list[dict]) -> list[str]:
    # a layer whose error is NaN or inf is flagged (never within a limit) and left out of the median
    errs = [r["rel_err"] for r in rows if finite(r["rel_err"])]
    median = float(np.median(errs)) if errs else 0.0
    return [r["layer"] for r in rows
            if not within(r["rel_err"], KEEP_FLOAT_FACTOR * median)
            or not at_least(r["top1_agree"], KEEP_FLOAT_AGREEMENT)]


def plot_sensitivity(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flagged = set(keep_in_float(rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(rows)), 4))
    names = [r["layer"] for r in rows]
    ax.bar(names, [r["rel_err"] for r in rows],
           color=["#d62728" if n in flagged else "#1f77b4" for n in names])
    ax.set_ylabel("output relative error, this layer alone in INT8")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=60)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def calibration_report(model, calib: CalibrationSet, out: Path, title: str, progress=None,
                       stats: dict | None = None, statistics: dict | None = None) -> dict:
    """`stats`: per layer min, max, ... of its input (steps.calibrate passes the merged shard
    statistics of cluster/stats.py, computed here or on a Ray cluster; None = computed here by
    activation_statistics); `statistics` says how they were computed. The sensitivity pass
    (each layer fake-quantized alone, on stats' min/max) always runs here."""
    stats = stats if stats is not None else activation_statistics(model, calib.inputs)
    rows = layer_sensitivity(model, calib.inputs, stats, progress=progress)
    report = {"calibration": calib.describe(), **({"statistics": statistics} if statistics else {}),
              "layers": stats, "sensitivity": rows,
              "keep_in_float": keep_in_float(rows),
              "method": ("each layer quantized alone in torch: int8 per-channel symmetric weights, "
                         "8-bit per-tensor activations from the calibration min/max; error against "
                         "the float net on the calibration images")}
    claim_folder(out, "calibration folder")
    write_json(out / "calibration.json", report)
    plot_sensitivity(rows, out / "sensitivity.png", title)
    return report
