"""bench / eval / devices check on a real OpenSSH server on loopback (tests/remote/sshd.py).

The "remote device" is this machine reached over SSH, with the venv's Python as the device's
Python: the runner bundle, the artifact transfer, the host-key checks and the failure paths
are the real ones.
"""
from __future__ import annotations

import os
import sys
import time

import pytest
from click.testing import CliRunner
from devices_toml import device_entry, write_devices
from sshd import LoopbackSshd

from vanillanet_edge import api
from vanillanet_edge.cli.main import main
from vanillanet_edge.devices.artifacts import resolve
from vanillanet_edge.devices.latency import BenchSettings
from vanillanet_edge.remote.device import open_device
from vanillanet_edge.remote.devices_file import DeviceConfigError, load_devices, parse_devices

QUICK = BenchSettings(warmup=1, runs=6, rounds=2)


@pytest.fixture
def artifacts(tiny_artifacts):
    """The shared tiny net's ONNX and OpenVINO fp32 artifacts (tests/conftest.py)."""
    return tiny_artifacts


def spec_of(entry: dict, name: str = "lo"):
    return parse_devices({"devices": {name: entry}})[name]


# -- the devices file ---------------------------------------------------------------------------

def test_devices_file_refuses_secrets_typos_and_bad_urls(tmp_path):
    with pytest.raises(DeviceConfigError, match="looks like a secret"):
        parse_devices({"devices": {"pi": {"url": "ssh://pi@h", "password": "x"}}})
    with pytest.raises(DeviceConfigError, match="holds a password"):
        parse_devices({"devices": {"pi": {"url": "ssh://pi:hunter2@h"}}})
    with pytest.raises(DeviceConfigError, match="did you mean 'identity_file'"):
        parse_devices({"devices": {"pi": {"url": "ssh://pi@h", "identity": "k"}}})
    with pytest.raises(DeviceConfigError, match="neither 'local' nor ssh://"):
        parse_devices({"devices": {"pi": {"url": "http://h"}}})
    with pytest.raises(DeviceConfigError, match="unknown runtime 'onnx'"):
        parse_devices({"devices": {"pi": {"url": "ssh://pi@h", "runtimes": ["onnx"]}}})
    with pytest.raises(DeviceConfigError, match="not found"):
        load_devices(tmp_path / "nope.toml")
    specs = load_devices(write_devices(tmp_path / "d.toml", {"pi": {"url": "ssh://pi@10.0.0.2:2222"}}))
    assert set(specs) == {"local", "pi"} and specs["pi"].port == 2222 and specs["pi"].user == "pi"


# -- a healthy device -----------------------------------------------------------------------------

def test_check_reports_machine_runtimes_and_versions(sshd, tmp_path):
    entry = device_entry(sshd, tmp_path / "wd", runtimes=["onnxruntime", "openvino"])
    [report] = api.check_devices(["lo"], write_devices(tmp_path / "d.toml", {"lo": entry}))
    assert report["reachable"], report
    assert report["arch"] and report["cpu_model"] and report["memory_gib"] > 0 and report["isa"]
    assert set(report["runtimes"]) == {"onnxruntime", "openvino"}
    assert report["runtimes"]["onnxruntime"]["available"] and report["runtimes"]["onnxruntime"]["version"]
    assert report["missing"] == []


def test_remote_bench_and_eval_match_local_and_artifacts_are_sent_once(sshd, artifacts, digits_dir, tmp_path):
    refs = resolve([artifacts])
    wd = tmp_path / "wd"
    specs = [spec_of({"url": "local"}, "local"), spec_of(device_entry(sshd, wd))]
    records = api.bench(refs, QUICK, specs)
    assert len(records) == 2 * len(refs)
    for r in records:
        assert r["ok"], r.get("error")
        assert r["latency"]["runs"] == 6 and r["machine"]["cpu_model"] and r["peak_rss_mib"] > 10
    assert {r["device"]["name"] for r in records} == {"local", "lo"}
    own = wd / "vanillanet-edge"         # the folder of ours inside workdir
    sent = sorted(p.name for p in (own / "artifacts").iterdir())
    assert len(sent) == len(refs)        # one content-addressed folder per artifact

    # A second call finds everything there: nothing is sent again.
    device = open_device(specs[1])
    try:
        again = device.bench(refs, QUICK)
        assert all(r["ok"] for r in again) and device.harness.uploaded == []
    finally:
        device.close()
    assert sorted(p.name for p in (own / "artifacts").iterdir()) == sent

    acc = api.evaluate(refs[:1], digits_dir / "val", specs, limit=40)
    local, remote = acc
    assert remote["ok"] and remote["device"]["name"] == "lo" and remote["images"] == 40
    assert remote["top1"] == local["top1"] and remote["agreement_with_fp32"] == 1.0
    assert remote["images_per_s"] > 0 and remote["machine"]["cpu_model"]


