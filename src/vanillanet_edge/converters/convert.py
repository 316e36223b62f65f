"""Checkpoint -> verified artifacts: the shared path every target goes through.

load (any checkpoint) -> fuse if needed (verified) -> export form (exact rewrites) ->
Converter.export into a private folder -> run it in its runtime against the fused model ->
manifest.json -> publish the folder atomically. Nothing half-written is ever left at OUT.
"""
from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..calibration.images import Preprocessing
from ..calibration.inputs import input_size_of, preprocessing_of, real_inputs_for
from ..errors import ConversionError, FusionError, VanillaNetEdgeError
from ..fileio import atomic_path, clean_partials, sha256_path, size_bytes, write_json
from ..model.adapool import replace_adaptive_max_pools
from ..model.checkpoint import LoadedCheckpoint, load_checkpoint
from ..model.fuse import fuse_model, verify_fusion
from ..model.profile import summarize
from .base import PRECISIONS, ConvertRequest
from .manifest import MANIFEST_NAME, SCHEMA_VERSION, environment_versions
from .registry import expand_targets, get_converter
from .verify import LIMITS, torch_reference, verify_artifact

N_VERIFY = 32   # real images per verification: enough for top-1 agreement, quick on 2 cores


@dataclass
class PreparedModel:
    """Everything every target shares: computed once per convert call."""

    checkpoint: LoadedCheckpoint
    fused: torch.nn.Module
    export_model: torch.nn.Module
    input_size: int
    preprocessing: Preprocessing
    inputs: np.ndarray
    inputs_source: str
    reference: np.ndarray
    stats: dict


@dataclass
class ConvertOutcome:
    target: str
    precision: str
    ok: bool
    folder: Path | None = None
    manifest: dict = field(default_factory=dict)
    error: str | None = None
    stage: str | None = None


def prepare(checkpoint: str | Path, input_size: int | None = None, data: str | Path | None = None,
            variant: str | None = None, key: str | None = None, allow_inexact: bool = False,
            n_verify: int = N_VERIFY) -> PreparedModel:
    """Load, fuse (verified), rewrite for export and pick the verification images."""
    ckpt = load_checkpoint(checkpoint, variant=variant, key=key)
    size = input_size_of(ckpt, input_size)
    fused = fuse_model(ckpt.model, allow_inexact=allow_inexact)
    real, source = real_inputs_for(ckpt, data, size, limit=n_verify)
    if ckpt.form == "train":
        check = verify_fusion(ckpt.model, fused, size, real_inputs=real)
        if check.random.rel_err > 1e-5 and not allow_inexact:
            raise FusionError(f"fusion check failed before conversion: {check.random}")
    if real is None:
        # No images known: deterministic noise still checks the numerics, and says so.
        gen = torch.Generator().manual_seed(0)
        real = torch.randn(n_verify, 3, size, size, generator=gen)
        source = "random normal inputs (no image folder given: pass --data DIR for real images)"
    inputs = real.numpy().astype(np.float32)
    export_model = replace_adaptive_max_pools(fused, size)
    stats = summarize(fused, size)
    return PreparedModel(ckpt, fused, export_model, size, preprocessing_of(ckpt, size), inputs,
                         source, torch_reference(fused, inputs), stats)


def _check_writable(out: Path) -> None:
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise VanillaNetEdgeError(f"cannot write to {out}: {probe} is not a writable folder",
                                  hint="choose another --out, or fix its permissions")


def artifact_name(prep: PreparedModel, target: str, precision: str) -> str:
    return f"{prep.checkpoint.path.stem}-{target}-{precision}"


def convert_one(prep: PreparedModel, target: str, precision: str, out: Path, batch: int = 1,
                options: dict | None = None) -> ConvertOutcome:
    """One (target, precision): export, verify, manifest, publish. Errors become outcomes."""
    stage = "setup"
    try:
        converter = get_converter(target)
        if precision not in converter.precisions:
            raise VanillaNetEdgeError(
                f"{target} does not support {precision} yet",
                hint=f"{target} supports: {', '.join(converter.precisions)}")
        converter.check_available()
        final = out / artifact_name(prep, target, precision)
        request = ConvertRequest(prep.export_model, precision, prep.input_size, batch,
                                 prep.preprocessing, prep.inputs, dict(options or {}))
        with atomic_path(final, is_dir=True) as tmp:
            stage = "export"
            start = time.perf_counter()
            result = converter.export(request, tmp)
            seconds = time.perf_counter() - start
            artifact = tmp / result.artifact
            manifest = _manifest(prep, converter, request, result, artifact, seconds)
            stage = "verify"
            manifest["verification"] = {
                "inputs": f"{len(prep.inputs)} {prep.inputs_source}",
                **verify_artifact(converter.runtime, artifact, manifest, prep.inputs,
                                  prep.reference, precision, **converter.verify_settings(request)),
            }
            stage = "manifest"
            write_json(tmp / MANIFEST_NAME, manifest)
        return ConvertOutcome(target, precision, True, final, manifest)
    except VanillaNetEdgeError as exc:
        return ConvertOutcome(target, precision, False, error=str(exc), stage=stage)
    except Exception as exc:  # a toolchain raised: keep its message and say where
        msg = f"{target} {precision} failed during {stage}: {type(exc).__name__}: {exc}"
        return ConvertOutcome(target, precision, False, error=str(ConversionError(msg)), stage=stage)


