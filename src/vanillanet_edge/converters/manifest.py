"""The writer's side of manifest.json; the reader (schema, validation) is vanillanet_edge/manifest.py,
below every layer that reads artifacts. Its names are re-exported here for existing imports."""
from __future__ import annotations

import platform

from ..manifest import MANIFEST_NAME, REQUIRED, SCHEMA_VERSION, ManifestError, read_manifest, validate

__all__ = ["MANIFEST_NAME", "REQUIRED", "SCHEMA_VERSION", "ManifestError", "environment_versions",
           "read_manifest", "validate"]


def environment_versions() -> dict:
    from importlib.metadata import version

    import numpy
    import torch
    return {"python": platform.python_version(), "platform": platform.platform(),
            "vanillanet-edge": version("vanillanet-edge"), "torch": torch.__version__,
            "numpy": numpy.__version__}