def test_keep_cache_false_removes_what_was_sent_and_clean_removes_the_workdir(sshd, artifacts, tmp_path):
    wd = tmp_path / "wd"                 # does not exist yet: made by us, so clean removes it too
    entry = device_entry(sshd, wd, keep_cache=False)
    [rec] = api.bench(resolve([artifacts])[:1], QUICK, [spec_of(entry)])
    assert rec["ok"], rec.get("error")
    own = wd / "vanillanet-edge"
    assert list((own / "artifacts").iterdir()) == []      # nothing left behind but the runner
    assert len(list(own.glob("runner-*.pyz"))) == 1
    [line] = api.clean_devices(["lo"], write_devices(tmp_path / "d.toml", {"lo": entry}))
    assert line.endswith(": removed") and not own.exists() and not wd.exists()


# -- failures: each device's own, never the others' ---------------------------------------------------

def test_device_down_fails_fast_and_leaves_the_other_devices_results(artifacts, free_port, sshd, tmp_path):
    down = dict(device_entry(sshd, tmp_path / "wd"), url=f"ssh://{sshd.user}@127.0.0.1:{free_port}")
    specs = [spec_of({"url": "local"}, "local"), spec_of(down, "down")]
    t0 = time.perf_counter()
    records = api.bench(resolve([artifacts]), QUICK, specs)
    by_device = {}
    for r in records:
        by_device.setdefault(r["device"]["name"], []).append(r)
    assert all(r["ok"] for r in by_device["local"])
    assert all(not r["ok"] and "unreachable" in r["error"] for r in by_device["down"])
    assert time.perf_counter() - t0 < 60       # the first refusal ends that device's rounds


def test_wrong_host_key_is_refused_with_a_clear_message(sshd, artifacts, tmp_path):
    entry = device_entry(sshd, tmp_path / "wd", known_hosts=str(sshd.wrong_known_hosts))
    [report] = api.check_devices(["lo"], write_devices(tmp_path / "d.toml", {"lo": entry}))
    assert not report["reachable"] and report["kind"] == "host_key"
    assert "does NOT match" in report["error"] and "ssh-keygen -R" in report["error"]
    # --accept-new-host-key never overrides a CHANGED key
    [report] = api.check_devices(["lo"], tmp_path / "d.toml", accept_new_host_key=True)
    assert not report["reachable"] and report["kind"] == "host_key"
    [rec] = api.bench(resolve([artifacts])[:1], QUICK, [spec_of(entry)])
    assert rec["status"] == "failed" and "host key" in rec["error"]