def _manifest(prep: PreparedModel, converter, request: ConvertRequest, result, artifact: Path,
              seconds: float) -> dict:
    ckpt, cfg = prep.checkpoint, prep.checkpoint.config
    b, s = request.batch, request.input_size
    shape = [b, s, s, 3] if result.layout == "NHWC" else [b, 3, s, s]
    return {
        "schema_version": SCHEMA_VERSION,
        "target": converter.target,
        "precision": request.precision,
        "runtime": converter.runtime,
        "artifact": _describe_files(artifact.parent, result.artifact),
        "model": {"variant": cfg.name, "width": cfg.width, "num_classes": cfg.num_classes,
                  "class_names": ckpt.meta.get("class_names"), "params": prep.stats["params"],
                  "macs": prep.stats["macs"], "val_top1": ckpt.meta.get("val_top1")},
        "source": {"checkpoint": str(ckpt.path.resolve()), "sha256": ckpt.sha256, "form": ckpt.form,
                   "weights_key": ckpt.weights_key},
        "input": {"name": result.input_name, "shape": shape, "layout": result.layout,
                  "dtype": result.io_dtype, "color": "RGB"},
        "output": {"name": result.output_name, "shape": [b, cfg.num_classes],
                   "dtype": result.io_dtype, "meaning": "logits (apply softmax for probabilities)"},
        "preprocessing": prep.preprocessing.as_dict(),
        "tools": {**environment_versions(), **converter.library_versions()},
        "conversion": {"seconds": round(seconds, 3),
                       "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                       "options": request.options, **result.notes},
        "verification": {},
    }


def _describe_files(folder: Path, main: str) -> dict:
    """The main artifact plus every companion file (OpenVINO's .bin), each hashed and sized."""
    files = {p.name: {"sha256": sha256_path(p), "size_bytes": size_bytes(p)}
             for p in sorted(folder.iterdir()) if p.name != MANIFEST_NAME}
    return {"file": main, "sha256": files[main]["sha256"],
            "size_bytes": sum(f["size_bytes"] for f in files.values()), "files": files}


def convert_checkpoint(checkpoint: str | Path, targets, precisions, out: str | Path,
                       input_size: int | None = None, batch: int = 1, data: str | Path | None = None,
                       variant: str | None = None, key: str | None = None,
                       allow_inexact: bool = False, options: dict | None = None,
                       log: Callable[[str], None] = lambda m: None) -> list[ConvertOutcome]:
    """Convert one checkpoint to every (target, precision); one failure does not stop the rest."""
    names = expand_targets(targets)
    precisions = [precisions] if isinstance(precisions, str) else list(precisions)
    for p in precisions:
        if p not in PRECISIONS:
            raise VanillaNetEdgeError(f"unknown precision '{p}'", hint=f"choose from {', '.join(PRECISIONS)}")
    if batch < 1:
        raise VanillaNetEdgeError(f"batch must be at least 1, got {batch}")
    out = Path(out)
    _check_writable(out)
    log(f"loading {checkpoint}")
    prep = prepare(checkpoint, input_size, data, variant, key, allow_inexact)
    log(f"{prep.checkpoint.describe()}; input {prep.input_size}x{prep.input_size}, "
        f"verifying on {len(prep.inputs)} {prep.inputs_source}")
    out.mkdir(parents=True, exist_ok=True)
    clean_partials(out)
    outcomes = []
    for target in names:
        for precision in precisions:
            log(f"{target} {precision}: converting")
            outcome = convert_one(prep, target, precision, out, batch, options)
            outcomes.append(outcome)
            if outcome.ok:
                v = outcome.manifest["verification"]
                log(f"{target} {precision}: ok, {outcome.folder} (rel err {v['rel_err']:.2g}, "
                    f"top-1 agreement {100 * v['top1_agree']:.1f}%)")
            else:
                log(f"{target} {precision}: FAILED at {outcome.stage}: {outcome.error}")
    return outcomes


__all__ = ["convert_checkpoint", "prepare", "convert_one", "ConvertOutcome", "PreparedModel", "LIMITS"]
