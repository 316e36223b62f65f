"""Load what people really have, safely and strictly; save in the official layouts.

Accepted: the authors' release files (a dict from their training script with `model`,
`model_ema`, `optimizer`, `epoch`, `scaler`, `args`), their deploy-form output
(`{'model': sd}`), a bare state_dict, keys with a `module.` prefix, and safetensors.
Pickles are read with `torch.load(weights_only=True)`: nothing in a file is ever executed.
"""
from __future__ import annotations

import argparse
import functools
import math
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..fileio import atomic_path, sha256_path
from ..manifest import MAX_RESIZE
from .vanillanet import MAX_INPUT_SIZE, VanillaNet, VanillaNetConfig
from .variants import VARIANTS, variant_config

# Non-tensor objects a release file legitimately holds, allowed one by one. The authors'
# script stores its argparse.Namespace under 'args'; everything else is plain containers.
SAFE_GLOBALS = [argparse.Namespace]

# Where to look for weights, in the order the authors' evaluation prefers them.
WEIGHT_KEYS = ("model_ema", "model", "state_dict", "module")
META_KEY = "vanillanet_edge"   # our own metadata inside checkpoints we write

# Size bounds, checked before torch reads any tensor data. A release file holds at most a few
# copies of the training-form weights (model, EMA, Adam's two moments): the total stored size may
# be that many fp32 copies of the variant named by --variant (else the largest variant) plus slack.
# torch.save stores zip entries uncompressed and float weights barely compress, so a deflated entry
# that inflates more than MAX_INFLATION times is refused whatever the budget (a 405 KB file
# inflating to 256 MiB, say).
WEIGHT_COPIES = 5
SIZE_SLACK = 64 << 20
MAX_INFLATION = 4
INFLATION_SLACK = 1 << 20


@dataclass
class LoadedCheckpoint:
    model: VanillaNet
    path: Path
    sha256: str
    form: str                  # "train" or "deploy"
    weights_key: str | None    # which entry of the file the weights came from (None: bare)
    variant_source: str        # how the variant was decided
    meta: dict = field(default_factory=dict)   # our metadata (input size, preprocessing...)
    act_learn_source: str = ""                 # how act_learn was known (recorded, schedule, assumed)

    @property
    def config(self) -> VanillaNetConfig:
        return self.model.config

    def describe(self) -> str:
        c = self.config
        where = f"'{self.weights_key}'" if self.weights_key else "a bare state_dict"
        act = f", act_learn {self.model.act_learn:g} ({self.act_learn_source})" if self.form == "train" else ""
        return (f"{self.path.name}: {c.name} width {c.width:g}, {c.num_classes} classes, "
                f"{self.form} form, weights from {where} ({self.variant_source}){act}")


@functools.lru_cache(maxsize=None)
def size_budget(variant: str | None = None) -> int:
    """The most bytes a checkpoint's tensors may take once read (see WEIGHT_COPIES)."""
    names = [variant] if variant in VARIANTS else list(VARIANTS)
    numel = max(_train_form_numel(VARIANTS[n]) for n in names)
    return WEIGHT_COPIES * 4 * numel + SIZE_SLACK


