"""The runner interface: is a runtime available here, load an artifact, run a batch.

Runners always take and return NCHW float32 batches; a session converts to the artifact's
own layout (from its manifest), so harnesses and verification never branch on the runtime.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import time
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from ..errors import ArtifactDamagedError, BackendMissingError, ProfilingNotOfferedError, VanillaNetEdgeError


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def _guard_load(method):
    """A runner's load (or profile_layers) whose runtime failures are ArtifactDamagedError: a
    runtime raising on an artifact that passed the manifest's checks (InvalidProtobuf, "not a
    valid Flatbuffer", ...) means a damaged or inconsistent artifact, and says so. Our own
    errors (unknown settings, a missing runtime) pass unchanged."""
    @functools.wraps(method)
    def guarded(self, artifact, manifest, *args, **settings):
        try:
            return method(self, artifact, manifest, *args, **settings)
        except VanillaNetEdgeError:
            raise
        except ImportError:
            self.require()          # the runtime is missing: BackendMissingError names the extra
            raise
        except MemoryError:
            raise VanillaNetEdgeError(f"the {self.name} runtime ran out of memory loading {artifact}",
                                      hint="free memory on this machine, or use a smaller artifact") from None
        except Exception as exc:
            raise ArtifactDamagedError(f"artifact {artifact} is damaged: the {self.name} runtime cannot load it "
                                       f"({_first_line(exc)})") from exc
    guarded._guarded = True         # type: ignore[attr-defined]
    return guarded


def _guard_run(run):
    """A session's run whose runtime failures are ArtifactDamagedError: the harness feeds exactly
    the manifest's input shape, so a runtime refusing it means model and manifest disagree."""
    @functools.wraps(run)
    def guarded(self, x_nchw, *args, **kwargs):
        try:
            return run(self, x_nchw, *args, **kwargs)
        except VanillaNetEdgeError:
            raise
        except MemoryError:
            raise
        except Exception as exc:
            raise ArtifactDamagedError(f"the artifact fails to run on an input of shape {tuple(x_nchw.shape)} as "
                                       f"its manifest describes ({_first_line(exc)}): the model and its "
                                       "manifest disagree (edited or damaged)") from exc
    guarded._guarded = True         # type: ignore[attr-defined]
    return guarded


class Session(ABC):
    """A loaded artifact, ready to run batches of the size it was built for.

    Every subclass's `run` is wrapped (`_guard_run`, in __init_subclass__): a runtime's own
    exception becomes an ArtifactDamagedError, so no caller sees a runtime traceback."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is not None and not getattr(run, "_guarded", False):
            cls.run = _guard_run(run)

    batch: int
    settings: dict          # what was actually used (threads, precision, delegate...)
    machine: dict | None = None     # where it runs, when that is not this machine (remote devices)
    compute_seconds: float = 0.0    # time spent in run_all's runs (a device's own clock if remote)

    @abstractmethod
    def run(self, x_nchw: np.ndarray) -> np.ndarray:
        """(batch, 3, H, W) float32 -> (batch, classes) float32 logits."""

    def run_all(self, x_nchw: np.ndarray) -> np.ndarray:
        """Any number of inputs, fed in the artifact's fixed batch size (last batch padded)."""
        outs = []
        for i in range(0, len(x_nchw), self.batch):
            chunk = x_nchw[i:i + self.batch]
            n = len(chunk)
            if n < self.batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - n, axis=0)])
            t0 = time.perf_counter()
            outs.append(np.asarray(self.run(np.ascontiguousarray(chunk, dtype=np.float32)))[:n])
            self.compute_seconds += time.perf_counter() - t0
        return np.concatenate(outs).astype(np.float32)

    def close(self) -> None:
        """Release what the session holds (a remote process); local sessions need nothing."""


