"""The runner bundle: a zip of the device-side subset of vanillanet-edge, run as
`python runner-<hash>.pyz`. Built byte-for-byte reproducibly, so its hash names it and a
device that already has it is not sent it again.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent          # .../vanillanet_edge
# What the device needs: the runners and harness (devices/), the manifest reader, errors,
# and this package's runner. accuracy.py stays home: the host decodes images and scores.
FILES = ["errors.py", "fileio.py", "limits.py", "manifest.py", "records.py", "remote/__init__.py", "remote/runner.py"]
DEVICE_MODULES = "devices"
SKIP = {"devices/accuracy.py"}
STUB_INIT = '"""vanillanet-edge device runner (a subset of the package; see remote/bundle.py)."""\n'
MAIN = "import sys\nfrom vanillanet_edge.remote.runner import main\nsys.exit(main(sys.argv[1:]))\n"


def _members() -> dict[str, bytes]:
    files = {"__main__.py": MAIN.encode(), "vanillanet_edge/__init__.py": STUB_INIT.encode()}
    # Every module of devices/, its subpackages included (a package such as coreml_mil/ would
    # otherwise be missing on the device and fail only when first imported there).
    names = FILES + sorted(p.relative_to(PACKAGE).as_posix() for p in (PACKAGE / DEVICE_MODULES).rglob("*.py"))
    for rel in names:
        if rel not in SKIP:
            files[f"vanillanet_edge/{rel}"] = (PACKAGE / rel).read_bytes()
    return files


@lru_cache(maxsize=1)
def build() -> tuple[bytes, str]:
    """(zip bytes, sha256 hex). Fixed timestamps and order: same sources, same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(_members().items()):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()
