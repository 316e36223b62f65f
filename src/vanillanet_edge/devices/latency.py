"""Latency as the field measures it: load and first inference apart from steady state, warm-up,
many runs, percentiles, peak memory, achieved GMAC/s; each runtime in its own process.

`measure_in_process` is the worker (run by `python -m vanillanet_edge.devices.worker`);
`bench` starts one worker per (artifact, round), interleaving artifacts across rounds so that
a slow period of a shared machine hits every candidate alike. Where the worker runs is the
caller's choice (`execute`): a local process by default, a remote device over SSH otherwise;
either way the worker reports the machine it ran on.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import VanillaNetEdgeError
from ..records import RESULT_SCHEMA, LatencyRecord, LatencySummary, MedianInterval
from .artifacts import ArtifactRef
from .base import pinned_settings
from .machine import describe_machine
from .registry import get_runner


@dataclass
class BenchSettings:
    runtime: str | None = None        # default: the artifact's own runtime (manifest)
    threads: int | None = None
    warmup: int = 10
    runs: int = 100
    seconds: float | None = None      # run for this long instead of a fixed count
    rounds: int = 3                   # interleaved repeats (fresh process each)
    options: dict = field(default_factory=dict)   # runner settings: kernels, precision_hint, device...


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def summarize_times(times_ms: list[float], batch: int) -> LatencySummary:
    median = statistics.median(times_ms)
    return {"runs": len(times_ms), "median_ms": median, "mean_ms": statistics.fmean(times_ms),
            "std_ms": statistics.pstdev(times_ms), "min_ms": min(times_ms),
            "p10_ms": _percentile(times_ms, 10),
            "p90_ms": _percentile(times_ms, 90), "p99_ms": _percentile(times_ms, 99),
            "throughput_ips": 1000.0 * batch / median if median > 0 else None}


def peak_rss_mib() -> float:
    """This process's peak resident memory, MiB.

    Linux: VmHWM from /proc/self/status. Not getrusage's ru_maxrss: Linux carries that
    high-water mark across fork+exec, so a worker started by a big parent (torch loaded)
    would report the parent's memory. macOS: ru_maxrss, which is in bytes there (KiB on Linux).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 ** 2 if sys.platform == "darwin" else rss / 1024


