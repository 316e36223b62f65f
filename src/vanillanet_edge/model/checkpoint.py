"""Load what people really have, safely and strictly; save in the official layouts.

Accepted: the authors' release files (a dict from their training script with `model`,
`model_ema`, `optimizer`, `epoch`, `scaler`, `args`), their deploy-form output
(`{'model': sd}`), a bare state_dict, keys with a `module.` prefix, and safetensors.
Pickles are read with `torch.load(weights_only=True)`: nothing in a file is ever executed.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..fileio import atomic_path
from .variants import VARIANTS, variant_config
from .vanillanet import VanillaNet, VanillaNetConfig

# Non-tensor objects a release file legitimately holds, allowed one by one. The authors'
# script stores its argparse.Namespace under 'args'; everything else is plain containers.
SAFE_GLOBALS = [argparse.Namespace]

# Where to look for weights, in the order the authors' evaluation prefers them.
WEIGHT_KEYS = ("model_ema", "model", "state_dict", "module")
META_KEY = "vanillanet_edge"   # our own metadata inside checkpoints we write


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


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_checkpoint_file(path: str | Path):
    """Read a checkpoint without executing anything in it."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}", hint="check the path")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
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
            have = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
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


def detect_form(sd: dict) -> str:
    if "stem1.0.weight" in sd:
        return "train"
    if "stem.0.weight" in sd:
        return "deploy"
    sample = ", ".join(list(sd)[:5])
    raise CheckpointError(
        f"this is not a VanillaNet state_dict: no 'stem1.0.weight' (training form) or "
        f"'stem.0.weight' (deploy form); its first keys are {sample}")


def _channels(sd: dict, form: str) -> tuple[list[int], int, int]:
    """(channel widths, num_classes, number of stages) read from tensor shapes."""
    stem = sd["stem1.0.weight" if form == "train" else "stem.0.weight"]
    n_stages = len({int(m.group(1)) for k in sd for m in [re.match(r"stages\.(\d+)\.", k)] if m})
    conv = "conv2.0.weight" if form == "train" else "conv.weight"
    dims = [stem.shape[0]]
    for i in range(n_stages):
        w = sd.get(f"stages.{i}.{conv}")
        if w is None:
            raise CheckpointError(f"stage {i} has no '{conv}' weight: the file is incomplete")
        dims.append(w.shape[0])
    head = sd.get("cls2.0.weight" if form == "train" else "cls.2.weight")
    if head is None:
        raise CheckpointError("the classifier weight is missing: the file is incomplete")
    return dims, head.shape[0], n_stages


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
    return args.get(name) if isinstance(args, dict) else getattr(args, name, None)


def _act_learn_from_args(args, epoch) -> float | None:
    """The slope the authors' schedule had reached at the saved epoch, when it can be told."""
    decay = _arg(args, "decay_epochs")
    # The authors' script also saves epoch="best" / "best-ema": the schedule point is unknown.
    if args is None or not decay or not isinstance(epoch, (int, float)):
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
    if _arg(args, "model") in VARIANTS:
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
    model = VanillaNet(config, deploy=(form == "deploy"))
    problems = _describe_mismatch(model, sd)
    if problems:
        raise CheckpointError(
            f"the weights do not fit {config.name} (width {config.width:g}, {form} form): {problems}")
    model.load_state_dict(sd, strict=True)
    return model.eval()


def load_checkpoint(path: str | Path, variant: str | None = None, key: str | None = None,
                    num_classes: int | None = None) -> LoadedCheckpoint:
    """Load any supported checkpoint into a VanillaNet, strictly, and say what was used."""
    path = Path(path)
    obj = read_checkpoint_file(path)
    sd, used_key = select_state_dict(obj, key)
    form = detect_form(sd)
    meta = dict(obj.get(META_KEY) or {}) if isinstance(obj, dict) else {}
    args = obj.get("args") if isinstance(obj, dict) else None
    named, named_by = _variant_hint(path, variant, meta, args)
    config, source = infer_config(sd, form, named, named_by)
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
    loaded = LoadedCheckpoint(model, path, file_sha256(path), form, used_key, source, meta)
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
