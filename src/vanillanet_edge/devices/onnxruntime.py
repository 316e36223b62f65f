"""ONNX Runtime runner (CPU; CUDA where a GPU and onnxruntime-gpu are present)."""
from __future__ import annotations

import bisect
import functools
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from . import peak
from .base import Runner, Session, example_input, resolve_threads, to_artifact_pixels, to_layout

# ONNX Runtime's type names in its profiler's input_type_shape -> our short precision names.
_ORT_TYPES = {"float": "f32", "float16": "f16", "bfloat16": "bf16", "double": "f64", "uint8": "u8",
              "int8": "i8", "int16": "i16", "uint16": "u16", "int32": "i32", "int64": "i64", "bool": "bool"}
_KERNEL_SUFFIX = "_kernel_time"


class _OrtSession(Session):
    def __init__(self, sess, manifest: dict, settings: dict):
        self._sess = sess
        self._input = sess.get_inputs()[0].name
        self._layout = manifest["input"]["layout"]
        self._manifest = manifest
        self._dtype = np.dtype(manifest["input"].get("dtype", "float32"))
        self.batch = manifest["input"]["shape"][0]
        self.settings = settings

    def run(self, x_nchw: np.ndarray) -> np.ndarray:
        x = to_layout(to_artifact_pixels(x_nchw, self._manifest), self._layout)
        return self._sess.run(None, {self._input: x.astype(self._dtype, copy=False)})[0]


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"
    extra = "onnx"
    modules = ("onnxruntime",)
    artifact_suffixes = (".onnx",)
    profiler = "ONNX Runtime session profiler (SessionOptions.enable_profiling), Node *_kernel_time events"
    peak_precisions = ("fp32", "bf16", "int8")

    def load(self, artifact: Path, manifest: dict, threads: int | None = None,
             provider: str | None = None, spinning: bool = False, **_) -> Session:
        return self._session(artifact, manifest, threads, provider, spinning)

    def _session(self, artifact: Path, manifest: dict, threads: int | None, provider: str | None,
                 spinning: bool, profile_prefix: str | None = None) -> _OrtSession:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        threads = resolve_threads(threads)
        opts.intra_op_num_threads = threads
        # Spinning threads keep burning CPU after a run and disturb anything timed next to them.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        if profile_prefix:
            opts.enable_profiling = True
            opts.profile_file_prefix = profile_prefix
        available = ort.get_available_providers()
        providers = [provider] if provider else [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                                                 if p in available]
        sess = ort.InferenceSession(str(artifact), opts, providers=providers)
        settings = {"providers": sess.get_providers(), "threads": threads,
                    "spinning": spinning, "onnxruntime": ort.__version__}
        return _OrtSession(sess, manifest, settings)

    def peak_unavailable(self, precision: str, machine: dict) -> str | None:
        if precision == "bf16":
            # Checked with onnxruntime 1.32: a bfloat16 MatMul fails with NOT_IMPLEMENTED on the CPU EP.
            return ("ONNX Runtime's CPU execution provider has no bfloat16 MatMul kernel (a bf16 MatMul "
                    "fails with NOT_IMPLEMENTED; its only bf16 GEMM path is the arm64 "
                    "'mlas.enable_gemm_fastmath_arm64_bfloat16' option for fp32 models), and the ONNX "
                    "artifacts run fp32 or int8")
        return None

    def probe_peak(self, precision: str, shapes, threads: int, seconds: float, min_calls: int) -> dict:
        return probe_peak(precision, shapes, threads, seconds, min_calls)

    def tuning_options(self, machine: dict, precision: str) -> list[dict]:
        # Intra-op threads: the default is one per physical core (machine.default_threads);
        # one thread per logical core (ORT's own default) can win on SMT machines, one thread
        # where the rest of an app needs the other cores.
        cores = machine.get("default_threads") or machine.get("physical_cores") or 1
        logical = machine.get("logical_cores") or cores
        return [{}] + ([{"threads": logical}] if logical != cores else []) + ([{"threads": 1}] if cores > 1 else [])

    def profile_layers(self, artifact: Path, manifest: dict, runs: int, warmup: int = 5,
                       threads: int | None = None, provider: str | None = None,
                       spinning: bool = False, **_) -> list[dict]:
        """ONNX Runtime's own profiler (SessionOptions.enable_profiling, a Chrome trace).

        Warm-up: the warm-up runs go through the SAME profiled session, and are then cut out
        of its trace. A separate warm-up session would not do: what makes first runs slow
        (arena growth, pre-packed weights, thread-pool start) belongs to the session that runs,
        so the profiled session would still be cold. Nor can profiling start after warm-up:
        enable_profiling is fixed when the session is created and Python has no
        start_profiling. Mapping a Python clock reading onto the trace through
        get_profiling_start_time_ns would assume ORT's clock is Python's. Instead the trace
        itself marks every inference with a "model_run" span; node events inside the last
        `runs` spans are the measured ones, with no clock assumption at all.
        """
        with tempfile.TemporaryDirectory(prefix="ort-profile-") as tmp:
            session = self._session(artifact, manifest, threads, provider, spinning,
                                    profile_prefix=str(Path(tmp) / "ort"))
            x = example_input(manifest)
            for _ in range(warmup + runs):
                session.run(x)
            trace = session._sess.end_profiling()       # stops profiling; returns the file's path
            events = json.loads(Path(trace).read_text())
        return aggregate_ort_trace(events, runs)