def _train_form_numel(cfg: VanillaNetConfig) -> int:
    """Parameters and buffers of the training form, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        return sum(t.numel() for t in VanillaNet(cfg).state_dict().values())


def _refuse_oversized(path: Path, variant: str | None) -> None:
    """Refuse a file whose tensors would take more memory than any checkpoint of the variant
    needs, from the zip's central directory alone (nothing is inflated or unpickled)."""
    budget, size = size_budget(variant), path.stat().st_size
    whom = f"{variant}" if variant in VARIANTS else "any official variant"
    hint = "pass the right --variant, or re-save only the weights with torch.save(state_dict)"
    if size > budget:
        raise CheckpointError(f"{path} is {size:,} bytes, more than a checkpoint of {whom} needs "
                              f"(at most {budget:,})", hint=hint)
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":   # torch's own test for its zip format
            return
    try:
        with zipfile.ZipFile(path) as zf:
            entries = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError,
            NotImplementedError) as exc:
        raise CheckpointError(f"{path} ({size} bytes) is truncated or not a checkpoint: "
                              f"its zip directory is unreadable ({_first_line(exc)})",
                              hint="re-download or re-save the file") from None
    total = sum(e.file_size for e in entries)
    packed = [e for e in entries if e.compress_type != zipfile.ZIP_STORED]
    inflated = sum(e.file_size for e in packed)
    if inflated > MAX_INFLATION * sum(e.compress_size for e in packed) + INFLATION_SLACK:
        raise CheckpointError(
            f"refused to load {path}: its compressed entries would inflate from "
            f"{sum(e.compress_size for e in packed):,} to {inflated:,} bytes, which weights do not "
            f"do (torch.save does not compress); nothing was read",
            hint="re-save the weights with torch.save(state_dict) or as safetensors")
    if total > budget:
        raise CheckpointError(f"refused to load {path}: its entries hold {total:,} bytes once read, "
                              f"more than a checkpoint of {whom} needs (at most {budget:,})", hint=hint)


