"""The run folder: a lock against concurrent runs, and a record of what each stage produced.

state.json maps each stage (or sub-step, e.g. one artifact) to the hash of everything it
depended on and the outputs it wrote. A step whose key is unchanged and whose outputs exist
is skipped. state.json is rewritten atomically after every step, so a kill at any moment
leaves the folder consistent: finished steps stay valid, an unfinished one is redone.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

from ..errors import VanillaNetEdgeError
from ..fileio import pid_alive, clean_partials, write_json


class RunLockedError(VanillaNetEdgeError):
    pass


def content_key(*parts) -> str:
    """A stable hash of JSON-able settings and file digests."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.state_path = self.path / "state.json"
        self.lock_path = self.path / ".lock"
        self.state: dict = {}

    # -- lock ------------------------------------------------------------------------------
    def __enter__(self) -> "RunDir":
        self.path.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        while True:
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = self._holder()
                if holder and holder.get("host") == me["host"] and not pid_alive(int(holder.get("pid", 0))):
                    self.lock_path.unlink(missing_ok=True)   # stale: its process is gone
                    continue
                raise RunLockedError(
                    f"{self.path} is in use by another run (pid {holder.get('pid')} on {holder.get('host')})",
                    hint="wait for it to finish, or use another --out") from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            break
        clean_partials(self.path)
        for sub in self.path.iterdir():
            if sub.is_dir():
                clean_partials(sub)
        self.state = self._read_state()
        return self

    def __exit__(self, *exc) -> None:
        self.lock_path.unlink(missing_ok=True)

    def _holder(self) -> dict:
        try:
            return json.loads(self.lock_path.read_text() or "{}")
        except (OSError, json.JSONDecodeError):
            return {}

    # -- state -----------------------------------------------------------------------------
    def _read_state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def done(self, step: str, key: str) -> dict | None:
        """The recorded result of `step` if it ran with this key and its outputs still exist."""
        entry = self.state.get(step)
        if not entry or entry.get("key") != key:
            return None
        if not all((self.path / out).exists() for out in entry.get("outputs", [])):
            return None
        return entry

    def record(self, step: str, key: str, outputs: list[str | Path], result: dict | None = None) -> None:
        rel = [str(Path(o).resolve().relative_to(self.path.resolve())) for o in outputs]
        self.state[step] = {"key": key, "outputs": rel, "result": result or {}}
        write_json(self.state_path, self.state)

    def forget(self, prefix: str) -> None:
        for step in [s for s in self.state if s == prefix or s.startswith(prefix + ":")]:
            del self.state[step]
        write_json(self.state_path, self.state)
