"""Fixtures for remote-device tests: a real OpenSSH server on 127.0.0.1 (see sshd.py)."""
from __future__ import annotations

import pytest

# tests/ has no __init__.py files: pytest puts this folder on sys.path, so sshd.py imports as
# a top-level module (test modules here may do the same).
from sshd import LoopbackSshd, free_tcp_port


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A started LoopbackSshd (host, port, user, identity_file, known_hosts, ...). Under 1 s when
    openssh-server is installed; the first run on a fresh box apt-installs it (~10-60 s)."""
    server = LoopbackSshd(tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens (a device that is down). Free."""
    return free_tcp_port()
