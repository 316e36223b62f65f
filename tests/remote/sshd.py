"""A real OpenSSH server on 127.0.0.1, for tests of running benchmarks on remote devices.

``LoopbackSshd(tmpdir).start()`` (or ``with LoopbackSshd(tmpdir) as s:``) installs Debian's
openssh-server if ``/usr/sbin/sshd`` is missing, writes throwaway host and client keys plus an
sshd_config into ``tmpdir``, starts ``sshd -D`` on a free loopback port as the current user and
waits for its ``SSH-2.0`` banner. The "remote device" is this machine: the remote user is the
current user, and the venv's python (``sys.executable``, by absolute path) is the remote Python.

Things to know about the remote side (they bit us while writing this):

* sshd builds a fresh environment: PATH is sshd's default (``/usr/local/bin:/usr/bin:/bin...``),
  HOME comes from the passwd entry, VIRTUAL_ENV & co. are gone. Use absolute paths.
* bash run by sshd sources ``~/.bashrc`` even for ``ssh host cmd`` (no tty). On a dev box that
  file may prepend pyenv/cargo to PATH and run ``pyenv init``; don't rely on ``python`` there.
* With ``UsePAM no`` sshd refuses accounts whose shadow password starts with ``!`` (locked);
  ``*`` (Debian's root in containers) is fine. Non-root sshd cannot read /etc/shadow at all,
  so the check is skipped there.
* As root, sshd insists on the privilege-separation dir ``/run/sshd`` (normally made at boot).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
INSTALL_CMD = "apt-get install -y --no-install-recommends openssh-server"
_LOCK = Path("/tmp/vanillanet-edge-openssh-server-install.lock")

# Runs as root (directly or via sudo -n). policy-rc.d exiting 101 tells the package's postinst
# not to start the system sshd on port 22; remove it afterwards only if we created it (Docker
# images often ship one already). Retries once after `apt-get update` if the install fails
# (typically: no or stale package lists).
_INSTALL_SCRIPT = f"""
set -e
created=
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created=1
fi
cleanup() {{ if [ -n "$created" ]; then rm -f /usr/sbin/policy-rc.d; fi; }}
trap cleanup EXIT
{INSTALL_CMD} || {{ apt-get update && {INSTALL_CMD}; }}
"""


def free_tcp_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_sshd_installed(timeout: float = 600) -> None:
    """Install openssh-server when /usr/sbin/sshd is missing (root, or passwordless sudo)."""
    if SSHD.exists():
        return
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo") and subprocess.run(
            ["sudo", "-n", "true"], capture_output=True).returncode == 0:
        prefix = ["sudo", "-n"]
    else:
        raise RuntimeError(f"{SSHD} is missing and this user cannot install it (not root, no "
                           f"passwordless sudo). Run once: sudo {INSTALL_CMD}")
    # Several pytest processes (xdist, parallel CI jobs) may get here at once: dpkg's own lock
    # would make all but one fail, so queue on a lock file and re-check after getting it.
    fd = os.open(_LOCK, os.O_CREAT | os.O_RDWR, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if SSHD.exists():
            return
        cmd = prefix + ["env", "DEBIAN_FRONTEND=noninteractive", "sh", "-c", _INSTALL_SCRIPT]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0 or not SSHD.exists():
            raise RuntimeError(f"installing openssh-server failed (rc {p.returncode}); run: "
                               f"sudo {INSTALL_CMD}\n{(p.stdout + p.stderr)[-3000:]}")
    finally:
        os.close(fd)


def _keygen(path: Path) -> str:
    """Make an unencrypted ed25519 key pair at path(.pub); return the public line's 'type base64'."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "loopback-test",
                    "-f", str(path)], check=True, stdin=subprocess.DEVNULL)
    return " ".join(path.with_name(path.name + ".pub").read_text().split()[:2])


