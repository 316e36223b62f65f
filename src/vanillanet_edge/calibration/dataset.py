"""Calibration images for INT8: sampled deterministically, preprocessed as at evaluation.

Every toolchain's quantizer is fed from the same `CalibrationSet`, so ranges come from the same
pixels whatever the target, and the manifest can say exactly which images were used.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..images import ImageFolder, Preprocessing, describe_skipped, load_images, skipped_record

MIN_CALIBRATION_IMAGES = 8   # fewer gives ranges that depend on a handful of pixels
# The method "auto": each converter resolves it to its own default_int8_method (converters/base.py
# Converter.for_target) before quantizing; manifests record the resolved method.
AUTO_METHOD = "auto"


@dataclass
class CalibrationSet:
    inputs: np.ndarray                     # (N, 3, H, W) float32, NCHW, preprocessed
    method: str                            # minmax, percentile, entropy, mse (per target), or auto
    seed: int
    source: str                            # the folder
    files_sha256: str                      # hash of the sorted relative file list
    found: int                             # images found in the folder
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (file, why) unreadable
    excluded_layers: tuple[str, ...] = ()  # torch module names kept in float (see layers below)
    percentile: float = 99.99              # for method "percentile"

    def describe(self) -> dict:
        return {"method": self.method, "samples": int(len(self.inputs)), "seed": self.seed,
                "source": self.source, "files_sha256": self.files_sha256, "found": self.found,
                **skipped_record(self.skipped),
                "excluded_layers": list(self.excluded_layers),
                **({"percentile": self.percentile} if self.method == "percentile" else {})}

    def with_excluded(self, layers) -> "CalibrationSet":
        from dataclasses import replace
        return replace(self, excluded_layers=tuple(layers))


def load_calibration(folder: str | Path, prep: Preprocessing, samples: int = 128, seed: int = 0,
                     method: str = "minmax", min_count: int = MIN_CALIBRATION_IMAGES) -> CalibrationSet:
    """Sample `samples` images by `seed` from an ImageFolder or flat folder; skip unreadable ones."""
    images = ImageFolder(folder)
    chosen = images.sample(samples, seed)
    loaded = load_images(chosen, prep, min_count=0, where=folder)
    if len(loaded.inputs) < min_count:
        raise DataError(
            f"only {len(loaded.inputs)} usable calibration images in {folder} "
            f"({len(images)} found, {len(loaded.skipped)} unreadable); INT8 needs at least {min_count}"
            + ("\n" + describe_skipped(loaded.skipped) if loaded.skipped else ""),
            hint="point --calib-data at a folder of real images like those the model will see")
    root = Path(folder)
    names = "\n".join(str(p.relative_to(root)) for p in loaded.paths)
    return CalibrationSet(loaded.inputs, method, seed, str(root), hashlib.sha256(names.encode()).hexdigest(),
                          len(images), [(str(p), why) for p, why in loaded.skipped])