def read_checkpoint_file(path: str | Path, variant: str | None = None):
    """Read a checkpoint without executing anything in it, and without reading more bytes than
    a checkpoint of `variant` (default: any official variant) can need."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}", hint="check the path")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    _refuse_oversized(path, variant)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        # torch words this "Unsupported global: GLOBAL x.y ..." or, for blocked modules such as
        # os/posix/subprocess, "Trying to load unsupported GLOBAL x.y whose module ... is blocked".
        found = re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)", text, re.IGNORECASE)
        called = re.search(r"Trying to call reduce for [^\n]*|Can only create new object[^\n]*", text)
        if found or called:
            culprit = found.group(1) if found else "an object that is not a tensor or container"
            raise CheckpointError(
                f"refused to load {path}: it asks to construct {culprit}, which a weights file "
                f"does not need; nothing from the file was executed",
                hint="if you trust the file and it holds a known type, re-save its state_dict "
                     "with torch.save(sd) or as safetensors") from None
        reason = re.search(r"Unsupported operand \d+|String is too long", text)
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint that can be read safely "
            f"({reason.group(0) if reason else _first_line(exc)}); nothing from the file was executed",
            hint="pass a .pth/.pt file written by torch.save, or a .safetensors file") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        size = path.stat().st_size
        raise CheckpointError(
            f"{path} ({size} bytes) is truncated or not a checkpoint: {_first_line(exc)}",
            hint="re-download or re-save the file; a release file is tens to hundreds of MB") from None
    except Exception as exc:   # arbitrary bytes can trip torch's legacy reader in many ways
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({type(exc).__name__}: {_first_line(exc)})",
                              hint="pass a .pth/.pt file written by torch.save, or a .safetensors file") from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return lines[0] if lines else type(exc).__name__


def _strip_prefix(sd: dict) -> dict:
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def select_state_dict(obj, key: str | None = None) -> tuple[dict, str | None]:
    """Pick the weights inside a checkpoint object; EMA first, as the authors evaluate."""
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            have = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
            raise CheckpointError(f"the checkpoint has no entry '{key}' (it has {have})")
        if not _is_state_dict(obj[key]):
            raise CheckpointError(f"entry '{key}' is not a state_dict of tensors")
        return _strip_prefix(dict(obj[key])), key
    if _is_state_dict(obj):
        return _strip_prefix(dict(obj)), None
    if isinstance(obj, dict):
        for k in WEIGHT_KEYS:
            if _is_state_dict(obj.get(k)):
                return _strip_prefix(dict(obj[k])), k
        raise CheckpointError(
            f"no state_dict found in the checkpoint; its top-level entries are {sorted(map(str, obj))}",
            hint="pass --key NAME to say which entry holds the weights")
    raise CheckpointError(f"the file holds a {type(obj).__name__}, not a checkpoint dict")


def _check_tensors(sd: dict) -> None:
    """Weights are plain dense CPU tensors whose values are all stored: a broadcast view
    (stride 0) or a meta tensor could claim any shape and make the model built to fit it huge."""
    for k, t in sd.items():
        if t.layout != torch.strided or t.device.type != "cpu" or t.is_quantized or t.is_complex():
            raise CheckpointError(f"tensor '{k}' is not a plain weight tensor ({t.layout}, {t.dtype}, "
                                  f"{t.device.type})", hint="re-save the weights with torch.save(state_dict)")
        if t.numel() and t.numel() * t.element_size() > t.untyped_storage().nbytes():
            raise CheckpointError(f"tensor '{k}' of shape {tuple(t.shape)} stores only "
                                  f"{t.untyped_storage().nbytes():,} bytes: not a weights file",
                                  hint="re-save the weights with torch.save(state_dict)")


def _check_finite(sd: dict, path: Path) -> None:
    """Every float weight and BatchNorm statistic a finite number: a NaN weight makes every output
    NaN, and a NaN error passes any `err > limit` check (fuse once "verified" such a net)."""
    bad = [k for k, t in sd.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        count = sum(int((~torch.isfinite(sd[k])).sum()) for k in bad)
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        raise CheckpointError(f"{path} holds {count:,} NaN or inf values in {len(bad)} tensors: "
                              f"{', '.join(bad[:5])}{more}",
                              hint="the weights are broken (a diverged training run, or a damaged file): "
                                   "use an earlier checkpoint")


def detect_form(sd: dict) -> str:
    if "stem1.0.weight" in sd:
        return "train"
    if "stem.0.weight" in sd:
        return "deploy"
    sample = ", ".join(list(sd)[:5])
    raise CheckpointError(
        f"this is not a VanillaNet state_dict: no 'stem1.0.weight' (training form) or "
        f"'stem.0.weight' (deploy form); its first keys are {sample}")


def _out_channels(sd: dict, key: str) -> int:
    w = sd[key]
    if w.dim() != 4 or w.shape[0] < 1:
        raise CheckpointError(f"'{key}' has shape {tuple(w.shape)}, not that of a conv weight "
                              f"(out, in, kh, kw): the file is damaged or not a VanillaNet")
    return int(w.shape[0])


def _channels(sd: dict, form: str) -> tuple[list[int], int, int]:
    """(channel widths, num_classes, number of stages) read from tensor shapes."""
    stem = "stem1.0.weight" if form == "train" else "stem.0.weight"
    n_stages = len({int(m.group(1)) for k in sd for m in [re.match(r"stages\.(\d+)\.", k)] if m})
    conv = "conv2.0.weight" if form == "train" else "conv.weight"
    dims = [_out_channels(sd, stem)]
    for i in range(n_stages):
        if f"stages.{i}.{conv}" not in sd:
            raise CheckpointError(f"stage {i} has no '{conv}' weight: the file is incomplete")
        dims.append(_out_channels(sd, f"stages.{i}.{conv}"))
    head = "cls2.0.weight" if form == "train" else "cls.2.weight"
    if head not in sd:
        raise CheckpointError("the classifier weight is missing: the file is incomplete")
    return dims, _out_channels(sd, head), n_stages


def infer_config(sd: dict, form: str, hint_name: str | None = None,
                 hint_source: str = "named by the user") -> tuple[VanillaNetConfig, str]:
    """Find the variant, width and class count that fit these tensors."""
    dims, classes, n_stages = _channels(sd, form)
    fits = []
    for name, cfg in VARIANTS.items():
        if len(cfg.strides) != n_stages:
            continue
        width = dims[0] / cfg.dims[0]
        if cfg.with_(width=width).channels == tuple(dims):
            fits.append((name, width))
    if hint_name:
        for name, width in fits:
            if name == hint_name:
                return variant_config(name, width, classes), hint_source
        raise CheckpointError(
            f"the weights do not fit {hint_name}: they have {n_stages} stages with channels "
            f"{dims}; they fit {', '.join(n for n, _ in fits) or 'no official variant'}",
            hint="drop --variant to let the loader infer it, or pass the right one")
    if not fits:
        raise CheckpointError(
            f"no official variant has {n_stages} stages with channels {dims} at any width",
            hint="this may be a modified VanillaNet; build it with create_model() and load it yourself")
    # Shapes cannot tell vanillanet_13 at width 1.5 from vanillanet_13_x1_5, nor x1_5 from
    # ada_pool: prefer an official name at width 1 and say that it was a guess.
    fits.sort(key=lambda f: (abs(f[1] - 1.0) > 1e-9, "ada_pool" in f[0]))
    name, width = fits[0]
    note = "inferred from tensor shapes"
    if len(fits) > 1:
        note += f"; shapes also fit {', '.join(n for n, _ in fits[1:])} (pass --variant to choose)"
    return variant_config(name, width, classes), note


def _arg(args, name):
    """Read one setting from the authors' argparse.Namespace (or a dict of the same)."""
    if isinstance(args, dict):
        return args.get(name)
    return getattr(args, name, None) if isinstance(args, argparse.Namespace) else None


