"""A pipeline run benchmarking on two devices: this machine and an SSH device on loopback."""
from __future__ import annotations

import json

from devices_toml import device_entry, write_devices

from vanillanet_edge.pipeline.run import run_pipeline


def _cfg(tiny, devices_file, devices):
    return {"model": {"checkpoint": str(tiny.path)}, "data": {"root": str(tiny.data)},
            "convert": {"targets": ["onnx", "openvino"], "precisions": ["fp32"]},
            "eval": {"limit": 40}, "baselines": {"models": []}, "verdict": {"models": []},
            "bench": {"runs": 4, "warmup": 1, "rounds": 2, "devices": devices, "devices_file": str(devices_file)}}


def test_pipeline_benches_on_both_devices_side_by_side_and_a_down_device_fails_alone(tiny_checkpoint, sshd,
                                                                                      free_port, tmp_path):
    """One pipeline over this machine, an SSH device on loopback and one that is down (one run
    serves both checks: a pipeline run is most of this file's time)."""
    down = dict(device_entry(sshd, tmp_path / "wd-down"), url=f"ssh://{sshd.user}@127.0.0.1:{free_port}")
    devices = write_devices(tmp_path / "devices.toml", {"lo": device_entry(sshd, tmp_path / "wd"), "down": down})
    cfg = _cfg(tiny_checkpoint, devices, ["local", "lo", "down"])
    result = run_pipeline(cfg, tmp_path / "run", log=lambda m: None)
    # the down device fails alone, with its reason; the others are measured
    assert [f["step"] for f in result["failures"]] == ["bench@down"]
    assert "unreachable" in result["failures"][0]["error"]
    bench = json.loads((tmp_path / "run" / "results" / "bench.json").read_text())
    artifacts = {r["name"] for r in bench}
    for name in artifacts - {"tiny-deploy"}:          # eager PyTorch stays local
        assert {r["device"]["name"] for r in bench if r["name"] == name and r["ok"]} == {"local", "lo"}
    report = json.loads((tmp_path / "run" / "report" / "report.json").read_text())
    side = {t["key"]: t for t in report["tables"]}["devices"]
    names = [c["name"] for c in side["columns"]]
    assert "local ms" in names and "lo ms" in names and names.index("local ms") < names.index("lo ms")
    onnx = next(r for r in side["rows"] if r["runtime"] == "onnxruntime")
    assert onnx["local ms"] > 0 and onnx["lo ms"] > 0
    assert {s["device"] for s in result["summary"] if s["median_ms"]} == {"local", "lo"}
    assert all(s["median_ms"] for s in result["summary"] if s["device"] == "local")
    # where the time goes, from the runtimes' own profilers, for each profiled artifact
    profile = {t["key"]: t for t in report["tables"]}["profile"]["rows"]
    assert {r["runtime"] for r in profile} == {"onnxruntime", "openvino"}
    assert all(r["ms"] >= 0 and 0 <= r["share %"] <= 100 for r in profile)
    # the next run tries the failed device's bench again
    again = run_pipeline(cfg, tmp_path / "run", log=lambda m: None)
    assert "bench" not in again["skipped"] and [f["step"] for f in again["failures"]] == ["bench@down"]
