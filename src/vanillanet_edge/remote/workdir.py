"""Where a Device's harness runs: here, or the runner bundle in our own folder on the device.

`Here` runs everything in this process and its worker processes (this machine: nothing sent).
`Workdir` is our folder on a device reached through any Transport (transport.py): it makes and
marks the folder, sends the runner zip (bundle.py) and the artifacts, content-addressed (a
folder named by the artifact's fileio.sha256_path; its .complete marker holds the content
digest the device itself checked), and runs the runner's commands there. Both offer the same
methods, so remote/device.Device holds the rest once.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import tarfile
from pathlib import Path

import numpy as np

from ..devices.artifacts import ArtifactRef
from ..devices.base import Session, pinned_settings
from ..errors import VanillaNetEdgeError
from ..fileio import sha256_path
from . import bundle
from .devices_file import DeviceSpec
from .runner import COMPLETE, content_digest
from .transport import DeviceError, Transport, remote_path

MARKER = ".vanillanet-edge-workdir"      # only ever in our own folder (spec.own_dir)
NOT_OURS = 3                            # exit status of the prepare script: own_dir is someone else's
# Run on the device by its Python: exit 0 when file argv[1] has sha256 argv[2] and size argv[3].
_VERIFY = ("import hashlib,sys;p,h,n=sys.argv[1:];d=open(p,'rb').read();"
           "sys.exit(0 if len(d)==int(n) and hashlib.sha256(d).hexdigest()==h else 3)")


class Here:
    """This machine: the harness in this process (sessions) and its worker processes (rounds)."""

    execute = None                      # devices/latency.bench_jobs' own local worker processes
    bench_timeout: dict = {}            # and its own timeout

    def __init__(self, spec: DeviceSpec):
        self.spec = spec
        self.uploaded: list[str] = []   # nothing is ever sent

    def describe(self, wanted: list[str]) -> dict:
        from .runner import describe
        return describe(wanted)

    def machine(self) -> dict:
        from ..devices.machine import describe_machine
        return describe_machine()

    def peaks(self, seconds: float) -> dict:
        from ..devices.peak import measure_peaks
        return measure_peaks(seconds_per_probe=seconds)

    def profile(self, ref: ArtifactRef, settings: dict) -> dict:
        """The artifact's layer profile, in this process (devices/layer_profile.py)."""
        from ..devices.layer_profile import profile_artifact
        return profile_artifact(ref, **settings)

    def session(self, ref: ArtifactRef, runtime: str, settings: dict) -> Session:
        from ..devices.registry import get_runner
        return get_runner(runtime).load(ref.artifact, ref.manifest, **pinned_settings(ref.manifest, settings))

    def clean(self) -> str:
        return "nothing to clean on this machine"

    def remove_uploads(self) -> None:
        pass