class LoopbackSshd:
    host = "127.0.0.1"

    def __init__(self, workdir: os.PathLike | str):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        # The login name of our uid (not $USER/$LOGNAME, which may be unset or stale under sudo):
        # a non-root sshd can only log in the user it runs as.
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.port: int | None = None
        self.identity_file = self.dir / "client_ed25519"
        self.known_hosts = self.dir / "known_hosts"
        self.wrong_known_hosts = self.dir / "wrong_known_hosts"
        self.empty_known_hosts = self.dir / "empty_known_hosts"
        self.log_path = self.dir / "sshd.log"
        self.config_path = self.dir / "sshd_config"
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}"

    def ssh_base_args(self, known_hosts: os.PathLike | str | None = None) -> list[str]:
        """argv prefix for /usr/bin/ssh; append the remote command. Ignores ~/.ssh/config
        (-F none) and the system known_hosts so only the given file decides trust."""
        return ["/usr/bin/ssh", "-F", "none",
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "IdentitiesOnly=yes", "-i", str(self.identity_file),
                "-p", str(self.port), f"{self.user}@{self.host}"]

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> "LoopbackSshd":
        ensure_sshd_installed()
        if os.geteuid() == 0:
            # Privilege-separation dir: sshd as root refuses to start without it; systemd's
            # tmpfiles makes it at boot, which never happened in a container.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        host_key = self.dir / "host_ed25519"
        for key in (host_key, self.identity_file, self.dir / "other_host_ed25519"):
            for f in (key, key.with_name(key.name + ".pub")):
                f.unlink(missing_ok=True)   # ssh-keygen would ask before overwriting
        host_pub = _keygen(host_key)
        (self.dir / "authorized_keys").write_text(_keygen(self.identity_file) + "\n")
        other_pub = _keygen(self.dir / "other_host_ed25519")
        self.empty_known_hosts.write_text("")

        # The free port may be taken between our probe and sshd's bind: retry a few times.
        for _ in range(3):
            self.port = free_tcp_port()
            self._write_config(host_key)
            self.known_hosts.write_text(f"[{self.host}]:{self.port} {host_pub}\n")
            self.wrong_known_hosts.write_text(f"[{self.host}]:{self.port} {other_pub}\n")
            if self._launch(timeout):
                return self
            if "Address already in use" not in self._log_tail():
                break
        raise RuntimeError(f"sshd did not come up on {self.host}:{self.port} within {timeout} s;"
                           f" log {self.log_path}:\n{self._log_tail()}")

    def _write_config(self, host_key: Path) -> None:
        self.config_path.write_text(f"""\
ListenAddress {self.host}
Port {self.port}
HostKey {host_key}
AuthorizedKeysFile {self.dir / 'authorized_keys'}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# our temp files are not under the user's home; don't apply home-dir permission checks
StrictModes no
PermitRootLogin prohibit-password
PidFile {self.dir / 'sshd.pid'}
LogLevel VERBOSE
PrintMotd no
# OpenSSH >= 9 scp talks SFTP by default; the built-in server needs no extra binary
Subsystem sftp internal-sftp
""")

    def _launch(self, timeout: float) -> bool:
        """Start sshd; True once it answers with an SSH-2.0 banner, False if it died or timed out."""
        with open(self.log_path, "wb") as log:
            # Own session: a Ctrl-C in the pytest terminal must not reach sshd before stop().
            self._proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(self.config_path)],
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            with contextlib.suppress(OSError):
                with socket.create_connection((self.host, self.port), timeout=1) as s:
                    s.settimeout(2)
                    if s.recv(256).startswith(b"SSH-2.0"):
                        return True
            time.sleep(0.05)
        self.stop()
        return False

    def _log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the listener (sessions already open end when their client disconnects)."""
        p, self._proc = self._proc, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def drop(self) -> None:
        """The device goes away mid-run: kill the open sessions too (each per-connection sshd
        calls setsid, so only a walk of the process tree finds them), then the listener."""
        if self._proc is None:
            return
        victims, frontier = [], [self._proc.pid]
        while frontier:
            parent = frontier.pop()
            for status in Path("/proc").glob("[0-9]*/status"):
                with contextlib.suppress(OSError, ValueError):
                    fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
                    if int(fields.get("PPid", "0")) == parent:
                        child = int(status.parent.name)
                        victims.append(child)
                        frontier.append(child)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.stop()

    def __enter__(self) -> "LoopbackSshd":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
