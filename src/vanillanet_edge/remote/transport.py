"""How a device is reached: a Transport runs a shell command there, streams bytes into one, or
opens a long-lived one with pipes (the runner's `serve` protocol). Everything else a device does
(the runner bundle, content-addressed uploads, benchmark rounds, sessions) is built on these
in remote/device.py and remote/workdir.py, once for every transport.

A device's URL scheme picks its transport class here, in TRANSPORTS: the one place that knows
which kinds of device exist. A new kind (adb, a serial console) is one Transport subclass and one
line below; its class checks its own URLs (`check_url`) when devices.toml is read.
"""
from __future__ import annotations

import importlib
import shlex
import subprocess
from urllib.parse import urlsplit

from ..errors import VanillaNetEdgeError

# URL scheme -> "module:Class", imported when a device of that kind is opened or checked.
TRANSPORTS = {
    "local": "vanillanet_edge.remote.transport:LocalTransport",
    "ssh": "vanillanet_edge.remote.ssh:SshTransport",
}


def scheme_of(url: str) -> str:
    """`local` (the whole URL) or the scheme before `://`."""
    return url if url == "local" else urlsplit(url).scheme


def transport_class(url: str) -> type[Transport] | None:
    """The Transport class serving a device URL's scheme, or None."""
    scheme = scheme_of(url)
    if scheme not in TRANSPORTS:
        return None
    module, _, cls = TRANSPORTS[scheme].partition(":")
    return getattr(importlib.import_module(module), cls)


def url_forms() -> str:
    """The URL forms devices.toml accepts, for messages: 'local' nor ssh://user@host[:port]."""
    return " nor ".join(transport_class(scheme if scheme == "local" else f"{scheme}://").url_form
                        for scheme in TRANSPORTS)


def open_transport(spec, accept_new_host_key: bool = False) -> Transport:
    cls = transport_class(spec.url)
    if cls is None:             # devices_file refused it when the file was read
        raise DeviceError(f"device '{spec.name}': no transport for {spec.url!r}")
    return cls(spec, accept_new_host_key)


def remote_path(path: str) -> str:
    """A device path for the device's shell: ~ expands to $HOME, everything else quoted."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


class DeviceError(VanillaNetEdgeError):
    """A remote device could not be reached or used; `kind` says why."""

    def __init__(self, message: str, hint: str | None = None, kind: str = "failed", returncode: int | None = None):
        super().__init__(message, hint)
        self.kind = kind      # unreachable | host_key | auth | dropped | timeout | failed
        self.returncode = returncode     # the remote command's exit status, when it ran


class Transport:
    """Commands and streams to one device (`spec`: a devices_file.DeviceSpec).

    `runs_here`: the device is this machine, so the harness runs in this process and its
    worker processes (no runner bundle, nothing sent). `pid_dir`: a device folder of ours,
    set once known, where a transport may record what it started (to stop it on a timeout).
    """

    runs_here = False
    url_form = ""                        # how its URLs look, for messages
    accepted_key: str | None = None      # a host key accepted on first contact, if any
    pid_dir: str | None = None

    def __init__(self, spec, accept_new_host_key: bool = False):
        self.spec = spec

    @classmethod
    def check_url(cls, name: str, url: str) -> tuple[str, str | None] | None:
        """Why this transport cannot use `url` safely, as (message, hint); None when it can."""
        return None

    def run(self, command: str, input: bytes | None = None, timeout: float | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run a shell command line on the device, stdin from `input`; DeviceError when the
        device cannot be reached or (check) the command exits non-zero."""
        raise NotImplementedError

    def open(self, command: str) -> subprocess.Popen:
        """A long-lived command with stdin/stdout/stderr pipes; `abort` stops it."""
        raise NotImplementedError

    def abort(self, proc: subprocess.Popen) -> None:
        """Stop an `open` command, here and on the device."""
        proc.kill()
        proc.wait()

    def failed(self, returncode: int, stderr: str) -> DeviceError | None:
        """The DeviceError when a command ended with `returncode` because the transport itself
        failed (not the command), else None: the command's own status stands."""
        return None

    def close(self) -> None:
        pass


class LocalTransport(Transport):
    """This machine. Devices use it to run the harness in-process (runs_here); run and open are
    plain local shells, so the runner protocol works here too."""

    runs_here = True
    url_form = "'local'"

    def run(self, command: str, input: bytes | None = None, timeout: float | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run(["/bin/sh", "-c", command], input=input, capture_output=True,
                                  timeout=timeout or self.spec.run_timeout_s)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"device '{self.spec.name}': no answer within "
                              f"{timeout or self.spec.run_timeout_s:.0f} s", kind="timeout") from None
        if check and proc.returncode != 0:
            tail = "\n".join(proc.stderr.decode(errors="replace").strip().splitlines()[-8:])
            raise DeviceError(f"device '{self.spec.name}': `{command[:80]}` exited {proc.returncode}:\n{tail}",
                              returncode=proc.returncode)
        return proc

    def open(self, command: str) -> subprocess.Popen:
        return subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
