"""The run folder: a lock against concurrent runs, and a record of what each stage produced.

state.json maps each stage (or sub-step, e.g. one artifact) to the hash of everything it
depended on and the outputs it wrote. A step whose key is unchanged and whose outputs exist
is skipped. state.json is rewritten atomically after every step, so a kill at any moment
leaves the folder consistent: finished steps stay valid, an unfinished one is redone.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
from pathlib import Path

from ..errors import VanillaNetEdgeError
from ..fileio import claim_folder, clean_partials, hold_lock, release_lock, write_json


class RunLockedError(VanillaNetEdgeError):
    pass


def _read_holder(fd: int) -> dict | None:
    """The pid and host the lock's holder wrote, or None (not written yet, or garbage)."""
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("pid") and data.get("host"):
        return {"pid": data["pid"], "host": data["host"]}
    return None


def content_key(*parts) -> str:
    """A stable hash of JSON-able settings and file digests."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.state_path = self.path / "state.json"
        self.lock_path = self.path / ".lock"
        self.state: dict = {}
        self._lock_fd: int | None = None

    # -- lock ------------------------------------------------------------------------------
    # The lock is an flock on `.lock`, which the kernel releases when the holder exits, however
    # it exits (crash, SIGKILL, power cut): no stale lock to judge, no PID to trust, and two
    # processes can never both hold it. The file itself stays; the pid and host written into
    # it only name the holder in the error message. Deleting it on release would let a third
    # process lock a fresh file while a second still waits on the old one.
    def __enter__(self) -> "RunDir":
        claim_folder(self.path, "run folder")
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise VanillaNetEdgeError(
                f"cannot open the lock file {self.lock_path}: {exc.strerror}",
                hint="it should be a plain file; remove it if nothing is running in that folder") from None
        hold_lock(fd)                # a forked child must not keep the folder locked
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            release_lock(fd)
            who = (f"pid {holder['pid']} on host {holder['host']}" if holder
                   else "another process (it has not written its pid yet)")
            raise RunLockedError(
                f"run folder {self.path} is in use by {who}",
                hint="wait for that run to finish, or pass another --out") from None
        except OSError as exc:       # e.g. ENOLCK: a network file system without locking
            release_lock(fd)
            raise VanillaNetEdgeError(
                f"cannot lock {self.lock_path}: {exc.strerror}",
                hint="put the run folder (--out) on a file system that supports file locks") from None
        except BaseException:
            release_lock(fd)
            raise
        self._lock_fd = fd
        try:
            info = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
            clean_partials(self.path)
            for sub in self.path.iterdir():
                if sub.is_dir():
                    clean_partials(sub)
            self.state = self._read_state()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._release()

    def _release(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)      # no longer anyone's: the next error message must not name us
        except OSError:
            pass
        finally:
            release_lock(fd)

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
