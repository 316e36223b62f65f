"""PyTorch eager runner: the baseline a user would otherwise run (a deploy checkpoint)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import Runner, Session


class _TorchSession(Session):
    def __init__(self, model, batch: int, settings: dict):
        self._model = model
        self.batch = batch
        self.settings = settings

    @torch.no_grad()
    def run(self, x_nchw: np.ndarray) -> np.ndarray:
        return self._model(torch.from_numpy(x_nchw)).numpy()


class TorchRunner(Runner):
    name = "torch"
    extra = "dev"
    modules = ("torch",)
    artifact_suffixes = (".pth", ".pt", ".safetensors")

    def load(self, artifact: Path, manifest: dict, threads: int | None = None, **_) -> Session:
        from ..model.adapool import replace_adaptive_max_pools
        from ..model.checkpoint import load_checkpoint
        from ..model.fuse import fuse_model

        if threads:
            torch.set_num_threads(threads)
        ckpt = load_checkpoint(artifact)
        model = fuse_model(ckpt.model)
        size = manifest["input"]["shape"][2] if manifest.get("input") else 224
        model = replace_adaptive_max_pools(model, size).eval()
        batch = manifest.get("input", {}).get("shape", [1])[0]
        return _TorchSession(model, batch, {"threads": torch.get_num_threads(), "torch": torch.__version__})
