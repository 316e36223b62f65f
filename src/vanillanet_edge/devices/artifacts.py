"""What `bench` and `eval` accept: artifact folders, folders of them, or a checkpoint (PyTorch)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import VanillaNetEdgeError
from ..manifest import MANIFEST_NAME, read_manifest, verified_artifact
from .registry import EAGER_RUNTIME

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")


@dataclass
class ArtifactRef:
    path: Path          # the artifact folder (or the checkpoint file for PyTorch)
    artifact: Path      # the file the runtime loads
    manifest: dict
    runtime: str        # the artifact's own runtime

    @property
    def name(self) -> str:
        return self.path.name if self.path.is_dir() else self.path.stem


def checkpoint_manifest(path: Path, batch: int = 1, input_size: int | None = None) -> dict:
    """A manifest-shaped description of a checkpoint, so PyTorch eager runs like any artifact."""
    from ..calibration.inputs import input_size_of, preprocessing_of
    from ..model.checkpoint import load_checkpoint
    from ..model.labels import labels_for
    from ..model.profile import summarize

    ckpt = load_checkpoint(path)
    size = input_size_of(ckpt, input_size)
    stats = summarize(ckpt.model, size)
    c = ckpt.config
    labels, labels_source = labels_for(ckpt.meta.get("class_names"), c.num_classes)
    return {"target": EAGER_RUNTIME, "precision": "fp32", "runtime": EAGER_RUNTIME,
            "artifact": {"file": path.name, "size_bytes": path.stat().st_size},
            "model": {"variant": c.name, "width": c.width, "num_classes": c.num_classes,
                      "class_names": ckpt.meta.get("class_names"), "labels": labels,
                      "labels_source": labels_source, "macs": stats["macs"],
                      "params": stats["params"]},
            "input": {"name": "input", "shape": [batch, 3, size, size], "layout": "NCHW", "dtype": "float32"},
            "output": {"name": "logits", "shape": [batch, c.num_classes], "dtype": "float32"},
            "preprocessing": preprocessing_of(ckpt, size).as_dict()}


def resolve(paths, batch: int = 1) -> list[ArtifactRef]:
    """Expand the user's arguments into artifacts, in a stable order."""
    refs: list[ArtifactRef] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise VanillaNetEdgeError(f"not found: {path}", hint="pass artifact folders written by "
                                      "`vanillanet-edge convert`, a folder of them, or a checkpoint")
        if path.is_file() and path.suffix in CHECKPOINT_SUFFIXES:
            manifest = checkpoint_manifest(path, batch)
            refs.append(ArtifactRef(path, path, manifest, EAGER_RUNTIME))
        elif (path / MANIFEST_NAME).exists():
            refs.append(_from_folder(path))
        elif path.is_dir():
            found = sorted(p.parent for p in path.glob(f"*/{MANIFEST_NAME}"))
            if not found:
                raise VanillaNetEdgeError(f"{path} holds no artifact folders (no */{MANIFEST_NAME})")
            refs.extend(_from_folder(p) for p in found)
        else:
            raise VanillaNetEdgeError(f"{path} is neither an artifact folder nor a checkpoint")
    return refs


def _from_folder(folder: Path) -> ArtifactRef:
    """An artifact folder: its manifest validated (every path inside the folder) and its files
    checked against the manifest's sizes and sha256 (once per process), here and on a device,
    before any runtime sees a byte of them or anything is sent anywhere."""
    manifest = read_manifest(folder)
    return ArtifactRef(folder, verified_artifact(folder, manifest), manifest, manifest["runtime"])
