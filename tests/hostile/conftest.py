"""Fixtures for hostile-input tests. The remote ones reuse tests/remote's real OpenSSH server on
loopback (sshd.py) and its devices.toml writer (devices_toml.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

# tests/ has no __init__.py files: put tests/remote on sys.path so its helpers import as
# top-level modules here too (as they do in tests/remote).
_REMOTE = str(Path(__file__).resolve().parent.parent / "remote")
if _REMOTE not in sys.path:
    sys.path.insert(0, _REMOTE)

from sshd import LoopbackSshd, free_tcp_port  # noqa: E402


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A started LoopbackSshd (see tests/remote/sshd.py); the device is this machine."""
    server = LoopbackSshd(tmp_path_factory.mktemp("hostile-sshd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens."""
    return free_tcp_port()
