"""The device side: what runs on a remote machine, from a self-contained zip (see bundle.py).

It needs only Python 3.9+, numpy and the runtimes: the same runner and harness code as a
local `bench` (devices/*.py), none of torch or the converters.

    python runner.pyz describe [RUNTIME...] -> JSON: machine description, runtimes usable here
    python runner.pyz latency < job.json    -> JSON: one benchmark round (as devices/worker.py)
    python runner.pyz receive DEST FILES BYTES SHA256 < x.tar
                                            -> unpack an artifact into DEST, atomically, only
                                               when its files match (see content_digest)
    python runner.pyz serve                 -> framed requests on stdin (load, run, close)
    python runner.pyz peaks [SECONDS]       -> JSON: matmul peaks per runtime and precision
    python runner.pyz profile < job.json    -> JSON: one artifact's layer profile (profiler or
                                               op probe, as devices/layer_profile.py)

serve's frames: one JSON header line, then header["nbytes"] raw bytes (C-order float32).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path

from ..devices.telemetry_off import turn_off_runtime_telemetry
from ..errors import VanillaNetEdgeError

# The bundle's vanillanet_edge/__init__.py is a stub: the device side turns the runtimes'
# telemetry off here, before any command can load one.
turn_off_runtime_telemetry()

PROTOCOL = 1
COMPLETE = ".complete"       # written last into a received artifact: the content digest's sha256


class IncompleteTransfer(Exception):
    """What arrived is not what the host sent (a cut or altered stream)."""


def content_files(folder: Path) -> list[Path]:
    """The regular files under `folder` (not .complete), sorted: what content_digest covers."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not p.is_symlink() and p.relative_to(folder).as_posix() != COMPLETE)


def content_digest(folder: Path) -> tuple[int, int, str]:
    """(files, bytes, sha256) of a folder's files: the sha256 covers each file's relative path,
    size and own sha256, so a missing, extra, cut or renamed file changes it. The host computes
    it before sending; the device recomputes it over what it unpacked before publishing.

    Not fileio.sha256_path, on purpose (both are sha256 over [relative name, size, file sha256]
    listings, but they cover different files and their values live in different places):
    this one covers exactly what write_tar sends (regular files, no symlinks, never the
    .complete marker that receive() writes into the folder itself) and reports the count and
    bytes for a cut transfer's message; its values sit in .complete markers on devices.
    sha256_path follows symlinks, counts every file, and its values key run-folder caches,
    manifests, Ray node caches and the device folder names (`artifacts/<sha256_path[:20]>`):
    one function for both would change one set of stored values, re-running cached steps or
    re-sending every artifact, for no gain in safety."""
    total, listing = 0, hashlib.sha256()
    files = content_files(folder)
    for path in files:
        h, size = hashlib.sha256(), 0
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
                size += len(block)
        total += size
        listing.update(f"{path.relative_to(folder).as_posix()}\0{size}\0{h.hexdigest()}\n".encode())
    return len(files), total, listing.hexdigest()


def describe(wanted: list[str]) -> dict:
    """Machine description and which of the `wanted` runtimes (all when empty) import here."""
    from ..devices.machine import describe_machine  # stdlib only: works before numpy is there

    out = {"protocol": PROTOCOL, "machine": describe_machine(), "python_executable": sys.executable,
           "python": sys.version.split()[0], "runtimes": {}}
    if wanted == ["--machine"]:      # the machine only: no runtime imports (fast)
        return out
    try:
        import numpy  # noqa: F401  (every runner needs it)
    except ImportError:
        out["numpy"] = False
        return out
    out["numpy"] = True
    from ..devices.registry import get_runner, runtime_names

    for name in wanted or runtime_names():
        try:
            ok, why = get_runner(name).availability()
        except Exception as exc:        # a broken install must not hide the other runtimes
            ok, why = False, f"{type(exc).__name__}: {exc}"
        out["runtimes"][name] = {"available": ok, "reason": why}
    return out


