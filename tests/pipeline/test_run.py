"""The pipeline: config validation, caching, resumption after a kill, the lock."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib
from click.testing import CliRunner

from vanillanet_edge.cli.main import main
from vanillanet_edge.converters.registry import target_names
from vanillanet_edge.pipeline.config import ConfigError, example_toml, load_config, validate
from vanillanet_edge.pipeline.run import run_pipeline
from vanillanet_edge.pipeline.rundir import RunDir, RunLockedError


def _cfg(tiny, **over) -> dict:
    cfg = {"model": {"checkpoint": str(tiny.path)}, "data": {"root": str(tiny.data)},
           "convert": {"targets": ["onnx"], "precisions": ["fp32"]},
           "eval": {"limit": 60}, "bench": {"runs": 4, "warmup": 1, "rounds": 1},
           "baselines": {"models": []}, "verdict": {"models": []}}
    for section, values in over.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def test_example_file_validates_and_is_the_demo():
    cfg = validate(tomllib.loads(example_toml()), Path.cwd())
    assert cfg["convert"]["targets"] == target_names()          # every registered target
    assert cfg["convert"]["precisions"] == ["fp32", "int8"] and cfg["model"]["checkpoint"] == ""


@pytest.mark.parametrize("raw, message", [
    ({"calibration": {"sample": 3}}, "unknown key calibration.sample.*did you mean 'samples'"),
    ({"calibraton": {}}, r"unknown section \[calibraton\].*did you mean 'calibration'"),
    ({"bench": {"runs": "many"}}, "bench.runs must be an integer"),
    ({"convert": {"targets": ["onnx", "tensorrt"]}}, "'tensorrt' is not one of"),
    ({"model": {"checkpoint": "missing.pth"}}, "model.checkpoint: .*missing.pth does not exist"),
    ({"train": {"epochs": 4, "decay_epochs": 8}}, "decay_epochs exceeds"),
    ({"convert": {"targets": ["onnx"], "required": ["coreml"]}}, "convert.required names 'coreml'"),
])
def test_bad_pipeline_files_fail_before_any_work(raw, message, tmp_path):
    with pytest.raises(ConfigError, match=f"(?s){message}"):
        validate(raw, tmp_path)
    assert not any(tmp_path.iterdir())


def test_toml_syntax_and_missing_file(tmp_path):
    bad = tmp_path / "p.toml"
    bad.write_text("[model\ncheckpoint = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="pipeline file not found"):
        load_config(tmp_path / "nope.toml")


def test_run_caches_and_redoes_only_what_a_setting_affects(tiny_checkpoint, tmp_path):
    out = tmp_path / "run"
    logs: list[str] = []
    first = run_pipeline(_cfg(tiny_checkpoint), out, log=logs.append)
    assert not first["failures"]
    [onnx_row, torch_row] = sorted(first["summary"], key=lambda r: r["runtime"])
    assert onnx_row["runtime"] == "onnxruntime" and onnx_row["top1"] > 0.8 and onnx_row["median_ms"] > 0
    assert torch_row["runtime"] == "torch"
    assert (out / "artifacts" / "tiny-onnx-fp32" / "manifest.json").exists()
    state = json.loads((out / "state.json").read_text())
    assert {"fuse", "convert:onnx:fp32", "bench"} <= set(state)
    # the closing line's `classify` command runs and names the digit of the image it picked
    command = shlex.split(first["try_it"])
    assert command[:2] == ["vanillanet-edge", "classify"] and Path(command[2]).parent == out / "artifacts"
    res = CliRunner().invoke(main, command[1:] + ["--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["results"][0]["top"][0]["label"] == Path(command[3]).parent.name

    again = run_pipeline(_cfg(tiny_checkpoint), out, log=logs.append)
    assert {"fuse", "convert:onnx:fp32", "bench"} <= set(again["skipped"])
    assert again["summary"] == first["summary"]          # nothing re-measured

    changed = run_pipeline(_cfg(tiny_checkpoint, bench={"runs": 6}), out, log=logs.append)
    assert "convert:onnx:fp32" in changed["skipped"] and "bench" not in changed["skipped"]
    forced = run_pipeline(_cfg(tiny_checkpoint, bench={"runs": 6}), out, force=("convert",), log=logs.append)
    assert "convert:onnx:fp32" not in forced["skipped"]
    # the re-export is byte-identical, so what depends on its content stays cached
    assert "bench" in forced["skipped"] and "eval:tiny-onnx-fp32" in forced["skipped"]


def test_failed_target_is_reported_without_hiding_others(tiny_checkpoint, tmp_path):
    # fp16 LiteRT works, but a precision a target lacks fails that step only
    cfg = _cfg(tiny_checkpoint, convert={"targets": ["onnx"], "precisions": ["fp32", "int8"]},
               calibration={"method": "mse"})   # ONNX offers no "mse"
    result = run_pipeline(cfg, tmp_path / "run", log=lambda m: None)
    assert [f["step"] for f in result["failures"]] == ["convert:onnx:int8"]
    assert "cannot calibrate with 'mse'" in result["failures"][0]["error"]
    assert any(r["artifact"] == "tiny-onnx-fp32" for r in result["summary"])
    cfg["convert"]["required"] = ["onnx"]
    with pytest.raises(Exception, match="(?s)stage .convert. failed.*required target onnx"):
        run_pipeline(cfg, tmp_path / "run2", log=lambda m: None)


def test_lock_refuses_a_second_run_and_recovers_a_stale_one(tmp_path):
    with RunDir(tmp_path) as held:
        with pytest.raises(RunLockedError, match=f"in use by pid {os.getpid()} on host "):
            RunDir(tmp_path).__enter__()
        assert held.lock_path.exists()
    with RunDir(tmp_path):
        pass   # released: the file may stay, it no longer locks anything
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    with RunDir(tmp_path):
        pass   # the dead holder's lock was recovered
    (tmp_path / ".lock").write_text("")      # what a power cut during the pid write leaves
    with RunDir(tmp_path):
        pass
    # (tests/hostile/test_runlock_hostile.py: rival processes, SIGKILL, races, garbage files)


def test_killed_run_resumes_and_never_uses_half_written_artifacts(tiny_checkpoint, tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text(f'''
[model]
checkpoint = "{tiny_checkpoint.path}"
[data]
root = "{tiny_checkpoint.data}"
[convert]
targets = ["openvino", "onnx"]
precisions = ["fp32"]
[eval]
limit = 40
[baselines]
models = []
[bench]
runs = 3
warmup = 1
rounds = 1
[verdict]
models = []
''')
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "vanillanet_edge.cli.main", "run", str(cfg),
                             "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if list((out / "artifacts").glob(".*partial*")) if (out / "artifacts").exists() else False:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "artifacts" / "tiny-openvino-fp32").exists()
    result = run_pipeline(cfg, out, log=lambda m: None)    # stale lock recovered, run completes
    assert not result["failures"]
    assert {r["artifact"] for r in result["summary"]} >= {"tiny-onnx-fp32", "tiny-openvino-fp32"}
    assert not list((out / "artifacts").glob(".*partial*"))


def test_baseline_converted_and_benched_beside_vanillanet(tiny_checkpoint, tmp_path):
    cfg = _cfg(tiny_checkpoint, baselines={"models": ["resnet18"]}, eval={"limit": 20})
    result = run_pipeline(cfg, tmp_path / "run", log=lambda m: None)
    assert not result["failures"]
    rows = {r["artifact"]: r for r in result["summary"]}
    base = rows["resnet18-random-onnx-fp32"]
    assert base["median_ms"] > 0 and base["top1"] is None      # latency only: random weights
    assert rows["tiny-onnx-fp32"]["top1"] > 0.8
