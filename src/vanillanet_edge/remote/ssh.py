"""SSH through the system's OpenSSH client: the user's keys, agent and known_hosts, no passwords.

Why the OpenSSH binary and not a Python SSH library: it is what users already configured
(agents, hardware keys, jump hosts in ~/.ssh/config) and what their security review trusts.
Host keys are always checked: StrictHostKeyChecking=yes against the device's known_hosts
file, or accept-new (first contact only, never a changed key) when the user passes
--accept-new-host-key, and then we say which key was accepted. BatchMode=yes means ssh never
prompts, so no password can be typed, asked for or stored.

The destination always follows `--`, so nothing in devices.toml can become an ssh option (and
devices_file.py refuses such names anyway). Once the device's own folder is known
(`pid_dir`), every command runs under a shell that records its pid, which OpenSSH makes a
process-group leader; when a call times out, a second ssh call kills that whole group, so a
round that ran past its timeout cannot keep running on the device and skew the next ones.
"""
from __future__ import annotations

import secrets
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import VanillaNetEdgeError
from .devices_file import DeviceSpec


class DeviceError(VanillaNetEdgeError):
    """A remote device could not be reached or used; `kind` says why."""

    def __init__(self, message: str, hint: str | None = None, kind: str = "failed", returncode: int | None = None):
        super().__init__(message, hint)
        self.kind = kind      # unreachable | host_key | auth | dropped | timeout | failed
        self.returncode = returncode     # the remote command's exit status, when it ran


def remote_path(path: str) -> str:
    """A device path for the remote shell: ~ expands to $HOME, everything else quoted."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _classify(spec: DeviceSpec, stderr: str, known_hosts: Path) -> DeviceError:
    """Turn ssh's exit-255 stderr into a message that says what to do."""
    where = f"device '{spec.name}' ({spec.describe()})"
    hostport = spec.host if spec.port == 22 else f"[{spec.host}]:{spec.port}"
    text = stderr.strip()
    if "IDENTIFICATION HAS CHANGED" in text:
        return DeviceError(
            f"{where}: its host key does NOT match the one in {known_hosts}; refusing to connect "
            "(someone may be intercepting the connection, or the device was reinstalled)",
            hint=f"if you know the device was reinstalled, remove the old key with "
                 f"`ssh-keygen -R '{hostport}' -f {known_hosts}` and check the new fingerprint",
            kind="host_key")
    if "Host key verification failed" in text or "host key is known" in text:
        return DeviceError(
            f"{where}: its host key is not in {known_hosts}, and unknown keys are never accepted silently",
            hint=f"check the fingerprint (`ssh-keyscan -p {spec.port} {spec.host} | ssh-keygen -lf -`) and add "
                 f"it to {known_hosts}, or rerun with --accept-new-host-key to trust it on first contact",
            kind="host_key")
    if "Permission denied" in text:
        return DeviceError(f"{where}: the device refused our key ({text.splitlines()[-1]})",
                           hint="set identity_file in devices.toml or load the key into ssh-agent; "
                                "vanillanet-edge never uses passwords", kind="auth")
    for needle in ("Connection refused", "timed out", "No route to host", "Could not resolve",
                   "Network is unreachable", "Name or service not known"):
        if needle in text:
            return DeviceError(f"{where} is unreachable: {needle.lower()}",
                               hint="is it on, on the network, and running sshd on that port?",
                               kind="unreachable")
    for needle in ("Broken pipe", "Connection closed", "Connection reset", "not responding",
                   "Timeout, server"):
        if needle in text:
            return DeviceError(f"{where}: the connection dropped ({needle.lower()})",
                               hint="the device went away mid-run; rerun once it is back", kind="dropped")
    last = text.splitlines()[-1] if text else "no message"
    return DeviceError(f"{where}: ssh failed: {last}", kind="failed")


