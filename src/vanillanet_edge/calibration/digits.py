"""The built-in default data: scikit-learn's bundled handwritten digits, as an ImageFolder.

1,797 real 8x8 scans of handwritten digits ship inside scikit-learn, so the demo and the tests
need no download. They are upscaled to RGB PNGs and split into train and val by a fixed seed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..fileio import atomic_path
from ..images import Preprocessing

DIGITS_SIZE = 32


def digits_preprocessing(size: int = DIGITS_SIZE) -> Preprocessing:
    """Images are written at their final size: no resize or crop, ImageNet normalisation."""
    return Preprocessing(resize=size, crop=size)


def write_digits(out: str | Path, size: int = DIGITS_SIZE, val_fraction: float = 0.2,
                 seed: int = 0) -> dict:
    """Write out/train/<digit>/*.png and out/val/<digit>/*.png; return counts. Atomic."""
    from sklearn.datasets import load_digits

    out = Path(out)
    digits = load_digits()
    images = (digits.images / 16.0 * 255.0).clip(0, 255).astype(np.uint8)
    order = np.random.default_rng(seed).permutation(len(images))
    n_val = int(round(len(images) * val_fraction))
    splits = {"val": order[:n_val], "train": order[n_val:]}
    counts = {}
    with atomic_path(out, is_dir=True) as tmp:
        for split, idx in splits.items():
            for i in idx:
                label = int(digits.target[i])
                folder = tmp / split / str(label)
                folder.mkdir(parents=True, exist_ok=True)
                img = Image.fromarray(images[i], mode="L").resize((size, size), Image.BICUBIC)
                img.convert("RGB").save(folder / f"{i:04d}.png")
            counts[split] = len(idx)
    return {"root": str(out), "size": size, "classes": 10, **counts}
