"""Shared fixtures for the whole test suite.

Expensive things are built once per session and reused:

* ``digits_dir``     - scikit-learn's digits written as train/ and val/ ImageFolders (32x32 RGB PNG).
* ``tiny_checkpoint`` - a tiny VanillaNet (vanillanet_5, width 1/32) deep-trained for a few
                        epochs on ``digits_dir``; a real training-form checkpoint in the official
                        layout that fuses exactly. Treat the files as read-only: copy them to
                        ``tmp_path`` before changing anything.
* ``tiny_artifacts`` / ``tiny_tflite`` - that net converted: ONNX and OpenVINO fp32 in one folder;
                        LiteRT fp32 (skipped where the LiteRT packages are missing).

Also ``one_torch_thread`` (run a test on one torch thread) and OMP_WAIT_POLICY=PASSIVE (below),
``python_child`` (start a Python child process running some code),
and ``sshd`` / ``free_port``: ONE real OpenSSH server on loopback per session (tests/remote/sshd.py),
shared by tests/remote and tests/hostile.

Share things here as fixtures only: test modules must not `import conftest` (every folder may
have its own conftest.py, all with the same module name). Helpers used by one test module live
in that module. Give each new fixture a docstring saying what it costs.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning. On a small machine shared with other jobs,
# spinning made torch 3-7x slower here (measured on 2 cores); it must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

# tests/ has no __init__.py files: tests/remote's helpers (sshd.py, devices_toml.py) import as
# top-level modules from any folder once that folder is on sys.path.
_REMOTE = str(Path(__file__).resolve().parent / "remote")
if _REMOTE not in sys.path:
    sys.path.insert(0, _REMOTE)

from sshd import LoopbackSshd, free_tcp_port  # noqa: E402


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A started LoopbackSshd (host, port, user, identity_file, known_hosts, ...); the device is
    this machine. Under 1 s when openssh-server is installed; the first run on a fresh box
    apt-installs it (~10-60 s)."""
    server = LoopbackSshd(tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens (a device that is down). Free."""
    return free_tcp_port()


@pytest.fixture
def python_child():
    """`python_child(code, *args, **popen_kwargs)`: a Popen of this Python running the dedented
    `code` with `args` as sys.argv[1:] (the hostile tests' writers, lock holders and racers).
    Children still running when the test ends are killed. Free (a process start per call)."""
    import subprocess
    import textwrap

    started = []

    def start(code: str, *args: str, **kw) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], **kw)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def _torch_threads(n: int):
    """Run a block with n torch threads, then restore. Tiny nets train ~2x faster on one thread
    than on two when the machine is shared (thread hand-offs cost more than the convs)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread():
    """Use in tests that train a tiny net themselves."""
    with _torch_threads(1):
        yield


@dataclass(frozen=True)
class TrainedNet:
    path: Path        # the training-form checkpoint (.pth), official layout
    data: Path        # the ImageFolder root it was trained on (train/ and val/)
    config: object    # the vanillanet_edge.model.train.TrainConfig it was trained with
    result: dict      # what vanillanet_edge.api.train_model returned (history, val_top1, ...)


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """scikit-learn digits as <root>/train/<0-9>/*.png and <root>/val/<0-9>/*.png (~1 s)."""
    from vanillanet_edge.api import make_digits

    root = tmp_path_factory.mktemp("data") / "digits"
    make_digits(root)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, digits_dir) -> TrainedNet:
    """vanillanet_5 at width 1/32, 6 epochs with act_learn annealed over 3 (~10 s; 30 s on a busy box)."""
    from vanillanet_edge.api import train_model
    from vanillanet_edge.model.train import TrainConfig

    out = tmp_path_factory.mktemp("tiny") / "tiny.pth"
    cfg = TrainConfig(variant="vanillanet_5", width=1 / 32, epochs=6,
                      decay_epochs=3, seed=0)
    with _torch_threads(1):
        result = train_model(digits_dir, out, cfg, input_size=32, progress=False)
    return TrainedNet(path=out, data=digits_dir, config=cfg, result=result)


@pytest.fixture(scope="session")
def tiny_artifacts(tiny_checkpoint, tmp_path_factory) -> Path:
    """ONNX and OpenVINO fp32 artifacts of the shared tiny net, in one folder (a few seconds)."""
    from vanillanet_edge.converters.convert import convert_checkpoint

    out = tmp_path_factory.mktemp("artifacts")
    outcomes = convert_checkpoint(tiny_checkpoint.path, ["onnx", "openvino"], ["fp32"], out)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    return out


@pytest.fixture(scope="session")
def tiny_tflite(tiny_checkpoint, tmp_path_factory):
    """The shared tiny net as a verified LiteRT fp32 artifact: its ConvertOutcome (folder,
    manifest). ~10 s; skips the test where litert-torch / ai-edge-litert is not installed."""
    pytest.importorskip("litert_torch")
    pytest.importorskip("ai_edge_litert")
    from vanillanet_edge.converters.convert import convert_checkpoint

    out = tmp_path_factory.mktemp("tflite")
    [o] = convert_checkpoint(tiny_checkpoint.path, ["tflite"], ["fp32"], out)
    assert o.ok, o.error
    return o


def pytest_collection_modifyitems(config, items):
    """tests/cluster shares one two-node Ray cluster per session (its conftest): run those tests
    last, so that the cluster's daemons (about 1 GB, a little CPU) do not sit beside the rest."""
    items.sort(key=lambda item: "cluster" in Path(str(item.fspath)).parent.parts[-1:])
