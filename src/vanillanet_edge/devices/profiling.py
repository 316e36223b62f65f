"""Where the time goes, layer by layer: each runtime's OWN profiler, never hand-timed layers.

`profile(ref)` asks the artifact's runner for per-layer rows (Runner.profile_layers: ONNX
Runtime's session profiler, OpenVINO's PERF_COUNT counters), then times plain, unprofiled
runs of the same artifact with the same settings, so the record shows both what the layers
add up to under the profiler and what an inference costs without it. Runtimes without a
profiler raise ProfilingNotOfferedError (a VanillaNetEdgeError whose hint says what to use).
"""
from __future__ import annotations

import statistics
import time
from typing import cast

from ..records import PROFILE_SCHEMA, ProfileRecord, ProfileRow
from .artifacts import ArtifactRef
from .base import example_input
from .machine import describe_machine
from .registry import get_runner


def profile(ref: ArtifactRef, runs: int = 20, warmup: int = 5, threads: int | None = None,
            options: dict | None = None, runtime: str | None = None) -> ProfileRecord:
    """One "layer_profile" record for an artifact (see the module docstring).

    rows: one per layer the runtime executed, slowest first, each with time_ms (mean per
    inference), share (of the rows' total), calls (over the profiled runs), op_type,
    exec_type, precision and order (its position in the runtime's execution order).
    total_ms: the rows' sum per inference. wall_ms_per_inference: median of `runs` plain
    timed inferences (no profiler, same settings, after `warmup`), measured in this call.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    options = dict(options or {})
    runtime = runtime or ref.runtime
    runner = get_runner(runtime)
    runner.require()
    raw = runner.profile_layers(ref.artifact, ref.manifest, runs, warmup=warmup, threads=threads, **options)

    session = runner.load(ref.artifact, ref.manifest, threads=threads, **options)
    x = example_input(ref.manifest)
    for _ in range(warmup):
        session.run(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(x)
        times.append(1000 * (time.perf_counter() - t0))
    wall = statistics.median(times)
    settings = dict(session.settings)
    del session

    rows = [cast(ProfileRow, {**row, "order": order}) for order, row in enumerate(raw)]
    total = sum(r["time_ms"] for r in rows)
    for r in rows:
        r["share"] = r["time_ms"] / total if total > 0 else 0.0
    rows.sort(key=lambda r: r["time_ms"], reverse=True)
    manifest = ref.manifest
    return {
        "schema_version": PROFILE_SCHEMA, "kind": "layer_profile", "status": "ok",
        "artifact": str(ref.path), "name": ref.name, "runtime": runtime,
        "target": manifest.get("target"), "precision": manifest.get("precision"),
        "runs": runs, "warmup": warmup, "threads": threads, "options": options,
        "session_settings": settings,
        "rows": rows,
        "total_ms": total,
        "wall_ms_per_inference": wall,
        "wall_ms_mean": statistics.fmean(times),
        "profiled_share_of_wall": total / wall if wall > 0 else None,
        "profiler": runner.profiler or runtime,
        "machine": describe_machine(),
    }


def group_by_op_type(record: dict) -> list[dict]:
    """The record's rows summed per op_type, slowest first: op_type, time_ms, share, layers, calls."""
    groups: dict[str, dict] = {}
    for r in record.get("rows", []):
        g = groups.setdefault(r["op_type"], {"op_type": r["op_type"], "time_ms": 0.0, "layers": 0, "calls": 0})
        g["time_ms"] += r["time_ms"]
        g["layers"] += 1
        g["calls"] += r.get("calls", 0)
    total = sum(g["time_ms"] for g in groups.values())
    for g in groups.values():
        g["share"] = g["time_ms"] / total if total > 0 else 0.0
    return sorted(groups.values(), key=lambda g: g["time_ms"], reverse=True)
