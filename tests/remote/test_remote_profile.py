"""`profile` on a device: the runtimes' profilers and the LiteRT op probe run by the device's
runner over a real OpenSSH server on loopback (tests/remote/sshd.py), and the CLI's --device."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from devices_toml import device_entry, write_devices

from vanillanet_edge import api
from vanillanet_edge.cli.main import main
from vanillanet_edge.devices.artifacts import resolve
from vanillanet_edge.remote.devices_file import parse_devices

pytestmark = pytest.mark.filterwarnings("ignore")


def test_profile_over_ssh_gives_the_local_records(sshd, tiny_artifacts, tiny_tflite, tmp_path):
    from vanillanet_edge.devices.op_probe import distinct_layers

    refs = resolve([tiny_tflite.folder, tiny_artifacts / "tiny-onnx-fp32"])
    spec = parse_devices({"devices": {"lo": device_entry(sshd, tmp_path / "wd")}})["lo"]
    # --no-peak: the matmul peak costs 5-8 s here (fixed GEMM shapes); it is measured by the same
    # profile_artifact call on the device (devices/layer_profile.py), its runner path by
    # test_remote_harness.py::test_matmul_peaks_are_measured_on_the_device
    lite, onnx = api.profile(refs, [spec], runs=3, warmup=1, threads=1, peak=False, probe_seconds=0.02)
    for rec, ref in ((lite, refs[0]), (onnx, refs[1])):
        assert rec["status"] == "ok" and rec["rows"], rec.get("reason")
        assert rec["device"] == {"name": "lo", "where": spec.describe()} and rec["machine"]["cpu_model"]
        assert rec["artifact"] == str(ref.path) and rec["name"] == ref.name     # the host's, not the copy's
        assert rec["session_settings"]["threads"] == 1
    assert onnx["runtime"] == "onnxruntime" and all(r["calls"] == 3 for r in onnx["rows"])
    # the op probe, made by the device's runner: one row per distinct layer, as a local probe has
    assert lite["profiler"].startswith("op probe") and all("gmacs_per_s" in r for r in lite["rows"])
    assert all(r["gmacs_per_s"] > 0 for r in lite["rows"] if r["op_type"] in ("CONV_2D", "DEPTHWISE_CONV_2D"))
    here = distinct_layers(tiny_tflite.folder / tiny_tflite.manifest["artifact"]["file"])
    assert ({(r["name"], r["op_type"], r["calls"], r["macs"]) for r in lite["rows"]}
            == {(k["name"], k["op_type"], len(k["ops"]), k["macs"]) for k in here})
    assert lite["peak_gmacs_per_s"] is None and lite["peak_note"] == "not measured (--no-peak)"


def test_profile_cli_names_the_device_and_fails_clearly(sshd, tiny_artifacts, free_port, tmp_path):
    onnx = str(tiny_artifacts / "tiny-onnx-fp32")
    quick = ["--runs", "2", "--warmup", "0", "--top", "3"]
    result = CliRunner().invoke(main, ["profile", onnx, *quick, "--device", "local"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "device local (this machine): " in result.output and "tiny-onnx-fp32  (onnxruntime, fp32 artifact) on local" in result.output
    assert "by op type" in result.output

    result = CliRunner().invoke(main, ["profile", onnx, "--device", "nope"])       # no such device: exit 2, a hint
    assert result.exit_code == 2 and "no device named 'nope'" in result.output and "Traceback" not in result.output
    down = dict(device_entry(sshd, tmp_path / "wd"), url=f"ssh://{sshd.user}@127.0.0.1:{free_port}")
    devices = write_devices(tmp_path / "d.toml", {"down": down})
    result = CliRunner().invoke(main, ["profile", onnx, *quick, "--device", "down", "--devices", str(devices)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output      # a failed record, as bench
    assert "device down (" in result.output and "unreachable" in result.output and "hint: " in result.output
