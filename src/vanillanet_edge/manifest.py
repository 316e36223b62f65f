"""manifest.json: the artifact's contract (input, layout, preprocessing), provenance and checks.

Versioned (`schema_version`) and validated when read, so harnesses on any device can trust it.
The reader needs the standard library and our fileio/limits only: it ships in the device runner bundle. The writer
side (environment_versions, the manifest's contents) is converters/.

Reading validates the whole contract once (`contract`: a typed view, every bound below) and
that every path the manifest names stays inside its artifact folder (`read_manifest`);
`verified_artifact` then checks the files' sizes and sha256 against the manifest, once per
process for each unchanged file. Everything refused is a ManifestError or an
ArtifactDamagedError (a VanillaNetEdgeError with a hint), never a KeyError further on.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import ArtifactDamagedError, VanillaNetEdgeError
from .fileio import sha256_path, size_bytes
from .limits import MAX_BATCH, MAX_INPUT_SIZE
from .records import MANIFEST_SCHEMA

SCHEMA_VERSION = MANIFEST_SCHEMA
MANIFEST_NAME = "manifest.json"
REQUIRED = {
    "schema_version": int, "target": str, "precision": str, "runtime": str, "artifact": dict,
    "model": dict, "source": dict, "input": dict, "output": dict, "preprocessing": dict,
    "tools": dict, "conversion": dict, "verification": dict,
}

# Bounds of the input contract. MAX_INPUT_SIZE and MAX_BATCH (limits.py) bound every command;
# the rest keep a hostile manifest from making the harness allocate what no artifact needs (one
# input batch is at most 1 GiB of float32).
MAX_RESIZE = 2 * MAX_INPUT_SIZE             # model/checkpoint.py allows the same for a checkpoint's own
MAX_INPUT_VALUES = 1 << 28
MAX_CLASSES = 1_000_000                     # as model/checkpoint.py's META_CHECKS
MAX_MANIFEST_BYTES = 64 << 20               # a million labels fit many times over
LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32", "float16", "uint8", "int8")
PIXELS = ("normalized", "raw")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")    # images.Preprocessing's
PREPROCESSING_KEYS = ("resize", "crop", "interpolation", "mean", "std")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_EDITED = "the manifest was edited or written by another tool; re-convert the artifact with `vanillanet-edge convert`"


class ManifestError(VanillaNetEdgeError):
    def __init__(self, message: str, hint: str | None = _EDITED):
        super().__init__(message, hint)


# ------------------------------------------------------------------ the typed contract

@dataclass(frozen=True)
class InputContract:
    name: str
    shape: tuple[int, int, int, int]    # in `layout`
    layout: str                          # LAYOUTS
    dtype: str                           # DTYPES
    pixels: str                          # PIXELS
    batch: int
    size: int                            # height = width

    @property
    def nchw(self) -> tuple[int, int, int, int]:
        return (self.batch, 3, self.size, self.size)


@dataclass(frozen=True)
class PreprocessingContract:
    resize: int
    crop: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class FileEntry:
    name: str                            # relative to the artifact folder, inside it
    sha256: str                          # fileio.sha256_path's (a folder: its listing's)
    size_bytes: int


@dataclass(frozen=True)
class ArtifactFiles:
    file: str                            # what the runtime loads
    sha256: str
    size_bytes: int                      # all of `files` together
    files: tuple[FileEntry, ...]         # what verified_artifact checks: the companions too


@dataclass(frozen=True)
class Contract:
    input: InputContract
    preprocessing: PreprocessingContract
    artifact: ArtifactFiles
    classes: int
    labels: tuple[str, ...] | None       # model.labels, else model.class_names (one per class)


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _whole(value, what: str, low: int, high: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ManifestError(f"{where}: {what} is {_show(value)}; it must be a whole number from {low} to {high}")
    return value


def _choice(value, what: str, options: tuple[str, ...], where: str) -> str:
    if value not in options:
        raise ManifestError(f"{where}: {what} is {_show(value)}; it must be one of: {', '.join(options)}")
    return value


def _triple(value, what: str, where: str, positive: bool) -> tuple[float, float, float]:
    ok = (isinstance(value, list) and len(value) == 3
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))
    if not ok:
        raise ManifestError(f"{where}: preprocessing.{what} is {_show(value)}; it must be 3 finite numbers "
                            "(one per RGB channel)")
    if positive and not all(v > 0 for v in value):
        raise ManifestError(f"{where}: preprocessing.{what} is {_show(value)}; every value must be above 0 "
                            "(pixels are divided by it)")
    return (float(value[0]), float(value[1]), float(value[2]))


def _names(value, what: str, classes: int, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"{where}: model.{what} must be a list of strings")
    if len(value) != classes:
        raise ManifestError(f"{where}: model.{what} names {len(value)} classes, the model has {classes} "
                            "(model.num_classes)")
    return tuple(value)


def _relative(name, what: str, where: str) -> str:
    """A file name the manifest gives: relative, inside the folder by construction (no '..')."""
    if not isinstance(name, str) or not name or "\0" in name or "\\" in name:
        raise ManifestError(f"{where}: {what} is {_show(name)}; it must name a file in the artifact folder")
    parts = PurePosixPath(name).parts
    if PurePosixPath(name).is_absolute() or ".." in parts or not [p for p in parts if p != "."]:
        raise ManifestError(f"{where}: {what} {name!r} leads outside the artifact folder; refused",
                            hint="an artifact's manifest names only files inside its own folder; "
                                 "re-convert the artifact with `vanillanet-edge convert`")
    return name


def _sha(value, what: str, where: str) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ManifestError(f"{where}: {what} is {_show(value)}; it must be a sha256 (64 hex digits)")
    return value


def _input(spec: dict, where: str) -> InputContract:
    for key in ("name", "shape", "layout", "dtype"):
        if key not in spec:
            raise ManifestError(f"{where}: input.{key} is missing")
    if not isinstance(spec["name"], str) or not spec["name"]:
        raise ManifestError(f"{where}: input.name is {_show(spec['name'])}; it must be the input's name")
    layout = _choice(spec["layout"], "input.layout", LAYOUTS, where)
    dtype = _choice(spec["dtype"], "input.dtype", DTYPES, where)
    pixels = _choice(spec.get("pixels", "normalized"), "input.pixels", PIXELS, where)
    shape = spec["shape"]
    if not isinstance(shape, list) or len(shape) != 4:
        raise ManifestError(f"{where}: input.shape is {_show(shape)}; it must be 4 whole numbers ({layout})")
    batch = _whole(shape[0], "the input's batch (input.shape[0])", 1, MAX_BATCH, where)
    h, w, c = (shape[2], shape[3], shape[1]) if layout == "NCHW" else (shape[1], shape[2], shape[3])
    if isinstance(c, bool) or not isinstance(c, int) or c != 3:
        raise ManifestError(f"{where}: input.shape {_show(shape)} has {_show(c)} channels in its {layout} "
                            "layout; the nets take 3 (RGB)")
    size = _whole(h, "the input's height", 1, MAX_INPUT_SIZE, where)
    _whole(w, "the input's width", 1, MAX_INPUT_SIZE, where)
    if w != h:
        raise ManifestError(f"{where}: input.shape {shape} is not square; the centre crop is")
    if batch * 3 * size * size > MAX_INPUT_VALUES:
        raise ManifestError(f"{where}: input.shape {shape} holds {batch * 3 * size * size:,} values, over the "
                            f"{MAX_INPUT_VALUES:,} one batch may hold")
    return InputContract(spec["name"], (shape[0], shape[1], shape[2], shape[3]), layout, dtype, pixels, batch, size)


def _preprocessing(prep: dict, size: int, where: str) -> PreprocessingContract:
    for key in PREPROCESSING_KEYS:
        if key not in prep:
            raise ManifestError(f"{where}: preprocessing.{key} is missing")
    unknown = sorted(set(prep) - set(PREPROCESSING_KEYS))
    if unknown:
        raise ManifestError(f"{where}: preprocessing has unknown keys: {', '.join(map(_show, unknown))}")
    resize = _whole(prep["resize"], "preprocessing.resize", 1, MAX_RESIZE, where)
    crop = _whole(prep["crop"], "preprocessing.crop", 1, MAX_INPUT_SIZE, where)
    if crop > resize:
        raise ManifestError(f"{where}: preprocessing.crop {crop} is larger than preprocessing.resize {resize} "
                            "(the crop is cut from the image resized to `resize`)")
    if crop != size:
        raise ManifestError(f"{where}: preprocessing.crop {crop} differs from the input's size {size}")
    interpolation = _choice(prep["interpolation"], "preprocessing.interpolation", INTERPOLATIONS, where)
    return PreprocessingContract(resize, crop, interpolation, _triple(prep["mean"], "mean", where, False),
                                 _triple(prep["std"], "std", where, True))


def _artifact(art: dict, where: str) -> ArtifactFiles:
    if "file" not in art:
        raise ManifestError(f"{where}: artifact.file is missing (which file the runtime loads)")
    main = _relative(art["file"], "artifact.file", where)
    sha = _sha(art.get("sha256"), "artifact.sha256", where)
    total = _whole(art.get("size_bytes"), "artifact.size_bytes", 0, 1 << 50, where)
    listed = art.get("files")
    if listed is None:                  # one file (eager artifacts): the main file is all of it
        return ArtifactFiles(main, sha, total, (FileEntry(main, sha, total),))
    if not isinstance(listed, dict) or not listed:
        raise ManifestError(f"{where}: artifact.files must map file names to their sha256 and size_bytes")
    entries = []
    for name, entry in listed.items():
        _relative(name, f"artifact.files entry {name!r}", where)
        if not isinstance(entry, dict):
            raise ManifestError(f"{where}: artifact.files[{name!r}] must hold sha256 and size_bytes")
        entries.append(FileEntry(name, _sha(entry.get("sha256"), f"artifact.files[{name!r}].sha256", where),
                                 _whole(entry.get("size_bytes"), f"artifact.files[{name!r}].size_bytes", 0,
                                        1 << 50, where)))
    by_name = {e.name: e for e in entries}
    if main not in by_name:
        raise ManifestError(f"{where}: artifact.file {main!r} is not among artifact.files")
    if by_name[main].sha256 != sha:
        raise ManifestError(f"{where}: artifact.sha256 differs from artifact.files[{main!r}].sha256")
    if sum(e.size_bytes for e in entries) != total:
        raise ManifestError(f"{where}: artifact.size_bytes {total} is not the sum of artifact.files' sizes")
    return ArtifactFiles(main, sha, total, tuple(entries))


def contract(data: dict, where: str = "manifest") -> Contract:
    """The manifest's contract, every field checked and bounded (the module docstring)."""
    inp = _input(data["input"], where)
    model = data["model"]
    classes = _whole(model.get("num_classes"), "model.num_classes", 1, MAX_CLASSES, where)
    labels = _names(model.get("labels"), "labels", classes, where)
    names = _names(model.get("class_names"), "class_names", classes, where)
    out_shape = data["output"].get("shape")
    if out_shape is not None and out_shape != [inp.batch, classes]:
        raise ManifestError(f"{where}: output.shape is {_show(out_shape)}; the input's batch and "
                            f"model.num_classes make it [{inp.batch}, {classes}]")
    return Contract(inp, _preprocessing(data["preprocessing"], inp.size, where), _artifact(data["artifact"], where),
                    classes, labels or names)


