"""Write devices.toml entries for the loopback sshd (tests/remote/sshd.py)."""
from __future__ import annotations

import sys
from pathlib import Path

from sshd import LoopbackSshd


def device_entry(server: LoopbackSshd, workdir: Path, **over) -> dict:
    entry = {"url": server.url, "identity_file": str(server.identity_file),
             "known_hosts": str(server.known_hosts), "python": sys.executable,
             "workdir": str(workdir), "connect_timeout_s": 5, "run_timeout_s": 120}
    entry.update(over)
    return entry


def write_devices(path: Path, devices: dict) -> Path:
    lines = []
    for name, entry in devices.items():
        lines.append(f"[devices.{name}]")
        for k, v in entry.items():
            lines.append(f"{k} = {v!r}".replace("'", '"') if not isinstance(v, bool) else f"{k} = {str(v).lower()}")
    path.write_text("\n".join(lines) + "\n")
    return path
