"""`vanillanet-edge eval --ray`: the same JSON as a local eval (plus where it ran), exit 2 with a
hint when no cluster answers, and --help says where artifacts and data must be."""
from __future__ import annotations

import json
import socket

from click.testing import CliRunner

from vanillanet_edge.cli.main import main

SAME_KEYS = ("kind", "artifact", "name", "target", "precision", "runtime", "engine", "session_settings",
             "images", "skipped", "skipped_files", "top1", "top5", "agreement_with_fp32", "reference", "ok")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_eval_ray_writes_what_a_local_eval_writes(ray_cluster, tiny_artifacts, tiny_checkpoint, tmp_path):
    val = tiny_checkpoint.data / "val"
    here = run("eval", tiny_artifacts, "--data", val, "--set", "threads=1", "--save", tmp_path / "here.json")
    assert here.exit_code == 0, here.output
    there = run("eval", tiny_artifacts, "--data", val, "--set", "threads=1", "--ray", ray_cluster.address,
                "--save", tmp_path / "there.json")
    assert there.exit_code == 0, there.output
    a = json.loads((tmp_path / "here.json").read_text())
    b = json.loads((tmp_path / "there.json").read_text())
    assert [{k: r[k] for k in SAME_KEYS} for r in a] == [{k: r[k] for k in SAME_KEYS} for r in b]
    assert all(r["cluster"]["nodes"] == 2 and r["device"]["name"] == "ray" for r in b)
    assert "device ray (Ray cluster at" in there.output


def test_eval_ray_unreachable_exits_2_and_writes_nothing(tiny_artifacts, tiny_checkpoint, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run("eval", tiny_artifacts, "--data", tiny_checkpoint.data / "val", "--ray", f"127.0.0.1:{port}",
            "--save", tmp_path / "out.json")
    assert r.exit_code == 2 and "no Ray cluster answers" in r.output and "hint:" in r.output
    assert not (tmp_path / "out.json").exists()


def test_eval_help_says_where_artifacts_and_data_live():
    text = " ".join(run("eval", "--help").output.split())
    assert "--ray ADDRESS" in text and "--ray-ship-data" in text and "every node" in text and "sha256" in text


def test_pipeline_file_takes_eval_ray(tmp_path):
    from vanillanet_edge.pipeline.config import example_toml, validate

    assert validate({"eval": {"ray": "10.0.0.5:6379"}}, tmp_path)["eval"]["ray"] == "10.0.0.5:6379"
    assert validate({}, tmp_path)["eval"]["ray"] == ""          # default: here
    assert "ray" in example_toml()


def test_pipeline_evaluates_on_the_cluster_with_a_local_evals_numbers(ray_cluster, tiny_checkpoint, tmp_path):
    """`[eval] ray` in a full pipeline run: its eval record is a local eval's, plus where it ran."""
    from vanillanet_edge.devices.accuracy import evaluate
    from vanillanet_edge.devices.artifacts import resolve
    from vanillanet_edge.pipeline.run import run_pipeline

    cfg = {"model": {"checkpoint": str(tiny_checkpoint.path)}, "data": {"root": str(tiny_checkpoint.data)},
           "convert": {"targets": ["onnx"], "precisions": ["fp32"]},
           "eval": {"limit": 60, "ray": ray_cluster.address}, "bench": {"runs": 2, "warmup": 1, "rounds": 1},
           "baselines": {"models": []}, "verdict": {"models": []}}
    result = run_pipeline(cfg, tmp_path / "run", log=lambda m: None)
    assert not result["failures"], result["failures"]
    [there] = json.loads((tmp_path / "run" / "results" / "eval" / "tiny-onnx-fp32.json").read_text())
    assert there["cluster"]["nodes"] == 2
    [ref] = resolve([tmp_path / "run" / "artifacts" / "tiny-onnx-fp32"])
    here = evaluate(ref, there["data"], 60, settings={"threads": 1})
    for key in ("images", "skipped", "top1", "top5", "agreement_with_fp32"):
        assert here[key] == there[key], key
    [row] = [r for r in result["summary"] if r["runtime"] == "onnxruntime"]
    assert row["top1"] == there["top1"]
