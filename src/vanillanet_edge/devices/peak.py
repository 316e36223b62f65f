"""Matmul peak per runtime and precision, measured through the runtimes that run the artifacts.

`measure_peaks()` times one MatMul graph per (runtime, precision), built in memory with the
runtime's own API (no file is left behind), so the peak comes from the same kernels the models
get: OpenVINO's CPU plugin (f32, bf16, and int8 via the FakeQuantize pattern NNCF writes) and
ONNX Runtime's CPU execution provider (f32, and int8 via the QDQ pattern `quantize_static`
writes). Each result says which kernel really ran (OpenVINO: the `primitiveType` /
`runtimePrecision` of the MatMul node in the compiled runtime model, the same as the
profiling `exec_type`; ONNX Runtime: the op types in its profile after graph fusion) and whether
that kernel is of the asked precision; a probe that ran in another precision is reported as
unavailable, never as a peak.

Usage:
    from vanillanet_edge.devices.peak import measure_peaks, peak_for
    peaks = measure_peaks()                      # ~20 s with the default settings
    peak_for(peaks, "openvino", "int8")          # GMAC/s, or None where it was not measured
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

PRECISIONS = ("fp32", "bf16", "int8")


@dataclass(frozen=True)
class Shape:
    """One GEMM, y[M, N] = x[M, K] @ w[K, N]; MACs = M * N * K."""
    label: str
    m: int
    n: int
    k: int

    @property
    def macs(self) -> int:
        return self.m * self.n * self.k


# Why these shapes. A conv is a GEMM with M = output pixels, K = in_channels * kh * kw and
# N = out_channels; a VanillaNet at 224x224 and batch 1 is almost all 1x1 convs (after fusion),
# the widest and most expensive at 56x56 (M = 3136 pixels) with 512 -> 1024 channels in its
# first stage (K = 512, N = 1024), and ResNet-50's 3x3 convs land in the same K range (64*9 =
# 576 ... 512*9 = 4608 at smaller M). That shape is what the models can hope for. The large square
# GEMM (2048^3, 8.6 GMAC) is the classic peak probe: it amortises per-call costs (quantising the
# activations, reorders, thread wake-up) and fills the cores best. Both are reported; the peak is
# the best of the two, so an artifact's achieved GMAC/s divided by it is an honest fraction.
CONV_SHAPE = Shape("conv1x1 56x56 512->1024", m=3136, n=1024, k=512)
SQUARE_SHAPE = Shape("square 2048", m=2048, n=2048, k=2048)
SHAPES = (CONV_SHAPE, SQUARE_SHAPE)

KERNEL_PRECISIONS = {"fp32": {"f32"}, "bf16": {"bf16"}, "int8": {"u8", "i8"}}


def measure_peaks(precisions=PRECISIONS, runtimes=None, threads: int | None = None,
                  seconds_per_probe: float = 1.5, shapes=SHAPES, min_calls: int = 3) -> dict:
    """Best sustained MatMul rate per runtime and precision on this machine.

    Each (runtime, precision) is timed on every shape in `shapes`: two warm-up calls, then calls
    until `seconds_per_probe` have passed (at least `min_calls`); a shape's rate is M*N*K / the
    fastest call's wall time (the whole inference call: for int8 that includes quantising the
    fp32 input and dequantising the output, as in a model's first and last layer). `threads`:
    intra-op threads (None: one per physical core, as every runner uses: base.resolve_threads).
    `runtimes`: None = every runtime whose runner has a probe (Runner.peak_precisions).

    Returns {"peaks": {runtime: {precision: entry}}, "unavailable": {runtime: {precision:
    {"reason": ...}}}, "machine": describe_machine(), "settings": {...}, "how": "..."}, where an
    entry is {"gmacs_per_s", "m", "n", "k", "shape", "exec_type", "runtime_precision",
    "verified", "threads", "note", "shapes": [per shape: rate, best/median seconds, calls,
    exec_type]}. `verified` is always True in "peaks":
    a probe whose kernel ran in another precision goes to "unavailable" with what it measured.
    """
    from .base import resolve_threads
    from .machine import describe_machine
    from .registry import get_runner, peak_runtimes

    known = peak_runtimes()
    runtimes = known if runtimes is None else tuple(runtimes)
    unknown = [p for p in precisions if p not in PRECISIONS] + [r for r in runtimes if r not in known]
    if unknown:
        raise ValueError(f"unknown precision or runtime {unknown}; known: {PRECISIONS}, {known}")

    threads = resolve_threads(threads)
    machine = describe_machine()
    out = {"peaks": {}, "unavailable": {}, "machine": machine,
           "settings": {"threads": threads, "seconds_per_probe": seconds_per_probe, "min_calls": min_calls,
                        "shapes": [vars(s) | {"macs": s.macs} for s in shapes]},
           "how": ("per runtime and precision, a single MatMul graph built in memory with the runtime's "
                   "own API, timed on each shape after two warm-up calls for about "
                   f"{seconds_per_probe:g} s; GMAC/s = M*N*K / fastest call; peak = best shape")}

    def unavailable(rt, prec, reason, measured=None):
        item = {"reason": reason}
        if measured is not None:
            item["measured"] = measured
        out["unavailable"].setdefault(rt, {})[prec] = item

    for rt in runtimes:
        runner = get_runner(rt)
        if not runner.availability()[0]:
            for prec in precisions:
                unavailable(rt, prec, f"{rt} is not installed ({runner.install_hint()})")
            continue
        for prec in precisions:
            why = runner.peak_unavailable(prec, machine)
            if why:
                unavailable(rt, prec, why)
                continue
            try:
                entry = runner.probe_peak(prec, shapes, threads, seconds_per_probe, min_calls)
            except Exception as exc:  # a probe that breaks must not hide the others
                unavailable(rt, prec, f"probe failed: {type(exc).__name__}: {exc}")
                continue
            if entry["verified"]:
                out["peaks"].setdefault(rt, {})[prec] = entry
            else:
                unavailable(rt, prec, f"{rt} did not run the {prec} probe in {prec}: kernel "
                                      f"{entry['exec_type']}, precision {entry['runtime_precision']}",
                            measured=entry)
    return out


def peak_for(result: dict, runtime: str, precision: str) -> float | None:
    """GMAC/s of a measure_peaks() result for one runtime and precision; None where unavailable."""
    entry = result.get("peaks", {}).get(runtime, {}).get(precision)
    return entry["gmacs_per_s"] if entry else None


def best_peak(result: dict, precision: str) -> tuple[float, str] | None:
    """The highest GMAC/s any runtime reached for `precision` in a measure_peaks() result, and
    that runtime: the machine's peak, for runtimes without a probe of their own (LiteRT)."""
    found = [(entry[precision]["gmacs_per_s"], runtime) for runtime, entry in (result.get("peaks") or {}).items()
             if entry.get(precision)]
    return max(found) if found else None


