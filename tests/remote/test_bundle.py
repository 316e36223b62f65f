"""The runner bundle carries every device-side module, subpackages included, and they import
from the zip alone without torch or any host-side part of the package."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from vanillanet_edge.remote import bundle

PACKAGE = Path(bundle.__file__).resolve().parent.parent


def _zip(tmp_path) -> Path:
    data, digest = bundle.build()
    path = tmp_path / f"runner-{digest[:12]}.pyz"
    path.write_bytes(data)
    return path


def test_bundle_holds_every_device_module_including_subpackages(tmp_path):
    names = set(zipfile.ZipFile(_zip(tmp_path)).namelist())
    expected = {f"vanillanet_edge/{p.relative_to(PACKAGE).as_posix()}" for p in (PACKAGE / "devices").rglob("*.py")}
    expected -= {f"vanillanet_edge/{s}" for s in bundle.SKIP}
    assert expected <= names, sorted(expected - names)
    assert "vanillanet_edge/devices/coreml_mil/__init__.py" in names
    assert "vanillanet_edge/manifest.py" in names


def test_device_side_modules_import_from_the_zip_without_torch(tmp_path):
    """Isolated interpreter, the zip first on the path, torch made unimportable: the runners,
    the harness and the Core ML interpreter package all import from the bundle."""
    zpath = _zip(tmp_path)
    code = f"""
import sys
sys.path.insert(0, {str(zpath)!r})
sys.modules["torch"] = None
import vanillanet_edge
assert vanillanet_edge.__file__.startswith({str(zpath)!r}), vanillanet_edge.__file__
from vanillanet_edge.devices.coreml_mil import MILProgram, supported_ops
assert "conv" in supported_ops()
import vanillanet_edge.devices.coreml_mil.program
from vanillanet_edge.devices.registry import runner_classes
runner_classes()
import vanillanet_edge.devices.latency, vanillanet_edge.devices.worker, vanillanet_edge.devices.peak
import vanillanet_edge.remote.runner
"""
    subprocess.run([sys.executable, "-I", "-c", code], check=True, timeout=120)
