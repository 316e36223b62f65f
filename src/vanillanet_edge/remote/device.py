"""A device bench, eval, tune and profile run on: this machine, or one reached through a Transport.

One Device class for every kind. Its transport (transport.py, picked by the URL scheme in
devices.toml) says how the device is reached; its harness (workdir.py) says where the harness
runs: here, in this process and its worker processes, or the runner bundle in our own folder on
the device, the artifacts sent there content-addressed, so nothing already there is sent twice.
Both run the same harness code (devices/latency.py rounds, devices/*.py runners). Every result
record says which device it came from and carries that device's own machine description.
"""
from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version

from ..devices.artifacts import ArtifactRef
from ..devices.base import Session
from ..devices.latency import BenchSettings, bench_jobs
from ..devices.layer_profile import not_done
from ..devices.registry import EAGER_RUNTIME
from ..errors import ProfilingNotOfferedError
from .devices_file import DeviceSpec
from .transport import DeviceError, open_transport
from .workdir import MARKER, Here, Workdir, write_tar

__all__ = ["Device", "MARKER", "install_command", "open_device", "write_tar"]

FATAL = ("unreachable", "host_key", "auth", "dropped")   # no point trying the next round


def install_command(python: str, packages: list[str]) -> str:
    """What to pip-install on a device for some runtimes (the host's versions, when it has them)."""
    pinned = []
    for dist in packages:
        try:
            pinned.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            pinned.append(dist)
    return f"{python} -m pip install {' '.join(pinned)}"


class Device:
    """A named machine from devices.toml (`spec`), reached through its transport."""

    def __init__(self, spec: DeviceSpec, accept_new_host_key: bool = False):
        self.spec = spec
        self.transport = open_transport(spec, accept_new_host_key)
        self.harness: Here | Workdir = Here(spec) if self.transport.runs_here else Workdir(spec, self.transport)
        self._fatal: DeviceError | None = None   # the device itself failed: later calls fail at once

    def _guarded(self, call, *args):
        """`call(*args)` on the harness; a failure of the device itself (down, host key, auth,
        dropped) is kept, and every later call fails with it at once."""
        if self._fatal:
            raise self._fatal
        try:
            return call(*args)
        except DeviceError as exc:
            if exc.kind in FATAL:
                self._fatal = exc
            raise

    def check(self) -> dict:
        """Reachable? Which runtimes it has and what is missing, with the commands to install it."""
        try:
            info = self.harness.describe(list(self.spec.runtimes))
        except DeviceError as exc:
            if exc.returncode == 127:        # reached it; the shell found no such Python
                return {"device": self.spec.name, "where": self.spec.describe(), "reachable": True,
                        "accepted_host_key": self.transport.accepted_key, "kind": "python",
                        "error": f"{self.spec.python} was not found on the device",
                        "missing": [{"what": f"Python ({self.spec.python})",
                                     "install": "install Python 3.9+ with numpy there and set `python` "
                                                "in devices.toml to its absolute path"}]}
            return _check_report(self.spec, None, exc, self.transport.accepted_key)
        except (json.JSONDecodeError, IndexError):
            exc = DeviceError(f"device '{self.spec.name}': {self.spec.python} did not run the runner",
                              hint="set python in devices.toml to a Python 3.9+ interpreter on the device")
            return _check_report(self.spec, None, exc, self.transport.accepted_key)
        return _check_report(self.spec, info, None, self.transport.accepted_key)

    def machine(self) -> dict:
        """The device's machine description (what tune's search space depends on)."""
        return self.harness.machine()

    def peaks(self, seconds: float = 1.0) -> dict:
        """Matmul peaks per runtime and precision, measured on the device by its runtimes."""
        return self.harness.peaks(seconds)

    def _round(self, ref: ArtifactRef, runtime: str, settings: BenchSettings, timeout: float) -> dict:
        """One benchmark round through the runner on the device (Workdir harness only)."""
        if self._fatal:
            raise self._fatal
        if ref.runtime == EAGER_RUNTIME:
            return {"status": "unavailable", "reason": "PyTorch eager baselines run only on `local` "
                    "(the device runner carries no model code)", "machine": None}
        assert isinstance(self.harness, Workdir)
        return self._guarded(self.harness.latency, ref, runtime, settings, timeout)

    def bench(self, refs: list[ArtifactRef], settings: BenchSettings, progress=None) -> list[dict]:
        return self.bench_jobs([(ref, settings) for ref in refs], progress)

    def bench_jobs(self, jobs, progress=None) -> list[dict]:
        """Latency records of (artifact, settings) jobs, rounds interleaved (devices/latency.py),
        each tagged with this device."""
        execute = None if isinstance(self.harness, Here) else self._round
        records = bench_jobs([(ref, _with_options(s, self.spec)) for ref, s in jobs], progress,
                             execute=execute, **self.harness.bench_timeout)
        if self._fatal:            # the device itself failed (down, host key, dropped), not an artifact
            for r in records:
                if not r["ok"]:
                    r["device_error"] = self._fatal.kind
        for r in records:
            r["device"] = {"name": self.spec.name, "where": self.spec.describe()}
        return records

    def profile(self, ref: ArtifactRef, runs: int = 20, warmup: int = 5, threads: int | None = None,
                options: dict | None = None, op_probe: bool = True, peak: bool = True,
                probe_seconds: float = 0.1) -> dict:
        """The artifact's layer_profile record made on this device (devices/layer_profile.py:
        the runtime's profiler, or the op probe with the device's own matmul peak), with this
        device's runner options under `options`, tagged with this device."""
        if ref.runtime == EAGER_RUNTIME and not isinstance(self.harness, Here):
            record = not_done(ref, "not_offered", ProfilingNotOfferedError(
                "PyTorch eager baselines run only on `local` (the device runner carries no model code)"))
            record["machine"] = None
        else:
            settings = {"runs": runs, "warmup": warmup, "threads": threads, "op_probe": op_probe, "peak": peak,
                        "probe_seconds": probe_seconds, "options": {**self.spec.options, **(options or {})}}
            record = self._guarded(self.harness.profile, ref, settings)
        record["device"] = {"name": self.spec.name, "where": self.spec.describe()}
        return record

    def open_session(self, ref: ArtifactRef, runtime: str, settings: dict) -> Session:
        """A loaded model on the device, with this device's runner options under `settings`."""
        return self._guarded(self.harness.session, ref, runtime, {**self.spec.options, **settings})

    def clean(self) -> str:
        return self.harness.clean()

    def close(self) -> None:
        """Remove what this call sent unless the device keeps a cache; close the connection."""
        try:
            if not self.spec.keep_cache and not self._fatal:
                self.harness.remove_uploads()
        except DeviceError:
            pass
        finally:
            self.transport.close()


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


def open_device(spec: DeviceSpec, accept_new_host_key: bool = False) -> Device:
    return Device(spec, accept_new_host_key)
