"""Core ML runner: Core ML itself on macOS; our numpy MIL interpreter everywhere else.

Labelled honestly: session.settings["engine"] says which one produced the numbers. The
interpreter is for verification and calibration, not for latency.

Sessions take the harness's normalized NCHW batch and convert it to the artifact's input
(to_artifact_pixels): an image-input artifact gets RGB 0-255 values (the interpreter as a
float array, Core ML as one 8-bit PIL image per prediction). A classifier's probabilities
dictionary comes back as an (N, classes) float32 array in class-index order.
"""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from ..errors import VanillaNetEdgeError
from .base import Runner, Session, to_artifact_pixels

COMPUTE_UNITS = ("CPU_ONLY", "CPU_AND_GPU", "ALL")


def on_macos() -> bool:
    return platform.system() == "Darwin"


class _MilSession(Session):
    def __init__(self, program, manifest: dict):
        self.program = program
        self._manifest = manifest
        self._input = manifest["input"]["name"]
        self._output = manifest["output"]["name"]
        self.batch = manifest["input"]["shape"][0]
        self.settings = {"engine": "numpy MIL interpreter (vanillanet-edge; Core ML cannot predict off macOS)",
                         "platform": platform.system()}

    def run(self, x_nchw: np.ndarray, record=None) -> np.ndarray:
        x = to_artifact_pixels(x_nchw, self._manifest)
        # a classifier's dictionary output is already an (N, classes) array in label order
        return np.asarray(self.program.run({self._input: x}, record=record)[self._output], np.float32)


class _CoreMlSession(Session):
    def __init__(self, model, manifest: dict, compute_units: str):
        self._model = model
        self._manifest = manifest
        self._input = manifest["input"]["name"]
        self._output = manifest["output"]["name"]
        self.batch = manifest["input"]["shape"][0]
        spec = model.get_spec()
        self._image = spec.description.input[0].type.WhichOneof("Type") == "imageType"
        self._labels = class_labels_of(spec)
        self.settings = {"engine": "Core ML", "compute_units": compute_units}

    def run(self, x_nchw: np.ndarray) -> np.ndarray:
        x = to_artifact_pixels(x_nchw, self._manifest)
        if not self._image:
            return self._read(self._model.predict({self._input: x}))
        from PIL import Image

        rows = []
        for chw in x:      # an image input takes one 8-bit RGB image per prediction
            hwc = np.clip(np.rint(chw.transpose(1, 2, 0)), 0, 255).astype(np.uint8)
            rows.append(self._read(self._model.predict({self._input: Image.fromarray(hwc)})))
        return np.concatenate(rows)

    def _read(self, out: dict) -> np.ndarray:
        y = out[self._output]
        if self._labels is not None:       # the classifier's {label: probability} dictionary
            return np.asarray([[y[label] for label in self._labels]], np.float32)
        return np.asarray(y, np.float32)


def class_labels_of(spec) -> list[str] | None:
    """A classifier's labels in class-index order (its ML Program's classify op), else None."""
    if spec.WhichOneof("Type") != "mlProgram" or "main" not in spec.mlProgram.functions:
        return None
    fn = spec.mlProgram.functions["main"]
    if fn.opset not in fn.block_specializations:
        return None
    for op in fn.block_specializations[fn.opset].operations:
        if op.type == "classify":
            values = op.inputs["classes"].arguments[0].value.immediateValue.list.values
            return [str(v.immediateValue.tensor.strings.values[0]) for v in values]
    return None


class CoreMlRunner(Runner):
    name = "coreml"
    extra = "coreml"
    modules = ("coremltools",)
    artifact_suffixes = (".mlpackage",)
    version_in_report = False      # off macOS the engine is our interpreter, not coremltools

    def availability(self) -> tuple[bool, str]:
        ok, why = super().availability()
        if not ok:
            return ok, why
        if on_macos():
            return True, "Core ML (macOS)"
        return True, "numpy MIL interpreter: accuracy and verification only, no latency (Core ML needs macOS)"

    def latency_availability(self) -> tuple[bool, str]:
        if not on_macos():
            return False, ("Core ML runs only on macOS (and iOS); here a numpy MIL interpreter "
                           "verifies and evaluates Core ML artifacts, but its speed says nothing about Core ML")
        return super().latency_availability()

    def load(self, artifact: Path, manifest: dict, engine: str = "auto",
             compute_units: str = "ALL", **_) -> Session:
        """engine: 'auto' (Core ML on macOS, interpreter elsewhere), 'coreml' or 'interpreter'."""
        if engine == "auto":
            engine = "coreml" if on_macos() else "interpreter"
        if engine == "interpreter":
            from .coreml_mil import MILProgram, UnsupportedMILOp
            try:
                return _MilSession(MILProgram.load(artifact), manifest)
            except UnsupportedMILOp as exc:     # a program beyond the interpreter, not a damaged file
                raise VanillaNetEdgeError(f"the numpy MIL interpreter cannot run {artifact}: {exc}",
                                          hint="run it with Core ML on macOS") from None
        import coremltools as ct
        if compute_units not in COMPUTE_UNITS:
            raise VanillaNetEdgeError(f"compute_units must be one of {COMPUTE_UNITS}, got {compute_units!r}")
        model = ct.models.MLModel(str(artifact), compute_units=getattr(ct.ComputeUnit, compute_units))
        return _CoreMlSession(model, manifest, compute_units)
