"""`convert --max-drop --ray` and `calibrate --ray` on the two-node Ray cluster: the numbers a
local run writes (accuracy of every INT8 candidate; per-layer statistics), and the usage error
when --ray has nothing to measure."""
from __future__ import annotations

import json

from click.testing import CliRunner

from vanillanet_edge.cli.main import main
from vanillanet_edge.fileio import OWNED_MARK

ACCURACY = ("data", "top1", "fp32_top1", "drop_points", "budget_points", "kept_in_float")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_convert_max_drop_on_ray_gives_the_local_accuracy(ray_cluster, tiny_checkpoint, tmp_path):
    """One candidate (the tiny net meets the budget in plain INT8): a budget that needs several
    (tests/converters/test_int8_budget.py's outlier net) takes over a minute here on ONNX."""
    d = tiny_checkpoint.data
    args = (tiny_checkpoint.path, "--target", "onnx", "--precision", "int8", "--calib-data", d / "train",
            "--calib-samples", 32, "--eval-data", d / "val", "--max-drop", 1.0)
    here = run("convert", *args, "--out", tmp_path / "here")
    assert here.exit_code == 0, here.output
    there = run("convert", *args, "--out", tmp_path / "there", "--ray", ray_cluster.address)
    assert there.exit_code == 0, there.output
    a, b = (json.loads((tmp_path / w / "tiny-onnx-int8" / "manifest.json").read_text())["accuracy"]
            for w in ("here", "there"))
    assert {k: a[k] for k in ACCURACY} == {k: b[k] for k in ACCURACY}
    assert a["budget_points"] == 1.0 and 0.5 < a["top1"] <= 1.0
    assert "measured_on" not in a and b["measured_on"].startswith(f"Ray cluster at {ray_cluster.address}")


def test_convert_ray_needs_eval_data(tiny_checkpoint, tmp_path):
    r = run("convert", tiny_checkpoint.path, "--target", "onnx", "--out", tmp_path, "--ray", "local")
    assert r.exit_code == 2 and "--ray measures top-1" in r.output and "--eval-data" in r.output
    assert [p.name for p in tmp_path.iterdir()] in ([], [OWNED_MARK])


def test_calibrate_on_ray_writes_the_local_statistics(ray_cluster, tiny_checkpoint, tmp_path):
    data = tiny_checkpoint.data / "train"
    here = run("calibrate", tiny_checkpoint.path, "--data", data, "--samples", 96, "--out", tmp_path / "here")
    assert here.exit_code == 0, here.output
    there = run("calibrate", tiny_checkpoint.path, "--data", data, "--samples", 96, "--out", tmp_path / "there",
                "--ray", ray_cluster.address)
    assert there.exit_code == 0, there.output
    a, b = (json.loads((tmp_path / w / "calibration.json").read_text()) for w in ("here", "there"))
    assert a["layers"] == b["layers"] and a["sensitivity"] == b["sensitivity"]
    assert a["keep_in_float"] == b["keep_in_float"] and a["calibration"] == b["calibration"]
    assert a["statistics"]["where"] == "here" and b["statistics"]["where"] == f"Ray cluster at {ray_cluster.address}"
    assert b["statistics"]["images"] == 96 and len(a["layers"]) >= 5
