"""LiteRT runner: `ai_edge_litert`'s interpreter, or the older `tflite_runtime` package.

Kernels: "xnnpack" = the default op resolver (the XNNPACK delegate is applied by default, as
in the apps that ship LiteRT), "builtin" = BUILTIN_WITHOUT_DEFAULT_DELEGATES (TFLite's own
kernels, no XNNPACK). "auto" = xnnpack for every model: one kernel choice for bench, eval and
verification alike. The built-in kernels win on some ops (XNNPACK's int8 7x7 depthwise on x86)
and lose badly on others (ResNet-50 int8: 5x slower), so choosing them per model is `tune`'s
job and is always stated, never a silent default. Sessions take NCHW float32, feed the
artifact's layout, and quantize/dequantize at the edges of int8-I/O models.
"""
from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from ..errors import BackendMissingError, ProfilingNotOfferedError, VanillaNetEdgeError
from .base import Runner, Session, resolve_threads, to_artifact_pixels, to_layout

# (module holding Interpreter, pip distribution), in order of preference
INTERPRETERS = (("ai_edge_litert.interpreter", "ai-edge-litert"),
                ("tflite_runtime.interpreter", "tflite-runtime"))
KERNELS = ("auto", "xnnpack", "builtin")
_INT_TYPES = (np.int8, np.uint8, np.int16)
# Per-op profiling: ai-edge-litert's Python API (Interpreter, CompiledModel; checked in 2.3.0)
# has no profiler hook, and the package ships no benchmark_model binary. LiteRT's own tool
# for it is benchmark_model --enable_op_profiling=true (tensorflow/lite/tools/benchmark/README.md,
# "Profiling model operators"; prebuilt binaries: ai.google.dev/edge/litert/models/measurement).
BENCHMARK_MODEL_DOCS = "https://ai.google.dev/edge/litert/models/measurement#native_benchmark_binary"


def find_interpreter():
    """(interpreter module, package name, version) of the first LiteRT interpreter importable."""
    for module, dist in INTERPRETERS:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        try:
            ver = version(dist)
        except PackageNotFoundError:
            ver = "unknown"
        return mod, module.partition(".")[0], ver
    return None, None, None


class _LiteRtSession(Session):
    def __init__(self, interpreter, manifest: dict, settings: dict):
        self._it = interpreter
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        want_in = manifest.get("input", {}).get("name")
        want_out = manifest.get("output", {}).get("name")
        self._in = next((d for d in inputs if d["name"] == want_in), inputs[0])
        self._out = next((d for d in outputs if d["name"] == want_out), outputs[0])
        self._layout = manifest["input"]["layout"]
        self._manifest = manifest
        self._shape = tuple(int(d) for d in self._in["shape"])
        self.batch = int(self._shape[0])
        self.settings = settings

    def run(self, x_nchw: np.ndarray) -> np.ndarray:
        x = to_layout(to_artifact_pixels(np.asarray(x_nchw, dtype=np.float32), self._manifest), self._layout)
        if x.shape != self._shape:
            raise VanillaNetEdgeError(
                f"input of shape {x.shape} ({self._layout}) does not fit this artifact's {self._shape}",
                hint=f"feed NCHW batches of {self.batch} (Session.run_all splits and pads for you)")
        self._it.set_tensor(self._in["index"], quantize(x, self._in))
        self._it.invoke()
        return dequantize(self._it.get_tensor(self._out["index"]), self._out)


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """float32 -> the tensor's dtype, with its scale/zero point for integer tensors."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return np.ascontiguousarray(x, dtype=dtype)
    scale, zero = detail["quantization"]
    if not scale:
        raise VanillaNetEdgeError(f"input tensor {detail['name']} is {dtype} without quantization parameters")
    info = np.iinfo(dtype)
    q = np.round(x / np.float32(scale)) + zero
    return np.ascontiguousarray(np.clip(q, info.min, info.max).astype(dtype))


def dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    """The tensor's values as float32 (integer tensors through their scale/zero point)."""
    y = np.asarray(y)
    if y.dtype.kind == "f":
        return y.astype(np.float32)
    scale, zero = detail["quantization"]
    if not scale:
        raise VanillaNetEdgeError(f"output tensor {detail['name']} is {y.dtype} without quantization parameters")
    return ((y.astype(np.float32) - np.float32(zero)) * np.float32(scale)).astype(np.float32)


def is_int8(manifest: dict, input_detail: dict | None = None) -> bool:
    """An int8 model: by its manifest's precision or I/O dtype, or its input tensor's dtype."""
    if manifest.get("precision") == "int8" or manifest.get("input", {}).get("dtype") in ("int8", "uint8"):
        return True
    return input_detail is not None and np.dtype(input_detail["dtype"]).type in _INT_TYPES


