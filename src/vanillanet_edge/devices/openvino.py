"""OpenVINO runner: any device `available_devices` lists; reports the precision really used."""
from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from ..errors import VanillaNetEdgeError
from . import peak
from .base import Runner, Session, example_input, resolve_threads, to_artifact_pixels, to_layout

# The precision at the end of an OpenVINO CPU exec_type: brgconv_avx512_I8, jit_avx512_bf16...
_EXEC_PRECISION = re.compile(r"_(i8|u8|i4|u4|i16|u16|i32|i64|bf16|f16|f32|f64|fp16|fp32)$", re.IGNORECASE)


def type_name(t) -> str:
    """OpenVINO element type -> 'f32', 'bf16', 'f16'..."""
    return t.get_type_name() if hasattr(t, "get_type_name") else str(t)


def exec_precision(exec_type: str) -> str | None:
    """'brgconv_avx512_I8' -> 'i8'; None where the kernel name carries no precision."""
    m = _EXEC_PRECISION.search(exec_type or "")
    return m.group(1).lower() if m else None


class _OvSession(Session):
    def __init__(self, compiled, manifest: dict, settings: dict):
        self._request = compiled.create_infer_request()
        self._layout = manifest["input"]["layout"]
        self._manifest = manifest
        # raw-pixel IRs take u8 NHWC (the PrePostProcessor converts inside): feed that dtype
        self._dtype = np.dtype(manifest["input"].get("dtype", "float32"))
        self.batch = manifest["input"]["shape"][0]
        self.settings = settings

    def run(self, x_nchw: np.ndarray) -> np.ndarray:
        x = to_layout(to_artifact_pixels(x_nchw, self._manifest), self._layout)
        result = self._request.infer({0: x.astype(self._dtype, copy=False)})
        return np.asarray(result[0] if 0 in result else next(iter(result.values())))