class Runner(ABC):
    """One runtime. Its class attributes are the facts the rest of the code reads through the
    registry (devices/registry.py) instead of keeping lists of its own; runner modules import
    their runtime inside functions, so reading them is cheap and needs nothing installed."""

    name: str                       # e.g. "onnxruntime"
    extra: str                      # pip extra providing it
    modules: tuple[str, ...] = ()
    artifact_suffixes: tuple[str, ...] = ()   # which artifacts it can run
    # Whether the report's machine line names its version (its pip packages are declared on
    # its registry line: a bare device describes itself before numpy or any runner imports).
    version_in_report: bool = True
    # The runtime's own per-layer profiler, as every profile record names it (None: no profiler).
    profiler: str | None = None
    # Whether devices/op_probe.py can time this runtime's layers one by one as single-op
    # artifacts (for runtimes without a profiler of their own: `vanillanet-edge profile`).
    op_probe: bool = False
    # Matmul peak probe (devices/peak.py): the precisions it is asked for; () = no probe.
    peak_precisions: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        # Every runner's load and profile_layers, in one place: a runtime's exception on an
        # artifact becomes ArtifactDamagedError ("damaged: re-convert"), never a traceback.
        super().__init_subclass__(**kwargs)
        for name in ("load", "profile_layers"):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_guarded", False):
                setattr(cls, name, _guard_load(method))

    def install_hint(self) -> str:
        return f"pip install 'vanillanet-edge[{self.extra}]'"

    def availability(self) -> tuple[bool, str]:
        """(available, reason). Never raises."""
        for module in self.modules:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                return False, f"{module} not installed ({exc}); pip install 'vanillanet-edge[{self.extra}]'"
        return True, "ok"

    def latency_availability(self) -> tuple[bool, str]:
        """Whether latency measured here means anything (a stand-in engine's would not)."""
        return self.availability()

    def require(self) -> None:
        ok, _ = self.availability()
        if not ok:
            # The first module that is absent, else the first that fails to import (a broken install).
            missing = next((m for m in self.modules if importlib.util.find_spec(m) is None), None)
            if missing is None:
                missing = next((m for m in self.modules if not _imports(m)), self.modules[0])
            raise BackendMissingError(f"the {self.name} runtime", self.extra, missing)

    @abstractmethod
    def load(self, artifact: Path, manifest: dict, **settings) -> Session:
        """Load an artifact (its path and manifest) with runtime settings (threads...)."""

    def tuning_options(self, machine: dict, precision: str) -> list[dict]:
        """Runtime settings worth trying for an artifact of `precision` on `machine` (its
        describe_machine() record, which may be a remote device's): what `tune` searches.
        Each dict is passed to `load` as settings; {} means the runtime's defaults."""
        return [{}]

    def computed_in(self, precision: str, settings: dict) -> str:
        """The precision the maths runs in for an artifact of `precision` run with `settings`
        (the settings asked for, or a record's session_settings): a runner whose float
        artifacts can compute in another precision (an OpenVINO bf16 hint) says so."""
        return precision

    def peak_unavailable(self, precision: str, machine: dict) -> str | None:
        """Why the matmul peak probe of `precision` cannot run on `machine` (its
        describe_machine() record), before trying; None when it can."""
        return None

    def probe_peak(self, precision: str, shapes, threads: int, seconds: float, min_calls: int) -> dict:
        """Time one MatMul graph per shape in `precision` with the runtime's own API and return
        devices/peak.py's entry (peak._entry); only runners with peak_precisions offer it."""
        raise NotImplementedError(f"the {self.name} runtime has no matmul peak probe")

    @property
    def layer_profiling_hint(self) -> str:
        """What to tell a user whose runtime has no per-layer profiler here (runners override)."""
        from .registry import runner_classes

        offered = " and ".join(c.name for c in runner_classes() if c.profiler)
        return ("per-layer profiles come from the runtime's own profiler; "
                f"{offered} artifacts offer one. For this runtime, "
                "`vanillanet-edge bench` gives whole-model latency")

    def profile_layers(self, artifact: Path, manifest: dict, runs: int, warmup: int = 5,
                       **settings) -> list[dict]:
        """Per-layer times from the runtime's OWN profiler (never hand-timed layers).

        Loads the artifact with the same settings `load` takes (so the profiled configuration
        is the benchmarked one), runs `warmup` untimed inferences, then `runs` profiled ones
        on `example_input(manifest)`. One row per layer/node the runtime executed:
          name       node/layer name as the runtime reports it (after its graph optimizations)
          op_type    the runtime's op/node type (e.g. Conv, QLinearConv, Convolution, Reorder)
          time_ms    mean time per inference (summed over the layer's calls in one inference)
          calls      how many times it ran during the profiled runs (= runs for most layers)
          exec_type  what the runtime says it ran: OpenVINO's kernel (brgconv_avx512_I8...);
                     ONNX Runtime's execution provider (its trace names no kernel)
          precision  what the runtime reports: the kernel's precision suffix (OpenVINO), the
                     node's first input type (ONNX Runtime: u8 for QLinearConv...); or None
        Rows come in the runtime's order; runners without a profiler raise
        ProfilingNotOfferedError (a VanillaNetEdgeError) with a hint.
        """
        raise ProfilingNotOfferedError(f"per-layer profiling is not offered by the {self.name} runtime",
                                       hint=self.layer_profiling_hint)