def _finite(x) -> bool:
    """A real number (not a bool), finite."""
    try:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
    except OverflowError:   # an int too large for a float
        return False


def _act_learn_from_args(args, epoch) -> float | None:
    """The slope the authors' schedule had reached at the saved epoch, when it can be told."""
    decay = _arg(args, "decay_epochs")
    # The authors' script also saves epoch="best" / "best-ema": the schedule point is unknown.
    # Values of other types or ranges are treated the same way: the schedule is not known.
    if args is None or not _finite(decay) or decay <= 0 or not _finite(epoch) or epoch < 0:
        return None
    progress = min(1.0, float(epoch) / float(decay))
    if _arg(args, "decay_linear") is False:
        return 0.5 * (1 - math.cos(math.pi * progress))
    return progress


def _variant_hint(path: Path, variant: str | None, meta: dict, args) -> tuple[str | None, str]:
    """Which variant the file claims to be, and who says so. Shapes alone cannot tell
    vanillanet_13_x1_5 from its ada_pool twin, so every hint counts: --variant, our metadata,
    the authors' args.model, then the release file's name (vanillanet_13_x1_5_ada_pool.pth)."""
    if variant:
        return variant, "named by --variant"
    if meta.get("variant") in VARIANTS:
        return meta["variant"], "recorded in the checkpoint"
    if isinstance(_arg(args, "model"), str) and _arg(args, "model") in VARIANTS:
        return _arg(args, "model"), "args.model of the authors' training script"
    in_name = [n for n in VARIANTS if n in path.stem]
    if in_name:
        return max(in_name, key=len), f"from the file name {path.name}"
    return None, ""


def _describe_mismatch(model: VanillaNet, sd: dict) -> str:
    want = model.state_dict()
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    shapes = [f"{k} {tuple(sd[k].shape)} != {tuple(want[k].shape)}"
              for k in want if k in sd and sd[k].shape != want[k].shape]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)):
        if items:
            more = f" (+{len(items) - 6} more)" if len(items) > 6 else ""
            parts.append(f"{label}: {', '.join(items[:6])}{more}")
    return "; ".join(parts)


