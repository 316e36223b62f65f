"""run_pipeline: the product's main job, resumable, cached and safe to interrupt."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..console import logging_to
from ..devices.registry import EAGER_RUNTIME
from ..errors import VanillaNetEdgeError
from .config import load_config, validate
from .rundir import RunDir
from .stages import RUNNERS, STAGES, Context, StageError


def run_pipeline(config: str | Path | dict | None = None, out: str | Path = "runs/demo",
                 only: tuple[str, ...] = (), force: tuple[str, ...] = (),
                 log: Callable[[str], None] = print) -> dict:
    """Run every stage into `out`; skip steps whose inputs and settings are unchanged.

    `config` is a pipeline TOML path, an already-parsed dict, or None for the built-in demo.
    Nothing is written before the config and the stage names are valid: in quiet mode (the CLI
    without -v) the toolchains' chatter goes to OUT/toolchain.log only once the run folder is
    claimed, and goes back where it went when the run ends.
    Returns {"summary": rows, "failures": [...], "skipped": [...], "out": path}.
    """
    cfg = validate(config, Path.cwd()) if isinstance(config, dict) else load_config(config)
    for name in (*only, *force):
        if name not in STAGES:
            raise VanillaNetEdgeError(f"unknown stage '{name}'", hint=f"stages: {', '.join(STAGES)}")
    with RunDir(out) as run, logging_to(run.path / "toolchain.log"):
        ctx = Context(cfg, run, log, set(force), set(only))
        for stage in STAGES:
            try:
                RUNNERS[stage](ctx)
            except VanillaNetEdgeError as exc:
                raise StageError(stage, exc) from exc
            except KeyboardInterrupt:
                log(f"interrupted during '{stage}': finished steps are kept; run again to resume")
                raise
        if ctx.skipped:
            log(f"unchanged, skipped: {', '.join(ctx.skipped)}")
        return {"out": str(run.path), "summary": summary_rows(ctx.results), "failures": ctx.failures,
                "skipped": ctx.skipped, "report": str(run.path / "report" / "report.html"),
                "verdict": _verdict(run.path / "report" / "report.json"),
                "try_it": try_it_command(ctx.results)}


def try_it_command(results: dict) -> str | None:
    """`classify` on the most accurate evaluated artifact (fastest among equals) and one of its
    eval images: the first thing to try after a run. None when nothing was evaluated here."""
    import shlex

    from ..images import ImageFolder

    latency = {r["name"]: r["latency"]["median_ms"] for r in results.get("bench", []) if r.get("ok")}
    evaluated = [r for r in results.get("eval", []) if r.get("ok") and r.get("top1") is not None]
    if not evaluated:
        return None
    best = min(evaluated, key=lambda r: (-r["top1"], latency.get(r["name"], float("inf"))))
    try:
        image = ImageFolder(best["data"]).records[0].path
    except VanillaNetEdgeError:
        return None
    return f"vanillanet-edge classify {shlex.quote(best['artifact'])} {shlex.quote(str(image))}"


def _verdict(report_json: Path) -> list[str]:
    """The report's verdict lines (the answer the main job exists for), or none."""
    import json

    from .report import verdict_lines
    try:
        return verdict_lines(json.loads(report_json.read_text()))
    except (OSError, ValueError, KeyError):
        return []


def summary_rows(results: dict) -> list[dict]:
    """artifact, runtime, precision, size, top-1, median latency, speed-up over PyTorch eager."""
    acc = {r["artifact"]: r for r in results.get("eval", [])}
    latency = results.get("bench", [])
    # Each model against its OWN eager time (same architecture, width, input and batch): a
    # baseline's speed-up over another model's eager run would mean nothing.
    eager = {_model_key(r): r["latency"]["median_ms"] for r in latency if r["runtime"] == EAGER_RUNTIME and r["ok"]}
    rows = []
    for r in latency:
        median = r["latency"]["median_ms"] if r["ok"] else None
        device = r.get("device", {}).get("name", "local")
        own = eager.get(_model_key(r))
        rows.append({"artifact": r["name"], "device": device, "runtime": r["runtime"], "precision": r["precision"],
                     "size_kb": (r.get("artifact_size_bytes") or 0) / 1024,
                     "top1": acc.get(r["artifact"], {}).get("top1"),
                     "engine": acc.get(r["artifact"], {}).get("engine"),
                     "median_ms": median, "status": r.get("status", "ok" if r["ok"] else "failed"),
                     # eager PyTorch runs on this machine only: no cross-device speed-ups
                     "speedup_vs_eager": (own / median) if own and median and device == "local" else None,
                     "note": r.get("reason") or r.get("error")})
    return rows


def _model_key(rec: dict) -> tuple:
    """(variant, width, batch, input side): what makes two records the same model at work."""
    model, inp = rec.get("model") or {}, rec.get("input") or {}
    shape = list(inp.get("shape") or [None, None, None])
    side = shape[1] if inp.get("layout") == "NHWC" else shape[2] if len(shape) > 2 else None
    return model.get("variant"), model.get("width"), shape[0], side
