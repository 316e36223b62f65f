"""Smoke tests of the loopback sshd fixture, with the system's /usr/bin/ssh."""
from __future__ import annotations

import subprocess
import sys


def _ssh(args: list[str], command: str) -> subprocess.CompletedProcess:
    return subprocess.run(args + [command], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def test_echo_with_right_host_key(sshd):
    p = _ssh(sshd.ssh_base_args(sshd.known_hosts), "echo ok")
    assert (p.returncode, p.stdout.strip()) == (0, "ok"), p.stderr


def test_wrong_host_key_is_refused(sshd):
    p = _ssh(sshd.ssh_base_args(sshd.wrong_known_hosts), "echo ok")
    assert p.returncode == 255
    assert "IDENTIFICATION HAS CHANGED" in p.stderr
    assert "Host key verification failed" in p.stderr


def test_unknown_host_key_is_refused(sshd):
    p = _ssh(sshd.ssh_base_args(sshd.empty_known_hosts), "echo ok")
    assert p.returncode == 255
    assert "Host key verification failed" in p.stderr


def test_device_down_is_connection_refused(sshd, free_port):
    args = sshd.ssh_base_args()
    args[args.index("-p") + 1] = str(free_port)
    p = _ssh(args, "echo ok")
    assert p.returncode == 255
    assert "Connection refused" in p.stderr


def test_venv_python_as_remote_python(sshd):
    # The remote shell has sshd's PATH, not the venv's: call the interpreter by absolute path.
    p = _ssh(sshd.ssh_base_args(), f'"{sys.executable}" -c "import onnxruntime, numpy; print(\'ok\')"')
    assert (p.returncode, p.stdout.strip()) == (0, "ok"), p.stderr