def receive(dest: str, expected: tuple[int, int, str], stream=None) -> dict:
    """Unpack the tar on stdin next to DEST, check its files against `expected` (the host's
    content_digest), then rename into place: never a half artifact. A stream cut between two
    members reads like a clean end of archive; only the digest tells it from a whole one."""
    final = Path(dest)
    partial = final.with_name(f".{final.name}.partial-{os.getpid()}")
    partial.mkdir(parents=True)
    try:
        with tarfile.open(fileobj=stream or sys.stdin.buffer, mode="r|") as tar:
            for member in tar:     # our own tar, but refuse anything escaping the folder anyway
                if member.name.startswith(("/", "..")) or ".." in Path(member.name).parts:
                    raise ValueError(f"refusing unsafe path in artifact tar: {member.name}")
                if not (member.isfile() or member.isdir()):
                    raise ValueError(f"refusing non-file entry in artifact tar: {member.name}")
                if Path(member.name).as_posix() == COMPLETE:
                    raise ValueError(f"refusing {COMPLETE} inside an artifact tar")
                if hasattr(tarfile, "data_filter"):    # Python >= 3.9.17 / 3.11.4
                    tar.extract(member, partial, filter="data")
                else:
                    tar.extract(member, partial)
        got = content_digest(partial)
        if tuple(got) != tuple(expected):
            raise IncompleteTransfer(f"the artifact arrived incomplete or changed: {got[0]} files, {got[1]} "
                                     f"bytes, sha256 {got[2][:16]}... where {expected[0]} files, "
                                     f"{expected[1]} bytes, sha256 {expected[2][:16]}... were sent")
        (partial / COMPLETE).write_text(expected[2] + "\n")
        if final.exists():
            if (final / COMPLETE).is_file() and (final / COMPLETE).read_text().strip() == expected[2]:
                shutil.rmtree(partial)         # someone else finished the same content first
            else:                              # left by an older, unchecked transfer: replace it
                old = final.with_name(f".{final.name}.partial-{os.getpid()}-old")
                final.rename(old)
                partial.rename(final)
                shutil.rmtree(old, ignore_errors=True)
        else:
            partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return {"ok": True, "path": str(final)}


def read_frame(stream) -> tuple[dict, bytes] | None:
    line = stream.readline()
    if not line:
        return None
    header = json.loads(line)
    data = stream.read(header.get("nbytes", 0)) if header.get("nbytes") else b""
    return header, data


def write_frame(stream, header: dict, data: bytes = b"") -> None:
    stream.write((json.dumps({**header, "nbytes": len(data)}) + "\n").encode())
    stream.write(data)
    stream.flush()


def serve() -> None:
    """Load one artifact, then run batches until `close` or end of input."""
    import numpy as np

    from ..devices.artifacts import resolve
    from ..devices.base import pinned_settings
    from ..devices.machine import describe_machine
    from ..devices.registry import get_runner

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr          # stray prints of a runtime must not corrupt the frames
    session = None
    while True:
        frame = read_frame(inp)
        if frame is None:
            return
        header, data = frame
        try:
            if header["op"] == "load":
                [ref] = resolve([Path(header["artifact"])])
                runner = get_runner(header["runtime"])
                runner.require()
                session = runner.load(ref.artifact, ref.manifest,
                                      **pinned_settings(ref.manifest, header.get("settings", {})))
                write_frame(out, {"ok": True, "settings": session.settings, "batch": session.batch,
                                   "machine": describe_machine()})
            elif header["op"] == "run":
                x = np.frombuffer(data, dtype=np.float32).reshape(header["shape"])
                t0 = time.perf_counter()
                y = np.ascontiguousarray(session.run_all(x), dtype=np.float32)
                seconds = time.perf_counter() - t0
                write_frame(out, {"ok": True, "shape": list(y.shape), "seconds": seconds}, y.tobytes())
            elif header["op"] == "close":
                write_frame(out, {"ok": True})
                return
            else:
                raise ValueError(f"unknown op {header['op']!r}")
        except VanillaNetEdgeError as exc:      # ours (a refused manifest, a damaged artifact): as it reads
            write_frame(out, {"ok": False, "error": str(exc)})
        except Exception as exc:
            write_frame(out, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})


def profile(job: dict) -> dict:
    """The layer_profile record of job["artifact"] (a received artifact folder) with
    job["settings"]: profile_artifact's keyword arguments (runs, warmup, threads, ...)."""
    from ..devices.artifacts import resolve
    from ..devices.layer_profile import profile_artifact

    [ref] = resolve([Path(job["artifact"])])
    stdout, sys.stdout = sys.stdout, sys.stderr      # a runtime's stray prints must not hide the record
    try:
        return profile_artifact(ref, **job["settings"])
    finally:
        sys.stdout = stdout


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    if command == "describe":
        print(json.dumps(describe(argv[1:])))
    elif command == "latency":
        from ..devices import worker
        return worker.main(["latency"])
    elif command == "receive" and len(argv) == 5:
        try:
            print(json.dumps(receive(argv[1], (int(argv[2]), int(argv[3]), argv[4]))))
        except (IncompleteTransfer, tarfile.TarError, ValueError) as exc:
            print(f"receive: {type(exc).__name__}: {exc}; nothing was published", file=sys.stderr)
            return 3
    elif command == "serve":
        serve()
    elif command == "peaks":         # matmul peaks per precision, through the device's runtimes
        from ..devices.peak import measure_peaks
        seconds = float(argv[1]) if len(argv) > 1 else 1.0
        print(json.dumps(measure_peaks(seconds_per_probe=seconds)))
    elif command == "profile":
        try:
            print(json.dumps(profile(json.loads(sys.stdin.read())), default=str))
        except VanillaNetEdgeError as exc:      # a refused manifest or damaged artifact: its message alone
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0
