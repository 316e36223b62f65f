"""The runner interface: is a runtime available here, load an artifact, run a batch.

Runners always take and return NCHW float32 batches; a session converts to the artifact's
own layout (from its manifest), so harnesses and verification never branch on the runtime.
"""
from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from ..errors import BackendMissingError


class Session(ABC):
    """A loaded artifact, ready to run batches of the size it was built for."""

    batch: int
    settings: dict          # what was actually used (threads, precision, delegate...)

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
            outs.append(np.asarray(self.run(np.ascontiguousarray(chunk, dtype=np.float32)))[:n])
        return np.concatenate(outs).astype(np.float32)


class Runner(ABC):
    name: str                       # e.g. "onnxruntime"
    extra: str                      # pip extra providing it
    modules: tuple[str, ...] = ()
    artifact_suffixes: tuple[str, ...] = ()   # which artifacts it can run

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
            missing = next(m for m in self.modules if importlib.util.find_spec(m) is None)
            raise BackendMissingError(f"the {self.name} runtime", self.extra, missing)

    @abstractmethod
    def load(self, artifact: Path, manifest: dict, **settings) -> Session:
        """Load an artifact (its path and manifest) with runtime settings (threads...)."""


def to_layout(x_nchw: np.ndarray, layout: str) -> np.ndarray:
    return np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1) if layout == "NHWC" else x_nchw)
