"""The PyTorch eager "artifact" of a prepared model: its state_dict and a manifest, so eager
PyTorch is benchmarked like any runtime and each model is compared with its OWN eager time.

Weights only (a state_dict read back with weights_only=True): the runner rebuilds the
architecture the manifest names (model/baselines.architecture_for) and loads them strictly.
"""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import torch

from ..devices.registry import EAGER_RUNTIME
from ..fileio import atomic_path, sha256_path, size_bytes, write_json
from .manifest import MANIFEST_NAME, SCHEMA_VERSION, environment_versions

WEIGHTS_FILE = "model.pt"


def write_eager_artifact(prep, out: Path, batch: int = 1) -> Path:
    """`out/<name>-torch-fp32/` with model.pt (prep.fused's state_dict) and manifest.json."""
    folder = Path(out) / f"{prep.name}-{EAGER_RUNTIME}-fp32"
    s = prep.input_size
    with atomic_path(folder, is_dir=True) as tmp:
        start = time.perf_counter()
        torch.save(prep.fused.state_dict(), tmp / WEIGHTS_FILE)
        manifest = {
            "schema_version": SCHEMA_VERSION, "target": EAGER_RUNTIME, "precision": "fp32", "runtime": EAGER_RUNTIME,
            "artifact": {"file": WEIGHTS_FILE, "sha256": sha256_path(tmp / WEIGHTS_FILE),
                         "size_bytes": size_bytes(tmp / WEIGHTS_FILE)},
            "model": prep.model_meta, "source": prep.source,
            "input": {"name": "input", "shape": [batch, 3, s, s], "layout": "NCHW", "dtype": "float32",
                      "color": "RGB"},
            "output": {"name": "logits", "shape": [batch, prep.model_meta["num_classes"]], "dtype": "float32"},
            "preprocessing": prep.preprocessing.as_dict(),
            "tools": environment_versions(),
            "conversion": {"seconds": round(time.perf_counter() - start, 3), "options": {},
                           "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                           "how": "the PyTorch model's state_dict; the runner rebuilds the named architecture"},
            "verification": {"passed": True, "why": "the PyTorch model itself (the reference)"},
        }
        write_json(tmp / MANIFEST_NAME, manifest)
    return folder