def validate(data: dict, where: str = "manifest") -> dict:
    if not isinstance(data, dict):
        raise ManifestError(f"{where} is not a JSON object")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(f"{where} has schema_version {_show(data.get('schema_version'))}; this "
                            f"vanillanet-edge reads version {SCHEMA_VERSION}",
                            hint="re-convert the artifact with this version of vanillanet-edge")
    for key, typ in REQUIRED.items():
        if not isinstance(data.get(key), typ) or isinstance(data.get(key), bool):
            raise ManifestError(f"{where} lacks '{key}' (or it is not a {typ.__name__})")
    contract(data, where)
    return data


# ------------------------------------------------------------------ reading, inside the folder

def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def confined(folder: Path, name: str, what: str) -> Path:
    """folder / name, refused unless it resolves (symlinks followed) inside `folder`."""
    root, real = os.path.realpath(folder), os.path.realpath(folder / name)
    if not _inside(root, real) or real == root:
        raise ManifestError(f"{folder}: {what} {name!r} leads outside the artifact folder (to {real}); refused",
                            hint="an artifact folder holds its own files; re-convert the artifact with "
                                 "`vanillanet-edge convert`")
    return folder / name


def _links_stay_inside(folder: Path) -> None:
    """Every symlink anywhere in the artifact folder points inside it: nothing outside is read,
    hashed or sent to a device through the folder."""
    root = os.path.realpath(folder)
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) and not _inside(root, os.path.realpath(path)):
                raise ManifestError(f"{folder}: {os.path.relpath(path, folder)} is a link to "
                                    f"{os.path.realpath(path)}, outside the artifact folder; refused",
                                    hint="an artifact folder holds its own files; re-convert the artifact "
                                         "with `vanillanet-edge convert`")


