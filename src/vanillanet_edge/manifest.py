"""manifest.json: the artifact's contract (input, layout, preprocessing), provenance and checks.

Versioned (`schema_version`) and validated when read, so harnesses on any device can trust it.
The reader needs the standard library only: it ships in the device runner bundle. The writer
side (environment_versions, the manifest's contents) is converters/.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import VanillaNetEdgeError
from .records import MANIFEST_SCHEMA

SCHEMA_VERSION = MANIFEST_SCHEMA
MANIFEST_NAME = "manifest.json"
REQUIRED = {
    "schema_version": int, "target": str, "precision": str, "runtime": str, "artifact": dict,
    "model": dict, "source": dict, "input": dict, "output": dict, "preprocessing": dict,
    "tools": dict, "conversion": dict, "verification": dict,
}


class ManifestError(VanillaNetEdgeError):
    pass


def validate(data: dict, where: str = "manifest") -> dict:
    if not isinstance(data, dict):
        raise ManifestError(f"{where} is not a JSON object")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(f"{where} has schema_version {data.get('schema_version')!r}; this "
                            f"vanillanet-edge reads version {SCHEMA_VERSION}",
                            hint="re-convert the artifact with this version of vanillanet-edge")
    for key, typ in REQUIRED.items():
        if not isinstance(data.get(key), typ):
            raise ManifestError(f"{where} lacks '{key}' (or it is not a {typ.__name__})",
                                hint="the file was edited or written by another tool; re-convert")
    for key in ("name", "shape", "layout", "dtype"):
        if key not in data["input"]:
            raise ManifestError(f"{where}: input.{key} is missing")
    return data


def read_manifest(path: str | Path) -> dict:
    """Read and validate a manifest, given its file or the artifact folder that holds it."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.exists():
        raise ManifestError(f"no manifest at {path}",
                            hint="point at an artifact folder written by `vanillanet-edge convert`")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from None
    return validate(data, str(path))
