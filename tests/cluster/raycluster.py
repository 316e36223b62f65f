"""A real Ray cluster on 127.0.0.1 for tests (see conftest.py here): `ray start --block` process
trees from this venv's Python, one CPU per node, no dashboard, usage stats off, a private temp
dir, a private auth token. `stop` ends exactly the processes these `ray start` calls started, by
pid (never `ray stop`, which would end every Ray process on the machine)."""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# Ray 2.60 turns token authentication on for `ray start --head`: every process of a test
# cluster (head, other nodes, drivers) gets this one private token through the environment, so
# nothing is read from or written to ~/.ray. conftest.py puts it into this test session's
# environment before ray is first imported (Ray reads it once per process).
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
           "OMP_WAIT_POLICY": "PASSIVE", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def _term_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, even by kill -9 (Linux PR_SET_PDEATHSIG);
    `ray start --block` then stops the node's processes itself, so no cluster outlives its tests."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)    # 1 = PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalRayCluster:
    temp_dir: Path
    log_dir: Path
    port: int = field(default_factory=free_port)
    procs: list = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, name: str, *args: str) -> None:
        log = open(self.log_dir / f"{name}.log", "wb")
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--num-cpus=1",
               "--node-ip-address=127.0.0.1", "--disable-usage-stats", f"--temp-dir={self.temp_dir}", *args]
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                           env={**os.environ, **RAY_ENV}, start_new_session=True,
                                           preexec_fn=_term_with_parent))

    def start(self, nodes: int = 2, timeout: float = 90) -> None:
        self._start("head", "--head", f"--port={self.port}", "--include-dashboard=false")
        deadline = time.monotonic() + timeout
        while True:             # the GCS port answers first; then the second node can join
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                self._alive_or_fail()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Ray head did not start:\n{self.logs()}")
                time.sleep(0.3)
        for i in range(1, nodes):
            self._start(f"node{i}", f"--address={self.address}")
        while self.alive_nodes() < nodes:
            self._alive_or_fail()
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.alive_nodes()} of {nodes} Ray nodes came up:\n{self.logs()}")
            time.sleep(0.5)

    def alive_nodes(self) -> int:
        out = subprocess.run([sys.executable, "-c", (
            "import ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))") % self.address],
            capture_output=True, text=True, env={**os.environ, **RAY_ENV}, timeout=60)
        return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0

    def _alive_or_fail(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"`ray start` exited with {p.returncode}:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}" for f in sorted(self.log_dir.glob("*.log")))

    def processes(self):
        """Every live process these `ray start` calls started (psutil.Process), by descent, plus
        the workers their raylets started (children of those)."""
        import psutil

        found = {}
        for p in self.procs:
            try:
                root = psutil.Process(p.pid)
                found[root.pid] = root
                for c in root.children(recursive=True):
                    found[c.pid] = c
            except psutil.NoSuchProcess:
                pass
        return list(found.values())

    def stop(self) -> None:
        import psutil

        procs = self.processes()
        for p in procs:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=10)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)