def read_manifest(path: str | Path) -> dict:
    """Read and validate a manifest, given its file or the artifact folder that holds it. Every
    file it names, and every link in the folder, must lead inside the folder."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.exists():
        raise ManifestError(f"no manifest at {path}",
                            hint="point at an artifact folder written by `vanillanet-edge convert`")
    folder = path.parent
    confined(folder, path.name, "the manifest")
    _links_stay_inside(folder)
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{path} is {size:,} bytes; a manifest is at most {MAX_MANIFEST_BYTES:,}")
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise ManifestError(f"{path} cannot be read: {exc}", hint="check the file's permissions") from None
    validate(data, str(path))
    for entry in contract(data, str(path)).artifact.files:
        confined(folder, entry.name, "artifact file")
    return data


# ------------------------------------------------------------------ the files, once per process

# (real path, what stat says of it, expected sha256 and size) of files checked in this process:
# a file is hashed again only when it changed (another size, mtime or inode).
_VERIFIED: set[tuple] = set()


def _stamp(path: Path) -> tuple:
    if path.is_dir():
        return tuple(sorted((p.relative_to(path).as_posix(), st.st_size, st.st_mtime_ns, st.st_ino)
                            for p in path.rglob("*") if p.is_file() for st in (p.stat(),)))
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def digest(path: Path) -> tuple[int, str]:
    """(bytes, sha256) as the manifest's writer records them: fileio's size_bytes and sha256_path
    (a folder, e.g. an .mlpackage: the JSON listing of [name, size, sha256] of its files)."""
    return size_bytes(path), sha256_path(path)


def verified_artifact(folder: str | Path, manifest: dict) -> Path:
    """The file the runtime loads (folder / artifact.file), after every file the manifest lists
    was found inside the folder with its recorded size and sha256; ArtifactDamagedError if not.
    Each unchanged file is hashed once per process."""
    folder = Path(folder)
    art = contract(manifest, str(folder / MANIFEST_NAME)).artifact
    for entry in art.files:
        path = confined(folder, entry.name, "artifact file")
        if not path.exists():
            raise ArtifactDamagedError(f"artifact {folder} is damaged: {entry.name} is missing")
        real = os.path.realpath(path)
        key = (real, _stamp(path), entry.sha256, entry.size_bytes)
        if key in _VERIFIED:
            continue
        size, sha = digest(path)
        if size != entry.size_bytes:
            raise ArtifactDamagedError(f"artifact {folder} is damaged: {entry.name} is {size:,} bytes, its "
                                       f"manifest says {entry.size_bytes:,} (cut or replaced after conversion)")
        if sha != entry.sha256:
            raise ArtifactDamagedError(f"artifact {folder} is damaged: {entry.name}'s sha256 {sha[:16]}... is not "
                                       f"the manifest's {entry.sha256[:16]}... (changed or replaced after conversion)")
        _VERIFIED.add(key)
    return folder / art.file