class Workdir:
    """Our folder on a device (spec.own_dir) with the runner in it, reached through `transport`."""

    def __init__(self, spec: DeviceSpec, transport: Transport):
        self.spec = spec
        self.transport = transport
        self.path: str | None = None            # absolute, once known
        self._runner: str | None = None         # device path of the runner zip
        self._sent: dict[str, str] = {}         # local artifact folder -> device folder
        self.uploaded: list[str] = []           # sent by us this time (removed if not keep_cache)

    @property
    def bench_timeout(self) -> dict:
        return {"timeout": self.spec.run_timeout_s}

    # -- setting up the device's working folder --------------------------------------------
    def prepare(self) -> None:
        if self._runner:
            return
        out = self.transport.run(self._prepare_script(), timeout=self.spec.connect_timeout_s + 30, check=False)
        if out.returncode == NOT_OURS:
            raise DeviceError(
                f"device '{self.spec.name}': {self.spec.own_dir} already exists and is not ours "
                "(it holds files but no vanillanet-edge marker); refusing to use or clean it",
                hint="move that folder away, or set workdir in devices.toml to another folder "
                     "(we make and use only its vanillanet-edge/ subfolder)")
        if out.returncode != 0:
            tail = "\n".join(out.stderr.decode(errors="replace").strip().splitlines()[-5:])
            raise DeviceError(f"device '{self.spec.name}': could not make {self.spec.own_dir} "
                              f"(exit {out.returncode}):\n{tail}", returncode=out.returncode)
        self.path = out.stdout.decode().strip().splitlines()[-1]
        self.transport.pid_dir = f"{self.path}/run"
        data, digest = bundle.build()
        runner = f"{self.path}/runner-{digest[:16]}.pyz"
        have = self.transport.run(f"{self._verify_command(remote_path(runner), digest, len(data))} 2>/dev/null "
                                  "&& echo yes || echo no")
        if have.stdout.decode().strip().splitlines()[-1:] != ["yes"]:
            up = self.transport.run(self.runner_upload_command(runner, digest, len(data)), input=data, check=False)
            if up.returncode == 3:
                raise DeviceError(f"device '{self.spec.name}': the runner arrived incomplete or changed "
                                  "(size or sha256 differ from what was sent); nothing was kept",
                                  hint="rerun; if it keeps failing, check the connection and the device's disk space")
            if up.returncode != 0:
                tail = "\n".join(up.stderr.decode(errors="replace").strip().splitlines()[-5:])
                raise DeviceError(f"device '{self.spec.name}': sending the runner failed "
                                  f"(exit {up.returncode}):\n{tail}", returncode=up.returncode)
        self._runner = runner

    def _prepare_script(self) -> str:
        """Make (or find) our own folder inside workdir and print its absolute path. The marker
        goes only into a folder we just created or that is empty; a non-empty folder without it
        is someone else's (exit NOT_OURS). The marker says whether we made workdir too."""
        wd, own, mark = (remote_path(self.spec.workdir), remote_path(self.spec.own_dir),
                         remote_path(f"{self.spec.own_dir}/{MARKER}"))
        return (f"if [ -d {wd} ]; then made=no; else mkdir -p {wd} || exit 1; made=yes; fi; "
                f"if mkdir {own} 2>/dev/null; then echo made_parent=$made > {mark} || exit 1; "
                f"elif [ -f {mark} ]; then :; "
                f"elif [ -d {own} ] && [ -z \"$(ls -A {own})\" ]; then echo made_parent=no > {mark} || exit 1; "
                f"else exit {NOT_OURS}; fi; "
                f"mkdir -p {own}/artifacts {own}/run && cd {own} && pwd")

    def _verify_command(self, quoted_path: str, digest: str, size: int) -> str:
        return f"{remote_path(self.spec.python)} -c {shlex.quote(_VERIFY)} {quoted_path} {digest} {size}"

    def runner_upload_command(self, runner: str, digest: str, size: int) -> str:
        """stdin to a hidden partial file, checked (size, sha256) by the device's Python, then
        renamed: a cut transfer is never published as the runner. Exit 3: it did not match."""
        part = remote_path(str(Path(runner).with_name(f".{Path(runner).name}.partial-"))) + "$$"
        return (f"cat > {part} && {self._verify_command(part, digest, size)} "
                f"&& mv -f {part} {remote_path(runner)}; rc=$?; rm -f {part}; exit $rc")

    def command(self, args: str) -> str:
        """The shell command line that runs the runner with `args` in our folder."""
        return f"cd {remote_path(self.path)} && {remote_path(self.spec.python)} {remote_path(self._runner)} {args}"

    def receive_command(self, target: str, digest: tuple[int, int, str]) -> str:
        """The device command that unpacks an artifact tar from stdin into `target`, publishing
        it only when its files match `digest` (count, bytes, sha256 of the listing)."""
        files, nbytes, sha = digest
        return self.command(f"receive {remote_path(target)} {files} {nbytes} {sha}")

    def artifact(self, ref: ArtifactRef) -> str:
        """The artifact's folder on the device; sent only when that content is not there yet
        (its .complete names the content digest: a folder published by an older, unchecked
        transfer is sent again)."""
        key = str(ref.path)
        if key in self._sent:
            return self._sent[key]
        digest = sha256_path(ref.path)[:20]
        folder = f"{self.path}/artifacts/{digest}"
        target = f"{folder}/{ref.path.name}"
        content = content_digest(ref.path)
        have = self.transport.run(f"cat {remote_path(target)}/{COMPLETE} 2>/dev/null; true").stdout.decode().strip()
        if have != content[2]:
            self._send(ref.path, folder, target, content)
            self.uploaded.append(folder)
        self._sent[key] = target
        return target

    def _send(self, local: Path, folder: str, target: str, content: tuple[int, int, str]) -> None:
        # Remove partial uploads a killed run left behind (older than an hour), then stream a tar.
        self.transport.run(f"mkdir -p {remote_path(folder)} && find {remote_path(self.path + '/artifacts')} "
                           f"-mindepth 2 -maxdepth 2 -name '.*.partial-*' -mmin +60 -exec rm -rf {{}} + ; true")
        proc = self.transport.open(self.receive_command(target, content))
        try:
            write_tar(local, proc.stdin)
        except BrokenPipeError:     # the device side died: its stderr below says why
            pass
        try:
            _, err = proc.communicate(timeout=self.spec.run_timeout_s)
        except subprocess.TimeoutExpired:
            self.transport.abort(proc)
            raise DeviceError(f"device '{self.spec.name}': sending {local.name} took over "
                              f"{self.spec.run_timeout_s:.0f} s", kind="timeout") from None
        stderr = err.decode(errors="replace")
        failure = self.transport.failed(proc.returncode, stderr)
        if failure:
            raise failure
        if proc.returncode != 0:
            raise DeviceError(f"device '{self.spec.name}': unpacking {local.name} failed:\n"
                              + "\n".join(stderr.strip().splitlines()[-5:]))

    # -- the runner's commands ------------------------------------------------------------
    def describe(self, wanted: list[str]) -> dict:
        self.prepare()
        out = self.transport.run(self.command(f"describe {' '.join(wanted)}"),
                                 timeout=self.spec.connect_timeout_s + 120)
        return json.loads(out.stdout.decode().splitlines()[-1])

    def machine(self) -> dict:
        self.prepare()
        out = self.transport.run(self.command("describe --machine"), timeout=self.spec.connect_timeout_s + 60)
        return json.loads(out.stdout.decode().splitlines()[-1])["machine"]

    def peaks(self, seconds: float) -> dict:
        self.prepare()
        out = self.transport.run(self.command(f"peaks {seconds:g}"), timeout=self.spec.run_timeout_s)
        return json.loads(out.stdout.decode().splitlines()[-1])

    def _job(self, command: str, job: dict, timeout: float, what: str) -> dict:
        """Run a runner command that reads one JSON job on stdin and prints one JSON record
        last; a non-zero exit is a DeviceError with `what` and the end of its stderr."""
        proc = self.transport.run(self.command(command), input=json.dumps(job).encode(), timeout=timeout,
                                  check=False)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.decode(errors="replace").strip().splitlines()[-6:])
            raise DeviceError(f"{what} on device '{self.spec.name}' failed (exit {proc.returncode}):\n{tail}",
                              returncode=proc.returncode)
        return json.loads(proc.stdout.decode().strip().splitlines()[-1])

    def latency(self, ref: ArtifactRef, runtime: str, settings, timeout: float) -> dict:
        """One benchmark round on the device, in a fresh Python process there."""
        self.prepare()
        job = {"artifact": self.artifact(ref), "runtime": runtime, "settings": settings.__dict__}
        return self._job("latency", job, min(timeout, self.spec.run_timeout_s), f"benchmark round of {ref.name}")

    def profile(self, ref: ArtifactRef, settings: dict) -> dict:
        """The artifact's layer profile made on the device by its runner (`profile`, the same
        devices/layer_profile.py as here), the artifact sent first unless it is there already.
        `settings`: profile_artifact's keyword arguments."""
        self.prepare()
        job = {"artifact": self.artifact(ref), "settings": settings}
        record = self._job("profile", job, self.spec.run_timeout_s, f"profiling {ref.name}")
        record.update(artifact=str(ref.path), name=ref.name)    # the host's artifact, not the device's copy
        return record

    def session(self, ref: ArtifactRef, runtime: str, settings: dict) -> Session:
        self.prepare()
        return RemoteSession(self, self.artifact(ref), runtime, settings)

    def clean(self) -> str:
        """Remove what we put on the device: in our own folder (only when it holds our marker)
        the runners, artifacts/, run/ and the marker; then the folder itself when that left it
        empty, and workdir when we created it and it is empty. Nothing else is touched."""
        own, mark = remote_path(self.spec.own_dir), remote_path(f"{self.spec.own_dir}/{MARKER}")
        wd = remote_path(self.spec.workdir)
        script = (f"if [ -f {mark} ]; then "
                  f"if grep -q made_parent=yes {mark}; then made=yes; else made=no; fi; "
                  f"rm -rf {own}/artifacts {own}/run && rm -f {own}/runner-*.pyz {own}/.runner-*.pyz.partial-* "
                  f"&& rm -f {mark} || exit 1; "
                  f"if rmdir {own} 2>/dev/null; then echo removed; else echo kept-others; fi; "
                  f"if [ $made = yes ]; then rmdir {wd} 2>/dev/null; fi; true; "
                  f"elif [ -e {own} ]; then echo not-ours; else echo absent; fi")
        out = self.transport.run(script).stdout.decode().strip().splitlines()[-1:]
        said = {"removed": "removed",
                "kept-others": "removed our files; kept the folder, which holds files that are not ours",
                "not-ours": "not ours (no vanillanet-edge marker): left alone",
                "absent": "absent"}.get(out[0] if out else "", "absent")
        return f"{self.spec.own_dir} on {self.spec.name}: {said}"

    def remove_uploads(self) -> None:
        """Remove what this call sent (a device that keeps no cache)."""
        if self.uploaded:
            self.transport.run("rm -rf " + " ".join(remote_path(f) for f in self.uploaded), check=False)