def load_average() -> float | None:
    """The 1-minute load average, where the system keeps one (not on Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def measure_in_process(ref: ArtifactRef, runtime: str, settings: BenchSettings) -> dict:
    """Load, first inference, warm-up, timed runs. Runs inside the worker process, so the
    availability check and the machine description are those of the machine that times."""
    runner = get_runner(runtime)
    usable, why = runner.latency_availability()
    if not usable:
        return {"status": "unavailable", "reason": why, "machine": describe_machine()}
    runner.require()
    rss_before = peak_rss_mib()
    t0 = time.perf_counter()
    options = pinned_settings(ref.manifest, settings.options)
    threads = settings.threads or options.pop("threads", None)
    options.pop("threads", None)
    session = runner.load(ref.artifact, ref.manifest, threads=threads, **options)
    load_ms = 1000 * (time.perf_counter() - t0)
    shape = list(ref.manifest["input"]["shape"])
    nchw = [shape[0], shape[3], shape[1], shape[2]] if ref.manifest["input"]["layout"] == "NHWC" else shape
    x = np.random.default_rng(0).standard_normal(nchw).astype(np.float32)
    t0 = time.perf_counter()
    session.run(x)
    first_ms = 1000 * (time.perf_counter() - t0)
    for _ in range(settings.warmup):
        session.run(x)
    times: list[float] = []
    cpu_times: list[float] = []
    load_before = load_average()
    deadline = time.perf_counter() + settings.seconds if settings.seconds else None
    while (len(times) < settings.runs) if deadline is None else (time.perf_counter() < deadline):
        c0, t0 = time.process_time(), time.perf_counter()
        session.run(x)
        times.append(1000 * (time.perf_counter() - t0))
        cpu_times.append(1000 * (time.process_time() - c0))
    peak_rss = peak_rss_mib()
    return {"load_ms": load_ms, "first_inference_ms": first_ms, "times_ms": times,
            "cpu_times_ms": cpu_times, "load_average": [load_before, load_average()],
            "logical_cpus": os.cpu_count(),
            "peak_rss_mib": peak_rss, "rss_before_load_mib": rss_before,
            "session_settings": session.settings, "machine": describe_machine(), "status": "ok"}


# Two-sided 95% Student t quantiles by degrees of freedom (1..10); the normal 1.96 beyond.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def median_interval(rounds_ms: list[list[float]]) -> MedianInterval:
    """Where the median of another bench call of the same artifact is expected to fall (95%).

    Two sources of variation: between fresh processes (memory placement, thread pinning,
    the VM's neighbours), seen as the scatter of the per-round medians, and within a
    process, seen as the standard error of the median of its timed runs. A future call's
    median differs from this one's by both twice over (each call has its own error), so
    the half-width is t * sqrt(2 * (s_rounds^2 / n + se_median^2)). The reported interval
    also always covers every round median. benchmarks/repeatability.py checks it.
    """
    medians = [statistics.median(r) for r in rounds_ms]
    all_times = np.asarray([t for r in rounds_ms for t in r])
    center = float(np.median(all_times))
    # Robust spread of single runs (MAD scaled to a std), then the median's standard error.
    mad_std = 1.4826 * float(np.median(np.abs(all_times - center)))
    se_median = 1.2533 * mad_std / np.sqrt(len(all_times))
    n = len(medians)
    s_rounds = statistics.stdev(medians) if n > 1 else 0.0
    t = _T95[n - 2] if 2 <= n <= len(_T95) + 1 else 1.96
    half = t * float(np.sqrt(2 * (s_rounds ** 2 / n + se_median ** 2)))
    # Never below the fastest run seen: a median cannot beat every single run.
    low = max(center - half, float(all_times.min()))
    return {"low_ms": min(low, *medians), "high_ms": max(center + half, *medians),
            "level": 0.95, "method": "prediction interval for another call's median "
            "(between-round scatter + within-round standard error)"}


def _run_worker(ref: ArtifactRef, runtime: str, settings: BenchSettings, timeout: float) -> dict:
    job = {"artifact": str(ref.path), "runtime": runtime, "settings": settings.__dict__}
    proc = subprocess.run([sys.executable, "-m", "vanillanet_edge.devices.worker", "latency"],
                          input=json.dumps(job), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise VanillaNetEdgeError(f"benchmark worker for {ref.path} on {runtime} failed:\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(refs: list[ArtifactRef], settings: BenchSettings, progress=None,
          timeout: float = 1800, execute=None) -> list[LatencyRecord]:
    """One result record per artifact; rounds interleaved across artifacts, each in a fresh process.

    `execute(ref, runtime, settings, timeout) -> worker result` runs one round somewhere
    (default: a local worker process); it raises VanillaNetEdgeError on failure.
    """
    return bench_jobs([(ref, settings) for ref in refs], progress, timeout, execute)


def _per_round(settings: BenchSettings) -> BenchSettings:
    return BenchSettings(**{**settings.__dict__, "runs": max(1, -(-settings.runs // settings.rounds)),
                            "seconds": settings.seconds / settings.rounds if settings.seconds else None})


def bench_jobs(jobs: list[tuple[ArtifactRef, BenchSettings]], progress=None, timeout: float = 1800,
               execute=None) -> list[LatencyRecord]:
    """Like `bench`, each artifact with its own settings (runtime options, threads...): what
    `tune` compares. Rounds are interleaved across all jobs (the most rounds any job asks)."""
    here = execute is None        # only then is a missing machine description this machine's
    execute = execute or _run_worker
    raw: dict[int, list[dict]] = {i: [] for i in range(len(jobs))}
    errors: dict[int, str] = {}
    unavailable: dict[int, str] = {}
    machines: dict[int, dict] = {}     # where an unavailable runtime was asked for
    for r in range(max(s.rounds for _, s in jobs) if jobs else 0):
        for i, (ref, settings) in enumerate(jobs):
            if i in errors or i in unavailable or r >= settings.rounds:
                continue
            runtime = settings.runtime or ref.runtime
            try:
                result = execute(ref, runtime, _per_round(settings), timeout)
            except subprocess.TimeoutExpired:
                errors[i] = f"round {r + 1} of {ref.name} on {runtime} ran past the {timeout:.0f} s timeout"
            except VanillaNetEdgeError as exc:
                errors[i] = str(exc)
            else:
                if result.get("status") == "unavailable":
                    unavailable[i] = result["reason"]
                    machines[i] = result.get("machine")
                elif result.get("status") == "failed":      # the worker's own clean error
                    errors[i] = str(result.get("error") or "the benchmark round failed")
                    machines[i] = result.get("machine")
                else:
                    raw[i].append(result)
            if progress:
                progress(r, i, ref)
    return [_record(ref, settings, raw[i], errors.get(i), unavailable.get(i),
                    machines.get(i) or (describe_machine() if here else None))
            for i, (ref, settings) in enumerate(jobs)]


def _record(ref: ArtifactRef, settings: BenchSettings, rounds: list[dict], error: str | None,
            unavailable: str | None = None, machine: dict | None = None) -> LatencyRecord:
    """One result record; status is ok, failed (an error) or unavailable (cannot be timed here)."""
    runtime = settings.runtime or ref.runtime
    record: LatencyRecord = {"schema_version": RESULT_SCHEMA, "kind": "latency", "artifact": str(ref.path),
              "name": ref.name, "target": ref.manifest.get("target"),
              "precision": ref.manifest.get("precision"), "runtime": runtime,
              "model": ref.manifest.get("model", {}), "input": ref.manifest.get("input", {}),
              "artifact_size_bytes": ref.manifest.get("artifact", {}).get("size_bytes"),
              "settings": {k: v for k, v in settings.__dict__.items()},
              "machine": rounds[-1]["machine"] if rounds else machine,
              "ok": error is None and bool(rounds),
              "status": "unavailable" if unavailable else ("failed" if error or not rounds else "ok")}
    if error:
        record["error"] = error
    if unavailable:
        record["reason"] = unavailable
    if not rounds:
        return record
    times = [t for rnd in rounds for t in rnd["times_ms"]]
    batch = ref.manifest["input"]["shape"][0]
    summary = summarize_times(times, batch)
    macs = ref.manifest.get("model", {}).get("macs")
    record.update({
        "latency": summary,
        "round_medians_ms": [statistics.median(r["times_ms"]) for r in rounds],
        "median_interval_ms": median_interval([r["times_ms"] for r in rounds]),
        "load_ms": statistics.median(r["load_ms"] for r in rounds),
        "first_inference_ms": statistics.median(r["first_inference_ms"] for r in rounds),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in rounds),
        "gmacs_per_s": (macs * batch / (summary["median_ms"] / 1000) / 1e9) if macs else None,
        "session_settings": rounds[-1]["session_settings"],
    })
    extra = _cpu_and_load(rounds, summary["median_ms"])
    if extra:
        record["cpu_ms"] = extra["cpu_ms"]
        record["load_average_max"] = extra["load_average_max"]
        if "load_warning" in extra:
            record["load_warning"] = extra["load_warning"]
    return record


# Below this share of the wall time on the CPU, a 1-thread run was waiting for a core: the
# machine was busy. (Its own wait for memory still counts as CPU time, so a quiet run sits near 1.)
BUSY_CPU_SHARE = 0.8


def _cpu_and_load(rounds: list[dict], wall_median_ms: float) -> dict:
    """Process CPU time per inference beside the wall time, and whether the machine was loaded.

    CPU time (time.process_time around each call) skips the time the process was preempted, so
    at 1 thread it is a latency that holds on a busy machine (docs/backend-notes.md: two loaded
    runs read 114 and 139 ms wall, 58.2 and 56.0 ms CPU). At N threads it sums the threads: a
    cost, not a latency. Workers of older bundles send no CPU times: then nothing is added.
    """
    if not all(r.get("cpu_times_ms") for r in rounds):
        return {}
    cpu = [t for r in rounds for t in r["cpu_times_ms"]]
    cpu_median = statistics.median(cpu)
    threads = (rounds[-1].get("session_settings") or {}).get("threads")
    loads = [v for r in rounds for v in (r.get("load_average") or []) if isinstance(v, (int, float))]
    cpus = rounds[-1].get("logical_cpus")
    out: dict = {"cpu_ms": {"median_ms": cpu_median, "round_medians_ms":
                            [statistics.median(r["cpu_times_ms"]) for r in rounds],
                            "share_of_wall": cpu_median / wall_median_ms if wall_median_ms > 0 else None,
                            "is_latency": threads == 1,
                            "how": "process CPU time around each timed call (time.process_time); a latency "
                                   "at 1 thread, the sum over threads otherwise"},
                 "load_average_max": max(loads) if loads else None}
    warnings = []
    if loads and cpus and max(loads) > cpus:
        warnings.append(f"load average reached {max(loads):.1f} on {cpus} logical CPUs")
    share = out["cpu_ms"]["share_of_wall"]
    if threads == 1 and share is not None and share < BUSY_CPU_SHARE:
        warnings.append(f"the 1-thread run was on a CPU for only {100 * share:.0f}% of its wall time")
    if warnings:
        out["load_warning"] = ("the machine was loaded during this run (" + "; ".join(warnings)
                               + "): wall times may read high; the CPU-time median holds at 1 thread")
    return out