class LiteRtRunner(Runner):
    name = "litert"
    extra = "tflite"
    modules = ("ai_edge_litert",)
    artifact_suffixes = (".tflite",)
    op_probe = True         # no op profiler in ai-edge-litert's Python API: devices/op_probe.py
    layer_profiling_hint = ("ai-edge-litert's Python API has no op profiler; LiteRT's benchmark_model tool "
                            "has one: benchmark_model --graph=model.tflite --enable_op_profiling=true "
                            f"(prebuilt binaries: {BENCHMARK_MODEL_DOCS})")

    def tuning_options(self, machine: dict, precision: str) -> list[dict]:
        # XNNPACK against the built-in kernels (their speed order differs by op and precision,
        # e.g. XNNPACK's int8 7x7 depthwise on x86), at one thread per physical core.
        return [{"kernels": k} for k in ("xnnpack", "builtin")]

    def profile_layers(self, artifact: Path, manifest: dict, runs: int, warmup: int = 5,
                       threads: int | None = None, kernels: str = "auto", **_) -> list[dict]:
        """Not offered from Python; the error's hint is the benchmark_model command that matches
        this runner's settings (threads, and --use_xnnpack=false where it runs builtin kernels)."""
        artifact = Path(artifact)
        if artifact.is_dir():
            artifact = artifact / manifest.get("artifact", {}).get("file", "model.tflite")
        builtin = kernels == "builtin"
        command = (f"benchmark_model --graph={artifact} --enable_op_profiling=true "
                   f"--num_threads={resolve_threads(threads)} "
                   f"--warmup_runs={warmup} --num_runs={runs}" + (" --use_xnnpack=false" if builtin else ""))
        raise ProfilingNotOfferedError(
            f"per-layer profiling is not offered by the {self.name} runtime from Python "
            f"(ai-edge-litert's Interpreter has no op profiler)",
            hint=f"run LiteRT's own profiler, the benchmark_model tool (prebuilt linux_x86-64_benchmark_model: "
                 f"{BENCHMARK_MODEL_DOCS}):\n    {command}"
                 + ("\n  (--use_xnnpack=false: the built-in kernels, as kernels=builtin runs)"
                    if builtin else ""))

    def availability(self) -> tuple[bool, str]:
        _, package, ver = find_interpreter()
        if package is None:
            return False, ("neither ai_edge_litert nor tflite_runtime is installed; "
                           f"pip install 'vanillanet-edge[{self.extra}]' (or tflite-runtime on a device)")
        if package == "ai_edge_litert":
            return True, f"ok: ai_edge_litert {ver}"
        return True, f"ok: tflite_runtime {ver} (ai_edge_litert not installed)"

    def require(self) -> None:
        if find_interpreter()[1] is None:
            raise BackendMissingError(f"the {self.name} runtime", self.extra, "ai_edge_litert")

    def load(self, artifact: Path, manifest: dict, threads: int | None = None, kernels: str = "auto",
             **_) -> Session:
        if kernels not in KERNELS:
            raise VanillaNetEdgeError(f"unknown LiteRT kernels '{kernels}'", hint=f"choose one of: {', '.join(KERNELS)}")
        threads = resolve_threads(threads)
        self.require()
        mod, package, ver = find_interpreter()
        artifact = Path(artifact)
        if artifact.is_dir():
            artifact = artifact / manifest.get("artifact", {}).get("file", "model.tflite")
        if not artifact.is_file():
            raise VanillaNetEdgeError(f"LiteRT model not found: {artifact}")

        used = "xnnpack" if kernels == "auto" else kernels
        resolver = (mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if used == "builtin"
                    else mod.OpResolverType.AUTO)
        interpreter = mod.Interpreter(model_path=str(artifact), num_threads=threads,
                                      experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
        delegated = _delegate_nodes(interpreter)
        if used == "xnnpack" and delegated == 0:
            used = "builtin"   # the XNNPACK delegate took nothing: say what really ran
        settings = {
            "kernels": used,
            "kernels_requested": kernels,
            "op_resolver": resolver.name,
            "delegate_nodes": delegated,
            "threads": threads,
            "interpreter": f"{package} {ver}",
        }
        return _LiteRtSession(interpreter, manifest, settings)


def _delegate_nodes(interpreter) -> int | None:
    """How many delegate kernels (XNNPACK) the graph was partitioned into; None if unknown."""
    try:
        return sum(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())
    except Exception:  # older tflite_runtime builds lack the private helper
        return None