def build_from_state_dict(sd: dict, config: VanillaNetConfig, form: str) -> VanillaNet:
    # Compare shapes on the meta device first: nothing is allocated for a net that does not fit
    # (shapes in a damaged file could describe a net of any size).
    with torch.device("meta"):
        shapes = VanillaNet(config, deploy=(form == "deploy"))
    problems = _describe_mismatch(shapes, sd)
    if problems:
        raise CheckpointError(
            f"the weights do not fit {config.name} (width {config.width:g}, {form} form): {problems}")
    model = VanillaNet(config, deploy=(form == "deploy"))
    try:
        model.load_state_dict(sd, strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:   # e.g. a dtype that cannot be copied
        raise CheckpointError(f"the weights cannot be loaded into {config.name}: {_first_line(exc)}",
                              hint="re-save the weights as float tensors") from None
    return model.eval()


def _plain(x, depth: int = 0) -> bool:
    """JSON-like data (what metadata may hold): str, finite numbers, bool, None, lists, str-keyed dicts."""
    if depth > 8:
        return False
    if x is None or isinstance(x, (str, bool)) or _finite(x):
        return True
    if isinstance(x, (list, tuple)):
        return all(_plain(v, depth + 1) for v in x)
    if isinstance(x, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in x.items())
    return False


def _number(lo: float, hi: float, integer: bool = False):
    def check(v):
        if not _finite(v) or (integer and not isinstance(v, int)):
            return f"must be {'an integer' if integer else 'a number'}"
        return None if lo <= v <= hi else f"must be between {lo:g} and {hi:g}"
    return check


def _one_of(*options):
    return lambda v: None if isinstance(v, str) and v in options else f"must be one of {', '.join(options)}"


def _of_type(*types):
    return lambda v: None if isinstance(v, types) else f"must be a {' or '.join(t.__name__ for t in types)}"


def _str_list(v):
    if not isinstance(v, (list, tuple)) or not all(isinstance(c, str) for c in v):
        return "must be a list of strings"
    return None


def _val_top1(v):
    return None if v is None else _number(0, 1)(v)


# Our metadata keys (written by save_checkpoint, train and fuse) and what each may hold.
# Other keys are kept if they hold plain data (fuse copies them on; convert writes some to JSON).
META_CHECKS = {
    "variant": _one_of(*VARIANTS), "width": _number(1e-6, 64), "num_classes": _number(1, 1e6, True),
    "act_learn": _number(0, 1), "form": _one_of("train", "deploy"),
    "input_size": _number(1, MAX_INPUT_SIZE, True), "preprocessing": _of_type(dict),
    "class_names": _str_list, "val_top1": _val_top1, "train_seconds": _number(0, math.inf),
    "trained_on": _of_type(str), "fused_from": _of_type(str), "fused_from_sha256": _of_type(str),
}


def _meta_error(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{path}: the vanillanet-edge metadata in the file is invalid: {what}",
                           hint=f"fix or drop the file's '{META_KEY}' entry, e.g. re-save the weights "
                                f"alone with torch.save({{'model': state_dict}}, path)")


def validate_meta(raw, path: Path) -> dict:
    """Our metadata entry, checked key by key before anything uses it."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _meta_error(path, f"a {type(raw).__name__}, not a dict")
    for k, v in raw.items():
        if not isinstance(k, str):
            raise _meta_error(path, f"key {k!r} is not a string")
        problem = META_CHECKS[k](v) if k in META_CHECKS else (None if _plain(v) else "is not plain data")
        if problem:
            shown = repr(v) if len(repr(v)) < 60 else repr(v)[:57] + "..."
            raise _meta_error(path, f"'{k}' {problem} (it is {shown})")
    meta = dict(raw)
    if "preprocessing" in meta:
        meta["preprocessing"] = _check_preprocessing(meta["preprocessing"], path)
        crop, size = meta["preprocessing"]["crop"], meta.get("input_size")
        if size is not None and crop != size:
            raise _meta_error(path, f"preprocessing crops {crop} pixels but input_size is {size}")
    return meta


def _check_preprocessing(d: dict, path: Path) -> dict:
    from ..errors import VanillaNetEdgeError
    from ..images import Preprocessing

    want = {"resize", "crop", "interpolation", "mean", "std"}
    if set(d) != want:
        raise _meta_error(path, f"'preprocessing' has keys {sorted(map(str, d))}, expected {sorted(want)}")
    for k in ("resize", "crop"):
        problem = _number(1, MAX_RESIZE, True)(d[k])
        if problem:
            raise _meta_error(path, f"'preprocessing.{k}' {problem} (it is {d[k]!r})")
    for k in ("mean", "std"):
        v = d[k]
        if (not isinstance(v, (list, tuple)) or len(v) != 3 or not all(_finite(c) for c in v)
                or (k == "std" and not all(c > 0 for c in v))):
            raise _meta_error(path, f"'preprocessing.{k}' must be 3 {'positive ' if k == 'std' else ''}"
                                    f"numbers (it is {v!r})")
    try:
        Preprocessing.from_dict(d)
    except (VanillaNetEdgeError, TypeError, ValueError) as exc:
        raise _meta_error(path, f"'preprocessing' {_first_line(exc)}") from None
    return dict(d)


def _check_meta_fits(meta: dict, config: VanillaNetConfig, path: Path) -> None:
    """The metadata's sizes and names against the net the weights turned out to be."""
    for what, size in (("input_size", meta.get("input_size")),
                       ("preprocessing.crop", (meta.get("preprocessing") or {}).get("crop"))):
        if size is None:
            continue
        problem = config._input_size_problem(size)
        if problem:
            raise _meta_error(path, f"'{what}' {size} does not fit {config.name}: {problem} "
                                    f"(it takes {config.min_input_size()} to {MAX_INPUT_SIZE})")
    names = meta.get("class_names")
    if names is not None and len(names) != config.num_classes:
        raise _meta_error(path, f"'class_names' names {len(names)} classes, the weights have "
                                f"{config.num_classes}")


def load_checkpoint(path: str | Path, variant: str | None = None, key: str | None = None,
                    num_classes: int | None = None) -> LoadedCheckpoint:
    """Load any supported checkpoint into a VanillaNet, strictly, and say what was used."""
    path = Path(path)
    obj = read_checkpoint_file(path, variant)
    sd, used_key = select_state_dict(obj, key)
    _check_tensors(sd)
    _check_finite(sd, path)
    form = detect_form(sd)
    meta = validate_meta(obj.get(META_KEY), path) if isinstance(obj, dict) else {}
    args = obj.get("args") if isinstance(obj, dict) else None
    named, named_by = _variant_hint(path, variant, meta, args)
    config, source = infer_config(sd, form, named, named_by)
    _check_meta_fits(meta, config, path)
    if num_classes is not None and num_classes != config.num_classes:
        raise CheckpointError(f"the checkpoint has {config.num_classes} classes, not {num_classes}")
    model = build_from_state_dict(sd, config, form)
    act = meta.get("act_learn")
    if act is None:
        act = _act_learn_from_args(args, obj.get("epoch") if isinstance(obj, dict) else None)
    act_source = "recorded" if meta.get("act_learn") is not None else "from the authors' schedule"
    if act is not None and form == "train":
        model.act_learn = float(act)
    elif form == "train":
        act_source = "assumed 1: the file does not record its training schedule"
    loaded = LoadedCheckpoint(model, path, sha256_path(path), form, used_key, source, meta)
    loaded.act_learn_source = act_source if form == "train" else "deploy form"
    return loaded


def save_checkpoint(model: VanillaNet, path: str | Path, meta: dict | None = None,
                    epoch: int | None = None, args: dict | None = None) -> Path:
    """Write the official layout: `{'model': sd, ...}`, plus our metadata under its own key.

    Training form gets `epoch` and `args` like the authors' script writes; deploy form is
    `{'model': sd}` like their --switch_to_deploy output. Written atomically.
    """
    path = Path(path)
    c = model.config
    info = {"variant": c.name, "width": c.width, "num_classes": c.num_classes,
            "act_learn": model.act_learn if not model.deploy else 1.0,
            "form": "deploy" if model.deploy else "train", **(meta or {})}
    payload = {"model": model.state_dict(), META_KEY: info}
    if not model.deploy:
        payload["epoch"] = epoch
        payload["args"] = dict(args or {})
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path
