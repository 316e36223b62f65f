"""`classify`: the top-k labels of a few images through an artifact's own runtime and input
contract, the first thing to try after `convert` (and what an app will see)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .devices.artifacts import ArtifactRef
from .devices.base import check_outputs, pinned_settings
from .devices.registry import get_runner
from .errors import DataError
from .images import ImageRecord, Preprocessing, describe_skipped, load_images

MAX_TOP = 20


def probabilities(outputs: np.ndarray, manifest: dict) -> np.ndarray:
    """The artifact's outputs as probabilities: softmax of logits, or as they are when the
    artifact already outputs probabilities (an app-facing classifier, manifest output.meaning)."""
    if str(manifest.get("output", {}).get("meaning", "")).startswith("probabilities"):
        return outputs.astype(np.float32)
    z = outputs - outputs.max(axis=1, keepdims=True)
    e = np.exp(z, dtype=np.float64)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def classify(ref: ArtifactRef, images: list[str | Path], top: int = 5, runtime: str | None = None,
             settings: dict | None = None) -> dict:
    """{"artifact", "runtime", "session_settings", "results": [{"image", "top": [{"index",
    "label", "probability"}]}], "skipped", "skipped_files"}. Unreadable images are skipped and
    counted; none readable is a DataError."""
    if not 1 <= top <= MAX_TOP:
        raise DataError(f"--top must be between 1 and {MAX_TOP}, got {top}")
    prep = Preprocessing.from_dict(ref.manifest["preprocessing"])
    loaded = load_images([ImageRecord(Path(image), None) for image in images], prep, min_count=0)
    if not len(loaded.inputs):
        raise DataError(f"none of the {len(images)} image(s) could be read:\n" + describe_skipped(loaded.skipped),
                        hint="pass image files PIL can decode (PNG, JPEG, ...)")
    runtime = runtime or ref.runtime
    session = get_runner(runtime).load(ref.artifact, ref.manifest, **pinned_settings(ref.manifest, settings))
    try:
        outputs = session.run_all(loaded.inputs)
    finally:
        session.close()
    model = ref.manifest.get("model", {})
    labels = model.get("labels") or model.get("class_names")
    check_outputs(outputs, model.get("num_classes"), ref.path)
    probs = probabilities(outputs, ref.manifest)
    k = min(top, probs.shape[1])
    results = []
    for path, p in zip(loaded.paths, probs):
        order = np.argsort(-p, kind="stable")[:k]
        results.append({"image": str(path), "top": [
            {"index": int(i), "label": labels[i] if labels else str(int(i)), "probability": float(p[i])}
            for i in order]})
    return {"artifact": str(ref.path), "name": ref.name, "runtime": runtime,
            "session_settings": session.settings, "results": results, **loaded.skipped_record()}