def aggregate_ort_trace(events: list[dict], runs: int) -> list[dict]:
    """Per-node rows from an ONNX Runtime profile, over the last `runs` inferences it recorded."""
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                   if e.get("cat") == "Session" and e.get("name") == "model_run")
    spans = spans[-runs:] if runs > 0 else []
    starts = [s for s, _ in spans]
    rows: dict[str, dict] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith(_KERNEL_SUFFIX):
            continue
        i = bisect.bisect_right(starts, e["ts"]) - 1
        if i < 0 or e["ts"] > spans[i][1]:
            continue                                   # a warm-up run (or outside any run)
        args = e.get("args", {})
        name = e["name"][:-len(_KERNEL_SUFFIX)]
        row = rows.get(name)
        if row is None:
            inputs = args.get("input_type_shape") or [{}]
            dtype = next(iter(inputs[0]), None) if inputs and isinstance(inputs[0], dict) else None
            row = rows[name] = {"name": name, "op_type": args.get("op_name", "?"),
                                "exec_type": args.get("provider", "?"),
                                "precision": _ORT_TYPES.get(dtype, dtype), "calls": 0, "_us": 0.0}
        row["calls"] += 1
        row["_us"] += float(e.get("dur", 0))
    out = []
    for row in rows.values():
        row["time_ms"] = row.pop("_us") / 1000.0 / max(len(spans), 1)
        out.append(row)
    return out


# ============================================================================ matmul peak probe

_ORT_INT8_OPS = {"MatMulIntegerToFloat", "QLinearMatMul", "MatMulInteger", "DynamicQuantizeMatMul"}


def _ort_model(shape: peak.Shape, precision: str) -> bytes:
    """x[M, K] -> MatMul(x, W[K, N] initializer). int8: the QDQ form quantize_static writes
    (QuantizeLinear/DequantizeLinear u8 on x, DequantizeLinear of a per-column symmetric i8 W),
    which ORT's graph optimizer fuses into an integer MatMul (MLAS u8s8 GEMM: VNNI where present)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = peak.weights(shape)
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


def probe_peak(precision: str, shapes, threads, seconds: float, min_calls: int) -> dict:
    """The ONNX Runtime matmul peak probe of devices/peak.py (OnnxRuntimeRunner.probe_peak)."""
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
            x = peak.inputs(shape)
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
        times = peak.time_calls(functools.partial(sess.run_with_iobinding, binding), seconds, min_calls)
        rows.append(peak.shape_result(shape, times) | {"exec_type": ", ".join(gemm), "ops": ops})
        del sess, binding
    verified = bool(precisions) and set(precisions) <= peak.KERNEL_PRECISIONS[precision]
    notes = {
        "fp32": "MatMul with a constant weight (MLAS sgemm, prepacked)",
        "int8": "QDQ as quantize_static writes it (u8 activations, per-column symmetric i8 weights), "
                "fused by ORT into an integer MatMul; the call includes quantising the f32 input",
    }
    return peak.entry(rows, exec_types, precisions, verified, threads,
                  notes[precision] + f"; intra-op spinning off; onnxruntime {ort.__version__}")
