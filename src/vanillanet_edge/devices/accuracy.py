"""Accuracy on an ImageFolder (the ImageNet val layout included): top-1, top-5, agreement with
the fp32 PyTorch reference, images per second. Each artifact is fed through its manifest's
preprocessing, exactly as it was verified."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from ..images import ImageFolder, Preprocessing, describe_skipped, load_images, skipped_record
from ..records import RESULT_SCHEMA
from .artifacts import ArtifactRef
from .base import check_outputs, pinned_settings
from .machine import describe_machine
from .registry import EAGER_RUNTIME, get_runner

CHUNK = 64   # images decoded and run per step: bounded memory on big folders


def _topk_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> int:
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return int((top == labels[:, None]).any(axis=1).sum())


def labelled_sample(data: str | Path, manifest: dict, limit: int | None, seed: int) -> list:
    """The (path, label) records an accuracy run scores: `limit` of them drawn with `seed` from
    the ImageFolder `data`, whose class folders must be the model's classes. A local eval and
    `eval --ray` both take their images from here, so they score the same ones."""
    folder = ImageFolder(data)
    if not folder.labelled:
        raise DataError(f"{data} has no class sub-folders, so accuracy cannot be measured",
                        hint="pass an ImageFolder: one sub-folder per class (the ImageNet val layout)")
    names = manifest.get("model", {}).get("class_names")
    if names and folder.classes != list(names):
        raise DataError(f"{data}'s class folders ({len(folder.classes)}) differ from the model's "
                        f"classes ({len(names)})", hint="evaluate on data with the same class folders")
    return folder.sample(limit, seed)


def reference_checkpoint(ref: ArtifactRef) -> tuple[Path | None, str]:
    """(the checkpoint the fp32 reference is built from, or None; the record's `reference` note).
    Decided without loading anything, so `eval --ray` can decide on its driver what to ship."""
    from ..fileio import sha256_path

    source = ref.manifest.get("source", {})
    path = Path(source.get("checkpoint", "")) if source.get("checkpoint") else None
    if ref.runtime == EAGER_RUNTIME:
        return None, "is the reference"
    if path is None or not path.exists():
        return None, "no fp32 reference (source checkpoint not found)"
    if source.get("sha256") and sha256_path(path) != source["sha256"]:    # a file: its plain sha256
        return None, f"no fp32 reference ({path} changed since conversion)"
    return path, str(path)


def _reference_model(ref: ArtifactRef):
    """The fused torch model the artifact came from, if its checkpoint is still where it was."""
    from ..model.adapool import replace_adaptive_max_pools
    from ..model.checkpoint import load_checkpoint
    from ..model.fuse import fuse_model

    path, note = reference_checkpoint(ref)
    if path is None:
        return None, note
    model = fuse_model(load_checkpoint(path).model)
    return replace_adaptive_max_pools(model, ref.manifest["input"]["shape"][2 if ref.manifest["input"]["layout"] == "NCHW" else 1]).eval(), str(path)


def evaluate(ref: ArtifactRef, data: str | Path, limit: int | None = None, runtime: str | None = None,
             settings: dict | None = None, seed: int = 0, progress=None, open_session=None) -> dict:
    """Accuracy of one artifact. `open_session(ref, runtime, settings)` says where it runs (a
    remote device's session); by default here. Images are decoded and scored here either way."""
    records = labelled_sample(data, ref.manifest, limit, seed)
    prep = Preprocessing.from_dict(ref.manifest["preprocessing"])
    runtime = runtime or ref.runtime
    if open_session is None:
        session = get_runner(runtime).load(ref.artifact, ref.manifest, **pinned_settings(ref.manifest, settings))
    else:
        session = open_session(ref, runtime, settings or {})
    try:
        return _score(ref, data, records, prep, runtime, session, progress)
    finally:
        session.close()


def decoded_chunks(records: list, prep: Preprocessing):
    """(records, their LoadedImages) per CHUNK records, in order: the batches `eval` runs an
    artifact on (unreadable files skipped; a chunk may hold no image). convert's accuracy check
    (converters/convert.load_eval_set) and a Ray worker feed the same ones."""
    for i in range(0, len(records), CHUNK):
        part = records[i:i + CHUNK]
        yield part, load_images(part, prep, min_count=0)


def _score(ref, data, records, prep, runtime, session, progress) -> dict:
    import torch

    reference, ref_note = _reference_model(ref)
    top1 = top5 = agree = seen = 0
    skipped = []
    for part, chunk in decoded_chunks(records, prep):
        skipped += chunk.skipped
        if not len(chunk.inputs):
            if progress:
                progress(len(part))
            continue
        logits = session.run_all(chunk.inputs)
        check_outputs(logits, ref.manifest.get("model", {}).get("num_classes"), ref.path)
        assert chunk.labels is not None      # labelled_sample: every record has its class
        top1 += _topk_hits(logits, chunk.labels, 1)
        top5 += _topk_hits(logits, chunk.labels, 5)
        if reference is not None:
            with torch.no_grad():
                ref_logits = reference(torch.from_numpy(chunk.inputs)).numpy()
            agree += int((ref_logits.argmax(1) == logits.argmax(1)).sum())
        seen += len(chunk.inputs)
        if progress:
            progress(len(part))
    if seen == 0:
        raise DataError(f"none of the {len(records)} images in {data} could be read:\n"
                        + describe_skipped(skipped),
                        hint="point --data at a folder of images PIL can decode (PNG, JPEG, ...)")
    return {"schema_version": RESULT_SCHEMA, "kind": "accuracy", "artifact": str(ref.path), "name": ref.name,
            "target": ref.manifest.get("target"), "precision": ref.manifest.get("precision"),
            "runtime": runtime, "engine": session.settings.get("engine", runtime),
            "session_settings": session.settings, "data": str(data), "images": seen, **skipped_record(skipped),
            "top1": top1 / seen, "top5": top5 / seen,
            "agreement_with_fp32": (agree / seen) if reference is not None else None,
            "reference": ref_note,
            "images_per_s": seen / session.compute_seconds if session.compute_seconds else None,
            "machine": session.machine or describe_machine(), "ok": True}