class OpenVinoRunner(Runner):
    name = "openvino"
    extra = "openvino"
    modules = ("openvino",)
    artifact_suffixes = (".xml",)
    profiler = ("OpenVINO performance counters (PERF_COUNT): get_profiling_info real_time, "
                "cumulative averages differenced around the profiled runs (1 us resolution)")
    peak_precisions = ("fp32", "bf16", "int8")

    def load(self, artifact: Path, manifest: dict, device: str = "CPU", threads: int | None = None,
             precision_hint: str | None = None, performance_hint: str = "LATENCY", **_) -> Session:
        return self._session(artifact, manifest, device, threads, precision_hint, performance_hint)

    def _session(self, artifact: Path, manifest: dict, device: str, threads: int | None,
                 precision_hint: str | None, performance_hint: str, profiling: bool = False) -> _OvSession:

        import openvino as ov

        core = ov.Core()
        config = {"PERFORMANCE_HINT": performance_hint}
        if precision_hint:
            config["INFERENCE_PRECISION_HINT"] = precision_hint
        config["INFERENCE_NUM_THREADS"] = resolve_threads(threads)
        if profiling:
            config["PERF_COUNT"] = True        # ov.properties.enable_profiling
        compiled = core.compile_model(core.read_model(str(artifact)), device, config)
        settings = {"device": device, "performance_hint": performance_hint,
                    "inference_precision": type_name(compiled.get_property("INFERENCE_PRECISION_HINT")),
                    "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
                    "openvino": ov.__version__}
        if profiling and int(compiled.get_property("NUM_STREAMS")) != 1:
            # Counters live in each stream's graph; a request's inferences may land on any of them.
            raise VanillaNetEdgeError(
                f"OpenVINO's per-layer counters need one stream; {performance_hint} compiled "
                f"{compiled.get_property('NUM_STREAMS')}", hint="profile with performance_hint=LATENCY (the default)")
        return _OvSession(compiled, manifest, settings)

    def computed_in(self, precision: str, settings: dict) -> str:
        # The CPU plugin computes float layers in its inference precision: a record's
        # session_settings say which ran; asked-for settings carry the hint.
        if precision == "int8":
            return precision
        short = {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}
        ran = settings.get("inference_precision")
        if ran and precision in ("fp32", "fp16"):
            return short.get(str(ran), str(ran))
        return short.get(settings.get("precision_hint"), precision)

    def peak_unavailable(self, precision: str, machine: dict) -> str | None:
        if precision == "bf16" and not set(machine.get("isa") or ()) & {"avx512_bf16", "amx_bf16"}:
            return ("no avx512_bf16 or amx_bf16 on this CPU: OpenVINO's CPU plugin would run a bf16 "
                    "hint in f32")
        return None

    def probe_peak(self, precision: str, shapes, threads: int, seconds: float, min_calls: int) -> dict:
        return probe_peak(precision, shapes, threads, seconds, min_calls)

    def tuning_options(self, machine: dict, precision: str) -> list[dict]:
        # The CPU plugin computes float layers in bf16 by default where the CPU has bf16
        # (AVX512-BF16 or AMX): faster, less exact. f32 is the exact alternative; for int8
        # artifacts the hint decides the precision of the layers left in float (pools, reorders).
        # Threads: one per physical core (machine.default_threads), as for every runtime.
        hints = ["f32"] + (["bf16"] if {"avx512_bf16", "amx_bf16"} & set(machine.get("isa", [])) else [])
        return [{"precision_hint": h} for h in hints]

    def profile_layers(self, artifact: Path, manifest: dict, runs: int, warmup: int = 5,
                       device: str = "CPU", threads: int | None = None, precision_hint: str | None = None,
                       performance_hint: str = "LATENCY", **_) -> list[dict]:
        """OpenVINO's own performance counters (PERF_COUNT), with the runner's usual settings.

        What get_profiling_info() returns on the CPU plugin (checked on 2026.4, and in its
        source: Graph::GetPerfData / PerfCount) is, per node, the AVERAGE over every inference
        the compiled model has run so far: each inference adds the node's time truncated to
        whole microseconds, real_time = total // count, and status is EXECUTED exactly when that
        average is > 0. Reading it after each run and summing would therefore be wrong, and a
        plain reading at the end would include the warm-up runs (the first inference of a
        compiled model is several times slower, and warming up another compiled model does
        not help: the cost is per compiled model). So: warm up the profiled model, read the
        counters, run `runs` more, read again, and difference the cumulative totals
        (average x inferences). Resolution is OpenVINO's: whole microseconds per node per
        inference, so a layer under ~1 us reads as 0.

        Kept: nodes reported EXECUTED in either reading (ran with a measurable time). Dropped:
        NOT_RUN / OPTIMIZED_OUT ones throughout (fused into a neighbour, in-place no-ops such
        as Reshape, Parameter/Result). OpenVINO does not count calls; its CPU graph runs every
        node once per inference, so calls = runs.
        """
        import openvino as ov

        executed = ov.ProfilingInfo.Status.EXECUTED
        session = self._session(artifact, manifest, device, threads, precision_hint, performance_hint,
                                profiling=True)
        request = session._request
        x = example_input(manifest)
        for _ in range(warmup):
            session.run(x)
        before = {info.node_name: info for info in request.get_profiling_info()} if warmup else {}
        for _ in range(runs):
            session.run(x)
        rows = []
        for info in request.get_profiling_info():
            old = before.get(info.node_name)
            if info.status != executed and (old is None or old.status != executed):
                continue
            total_after = info.real_time.total_seconds() * (warmup + runs)
            total_before = old.real_time.total_seconds() * warmup if old is not None else 0.0
            rows.append({"name": info.node_name, "op_type": info.node_type, "exec_type": info.exec_type,
                         "precision": exec_precision(info.exec_type), "calls": runs,
                         "time_ms": max(0.0, 1000.0 * (total_after - total_before) / max(runs, 1))})
        return rows