def test_unknown_host_key_needs_explicit_acceptance_which_is_reported(sshd, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    entry = device_entry(sshd, tmp_path / "wd", known_hosts=str(known), runtimes=["onnxruntime"])
    devices = write_devices(tmp_path / "d.toml", {"lo": entry})
    [report] = api.check_devices(["lo"], devices)
    assert not report["reachable"] and "--accept-new-host-key" in report["error"] and known.read_text() == ""
    result = CliRunner().invoke(main, ["devices", "check", "lo", "--devices", str(devices), "--accept-new-host-key"])
    assert result.exit_code == 0, result.output
    assert "accepted NEW host key" in result.output and "SHA256:" in result.output
    host_key = sshd.known_hosts.read_text().split()[-1]
    assert host_key in known.read_text()                   # saved for next time (maybe hashed name)
    [report] = api.check_devices(["lo"], devices)          # and now checked, no flag needed
    assert report["reachable"] and report["accepted_host_key"] is None


def test_remote_without_numpy_or_runtime_says_what_to_install(sshd, artifacts, tmp_path):
    nopy = device_entry(sshd, tmp_path / "wd0", python="/opt/no/such/python3")
    [report] = api.check_devices(["nopy"], write_devices(tmp_path / "d0.toml", {"nopy": nopy}))
    assert report["reachable"] and "/opt/no/such/python3 was not found" in report["error"]

    bare = device_entry(sshd, tmp_path / "wd1", python="/usr/bin/python3", runtimes=["onnxruntime"])
    [report] = api.check_devices(["bare"], write_devices(tmp_path / "d.toml", {"bare": bare}))
    assert report["reachable"]
    [missing] = report["missing"]
    assert "numpy" in missing["what"] and missing["install"].startswith("/usr/bin/python3 -m pip install numpy")

    # A Python with numpy but where onnxruntime does not import (shadowed by a broken package).
    shadow = tmp_path / "shadow" / "onnxruntime"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('onnxruntime is not installed on this device')\n")
    wrapper = tmp_path / "python-without-ort"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={shadow.parent} exec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    no_ort = device_entry(sshd, tmp_path / "wd2", python=str(wrapper), runtimes=["onnxruntime", "openvino"])
    [report] = api.check_devices(["no_ort"], write_devices(tmp_path / "d2.toml", {"no_ort": no_ort}))
    assert report["runtimes"]["openvino"]["available"] and not report["runtimes"]["onnxruntime"]["available"]
    [missing] = report["missing"]
    assert missing["what"] == "onnxruntime" and "pip install onnxruntime==" in missing["install"]
    records = api.bench(resolve([artifacts]), QUICK, [spec_of(no_ort)])
    ort = next(r for r in records if r["runtime"] == "onnxruntime")
    ov = next(r for r in records if r["runtime"] == "openvino")
    assert ort["status"] == "unavailable" and "not installed" in ort["reason"]
    assert ov["ok"]


def test_device_dropping_mid_run_is_marked_failed_and_others_continue(artifacts, tmp_path):
    refs = resolve([artifacts])
    with LoopbackSshd(tmp_path / "flaky-sshd") as flaky:
        specs = [spec_of(device_entry(flaky, tmp_path / "wd"), "flaky"), spec_of({"url": "local"}, "local")]
        dropped = []

        def progress(spec, r, i, ref):
            if spec.name == "flaky" and not dropped:     # after its first round: pull the plug
                flaky.drop()
                dropped.append(True)

        records = api.bench(refs, BenchSettings(warmup=1, runs=6, rounds=3), specs, progress=progress)
    flaky_recs = [r for r in records if r["device"]["name"] == "flaky"]
    local_recs = [r for r in records if r["device"]["name"] == "local"]
    assert dropped and all(r["status"] == "failed" for r in flaky_recs)
    assert any("dropped" in r["error"] or "unreachable" in r["error"] for r in flaky_recs)
    assert all(r["ok"] for r in local_recs)


def test_cli_bench_on_two_devices_prints_both(sshd, artifacts, tmp_path):
    devices = write_devices(tmp_path / "d.toml", {"lo": device_entry(sshd, tmp_path / "wd")})
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", str(artifacts / "tiny-onnx-fp32"), "--runs", "4", "--rounds", "2",
                                       "--warmup", "1", "--device", "local", "--device", "lo",
                                       "--devices", str(devices), "--save", str(out)])
    assert result.exit_code == 0, result.output
    assert "device local (this machine)" in result.output and f"device lo ({sshd.user}@127.0.0.1" in result.output
    assert os.path.getsize(out) > 0


def test_matmul_peaks_are_measured_on_the_device(sshd, tmp_path):
    device = open_device(spec_of(device_entry(sshd, tmp_path / "wd")))
    try:
        result = device.peaks(seconds=0.2)
    finally:
        device.close()
    assert result["peaks"]["openvino"]["fp32"]["gmacs_per_s"] > 0 and result["machine"]["cpu_model"]