# ============================================================================ timing

def time_calls(call, seconds: float, min_calls: int) -> list[float]:
    """Wall times of calls to `call` after two warm-ups, for `seconds` (at least min_calls)."""
    call()
    call()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_calls or (time.perf_counter() < deadline and len(times) < 10_000):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times


def shape_result(shape: Shape, times: list[float]) -> dict:
    # Wall clock only: OpenVINO's per-node profiling times lag or smooth over calls (a node's
    # real_time exceeded its own call's wall time here), so they cannot bound the kernel.
    best = min(times)
    return {"shape": shape.label, "m": shape.m, "n": shape.n, "k": shape.k,
            "gmacs_per_s": round(shape.macs / best / 1e9, 2), "best_s": best,
            "median_s": float(np.median(times)), "calls": len(times)}


def entry(rows: list[dict], exec_types: list[str], precisions: list[str], verified: bool,
           threads, note: str, **extra) -> dict:
    best = max(rows, key=lambda r: r["gmacs_per_s"])
    return {"gmacs_per_s": best["gmacs_per_s"], "m": best["m"], "n": best["n"], "k": best["k"],
            "shape": best["shape"], "exec_type": ", ".join(dict.fromkeys(exec_types)),
            "runtime_precision": ", ".join(dict.fromkeys(precisions)), "verified": verified,
            "threads": threads, "note": note, "shapes": rows, **extra}


def inputs(shape: Shape) -> np.ndarray:
    # Non-negative, like post-ReLU activations: the int8 probes quantise them to u8 without clipping much.
    return np.abs(np.random.default_rng(1).standard_normal((shape.m, shape.k))).astype(np.float32)


def weights(shape: Shape) -> np.ndarray:
    return np.random.default_rng(2).standard_normal((shape.k, shape.n)).astype(np.float32)
