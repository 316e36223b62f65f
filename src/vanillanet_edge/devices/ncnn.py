"""ncnn runner: Tencent's `ncnn` wheel (CPU; what many Android apps ship).

The artifact is a .param (graph, text) + .bin (weights) pair written by pnnx. Its graph takes
one image (C, H, W): ncnn has no batch axis, so a session runs the manifest's batch one image
at a time. fp16 switches follow the artifact's precision: an fp32 artifact runs with fp16
storage, packing and arithmetic off (ncnn turns them on by default where the CPU has F16C or
fp16 arithmetic, which moved logits by ~2.5e-5 where fp32 is ~2e-7); an fp16 artifact (fp16
weights) with them on. fp16 *arithmetic* only happens where the CPU has it (x86 AVX512-FP16,
arm64 asimdhp); elsewhere ncnn stores activations in fp16 and computes in fp32, and the
session settings say which. Imports: numpy and ncnn only (inside functions): the module ships
in the torch-free runner bundle.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

from ..errors import ArtifactDamagedError, VanillaNetEdgeError
from .base import Runner, Session, resolve_threads, to_artifact_pixels

BIN_SUFFIX = ".bin"


def fp16_arithmetic_supported() -> bool:
    """Whether ncnn can compute in fp16 on this CPU (not only store in fp16)."""
    import ncnn

    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64") or machine.startswith("arm"):
        return bool(ncnn.cpu_support_arm_asimdhp())
    # The wheel exposes no x86 fp16 query; its AVX512-FP16 kernels need the CPU flag.
    from .machine import _cpuinfo
    return "avx512_fp16" in (_cpuinfo().get("flags") or "").split()


def weights_path(param: Path) -> Path:
    return param.with_suffix(BIN_SUFFIX)


class _NcnnSession(Session):
    def __init__(self, ncnn, net, manifest: dict, settings: dict):
        self._ncnn = ncnn
        self._net = net
        self._manifest = manifest
        spec = manifest["input"]
        self._in = spec.get("name") or net.input_names()[0]
        self._out = manifest.get("output", {}).get("name") or net.output_names()[0]
        self.batch = int(spec["shape"][0])
        self._chw = tuple(int(d) for d in spec["shape"][1:])
        self.settings = settings

    def run(self, x_nchw: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(to_artifact_pixels(x_nchw, self._manifest), dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != self._chw or len(x) != self.batch:
            raise VanillaNetEdgeError(
                f"input of shape {x.shape} does not fit this artifact's {(self.batch, *self._chw)}",
                hint=f"feed NCHW batches of {self.batch} (Session.run_all splits and pads for you)")
        outs = []
        for image in x:
            # ncnn.Mat wraps the numpy buffer without copying: `image` must outlive the
            # extraction (a Mat over a temporary array segfaults).
            image = np.ascontiguousarray(image)
            mat = self._ncnn.Mat(image)
            with self._net.create_extractor() as ex:
                ex.input(self._in, mat)
                ret, out = ex.extract(self._out)
                if ret != 0:
                    raise VanillaNetEdgeError(f"ncnn failed to compute output '{self._out}' (code {ret})",
                                              hint="check the artifact with `vanillanet-edge convert` again")
                outs.append(np.array(out, dtype=np.float32).reshape(-1))   # a copy, before ex goes
            del mat
        return np.stack(outs)


class NcnnRunner(Runner):
    name = "ncnn"
    extra = "ncnn"
    modules = ("ncnn",)
    artifact_suffixes = (".param",)
    # The wheel has no per-layer profiler (ncnn's own is the NCNN_BENCHMARK build option, not
    # in the PyPI build); `bench` gives whole-model latency.
    profiler = None
    layer_profiling_hint = ("ncnn's per-layer timing is a build option (cmake -DNCNN_BENCHMARK=ON prints each "
                            "layer's time), not in the PyPI wheel; `vanillanet-edge bench` gives whole-model latency")

    def load(self, artifact: Path, manifest: dict, threads: int | None = None, **_) -> Session:
        self.require()
        import ncnn

        param = Path(artifact)
        if param.is_dir():
            param = param / manifest.get("artifact", {}).get("file", "model.ncnn.param")
        weights = weights_path(param)
        for path in (param, weights):
            if not path.is_file():
                raise VanillaNetEdgeError(f"ncnn artifact file not found: {path}",
                                          hint="an ncnn artifact is a .param and a .bin of the same name")
        threads = resolve_threads(threads)
        fp16 = manifest.get("precision") == "fp16"
        arithmetic = fp16 and fp16_arithmetic_supported()
        net = ncnn.Net()
        opt = net.opt
        opt.num_threads = threads
        # fp32 artifacts stay fp32 end to end; fp16 ones (fp16 weights) use ncnn's fp16 paths.
        opt.use_fp16_storage = fp16
        opt.use_fp16_packed = fp16
        opt.use_fp16_arithmetic = fp16
        opt.use_bf16_storage = False
        opt.use_vulkan_compute = False
        # No opt.openmp_blocktime: the Linux wheel is built with gcc's libgomp, where ncnn's
        # block time is a no-op (set_kmp_blocktime(7) leaves get_kmp_blocktime() at 0); idle
        # workers follow libgomp's OMP_WAIT_POLICY / GOMP_SPINCOUNT, recorded below.
        if net.load_param(str(param)) != 0:
            raise ArtifactDamagedError(f"artifact {param.parent} is damaged: ncnn cannot read the graph {param}",
                                       hint="the .param is not an ncnn graph this ncnn version knows (its own "
                                            "message is printed above); re-convert it with `vanillanet-edge convert`")
        if net.load_model(str(weights)) != 0:
            raise ArtifactDamagedError(f"artifact {param.parent} is damaged: ncnn cannot read the weights {weights}",
                                       hint="the .bin does not match its .param (cut or from another model); "
                                            "re-convert it with `vanillanet-edge convert`")
        settings = {"threads": threads, "fp16_storage": fp16, "fp16_arithmetic": arithmetic,
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"), "ncnn": ncnn.__version__}
        return _NcnnSession(ncnn, net, manifest, settings)

    def computed_in(self, precision: str, settings: dict) -> str:
        # fp16 artifacts compute in fp16 only where the CPU has fp16 arithmetic; a session's
        # settings record whether it had (elsewhere: fp16 storage, fp32 maths).
        if precision == "fp16" and settings.get("fp16_arithmetic") is False:
            return "fp32"
        return precision

    def tuning_options(self, machine: dict, precision: str) -> list[dict]:
        # Threads, as for ONNX Runtime: the default is one per physical core; one per logical
        # core can win on SMT machines, one thread where an app needs the other cores.
        cores = machine.get("default_threads") or machine.get("physical_cores") or 1
        logical = machine.get("logical_cores") or cores
        return [{}] + ([{"threads": logical}] if logical != cores else []) + ([{"threads": 1}] if cores > 1 else [])
