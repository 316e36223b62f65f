"""Image folders and the preprocessing shared by training, calibration and evaluation.

One `Preprocessing` describes how pixels become the network's input; it travels in every
checkpoint we write and every artifact's manifest, so each runtime is fed exactly the same way.
"""
from __future__ import annotations

import random
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}

# Decoded-size bound, ours rather than PIL's process-wide Image.MAX_IMAGE_PIXELS (which other
# code may lower or switch off): a decoded image, and the image after the shorter side is resized,
# may hold at most max(MIN_PIXEL_LIMIT, PIXELS_PER_TARGET_PIXEL * resize**2) pixels. 50 Mpx covers
# camera files (8K is 33 Mpx) at about 200 MB decoded; bigger JPEGs are decoded at 1/2..1/8 scale
# with draft() when that brings them under the bound.
MIN_PIXEL_LIMIT = 50_000_000
PIXELS_PER_TARGET_PIXEL = 16
SKIPPED_LISTED = 100   # skipped files named in a run's JSON (the count is always complete)

# High-depth pixels. PIL's convert("RGB") clips 16-bit grey (modes I;16*) at 255 instead of
# scaling it: a '7' became a mostly white picture and was classified, calibrated on and
# converted silently. Unsigned 16-bit is scaled by its real range, round(v / 257): 65535 / 255
# is exactly 257, so 0 -> 0 and 65535 -> 255, and an 8-bit picture saved as 16-bit (v = 257 x,
# how PIL, libpng and ImageMagick widen it) decodes to the very same 8-bit values. 16-bit RGB(A)
# and LA PNGs and TIFFs already reach us as RGB(A)/LA, PIL keeping the high byte
# (floor(v / 256), the same x for v = 257 x). 32-bit integer (I) and float (F) pixels and
# signed modes record no range (0-1? 0-255? 0-65535? a camera's 12 bits?): guessing one from
# the content would feed a differently scaled picture, so they are skipped with the reason.
UNSIGNED_16 = {"I;16", "I;16L", "I;16B", "I;16N"}


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side to `resize`, centre-crop `crop`, scale to [0,1], normalise."""

    resize: int = 256
    crop: int = 224
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        # A crop larger than the resized shorter side would be padded with black by PIL: the
        # net would silently get a bordered image. Refuse it up front.
        if self.crop < 1 or self.crop > self.resize:
            raise DataError(f"crop {self.crop} must be between 1 and resize {self.resize}",
                            hint="the shorter side is resized to `resize`, then `crop` is cut from its centre")
        if self.interpolation not in _RESAMPLE:
            raise DataError(f"unknown interpolation '{self.interpolation}'",
                            hint="use one of: " + ", ".join(_RESAMPLE))

    @classmethod
    def imagenet(cls, input_size: int = 224, crop_pct: float = 0.875) -> "Preprocessing":
        return cls(resize=int(round(input_size / crop_pct)), crop=input_size)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"])})

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def pixel_limit(self) -> int:
        """The most pixels a decoded image (and its resized copy) may have."""
        return max(MIN_PIXEL_LIMIT, PIXELS_PER_TARGET_PIXEL * self.resize * self.resize)

    def resized_size(self, w: int, h: int) -> tuple[int, int]:
        """(width, height) once the shorter side is `resize`."""
        scale = self.resize / min(w, h)
        return round(w * scale), round(h * scale)

    def size_problem(self, w: int, h: int) -> str | None:
        """Why an image of w x h pixels is refused (too big to decode or to resize), or None."""
        if w < 1 or h < 1:
            return f"image claims {w}x{h} pixels"
        limit = self.pixel_limit
        if w * h > limit:
            return f"image of {w}x{h} pixels is over the {limit:,}-pixel limit for resize {self.resize}"
        rw, rh = self.resized_size(w, h)
        if rw * rh > limit:
            return (f"image of {w}x{h} pixels would be resized to {rw}x{rh}, over the "
                    f"{limit:,}-pixel limit (aspect ratio too extreme)")
        return None

    def __call__(self, image: Image.Image) -> np.ndarray:
        """PIL image -> float32 CHW array."""
        problem = self.size_problem(*image.size)
        if problem:
            raise ValueError(problem)
        image = to_rgb(image)
        w, h = image.size
        scale = self.resize / min(w, h)
        if (w, h) != (round(w * scale), round(h * scale)):
            image = image.resize((round(w * scale), round(h * scale)), _RESAMPLE[self.interpolation])
        w, h = image.size
        left, top = (w - self.crop) // 2, (h - self.crop) // 2
        image = image.crop((left, top, left + self.crop, top + self.crop))
        x = np.asarray(image, dtype=np.float32) / 255.0
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB, high-depth modes scaled by their real range; ValueError (a skip, with the
    reason) for pixels whose range the file does not say. See UNSIGNED_16."""
    mode = image.mode
    if mode in UNSIGNED_16:
        v = np.asarray(image).astype(np.uint32)            # byte order handled by numpy (>u2)
        return Image.fromarray(((v + 128) // 257).astype(np.uint8)).convert("RGB")   # 2-D uint8: L
    if mode in ("I", "F") or mode.startswith(("I;", "F;")):
        kind = "floating-point" if mode.startswith("F") else "32-bit or signed integer"
        raise ValueError(f"{kind} pixels (PIL mode {mode}) have no defined 0-255 range: not decoded; "
                         "save the image as 8-bit or 16-bit PNG/JPEG")
    return image.convert("RGB")


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    label: int | None


class ImageFolder:
    """An ImageFolder (one sub-folder per class, sorted) or a flat folder of unlabelled images."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.exists():
            raise DataError(f"image folder not found: {self.root}", hint="check the path")
        if not self.root.is_dir():
            raise DataError(f"{self.root} is a file; expected a folder of images")
        class_dirs = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if class_dirs:
            self.classes = [p.name for p in class_dirs]
            self.records = [ImageRecord(f, i) for i, d in enumerate(class_dirs) for f in _images_in(d)]
        else:
            self.classes = []
            self.records = [ImageRecord(f, None) for f in _images_in(self.root)]
        if not self.records:
            raise DataError(
                f"no images found in {self.root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))} "
                f"files{' in ' + str(len(class_dirs)) + ' class folders' if class_dirs else ''})",
                hint="point at an ImageFolder (one sub-folder per class) or a folder of images")

    @property
    def labelled(self) -> bool:
        return bool(self.classes)

    def __len__(self) -> int:
        return len(self.records)

    def sample(self, n: int | None, seed: int = 0) -> list[ImageRecord]:
        """A deterministic subset: the same seed and folder always give the same images."""
        if n is None or n >= len(self.records):
            return list(self.records)
        return sorted(random.Random(seed).sample(self.records, n), key=lambda r: str(r.path))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass
class LoadedImages:
    inputs: np.ndarray            # (N, 3, H, W) float32
    labels: np.ndarray | None     # (N,) int64, or None for an unlabelled folder
    paths: list[Path]
    skipped: list[tuple[Path, str]]   # (file, why) of every file that could not be read

    def skipped_record(self, limit: int = SKIPPED_LISTED) -> dict:
        return skipped_record(self.skipped, limit)


def skipped_record(skipped, limit: int = SKIPPED_LISTED) -> dict:
    """What a run's JSON says about files it could not read: {"skipped": n, "skipped_files":
    [{"file", "why"}, ...]} (the first `limit` of them, same layout as the report's)."""
    return {"skipped": len(skipped),
            "skipped_files": [{"file": str(f), "why": why} for f, why in list(skipped)[:limit]]}


def describe_skipped(skipped, limit: int = 10) -> str:
    """One console line per skipped file (at most `limit`, then how many more)."""
    lines = [f"  skipped {f}: {why}" for f, why in list(skipped)[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more")
    return "\n".join(lines)


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (UnidentifiedImageError, ValueError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def read_image(path: str | Path, prep: Preprocessing) -> np.ndarray:
    """Decode one file and preprocess it, never decoding more pixels than `prep` allows.

    Raises whatever the decoder raises on a broken file (load_images turns any of it into a skip).
    """
    with warnings.catch_warnings():
        # PIL's own bomb warning/error uses the process-wide MAX_IMAGE_PIXELS; ours is below.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            w, h = im.size
            if prep.size_problem(w, h) and im.format == "JPEG":
                # JPEG can decode at 1/2..1/8 scale: ask for no less than the resize needs.
                im.draft("RGB", prep.resized_size(w, h))
            problem = prep.size_problem(*im.size)
            if problem:
                raise ValueError(problem)
            im.load()
            return prep(im)


def load_images(records: list[ImageRecord], prep: Preprocessing, min_count: int = 1,
                where: str | Path = "") -> LoadedImages:
    """Decode and preprocess; unreadable files are skipped and reported, never fatal alone.

    Any exception while decoding one file (PIL raises OSError, SyntaxError, ValueError,
    EOFError, struct.error, zlib.error, DecompressionBombError... on broken or hostile files)
    skips that file with the reason; the caller records `skipped` (see skipped_record).
    """
    arrays, labels, paths, skipped = [], [], [], []
    for rec in records:
        try:
            arrays.append(read_image(rec.path, prep))
        except Exception as exc:   # one unreadable file never ends a run (MemoryError included)
            skipped.append((rec.path, _why(exc)))
            continue
        labels.append(rec.label)
        paths.append(rec.path)
    if len(arrays) < min_count:
        raise DataError(
            f"only {len(arrays)} usable images in {where or 'the given files'} "
            f"({len(skipped)} unreadable), need at least {min_count}"
            + ("\n" + describe_skipped(skipped) if skipped else ""),
            hint="add more images or lower the sample count")
    inputs = np.stack(arrays) if arrays else np.zeros((0, 3, prep.crop, prep.crop), np.float32)
    lab = None if not labels or labels[0] is None else np.asarray(labels, dtype=np.int64)
    return LoadedImages(inputs, lab, paths, skipped)


def load_folder(root: str | Path, prep: Preprocessing, limit: int | None = None, seed: int = 0,
                min_count: int = 1) -> LoadedImages:
    folder = ImageFolder(root)
    return load_images(folder.sample(limit, seed), prep, min_count=min_count, where=root)