class RemoteSession(Session):
    """A Session whose batches run on the device (one `serve` process, model loaded once)."""

    def __init__(self, workdir: Workdir, artifact: str, runtime: str, settings: dict):
        self.workdir = workdir
        self._proc = workdir.transport.open(workdir.command("serve"))
        reply = self._call({"op": "load", "artifact": artifact, "runtime": runtime, "settings": settings})[0]
        self.batch, self.settings, self.machine = reply["batch"], reply["settings"], reply["machine"]
        self.compute_seconds = 0.0        # time the device spent computing (no transfers)

    def _call(self, header: dict, data: bytes = b"") -> tuple[dict, bytes]:
        from .runner import read_frame, write_frame
        name = self.workdir.spec.name
        try:
            write_frame(self._proc.stdin, header, data)
            frame = read_frame(self._proc.stdout)
        except (BrokenPipeError, ValueError):
            frame = None
        if frame is None:
            err = self._proc.stderr.read().decode(errors="replace") if self._proc.poll() is not None else ""
            raise (self.workdir.transport.failed(self._proc.returncode, err) or
                   DeviceError(f"device '{name}': the runner stopped:\n" + "\n".join(err.strip().splitlines()[-5:])))
        if not frame[0].get("ok"):
            raise VanillaNetEdgeError(f"device '{name}': {frame[0].get('error')}")
        return frame

    def run(self, x_nchw: np.ndarray) -> np.ndarray:
        return self.run_all(x_nchw)

    def run_all(self, x_nchw: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x_nchw, dtype=np.float32)
        header, data = self._call({"op": "run", "shape": list(x.shape)}, x.tobytes())
        self.compute_seconds += header["seconds"]
        return np.frombuffer(data, dtype=np.float32).reshape(header["shape"])

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._call({"op": "close"})
            except VanillaNetEdgeError:
                pass
            self._proc.wait(timeout=30)


def write_tar(local: Path, stream) -> None:
    """An artifact folder as an uncompressed tar stream (the files content_digest lists)."""
    with tarfile.open(fileobj=stream, mode="w|") as tar:
        for path in sorted(local.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(local)), recursive=False)
