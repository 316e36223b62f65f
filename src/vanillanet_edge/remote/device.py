"""A device bench and eval can run on: this machine, or one reached over SSH.

Both run the same harness (devices/latency.py rounds, devices/*.py runners); an SSH device
gets it as a self-contained zip (bundle.py) and the artifacts content-addressed, so nothing
already there is sent twice. Every result record says which device it came from and carries
that device's own machine description.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import tarfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from ..devices.artifacts import ArtifactRef
from ..devices.base import Session, pinned_settings
from ..devices.latency import BenchSettings, bench_jobs
from ..devices.registry import EAGER_RUNTIME
from ..errors import VanillaNetEdgeError
from ..fileio import sha256_path
from . import bundle
from .devices_file import DeviceSpec
from .runner import COMPLETE, content_digest
from .ssh import DeviceError, SshClient, remote_path

# What to pip-install on a device for each runtime (the host's versions, when it has them).
FATAL = ("unreachable", "host_key", "auth", "dropped")   # no point trying the next round
MARKER = ".vanillanet-edge-workdir"      # only ever in our own folder (spec.own_dir)
NOT_OURS = 3                            # exit status of the prepare script: own_dir is someone else's
# Run on the device by its Python: exit 0 when file argv[1] has sha256 argv[2] and size argv[3].
_VERIFY = ("import hashlib,sys;p,h,n=sys.argv[1:];d=open(p,'rb').read();"
           "sys.exit(0 if len(d)==int(n) and hashlib.sha256(d).hexdigest()==h else 3)")


def install_command(python: str, packages: list[str]) -> str:
    pinned = []
    for dist in packages:
        try:
            pinned.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            pinned.append(dist)
    return f"{python} -m pip install {' '.join(pinned)}"


def _tag(records: list[dict], spec: DeviceSpec) -> list[dict]:
    for r in records:
        r["device"] = {"name": spec.name, "where": spec.describe()}
    return records


class LocalDevice:
    def __init__(self, spec: DeviceSpec):
        self.spec = spec

    def machine(self) -> dict:
        from ..devices.machine import describe_machine
        return describe_machine()

    def peaks(self, seconds: float = 1.0) -> dict:
        from ..devices.peak import measure_peaks
        return measure_peaks(seconds_per_probe=seconds)

    def check(self) -> dict:
        from .runner import describe
        return _check_report(self.spec, describe(list(self.spec.runtimes)), None)

    def bench(self, refs: list[ArtifactRef], settings: BenchSettings, progress=None) -> list[dict]:
        return self.bench_jobs([(ref, settings) for ref in refs], progress)

    def bench_jobs(self, jobs, progress=None) -> list[dict]:
        return _tag(bench_jobs([(ref, _with_options(s, self.spec)) for ref, s in jobs], progress), self.spec)

    def open_session(self, ref: ArtifactRef, runtime: str, settings: dict) -> Session:
        from ..devices.registry import get_runner
        return get_runner(runtime).load(ref.artifact, ref.manifest,
                                        **pinned_settings(ref.manifest, {**self.spec.options, **settings}))

    def clean(self) -> str:
        return "nothing to clean on this machine"

    def close(self) -> None:
        pass


class SshDevice:
    def __init__(self, spec: DeviceSpec, accept_new_host_key: bool = False):
        self.spec = spec
        self.ssh = SshClient(spec, accept_new_host_key)
        self._workdir: str | None = None        # absolute, once known
        self._runner: str | None = None         # remote path of the runner zip
        self._sent: dict[str, str] = {}         # local artifact folder -> remote folder
        self._uploaded: list[str] = []          # sent by us this time (removed if not keep_cache)
        self._fatal: DeviceError | None = None

    # -- setting up the device's working folder --------------------------------------------
    def _prepare(self) -> None:
        if self._runner:
            return
        out = self.ssh.run(self._prepare_script(), timeout=self.spec.connect_timeout_s + 30, check=False)
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
        self._workdir = out.stdout.decode().strip().splitlines()[-1]
        self.ssh.pid_dir = f"{self._workdir}/run"
        data, digest = bundle.build()
        runner = f"{self._workdir}/runner-{digest[:16]}.pyz"
        have = self.ssh.run(f"{self._verify_command(remote_path(runner), digest, len(data))} 2>/dev/null "
                            "&& echo yes || echo no")
        if have.stdout.decode().strip().splitlines()[-1:] != ["yes"]:
            up = self.ssh.run(self.runner_upload_command(runner, digest, len(data)), input=data, check=False)
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

    def _python(self, args: str) -> str:
        return f"cd {remote_path(self._workdir)} && {remote_path(self.spec.python)} {remote_path(self._runner)} {args}"

    def receive_command(self, target: str, digest: tuple[int, int, str]) -> str:
        """The device command that unpacks an artifact tar from stdin into `target`, publishing
        it only when its files match `digest` (count, bytes, sha256 of the listing)."""
        files, nbytes, sha = digest
        return self._python(f"receive {remote_path(target)} {files} {nbytes} {sha}")

    def _artifact(self, ref: ArtifactRef) -> str:
        """The artifact's folder on the device; sent only when that content is not there yet
        (its .complete names the content digest: a folder published by an older, unchecked
        transfer is sent again)."""
        key = str(ref.path)
        if key in self._sent:
            return self._sent[key]
        digest = sha256_path(ref.path)[:20]
        folder = f"{self._workdir}/artifacts/{digest}"
        target = f"{folder}/{ref.path.name}"
        content = content_digest(ref.path)
        have = self.ssh.run(f"cat {remote_path(target)}/{COMPLETE} 2>/dev/null; true").stdout.decode().strip()
        if have != content[2]:
            self._send(ref.path, folder, target, content)
            self._uploaded.append(folder)
        self._sent[key] = target
        return target

    def _send(self, local: Path, folder: str, target: str, content: tuple[int, int, str]) -> None:
        # Remove partial uploads a killed run left behind (older than an hour), then stream a tar.
        self.ssh.run(f"mkdir -p {remote_path(folder)} && find {remote_path(self._workdir + '/artifacts')} "
                     f"-mindepth 2 -maxdepth 2 -name '.*.partial-*' -mmin +60 -exec rm -rf {{}} + ; true")
        proc = self.ssh.open(self.receive_command(target, content))
        try:
            write_tar(local, proc.stdin)
        except BrokenPipeError:     # the device side died: its stderr below says why
            pass
        try:
            _, err = proc.communicate(timeout=self.spec.run_timeout_s)
        except subprocess.TimeoutExpired:
            self.ssh.abort(proc)
            raise DeviceError(f"device '{self.spec.name}': sending {local.name} took over "
                              f"{self.spec.run_timeout_s:.0f} s", kind="timeout") from None
        if proc.returncode == 255:
            raise self.ssh.classify(err.decode(errors="replace"))
        if proc.returncode != 0:
            raise DeviceError(f"device '{self.spec.name}': unpacking {local.name} failed:\n"
                              + "\n".join(err.decode(errors="replace").strip().splitlines()[-5:]))

    # -- what callers use -----------------------------------------------------------------
    def check(self) -> dict:
        try:
            self._prepare()
            wanted = " ".join(self.spec.runtimes)
            info = json.loads(self.ssh.run(self._python(f"describe {wanted}"),
                                           timeout=self.spec.connect_timeout_s + 120).stdout.decode().splitlines()[-1])
        except DeviceError as exc:
            if exc.returncode == 127:        # reached it; the shell found no such Python
                return {"device": self.spec.name, "where": self.spec.describe(), "reachable": True,
                        "accepted_host_key": self.ssh.accepted_key, "kind": "python",
                        "error": f"{self.spec.python} was not found on the device",
                        "missing": [{"what": f"Python ({self.spec.python})",
                                     "install": "install Python 3.9+ with numpy there and set `python` "
                                                "in devices.toml to its absolute path"}]}
            return _check_report(self.spec, None, exc, self.ssh.accepted_key)
        except (json.JSONDecodeError, IndexError):
            exc = DeviceError(f"device '{self.spec.name}': {self.spec.python} did not run the runner",
                              hint="set python in devices.toml to a Python 3.9+ interpreter on the device")
            return _check_report(self.spec, None, exc, self.ssh.accepted_key)
        return _check_report(self.spec, info, None, self.ssh.accepted_key)

    def machine(self) -> dict:
        """The device's machine description (what tune's search space depends on)."""
        self._prepare()
        out = self.ssh.run(self._python("describe --machine"), timeout=self.spec.connect_timeout_s + 60)
        return json.loads(out.stdout.decode().splitlines()[-1])["machine"]

    def peaks(self, seconds: float = 1.0) -> dict:
        """Matmul peaks per runtime and precision, measured on the device by its runtimes."""
        self._prepare()
        out = self.ssh.run(self._python(f"peaks {seconds:g}"), timeout=self.spec.run_timeout_s)
        return json.loads(out.stdout.decode().splitlines()[-1])

    def _round(self, ref: ArtifactRef, runtime: str, settings: BenchSettings, timeout: float) -> dict:
        """One benchmark round on the device, in a fresh Python process there."""
        if self._fatal:
            raise self._fatal
        if ref.runtime == EAGER_RUNTIME:
            return {"status": "unavailable", "reason": "PyTorch eager baselines run only on `local` "
                    "(the device runner carries no model code)", "machine": None}
        try:
            self._prepare()
            target = self._artifact(ref)
            job = {"artifact": target, "runtime": runtime, "settings": settings.__dict__}
            proc = self.ssh.run(self._python("latency"), input=json.dumps(job).encode(),
                                timeout=min(timeout, self.spec.run_timeout_s), check=False)
        except DeviceError as exc:
            if exc.kind in FATAL:
                self._fatal = exc
            raise
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.decode(errors="replace").strip().splitlines()[-6:])
            raise DeviceError(f"benchmark round of {ref.name} on device '{self.spec.name}' failed:\n{tail}")
        return json.loads(proc.stdout.decode().strip().splitlines()[-1])

    def bench(self, refs: list[ArtifactRef], settings: BenchSettings, progress=None) -> list[dict]:
        return self.bench_jobs([(ref, settings) for ref in refs], progress)

    def bench_jobs(self, jobs, progress=None) -> list[dict]:
        records = bench_jobs([(ref, _with_options(s, self.spec)) for ref, s in jobs], progress,
                             timeout=self.spec.run_timeout_s, execute=self._round)
        if self._fatal:            # the device itself failed (down, host key, dropped), not an artifact
            for r in records:
                if not r["ok"]:
                    r["device_error"] = self._fatal.kind
        return _tag(records, self.spec)

    def open_session(self, ref: ArtifactRef, runtime: str, settings: dict) -> Session:
        if self._fatal:
            raise self._fatal
        try:
            self._prepare()
            return RemoteSession(self, self._artifact(ref), runtime, {**self.spec.options, **settings})
        except DeviceError as exc:
            if exc.kind in FATAL:
                self._fatal = exc
            raise

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
        out = self.ssh.run(script).stdout.decode().strip().splitlines()[-1:]
        said = {"removed": "removed",
                "kept-others": "removed our files; kept the folder, which holds files that are not ours",
                "not-ours": "not ours (no vanillanet-edge marker): left alone",
                "absent": "absent"}.get(out[0] if out else "", "absent")
        return f"{self.spec.own_dir} on {self.spec.name}: {said}"

    def close(self) -> None:
        """Remove what this call sent unless the device keeps a cache; close the connection."""
        try:
            if not self.spec.keep_cache and self._uploaded and not self._fatal:
                self.ssh.run("rm -rf " + " ".join(remote_path(f) for f in self._uploaded), check=False)
        except DeviceError:
            pass
        finally:
            self.ssh.close()


class RemoteSession(Session):
    """A Session whose batches run on the device (one `serve` process, model loaded once)."""

    def __init__(self, device: SshDevice, artifact: str, runtime: str, settings: dict):
        self.device = device
        self._proc = device.ssh.open(device._python("serve"))
        reply = self._call({"op": "load", "artifact": artifact, "runtime": runtime, "settings": settings})[0]
        self.batch, self.settings, self.machine = reply["batch"], reply["settings"], reply["machine"]
        self.compute_seconds = 0.0        # time the device spent computing (no transfers)

    def _call(self, header: dict, data: bytes = b"") -> tuple[dict, bytes]:
        from .runner import read_frame, write_frame
        try:
            write_frame(self._proc.stdin, header, data)
            frame = read_frame(self._proc.stdout)
        except (BrokenPipeError, ValueError):
            frame = None
        if frame is None:
            err = self._proc.stderr.read().decode(errors="replace") if self._proc.poll() is not None else ""
            raise (self.device.ssh.classify(err) if self._proc.returncode == 255 else
                   DeviceError(f"device '{self.device.spec.name}': the runner stopped:\n"
                               + "\n".join(err.strip().splitlines()[-5:])))
        if not frame[0].get("ok"):
            raise VanillaNetEdgeError(f"device '{self.device.spec.name}': {frame[0].get('error')}")
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


def _with_options(settings: BenchSettings, spec: DeviceSpec) -> BenchSettings:
    if not spec.options:
        return settings
    return BenchSettings(**{**settings.__dict__, "options": {**spec.options, **settings.options}})


def _check_report(spec: DeviceSpec, info: dict | None, error: DeviceError | None,
                  accepted_key: str | None = None) -> dict:
    report = {"device": spec.name, "where": spec.describe(), "reachable": info is not None,
              "accepted_host_key": accepted_key}
    if error is not None:
        report.update({"error": str(error), "kind": getattr(error, "kind", "failed")})
        return report
    m = info["machine"]
    report.update({k: m.get(k) for k in ("os", "arch", "cpu_model", "logical_cores", "isa", "memory_gib")})
    report.update({"python": info.get("python"), "python_executable": info.get("python_executable"),
                   "versions": m.get("versions", {}), "runtimes": info.get("runtimes", {})})
    if not info.get("numpy"):
        report["missing"] = [{"what": "numpy (every runtime needs it)",
                              "install": install_command(spec.python, ["numpy"])}]
        return report
    for name, entry in info["runtimes"].items():
        entry["version"] = report["versions"].get(_device_package(name))
    wanted = list(spec.runtimes) or list(info["runtimes"])
    report["missing"] = [{"what": name, "reason": info["runtimes"][name]["reason"],
                          "install": install_command(spec.python, [_device_package(name)])}
                         for name in wanted if not info["runtimes"].get(name, {}).get("available")]
    return report


def _device_package(runtime: str) -> str:
    """The pip distribution a device installs for a runtime (its runner's first package)."""
    from ..devices.registry import packages_of

    return packages_of(runtime)[0]


def write_tar(local: Path, stream) -> None:
    """An artifact folder as an uncompressed tar stream (the files content_digest lists)."""
    with tarfile.open(fileobj=stream, mode="w|") as tar:
        for path in sorted(local.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(local)), recursive=False)


def open_device(spec: DeviceSpec, accept_new_host_key: bool = False):
    return LocalDevice(spec) if spec.is_local else SshDevice(spec, accept_new_host_key)