class SshClient:
    """Commands and streams to one device, over one multiplexed connection per client."""

    def __init__(self, spec: DeviceSpec, accept_new_host_key: bool = False):
        if shutil.which("ssh") is None:
            raise DeviceError("the OpenSSH client (`ssh`) is not installed on this machine",
                              hint="install it (Debian/Ubuntu: apt-get install openssh-client)")
        self.spec = spec
        self.accept_new = accept_new_host_key
        self.known_hosts = Path(spec.known_hosts).expanduser()
        # Our own private folder for the control socket: a master connection is never shared
        # with another process, so a host-key check cannot be skipped through it.
        self._control_dir = tempfile.mkdtemp(prefix="vne-ssh-")
        self.accepted_key: str | None = None
        # A device folder of ours for pid files: set once known, then every command is guarded.
        self.pid_dir: str | None = None

    def _base(self) -> list[str]:
        s = self.spec
        args = ["ssh", "-o", "BatchMode=yes",
                "-o", f"StrictHostKeyChecking={'accept-new' if self.accept_new else 'yes'}",
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", f"ConnectTimeout={int(max(1, s.connect_timeout_s))}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
                "-o", "ControlMaster=auto", "-o", f"ControlPath={self._control_dir}/%C",
                "-o", "ControlPersist=60", "-p", str(s.port)]
        if s.identity_file:
            args += ["-o", "IdentitiesOnly=yes", "-i", str(Path(s.identity_file).expanduser())]
        return args

    def _dest(self) -> list[str]:
        """`--` then the destination: never read as an option, whatever the name holds."""
        s = self.spec
        return ["--", f"{s.user}@{s.host}" if s.user else s.host]

    def _guard(self, command: str) -> tuple[str, str | None]:
        """The command run by a shell that records its pid (its process group, under OpenSSH)
        in a pid file of ours, removed when it ends; (command line, pid file or None)."""
        if not self.pid_dir:
            return command, None
        pid_file = f"{self.pid_dir}/{secrets.token_hex(8)}.pid"
        q = remote_path(pid_file)
        return f"echo $$ > {q} || exit 1; ( {command}\n); rc=$?; rm -f {q}; exit $rc", pid_file

    def kill_remote(self, pid_file: str | None) -> None:
        """Kill what a guarded command left running on the device (its whole process group)."""
        if not pid_file:
            return
        q = remote_path(pid_file)
        script = (f'p=$(cat {q} 2>/dev/null); if [ -n "$p" ]; then '
                  f'kill -KILL -- -"$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null; fi; rm -f {q}; true')
        try:
            subprocess.run(self._base() + self._dest() + [script], capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=self.spec.connect_timeout_s + 15)
        except (subprocess.TimeoutExpired, OSError):
            pass           # the device is gone too: nothing left to skew

    def run(self, command: str, input: bytes | None = None, timeout: float | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run a shell command line on the device; raise DeviceError on connection problems.
        On a timeout the remote command is killed too (when pid_dir is set)."""
        before = self._known_keys() if self.accept_new else None
        line, pid_file = self._guard(command)
        try:
            proc = subprocess.run(self._base() + self._dest() + [line], input=input, capture_output=True,
                                  timeout=timeout or self.spec.run_timeout_s)
        except subprocess.TimeoutExpired:
            self.kill_remote(pid_file)
            raise DeviceError(f"device '{self.spec.name}': no answer within "
                              f"{timeout or self.spec.run_timeout_s:.0f} s (the remote command was stopped)",
                              hint="raise run_timeout_s in devices.toml for slow boards", kind="timeout") from None
        stderr = proc.stderr.decode(errors="replace")
        if before is not None:
            self._note_accepted(before)
        if proc.returncode == 255:
            raise _classify(self.spec, stderr, self.known_hosts)
        if check and proc.returncode != 0:
            tail = "\n".join(stderr.strip().splitlines()[-8:])
            raise DeviceError(f"device '{self.spec.name}': `{command[:80]}` exited {proc.returncode}:\n{tail}",
                              returncode=proc.returncode)
        return proc

    def open(self, command: str) -> subprocess.Popen:
        """A long-lived command with pipes (the eval server, an upload); `abort` stops it."""
        line, pid_file = self._guard(command)
        proc = subprocess.Popen(self._base() + self._dest() + [line], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.vne_pid_file = pid_file
        return proc

    def abort(self, proc: subprocess.Popen) -> None:
        """Stop an `open` command here and on the device."""
        proc.kill()
        proc.wait()
        self.kill_remote(getattr(proc, "vne_pid_file", None))

    def classify(self, stderr: str) -> DeviceError:
        return _classify(self.spec, stderr, self.known_hosts)

    def _known_keys(self) -> str:
        return self.known_hosts.read_text() if self.known_hosts.exists() else ""

    def _note_accepted(self, before: str) -> None:
        """After an accept-new connection: which key did ssh add? (fingerprint, for the user)."""
        after = self._known_keys()
        if after == before or self.accepted_key:
            return
        added = after[len(before):] if after.startswith(before) else after
        fp = subprocess.run(["ssh-keygen", "-lf", "-"], input=added.encode(), capture_output=True)
        self.accepted_key = fp.stdout.decode().strip() or added.strip()

    def close(self) -> None:
        """Stop the master connection and remove its private socket folder."""
        subprocess.run(self._base() + ["-O", "exit"] + self._dest(), capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=10)
        shutil.rmtree(self._control_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
