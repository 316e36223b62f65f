"""`recommend`: which model to ship on a device under a latency budget.

Each model the user allows (official variant names: published accuracy, random weights for
timing; or the user's own checkpoints: accuracy measured on their labelled images) goes
through `tune`; the answer is the most accurate model whose fastest verified configuration
fits the budget. Accuracies of different kinds are never ranked against each other: with
--eval-data only measured accuracies compete, without it only published ones.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..errors import VanillaNetEdgeError
from ..fileio import claim_folder
from ..metrics import within
from ..model.variants import PUBLISHED, VARIANTS
from .search import TuneOptions, tune


def _is_variant(model: str) -> bool:
    return model in VARIANTS and not Path(model).exists()


def _accuracy(model: str, best: dict | None, eval_data: str | None) -> tuple[float | None, str]:
    if _is_variant(model):           # random weights here: only the paper's figure means anything
        if best and best.get("input_size") != 224:
            return None, f"unknown at {best['input_size']}px (the published figure is for 224)"
        return PUBLISHED[model]["imagenet_top1"] / 100, "published ImageNet top-1 (paper; not measured here)"
    if eval_data and best and best.get("top1") is not None:
        return best["top1"], f"measured on {eval_data}"
    return None, "unknown (pass --eval-data to measure it)"


def recommend(models: list[str], out: str | Path, device, budget_ms: float, opts: TuneOptions | None = None,
              log=print) -> dict:
    if not models:
        raise VanillaNetEdgeError("no models to choose from", hint="pass --variant NAME and/or --checkpoint FILE")
    opts = dataclasses.replace(opts or TuneOptions(), budget_ms=None)   # each model's fastest config
    out = claim_folder(out, "recommend folder")
    rows: list[dict[str, Any]] = []
    for model in models:
        name = Path(model).stem if Path(model).exists() else model
        log(f"== {name}")
        try:
            # A random-weight variant is timed only: its top-1 on the user's images means nothing.
            model_opts = dataclasses.replace(opts, eval_data=None, max_drop=None) if _is_variant(model) else opts
            result = tune(model, out / name, device, model_opts, log)
            best = result.get("recommendation")
            error = None if best else "no configuration passed its checks"
        except VanillaNetEdgeError as exc:
            result, best, error = None, None, str(exc)
        top1, kind = _accuracy(model, best, opts.eval_data)
        rows.append({"model": name, "source": model, "best": best, "error": error,
                     "ms_per_image": best["ms_per_image"] if best else None,
                     "median_ms": best["median_ms"] if best else None,
                     "fits": bool(best and within(best["median_ms"], budget_ms)),
                     "accuracy": top1, "accuracy_kind": kind,
                     "tune": str(out / name / "tune.json") if result else None})
    kind_wanted = "measured" if opts.eval_data else "published"
    eligible = [r for r in rows if r["fits"] and r["accuracy"] is not None and r["accuracy_kind"].startswith(kind_wanted)]
    choice = max(eligible, key=lambda r: (r["accuracy"], -r["median_ms"])) if eligible else None
    return {"device": device.spec.name, "budget_ms": budget_ms, "accuracy_used": kind_wanted,
            "models": rows, "recommendation": choice}
