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

import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from .devices_file import DeviceSpec
from .transport import DeviceError, Transport, remote_path

__all__ = ["DeviceError", "SshClient", "SshTransport", "remote_path"]

# What a host or user name may hold: nothing ssh could read as an option or a shell word.
_SAFE_NAME = re.compile(r"[A-Za-z0-9._:\[\]-]+")


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


class SshTransport(Transport):
    """A device reached over SSH (ssh://user@host[:port]): an SshClient, one multiplexed
    connection; its exit status 255 is ssh's own failure, told apart by its message."""

    url_form = "ssh://user@host[:port]"

    def __init__(self, spec: DeviceSpec, accept_new_host_key: bool = False):
        super().__init__(spec, accept_new_host_key)
        self.ssh = SshClient(spec, accept_new_host_key)

    @classmethod
    def check_url(cls, name: str, url: str) -> tuple[str, str | None] | None:
        parts = urlsplit(url)
        try:
            parts.port
        except ValueError:
            return f"devices.{name}.url: bad port in {url!r}", None
        if not parts.hostname:
            from .transport import url_forms
            return f"devices.{name}.url: {url!r} is neither {url_forms()}", "e.g. url = \"ssh://pi@192.168.1.20:22\""
        if parts.password is not None:
            return (f"devices.{name}.url holds a password",
                    "vanillanet-edge never stores passwords: use a key (identity_file) "
                    "or an ssh-agent, and remove the password from the URL")
        # The host and user go to ssh as its destination argument: a name starting with '-' (or
        # holding spaces, '=', quotes...) would be read as an ssh option such as -oProxyCommand=...
        for what, value in (("user", parts.username), ("host", parts.hostname)):
            if value is not None and (not _SAFE_NAME.fullmatch(value) or value.startswith("-")):
                return (f"devices.{name}.url: refusing the {what} name {value!r} in {url!r}",
                        f"a {what} name may hold only letters, digits and . - _ : [ ] and may not start "
                        "with '-'; options for ssh belong in ~/.ssh/config, not in the URL")
        return None

    @property
    def accepted_key(self) -> str | None:
        return self.ssh.accepted_key

    @property
    def pid_dir(self) -> str | None:
        return self.ssh.pid_dir

    @pid_dir.setter
    def pid_dir(self, value: str | None) -> None:
        self.ssh.pid_dir = value

    def run(self, command: str, input: bytes | None = None, timeout: float | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        return self.ssh.run(command, input=input, timeout=timeout, check=check)

    def open(self, command: str) -> subprocess.Popen:
        return self.ssh.open(command)

    def abort(self, proc: subprocess.Popen) -> None:
        self.ssh.abort(proc)

    def failed(self, returncode: int, stderr: str) -> DeviceError | None:
        return self.ssh.classify(stderr) if returncode == 255 else None

    def close(self) -> None:
        self.ssh.close()
