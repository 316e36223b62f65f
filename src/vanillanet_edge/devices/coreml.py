"""Core ML runner: Core ML itself on macOS; our numpy MIL interpreter everywhere else.

Labelled honestly: session.settings["engine"] says which one produced the numbers. The
interpreter is for verification and calibration, not for latency.
"""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from .base import Runner, Session

COMPUTE_UNITS = ("CPU_ONLY", "CPU_AND_GPU", "ALL")


def on_macos() -> bool:
    return platform.system() == "Darwin"


class _MilSession(Session):
    def __init__(self, program, manifest: dict):
        self.program = program
        self._input = manifest["input"]["name"]
        self._output = manifest["output"]["name"]
        self.batch = manifest["input"]["shape"][0]
        self.settings = {"engine": "numpy MIL interpreter (vanillanet-edge; Core ML cannot predict off macOS)",
                         "platform": platform.system()}

    def run(self, x_nchw: np.ndarray, record=None) -> np.ndarray:
        return self.program.run({self._input: x_nchw}, record=record)[self._output]


class _CoreMlSession(Session):
    def __init__(self, model, manifest: dict, compute_units: str):
        self._model = model
        self._input = manifest["input"]["name"]
        self._output = manifest["output"]["name"]
        self.batch = manifest["input"]["shape"][0]
        self.settings = {"engine": "Core ML", "compute_units": compute_units}

    def run(self, x_nchw: np.ndarray) -> np.ndarray:
        return np.asarray(self._model.predict({self._input: x_nchw})[self._output])


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
            from .coreml_mil import MILProgram
            return _MilSession(MILProgram.load(artifact), manifest)
        import coremltools as ct
        if compute_units not in COMPUTE_UNITS:
            raise ValueError(f"compute_units must be one of {COMPUTE_UNITS}")
        model = ct.models.MLModel(str(artifact), compute_units=getattr(ct.ComputeUnit, compute_units))
        return _CoreMlSession(model, manifest, compute_units)
