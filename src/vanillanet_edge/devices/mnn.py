"""MNN runner (Alibaba's engine, as Android apps ship it): the Interpreter/Session API on CPU.

Threads: `numThread` from resolve_threads, as every runner. Precision: MNN's CPU backend
computes in fp16 under precision "low" where the CPU has fp16 arithmetic (ARMv8.2; MNN says
which at load: "The device supports: ... fp16:1"), else in fp32. fp32 artifacts always load
with "high", so fp32 is never silently computed in fp16. fp16 artifacts (fp16-stored
weights) load with "low": the setting apps use to get fp16 maths where the chip has it.
INT8 artifacts load with "high": only the layers MNN keeps in float (the ReLUs between int8
convs, here) depend on it.

MNN's native code prints to descriptor 1 ("The device supports: ..." when the module loads,
"MNN use high precision" per session), below Python: `native_quiet` points descriptor 1
elsewhere around those calls, so our console stays ours.

Profiling: MNN's own per-op timing (its timeProfile tool) brackets each op with the
Interpreter's begin/end callbacks (runSessionWithCallBackInfo); profile_layers does the same
from Python and says so. Only numpy and MNN are imported (this module ships in the runner
bundle), MNN inside functions.
"""
from __future__ import annotations

import contextlib
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import ArtifactDamagedError, VanillaNetEdgeError
from .base import Runner, Session, example_input, resolve_threads, to_artifact_pixels

# Our names -> MNN BackendConfig::PrecisionMode (MNNForwardType.h; Python takes the integer).
PRECISION_MODES = {"normal": 0, "high": 1, "low": 2}
# The mode each artifact precision loads with unless a setting (tune) says otherwise.
DEFAULT_MODE = {"fp32": "high", "fp16": "low", "int8": "high"}
_CONV_TYPES = ("Convolution", "ConvolutionDepthwise")
INT8_TAG = "DT_INT8"     # MNN appends "[ DT_INT8 ] " to the type of ops it runs on int8 tensors


