"""What a checkpoint expects as input: its size, its preprocessing, and real images to check it on."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError
from ..images import Preprocessing, load_folder
from ..model.checkpoint import LoadedCheckpoint


def preprocessing_of(ckpt: LoadedCheckpoint, input_size: int | None = None) -> Preprocessing:
    """The checkpoint's own preprocessing when it records one, else ImageNet evaluation's."""
    if "preprocessing" in ckpt.meta and (input_size is None or input_size == ckpt.meta.get("input_size")):
        return Preprocessing.from_dict(ckpt.meta["preprocessing"])
    return Preprocessing.imagenet(input_size or 224)


def input_size_of(ckpt: LoadedCheckpoint, input_size: int | None = None) -> int:
    size = input_size or ckpt.meta.get("input_size") or 224
    ckpt.config.check_input_size(size)
    return size


def real_inputs_for(ckpt: LoadedCheckpoint, data: str | Path | None, size: int,
                    limit: int = 32, skipped: list | None = None) -> tuple[torch.Tensor | None, str]:
    """Real images to verify on: the folder given, else the val split the net was trained on.
    Unreadable files are skipped; their (file, why) are appended to `skipped` when given."""
    if data is not None and not Path(data).is_dir():
        raise DataError(f"image folder not found: {data}", hint="pass an existing folder to --data")
    candidates = [Path(data)] if data else []
    trained_on = ckpt.meta.get("trained_on")
    if trained_on:
        candidates.append(Path(trained_on) / "val")
    for folder in candidates:
        if folder.is_dir():
            imgs = load_folder(folder, preprocessing_of(ckpt, size), limit=limit, seed=0)
            if skipped is not None:
                skipped.extend(imgs.skipped)
            return torch.from_numpy(imgs.inputs), f"real images from {folder}"
    return None, "none available (pass --data DIR to verify on real images)"
