"""A new kind of device is one Transport class plus one registry line (remote/transport.py).

The transport here is a plain local shell that does not say it is this machine (runs_here is
False), registered under a scheme of its own for the test: the device then gets the whole
remote path (our marked folder, the runner bundle, the content-addressed artifact upload, the
`latency` rounds and the `serve` protocol), with no SSH involved. The runner runs with this
venv's Python. About 10 s (bench rounds and sessions in fresh processes).
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

from vanillanet_edge.devices.artifacts import resolve
from vanillanet_edge.devices.base import example_input
from vanillanet_edge.devices.latency import BenchSettings
from vanillanet_edge.devices.registry import get_runner
from vanillanet_edge.remote import transport
from vanillanet_edge.remote.device import Device
from vanillanet_edge.remote.devices_file import DeviceConfigError, parse_devices
from vanillanet_edge.remote.runner import COMPLETE, content_digest
from vanillanet_edge.remote.transport import LocalTransport
from vanillanet_edge.remote.workdir import Workdir


class ShellTransport(LocalTransport):
    """This machine's shell, used as if it were another machine's."""

    runs_here = False
    url_form = "shell://NAME"


@pytest.fixture
def shell_scheme(monkeypatch):
    monkeypatch.setitem(transport.TRANSPORTS, "shell", f"{__name__}:ShellTransport")


def test_an_unknown_scheme_is_refused_and_a_registered_one_is_accepted(shell_scheme, tmp_path):
    with pytest.raises(DeviceConfigError, match=r"neither 'local' nor ssh://user@host\[:port\] nor shell://NAME"):
        parse_devices({"devices": {"b": {"url": "adb://serial"}}})
    spec = parse_devices({"devices": {"b": {"url": "shell://b", "workdir": str(tmp_path)}}})["b"]
    assert isinstance(Device(spec).harness, Workdir)


def test_a_device_over_a_new_transport_benches_and_evaluates_through_the_runner(shell_scheme, tiny_artifacts,
                                                                               tmp_path):
    spec = parse_devices({"devices": {"b": {"url": "shell://b", "workdir": str(tmp_path / "wd"),
                                            "python": sys.executable, "runtimes": ["onnxruntime"]}}})["b"]
    [ref] = resolve([tiny_artifacts / "tiny-onnx-fp32"])
    device = Device(spec)
    try:
        report = device.check()
        assert report["reachable"] and report["missing"] == [], report
        [rec] = device.bench([ref], BenchSettings(warmup=1, runs=4, rounds=1))
        assert rec["ok"], rec.get("error")
        assert rec["device"]["name"] == "b" and rec["latency"]["median_ms"] > 0
        [sent] = device.harness.uploaded                 # the artifact went once, content-addressed
        target = tmp_path / "wd" / "vanillanet-edge" / "artifacts" / sent.rsplit("/", 1)[1] / ref.path.name
        assert (target / COMPLETE).read_text().strip() == content_digest(ref.path)[2]
        x = example_input(ref.manifest)
        session = device.open_session(ref, "onnxruntime", {"threads": 1})
        try:
            there = session.run_all(x)
        finally:
            session.close()
        here = get_runner("onnxruntime").load(ref.artifact, ref.manifest, threads=1).run_all(x)
        np.testing.assert_array_equal(there, here)
    finally:
        device.close()