@contextlib.contextmanager
def native_quiet(into=None):
    """Descriptor 1 to /dev/null (or the open file `into`) for the block: MNN's C++ printf.
    Python's own stdout is flushed first and left alone."""
    try:
        sys.stdout.flush()
    except (AttributeError, ValueError):
        pass
    try:
        saved = os.dup(1)
    except OSError:              # no descriptor 1 at all: nothing to keep quiet
        yield
        return
    target = into.fileno() if into is not None else os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(target, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        if into is None:
            os.close(target)


_BANNER: dict[str, str] = {}    # MNN's "The device supports: i8sdot:0, fp16:0, ..." as a dict


def import_mnn():
    """The MNN module, its native banner kept out of the console (and read: which CPU
    features MNN found). Never MNN.tools: importing it loads the wheel's telemetry logger,
    which runs `pip install` through os.system and calls a remote server."""
    if "MNN" in sys.modules:
        return sys.modules["MNN"]
    with tempfile.TemporaryFile() as banner:
        with native_quiet(banner):
            import MNN
        banner.seek(0)
        text = banner.read().decode("utf-8", "replace")
    _BANNER.update(re.findall(r"(\w+):\s*(\d+)", text.partition("supports:")[2]))
    return MNN


def fp16_arithmetic() -> bool | None:
    """Whether MNN found fp16 arithmetic on this CPU, from its banner; when MNN was loaded
    before us (banner unseen): False off ARM (MNN's CPU fp16 kernels are ARM's), else None."""
    import_mnn()
    if "fp16" in _BANNER:
        return _BANNER["fp16"] == "1"
    return None if platform.machine().lower() in ("arm64", "aarch64") or "arm" in platform.machine().lower() \
        else False


def _mode_for(manifest: dict, mode: str | None) -> str:
    mode = mode or DEFAULT_MODE.get(manifest.get("precision", "fp32"), "high")
    if mode not in PRECISION_MODES:
        raise VanillaNetEdgeError(f"unknown MNN precision mode '{mode}'",
                                  hint=f"choose one of: {', '.join(PRECISION_MODES)}")
    return mode


class _MnnSession(Session):
    def __init__(self, mnn, interpreter, session, manifest: dict, settings: dict):
        self._mnn = mnn
        self._it = interpreter
        self._session = session
        self._manifest = manifest
        self._input = interpreter.getSessionInput(session)
        self._shape = tuple(int(d) for d in self._input.getShape())
        self.batch = int(self._shape[0])
        self.settings = settings

    def _feed(self, x_nchw: np.ndarray) -> None:
        x = np.ascontiguousarray(to_artifact_pixels(x_nchw, self._manifest), dtype=np.float32)
        if x.shape != self._shape:
            raise VanillaNetEdgeError(
                f"input of shape {x.shape} does not fit this artifact's {self._shape}",
                hint=f"feed NCHW batches of {self.batch} (Session.run_all splits and pads for you)")
        self._host = x        # MNN's tensor points into this array: keep it alive while it runs
        mnn = self._mnn
        self._input.copyFrom(mnn.Tensor(self._shape, mnn.Halide_Type_Float, x, mnn.Tensor_DimensionType_Caffe))

    def _result(self) -> np.ndarray:
        mnn = self._mnn
        out = self._it.getSessionOutput(self._session)
        shape = tuple(int(d) for d in out.getShape())
        host = mnn.Tensor(shape, mnn.Halide_Type_Float, np.zeros(shape, np.float32),
                          mnn.Tensor_DimensionType_Caffe)
        out.copyToHostTensor(host)
        return np.array(host.getNumpyData(), dtype=np.float32).reshape(shape[0], -1)

    def run(self, x_nchw: np.ndarray) -> np.ndarray:
        self._feed(x_nchw)
        self._it.runSession(self._session)
        return self._result()

    def run_with_callbacks(self, x_nchw: np.ndarray, before, after) -> np.ndarray:
        self._feed(x_nchw)
        self._it.runSessionWithCallBackInfo(self._session, before, after)
        return self._result()


class MnnRunner(Runner):
    name = "mnn"
    extra = "mnn"
    modules = ("MNN",)
    artifact_suffixes = (".mnn",)
    profiler = ("MNN op callbacks (Interpreter.runSessionWithCallBackInfo): each op timed between its "
                "begin and end callback, as MNN's timeProfile tool does")

    def availability(self) -> tuple[bool, str]:
        try:
            import_mnn()
        except ImportError:
            pass                  # the base class says which module is missing
        return super().availability()

    def require(self) -> None:
        self.availability()
        super().require()

    def load(self, artifact: Path, manifest: dict, threads: int | None = None,
             precision_mode: str | None = None, **_) -> Session:
        mnn = import_mnn()
        threads = resolve_threads(threads)
        mode = _mode_for(manifest, precision_mode)
        path = Path(artifact)
        if path.is_dir():
            path = path / manifest.get("artifact", {}).get("file", "model.mnn")
        if not path.is_file():
            raise VanillaNetEdgeError(f"no MNN model at {path}", hint="point at a folder written by `convert`")
        try:
            with native_quiet():
                interpreter = mnn.Interpreter(str(path))
                session = interpreter.createSession({"backend": "CPU", "numThread": threads,
                                                     "precision": PRECISION_MODES[mode]})
        except Exception as exc:       # MNN raises a bare Exception for a file it cannot read
            raise ArtifactDamagedError(f"artifact {path} is damaged: MNN cannot load it ({exc})",
                                       hint="the file may be cut or not an MNN model; re-convert it with "
                                            "`vanillanet-edge convert`") from None
        settings = {"threads": threads, "precision_mode": mode, "backend": "CPU",
                    "fp16_arithmetic": fp16_arithmetic(), "mnn": mnn.version()}
        return _MnnSession(mnn, interpreter, session, manifest, settings)

    def tuning_options(self, machine: dict, precision: str) -> list[dict]:
        # Threads as for ONNX Runtime (one per physical core by default; one per logical core
        # can win with SMT; one thread where an app needs the other cores). For fp16 artifacts
        # "high" (fp32 maths on the fp16 weights) is the alternative to the default "low" (fp16
        # maths where the CPU has it); fp32 artifacts stay "high" (exact).
        cores = machine.get("default_threads") or machine.get("physical_cores") or 1
        logical = machine.get("logical_cores") or cores
        options: list[dict] = [{}]
        if precision == "fp16":
            options.append({"precision_mode": "high"})
        if logical != cores:
            options.append({"threads": logical})
        if cores > 1:
            options.append({"threads": 1})
        return options

    def computed_in(self, precision: str, settings: dict) -> str:
        # fp16 artifacts hold fp16-rounded weights: fp16 accuracy whatever the mode. An fp32
        # artifact under "low" (never our default) is fp16 maths only where MNN found fp16
        # arithmetic: a record's session settings say whether it did; asked-for settings say fp16.
        if precision in ("int8", "fp16"):
            return precision
        mode = settings.get("precision_mode") or DEFAULT_MODE.get(precision, "high")
        if mode == "low" and settings.get("fp16_arithmetic") is not False:
            return "fp16"
        return "fp32"

    def profile_layers(self, artifact: Path, manifest: dict, runs: int, warmup: int = 5,
                       threads: int | None = None, precision_mode: str | None = None, **_) -> list[dict]:
        """Each op timed between MNN's begin and end callbacks (runSessionWithCallBackInfo):
        MNN runs one op at a time and its threads join before the end callback, so the span
        is the op's own time plus the callback's cost (a few microseconds from Python)."""
        session = self.load(artifact, manifest, threads=threads, precision_mode=precision_mode)
        assert isinstance(session, _MnnSession)
        x = example_input(manifest)
        for _warm in range(warmup):
            session.run(x)
        rows: dict[str, dict] = {}
        started: dict[str, float] = {}

        def before(tensors, info) -> bool:
            started[info.getName()] = time.perf_counter()
            return True

        def after(tensors, info) -> bool:
            end = time.perf_counter()
            name = info.getName()
            row = rows.get(name)
            if row is None:
                op_type, tag = _split_type(info.getType())
                row = rows[name] = {"name": name, "op_type": op_type, "exec_type": "CPU",
                                    "precision": tag, "calls": 0, "_s": 0.0}
            row["calls"] += 1
            row["_s"] += end - started.pop(name, end)
            return True

        for _run in range(runs):
            session.run_with_callbacks(x, before, after)
        out = []
        for row in rows.values():
            row["time_ms"] = 1000.0 * row.pop("_s") / runs
            out.append(row)
        return out


def _split_type(raw: str) -> tuple[str, str]:
    """MNN's runtime op type "Convolution [ DT_INT8 ] " -> ("Convolution", "i8"); float ops
    carry no tag (their precision is the session's)."""
    raw = str(raw).strip()
    if INT8_TAG in raw:
        return raw.split("[", 1)[0].strip(), "i8"
    return raw, "f32"


def runtime_op_types(artifact: Path, manifest: dict, threads: int = 1) -> list[tuple[str, str]]:
    """(op name, op type as MNN reports it at run time) for one inference: the ops MNN really
    runs, int8 ones tagged "[ DT_INT8 ]" (the proof an INT8 artifact computes in int8)."""
    session = MnnRunner().load(artifact, manifest, threads=threads)
    assert isinstance(session, _MnnSession)
    seen: list[tuple[str, str]] = []

    def before(tensors, info) -> bool:
        seen.append((info.getName(), str(info.getType()).strip()))
        return True

    session.run_with_callbacks(example_input(manifest), before, lambda tensors, info: True)
    return seen


def count_runtime_convs(ops: list[tuple[str, str]]) -> dict:
    convs = [(n, t) for n, t in ops if _split_type(t)[0] in _CONV_TYPES]
    return {"runtime_convs": len(convs), "runtime_conv_int8": sum(INT8_TAG in t for _, t in convs)}
