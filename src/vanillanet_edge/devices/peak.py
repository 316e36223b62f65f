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

import json
import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np

PRECISIONS = ("fp32", "bf16", "int8")
RUNTIMES = ("openvino", "onnxruntime")


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

_KERNEL_PRECISIONS = {"fp32": {"f32"}, "bf16": {"bf16"}, "int8": {"u8", "i8"}}
_OV_HINT = {"fp32": "f32", "bf16": "bf16", "int8": None}   # int8: the runner's default, no hint
_ORT_INT8_OPS = {"MatMulIntegerToFloat", "QLinearMatMul", "MatMulInteger", "DynamicQuantizeMatMul"}
_INSTALL = {"openvino": "pip install 'vanillanet-edge[openvino]'",
            "onnxruntime": "pip install 'vanillanet-edge[onnx]'"}


def measure_peaks(precisions=PRECISIONS, runtimes=RUNTIMES, threads: int | None = None,
                  seconds_per_probe: float = 1.5, shapes=SHAPES, min_calls: int = 3) -> dict:
    """Best sustained MatMul rate per runtime and precision on this machine.

    Each (runtime, precision) is timed on every shape in `shapes`: two warm-up calls, then calls
    until `seconds_per_probe` have passed (at least `min_calls`); a shape's rate is M*N*K / the
    fastest call's wall time (the whole inference call: for int8 that includes quantising the
    fp32 input and dequantising the output, as in a model's first and last layer). `threads`:
    intra-op threads (None: one per physical core, as every runner uses: base.resolve_threads).

    Returns {"peaks": {runtime: {precision: entry}}, "unavailable": {runtime: {precision:
    {"reason": ...}}}, "machine": describe_machine(), "settings": {...}, "how": "..."}, where an
    entry is {"gmacs_per_s", "m", "n", "k", "shape", "exec_type", "runtime_precision",
    "verified", "threads", "note", "shapes": [per shape: rate, best/median seconds, calls,
    exec_type]}. `verified` is always True in "peaks":
    a probe whose kernel ran in another precision goes to "unavailable" with what it measured.
    """
    unknown = [p for p in precisions if p not in PRECISIONS] + [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise ValueError(f"unknown precision or runtime {unknown}; known: {PRECISIONS}, {RUNTIMES}")
    from .base import resolve_threads
    from .machine import describe_machine

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
        try:
            __import__(rt)
        except ImportError:
            for prec in precisions:
                unavailable(rt, prec, f"{rt} is not installed ({_INSTALL[rt]})")
            continue
        for prec in precisions:
            why = _why_not(rt, prec, machine)
            if why:
                unavailable(rt, prec, why)
                continue
            try:
                probe = _probe_openvino if rt == "openvino" else _probe_onnxruntime
                entry = probe(prec, shapes, threads, seconds_per_probe, min_calls)
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


def _why_not(runtime: str, precision: str, machine: dict) -> str | None:
    """Why a (runtime, precision) cannot be probed here, before trying; None when it can."""
    isa = set(machine.get("isa") or ())
    if precision == "bf16":
        if runtime == "onnxruntime":
            # Checked with onnxruntime 1.32: a bfloat16 MatMul fails with NOT_IMPLEMENTED on the CPU EP.
            return ("ONNX Runtime's CPU execution provider has no bfloat16 MatMul kernel (a bf16 MatMul "
                    "fails with NOT_IMPLEMENTED; its only bf16 GEMM path is the arm64 "
                    "'mlas.enable_gemm_fastmath_arm64_bfloat16' option for fp32 models), and the ONNX "
                    "artifacts run fp32 or int8")
        if not isa & {"avx512_bf16", "amx_bf16"}:
            return ("no avx512_bf16 or amx_bf16 on this CPU: OpenVINO's CPU plugin would run a bf16 "
                    "hint in f32")
    return None


# ============================================================================ timing

def _time(call, seconds: float, min_calls: int) -> list[float]:
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


def _shape_result(shape: Shape, times: list[float]) -> dict:
    # Wall clock only: OpenVINO's per-node profiling times lag or smooth over calls (a node's
    # real_time exceeded its own call's wall time here), so they cannot bound the kernel.
    best = min(times)
    return {"shape": shape.label, "m": shape.m, "n": shape.n, "k": shape.k,
            "gmacs_per_s": round(shape.macs / best / 1e9, 2), "best_s": best,
            "median_s": float(np.median(times)), "calls": len(times)}


def _entry(rows: list[dict], exec_types: list[str], precisions: list[str], verified: bool,
           threads, note: str, **extra) -> dict:
    best = max(rows, key=lambda r: r["gmacs_per_s"])
    return {"gmacs_per_s": best["gmacs_per_s"], "m": best["m"], "n": best["n"], "k": best["k"],
            "shape": best["shape"], "exec_type": ", ".join(dict.fromkeys(exec_types)),
            "runtime_precision": ", ".join(dict.fromkeys(precisions)), "verified": verified,
            "threads": threads, "note": note, "shapes": rows, **extra}


def _inputs(shape: Shape) -> np.ndarray:
    # Non-negative, like post-ReLU activations: the int8 probes quantise them to u8 without clipping much.
    return np.abs(np.random.default_rng(1).standard_normal((shape.m, shape.k))).astype(np.float32)


def _weights(shape: Shape) -> np.ndarray:
    return np.random.default_rng(2).standard_normal((shape.k, shape.n)).astype(np.float32)


# ============================================================================ OpenVINO

def _ov_model(shape: Shape, precision: str):
    """Parameter x[M, K] -> MatMul(x, W[K, N] constant). int8: FakeQuantize levels=256 on x
    (range [0, 4]: u8) and a per-output-channel symmetric FakeQuantize levels=255 on W (i8), the
    pattern NNCF's performance preset writes; the CPU plugin's low-precision transformations turn
    it into a u8 x i8 FullyConnected."""
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([shape.m, shape.k], ov.Type.f32, name="x")
    w = _weights(shape)
    a, b = x, ops.constant(w)
    if precision == "int8":
        f32 = lambda v: ops.constant(np.asarray(v, dtype=np.float32))  # noqa: E731
        a = ops.fake_quantize(x, f32(0.0), f32(4.0), f32(0.0), f32(4.0), 256)
        hi = np.abs(w).max(axis=0, keepdims=True)               # [1, N]: per output channel
        b = ops.fake_quantize(b, f32(-hi), f32(hi), f32(-hi), f32(hi), 255)
    return ov.Model([ops.matmul(a, b, False, False)], [x], f"peak_{precision}")


def _probe_openvino(precision: str, shapes, threads, seconds: float, min_calls: int) -> dict:
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
        x = _inputs(shape)
        times = _time(lambda: request.infer({0: x}, share_inputs=True, share_outputs=True),
                      seconds, min_calls)
        rows.append(_shape_result(shape, times) | {
            "exec_type": ", ".join(g["exec_type"] for g in gemm)})
        del request, compiled
    verified = bool(precisions) and set(precisions) <= _KERNEL_PRECISIONS[precision]
    notes = {
        "fp32": "MatMul with a constant weight, INFERENCE_PRECISION_HINT f32",
        "bf16": "MatMul with a constant weight, INFERENCE_PRECISION_HINT bf16 (f32 input reordered "
                "to bf16 inside the call)",
        "int8": "FakeQuantize levels=256 on the input (u8) and per-channel levels=255 on the weight "
                "(i8), as NNCF writes them; the call includes quantising the f32 input",
    }
    return _entry(rows, exec_types, precisions, verified, actual_threads,
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


# ============================================================================ ONNX Runtime

def _ort_model(shape: Shape, precision: str) -> bytes:
    """x[M, K] -> MatMul(x, W[K, N] initializer). int8: the QDQ form quantize_static writes
    (QuantizeLinear/DequantizeLinear u8 on x, DequantizeLinear of a per-column symmetric i8 W),
    which ORT's graph optimizer fuses into an integer MatMul (MLAS u8s8 GEMM: VNNI where present)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = _weights(shape)
    if precision == "int8":
        scale = (np.abs(w).max(axis=0) / 127).astype(np.float32)              # [N]
        wq = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        inits = [numpy_helper.from_array(wq, "wq"), numpy_helper.from_array(scale, "ws"),
                 numpy_helper.from_array(np.zeros(shape.n, np.int8), "wz"),
                 numpy_helper.from_array(np.array(4.0 / 255, np.float32), "xs"),
                 numpy_helper.from_array(np.array(0, np.uint8), "xz")]
        nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
                 helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
                 helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=1),
                 helper.make_node("MatMul", ["xd", "wd"], ["y"])]
    else:
        inits = [numpy_helper.from_array(w, "w")]
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    graph = helper.make_graph(nodes, f"peak_{precision}",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [shape.m, shape.k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [shape.m, shape.n])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _probe_onnxruntime(precision: str, shapes, threads, seconds: float, min_calls: int) -> dict:
    import onnxruntime as ort

    rows, exec_types, precisions = [], [], []
    for shape in shapes:
        with tempfile.TemporaryDirectory(prefix="peak_ort_") as tmp:
            opts = ort.SessionOptions()
            if threads:
                opts.intra_op_num_threads = int(threads)
            # As the runner: spinning threads disturb whatever is timed next to them.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.enable_profiling = True          # only for the warm-up calls: which kernels ran
            opts.profile_file_prefix = os.path.join(tmp, "profile")
            sess = ort.InferenceSession(_ort_model(shape, precision), opts, providers=["CPUExecutionProvider"])
            x = _inputs(shape)
            # Bound input and a preallocated output: no per-call allocation or copy in the timing.
            binding = sess.io_binding()
            binding.bind_cpu_input("x", x)
            binding.bind_ortvalue_output("y", ort.OrtValue.ortvalue_from_shape_and_type(
                [shape.m, shape.n], np.float32, "cpu"))
            for _ in range(2):
                sess.run_with_iobinding(binding)
            with open(sess.end_profiling()) as fh:
                events = json.load(fh)
        nodes = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
        ops = list(dict.fromkeys(e["args"].get("op_name", "?") for e in nodes))
        gemm = [o for o in ops if "MatMul" in o or "Gemm" in o]
        exec_types += [f"{o} ({nodes[0]['args'].get('provider', '?')})" for o in gemm]
        precisions += ["u8" if o in _ORT_INT8_OPS else "f32" for o in gemm]
        times = _time(lambda: sess.run_with_iobinding(binding), seconds, min_calls)
        rows.append(_shape_result(shape, times) | {"exec_type": ", ".join(gemm),
                                                             "ops": ops})
        del sess, binding
    verified = bool(precisions) and set(precisions) <= _KERNEL_PRECISIONS[precision]
    notes = {
        "fp32": "MatMul with a constant weight (MLAS sgemm, prepacked)",
        "int8": "QDQ as quantize_static writes it (u8 activations, per-column symmetric i8 weights), "
                "fused by ORT into an integer MatMul; the call includes quantising the f32 input",
    }
    return _entry(rows, exec_types, precisions, verified, threads,
                  notes[precision] + f"; intra-op spinning off; onnxruntime {ort.__version__}")
