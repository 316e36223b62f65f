"""Saving a Core ML model as an .mlpackage whose bytes depend only on its content, and the
app-facing metadata (author, license, description, version) it carries.

coremltools 9.0 writes three things that change from one save of the same model to the next:
  - Manifest.json: libmodelpackage names each item (the spec, the weights folder) by a random
    uuid4, and rootModelIdentifier points at the spec's;
  - model.mlmodel: the protobuf is serialized without `deterministic=True`, so its maps
    (metadata.userDefined, the program's functions and attributes) come out in a different
    order per process (the parsed specs compare equal; the bytes do not);
  - metadata.userDefined["com.github.apple.coremltools.conversion_date"]: today's date.
The device cache and the pipeline's skip decisions are keyed by content hashes, so after
coremltools saves we rewrite: the spec serialized deterministically without the date (the
manifest's conversion.created_utc keeps the time), and each item's identifier a uuid5 of
its path and its content's sha256.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path

from ..errors import ConversionError
from ..fileio import atomic_write_bytes, atomic_write_text, sha256_path

_DATE_KEY = "com.github.apple.coremltools.conversion_date"
# A fixed namespace for our item identifiers: uuid5(namespace, "<item path>:<sha256>").
_ITEM_NAMESPACE = uuid.UUID("6f1d2c3a-5b7e-5a4c-9d8e-0a1b2c3d4e5f")
APP_INFO_KEYS = ("author", "license", "description", "version")


def set_app_metadata(mlmodel, app_info: dict, default_description: str) -> None:
    """Author, license, description and version in the model's metadata (what Xcode shows);
    any other field (e.g. a name) as user-defined metadata."""
    mlmodel.short_description = str(app_info.get("description") or default_description)
    for key, attr in (("author", "author"), ("license", "license"), ("version", "version")):
        if app_info.get(key) is not None:
            setattr(mlmodel, attr, str(app_info[key]))
    for key, value in sorted(app_info.items()):
        if key not in APP_INFO_KEYS and value is not None:
            mlmodel.user_defined_metadata[str(key)] = str(value)


def save_deterministic(mlmodel, package: Path) -> None:
    """mlmodel.save(package), then make its bytes a function of its content (module docstring)."""
    from coremltools.proto import Model_pb2

    mlmodel.save(str(package))
    manifest_path = package / "Manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entries = manifest.get("itemInfoEntries", {})
    root = manifest.get("rootModelIdentifier")
    if root not in entries:
        raise ConversionError(f"{package}: Manifest.json has no root model entry (coremltools changed?)")
    spec_path = package / "Data" / entries[root]["path"]
    spec = Model_pb2.Model()
    spec.ParseFromString(spec_path.read_bytes())
    if _DATE_KEY in spec.description.metadata.userDefined:
        del spec.description.metadata.userDefined[_DATE_KEY]
    atomic_write_bytes(spec_path, spec.SerializeToString(deterministic=True))

    renamed = {}
    for old, entry in entries.items():
        content = sha256_path(package / "Data" / entry["path"])
        renamed[old] = str(uuid.uuid5(_ITEM_NAMESPACE, f"{entry['path']}:{content}"))
    manifest["itemInfoEntries"] = {renamed[k]: v for k, v in entries.items()}
    manifest["rootModelIdentifier"] = renamed[root]
    # libmodelpackage's own layout: 4-space indent, sorted keys
    atomic_write_text(manifest_path, json.dumps(manifest, indent=4, sort_keys=True) + "\n")

