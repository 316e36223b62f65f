"""One artifact's layer profile, wherever it runs: the body of `vanillanet-edge profile`.

`profile_artifact(ref)` is called in this process for the `local` device (remote/workdir.Here)
and by the device runner (`python runner.pyz profile < job.json`, remote/runner.py) on any
other, so a record is made the same way on every device. It asks the runtime's own profiler
(profiling.profile); a runtime without one (ProfilingNotOfferedError) gets the op probe when
its runner offers one (Runner.op_probe) and it is asked for, with the matmul peak of the
artifact's precision measured by the runtimes of the machine this runs on (so the device's
own peak, never the host's). Our errors become "failed" records and a runtime with neither
profiler nor probe a "not_offered" one; every record carries this machine's description.
Device-side code: numpy, flatbuffers and the runtimes only (no torch, no converters).
"""
from __future__ import annotations

from ..errors import ProfilingNotOfferedError, VanillaNetEdgeError
from .artifacts import ArtifactRef
from .machine import describe_machine
from .profiling import profile
from .registry import get_runner


def profile_artifact(ref: ArtifactRef, runs: int = 20, warmup: int = 5, threads: int | None = None,
                     options: dict | None = None, op_probe: bool = True, peak: bool = True,
                     probe_seconds: float = 0.1) -> dict:
    """One "layer_profile" record of `ref` on this machine (module docstring). `options` are
    runner settings (--set); `op_probe` / `peak`: the CLI's --ops / --peak; `probe_seconds`:
    the op probe's time per layer and round."""
    options = dict(options or {})
    record: dict
    try:
        record = dict(profile(ref, runs=runs, warmup=warmup, threads=threads, options=options))
    except ProfilingNotOfferedError as exc:
        record = not_done(ref, "not_offered", exc)
        if op_probe and get_runner(ref.runtime).op_probe:
            try:
                record = _probe(ref, threads, options, peak, probe_seconds)
            except VanillaNetEdgeError as exc2:
                record = not_done(ref, "failed", exc2)
    except VanillaNetEdgeError as exc:
        record = not_done(ref, "failed", exc)
    record.setdefault("machine", describe_machine())
    return record


def _probe(ref: ArtifactRef, threads: int | None, options: dict, peak: bool, seconds: float) -> dict:
    """The op probe's record (devices/op_probe.py), with this machine's matmul peak."""
    from .op_probe import matmul_peak, probe_ops

    peak_gmacs, note = (matmul_peak(ref.manifest.get("precision") or "fp32", threads) if peak
                        else (None, "not measured (--no-peak)"))
    return probe_ops(ref.path if ref.path.is_dir() else ref.artifact, ref.manifest, threads=threads,
                     kernels=options.get("kernels", "auto"), peak_gmacs=peak_gmacs, peak_note=note,
                     seconds=seconds)


def not_done(ref: ArtifactRef, status: str, exc: Exception) -> dict:
    """A "layer_profile" record without rows: status "not_offered" or "failed", the reason and hint."""
    return {"schema_version": 1, "kind": "layer_profile", "status": status, "artifact": str(ref.path),
            "name": ref.name, "runtime": ref.runtime, "target": ref.manifest.get("target"),
            "precision": ref.manifest.get("precision"), "reason": exc.args[0] if exc.args else str(exc),
            "hint": getattr(exc, "hint", None), "rows": []}