def _imports(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def example_input(manifest: dict, seed: int = 0) -> np.ndarray:
    """A fixed random NCHW float32 batch of the artifact's input shape (its manifest's)."""
    shape = list(manifest["input"]["shape"])
    nchw = [shape[0], shape[3], shape[1], shape[2]] if manifest["input"].get("layout") == "NHWC" else shape
    return np.random.default_rng(seed).standard_normal(nchw).astype(np.float32)


def check_outputs(outputs: np.ndarray, classes: int | None, where) -> None:
    """Outputs an artifact gave for its manifest's input: one finite score per class, else
    ArtifactDamagedError (never a NaN% or a label looked up past the end of the list)."""
    if outputs.ndim != 2 or (classes is not None and outputs.shape[1] != classes):
        raise ArtifactDamagedError(f"artifact {where} is damaged: it outputs shape {tuple(outputs.shape)}, its "
                                   f"manifest says {classes} classes per image")
    bad = int((~np.isfinite(outputs)).any(axis=1).sum())
    if bad:
        raise ArtifactDamagedError(f"artifact {where} is damaged: its outputs for {bad} of {len(outputs)} "
                                   "image(s) are not finite numbers (NaN or infinity)")


def pinned_settings(manifest: dict, overrides: dict | None = None) -> dict:
    """The runtime settings an artifact's manifest pins (written by `tune`), under the caller's
    own: what bench, eval and a deployed app load the artifact with."""
    return {**manifest.get("runtime_settings", {}), **(overrides or {})}


def resolve_threads(threads) -> int:
    """The thread count a session runs with: the caller's, else one per physical core
    (machine.default_threads). Always an integer, so every record states the number it used."""
    from .machine import default_threads

    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        from ..errors import VanillaNetEdgeError
        raise VanillaNetEdgeError(f"threads must be a positive integer, got {threads!r}")
    return threads


def to_layout(x_nchw: np.ndarray, layout: str) -> np.ndarray:
    return np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1) if layout == "NHWC" else x_nchw)


def to_artifact_pixels(x_nchw: np.ndarray, manifest: dict) -> np.ndarray:
    """The harness's NCHW float32 batch (normalized, as every runner takes it) -> the pixel
    convention of the artifact's input, still NCHW: unchanged for "normalized" artifacts; for
    "raw" ones (manifest input.pixels) RGB values 0-255, x * std + mean scaled by 255 with the
    manifest's preprocessing, and rounded and clipped to whole pixels when the input is an
    integer tensor (uint8: the values an app's camera buffer holds)."""
    spec = manifest.get("input", {})
    if spec.get("pixels", "normalized") != "raw":
        return x_nchw
    prep = manifest["preprocessing"]
    mean = np.asarray(prep["mean"], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(prep["std"], dtype=np.float32).reshape(1, 3, 1, 1)
    raw = (np.asarray(x_nchw, dtype=np.float32) * std + mean) * np.float32(255.0)
    if np.dtype(spec.get("dtype", "float32")).kind in "iu":
        return np.clip(np.rint(raw), 0, 255).astype(np.float32)
    return raw.astype(np.float32)