# ============================================================================ matmul peak probe

_OV_HINT = {"fp32": "f32", "bf16": "bf16", "int8": None}   # int8: the runner's default, no hint


def _ov_model(shape: peak.Shape, precision: str):
    """Parameter x[M, K] -> MatMul(x, W[K, N] constant). int8: FakeQuantize levels=256 on x
    (range [0, 4]: u8) and a per-output-channel symmetric FakeQuantize levels=255 on W (i8), the
    pattern NNCF's performance preset writes; the CPU plugin's low-precision transformations turn
    it into a u8 x i8 FullyConnected."""
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([shape.m, shape.k], ov.Type.f32, name="x")
    w = peak.weights(shape)
    a, b = x, ops.constant(w)
    if precision == "int8":
        f32 = lambda v: ops.constant(np.asarray(v, dtype=np.float32))  # noqa: E731
        a = ops.fake_quantize(x, f32(0.0), f32(4.0), f32(0.0), f32(4.0), 256)
        hi = np.abs(w).max(axis=0, keepdims=True)               # [1, N]: per output channel
        b = ops.fake_quantize(b, f32(-hi), f32(hi), f32(-hi), f32(hi), 255)
    return ov.Model([ops.matmul(a, b, False, False)], [x], f"peak_{precision}")


def probe_peak(precision: str, shapes, threads, seconds: float, min_calls: int) -> dict:
    """The OpenVINO matmul peak probe of devices/peak.py (OpenVinoRunner.probe_peak)."""
    import openvino as ov

    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if _OV_HINT[precision]:
        config["INFERENCE_PRECISION_HINT"] = _OV_HINT[precision]
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    rows, exec_types, precisions, actual_threads, hints = [], [], [], None, set()
    for shape in shapes:
        compiled = core.compile_model(_ov_model(shape, precision), "CPU", config)
        actual_threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        hints.add(hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint))
        gemm = _ov_gemm_nodes(compiled)
        exec_types += [g["exec_type"] for g in gemm]
        precisions += [g["runtime_precision"] for g in gemm]
        request = compiled.create_infer_request()
        x = peak.inputs(shape)
        infer = functools.partial(request.infer, {0: x}, share_inputs=True, share_outputs=True)
        times = peak.time_calls(infer, seconds, min_calls)
        rows.append(peak.shape_result(shape, times) | {
            "exec_type": ", ".join(g["exec_type"] for g in gemm)})
        del infer, request, compiled
    verified = bool(precisions) and set(precisions) <= peak.KERNEL_PRECISIONS[precision]
    notes = {
        "fp32": "MatMul with a constant weight, INFERENCE_PRECISION_HINT f32",
        "bf16": "MatMul with a constant weight, INFERENCE_PRECISION_HINT bf16 (f32 input reordered "
                "to bf16 inside the call)",
        "int8": "FakeQuantize levels=256 on the input (u8) and per-channel levels=255 on the weight "
                "(i8), as NNCF writes them; the call includes quantising the f32 input",
    }
    return peak.entry(rows, exec_types, precisions, verified, actual_threads,
                  notes[precision] + f"; PERFORMANCE_HINT LATENCY; openvino {ov.__version__}",
                  inference_precision=", ".join(sorted(hints)))


def _ov_gemm_nodes(compiled) -> list[dict]:
    """The MatMul / FullyConnected nodes of the compiled runtime model with their kernel
    (`primitiveType`, what profiling reports as exec_type) and runtime precision."""
    nodes = []
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        get = lambda key: rt[key].astype(str) if key in rt else ""  # noqa: E731
        if get("layerType") in ("FullyConnected", "MatMul", "Gemm"):
            nodes.append({"name": op.get_friendly_name(), "exec_type": get("primitiveType"),
                          "runtime_precision": get("runtimePrecision")})
    return nodes
