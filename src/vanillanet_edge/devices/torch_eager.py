"""PyTorch eager runner: the baseline a user would otherwise run (a deploy checkpoint).

torch and the model code are imported inside functions: this module ships in the device runner
bundle (the registry names it there) but only runs where the model code is.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Runner, Session, resolve_threads, to_artifact_pixels
from .registry import EAGER_RUNTIME


class _TorchSession(Session):
    def __init__(self, model, batch: int, settings: dict, manifest: dict | None = None):
        self._model = model
        self._manifest = manifest or {}
        self.batch = batch
        self.settings = settings

    def run(self, x_nchw: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self._model(torch.from_numpy(to_artifact_pixels(x_nchw, self._manifest))).numpy()


class TorchRunner(Runner):
    name = EAGER_RUNTIME
    extra = "dev"
    modules = ("torch",)
    artifact_suffixes = (".pth", ".pt", ".safetensors")

    def load(self, artifact: Path, manifest: dict, threads: int | None = None, **_) -> Session:
        import torch

        from ..model.adapool import replace_adaptive_max_pools
        from ..model.checkpoint import load_checkpoint
        from ..model.fuse import fuse_model

        torch.set_num_threads(resolve_threads(threads))
        size = manifest["input"]["shape"][2] if manifest.get("input") else 224
        if Path(artifact).suffix == ".pt" and manifest.get("target") == EAGER_RUNTIME:
            model = _eager_artifact(Path(artifact), manifest)     # converters/eager.py wrote it
        else:
            model = fuse_model(load_checkpoint(artifact).model)
        model = replace_adaptive_max_pools(model, size).eval()
        batch = manifest.get("input", {}).get("shape", [1])[0]
        return _TorchSession(model, batch, {"threads": torch.get_num_threads(), "torch": torch.__version__},
                             manifest)


def _eager_artifact(path: Path, manifest: dict):
    """The manifest's architecture with the artifact's state_dict (weights only, strict)."""
    import torch

    from ..model.baselines import architecture_for

    model = architecture_for(manifest["model"])
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()
