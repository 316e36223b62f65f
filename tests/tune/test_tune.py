"""tune: real conversions of the tiny digits net, real runtimes, interleaved benchmarks."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from vanillanet_edge import api
from vanillanet_edge.cli.main import main
from vanillanet_edge.devices.artifacts import resolve
from vanillanet_edge.devices.latency import BenchSettings, bench
from vanillanet_edge.model import create_model, fuse_model
from vanillanet_edge.model.adapool import replace_adaptive_max_pools
from vanillanet_edge.model.rewrites import apply_rewrites, relu_before_pool
from vanillanet_edge.tune.search import TuneOptions


@pytest.mark.parametrize("variant,size", [("vanillanet_5", 64), ("vanillanet_13_x1_5_ada_pool", 96)])
def test_relu_before_pool_is_exact(variant, size):
    torch.manual_seed(0)
    model = create_model(variant, width=1 / 32, num_classes=10).eval()
    for m in model.modules():                       # non-trivial BN statistics to fold
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    fused = replace_adaptive_max_pools(fuse_model(model), size)
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        assert torch.equal(fused(x), relu_before_pool(fused)(x))
    with pytest.raises(ValueError, match="unknown rewrite"):
        apply_rewrites(fused, ["no_such_rewrite"])


@pytest.fixture(scope="module")
def tuned(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("tune")
    # two rewrites keep the suite short; the default list (with dw_dilated) is checked below
    opts = TuneOptions(targets=("onnx", "openvino"), precisions=("fp32", "int8"),
                       rewrites=((), ("relu_before_pool",)), calib_data=str(tiny_checkpoint.data / "train"),
                       eval_data=str(tiny_checkpoint.data / "val"),
                       eval_limit=200, max_drop=0.5, warmup=1, runs=8, rounds=2, peaks=False)
    return api.tune(str(tiny_checkpoint.path), out, options=opts, log=lambda m: None), out


def test_tune_ranks_verified_candidates_and_pins_the_winner(tuned):
    result, out = tuned
    rows = result["candidates"]
    assert len(rows) >= 8 and all(r["ok"] for r in rows)
    per_image = [r["ms_per_image"] for r in rows]
    assert per_image == sorted(per_image)                          # ranked, fastest first
    assert {tuple(r["rewrites"]) for r in rows} == {(), ("relu_before_pool",)}
    assert {r["runtime"] for r in rows} == {"onnxruntime", "openvino"}
    assert any(r["settings"].get("precision_hint") == "f32" for r in rows)
    anchor = result["anchor"]
    assert anchor["target"] == "openvino" and anchor["precision"] == "int8" and anchor["settings"] == {}
    assert anchor["speedup_vs_anchor"] == pytest.approx(1.0)
    for r in rows:                                                 # each checked with its own settings
        assert r["agreement"] is not None and r["top1"] is not None and r["interval_ms"][0] <= r["median_ms"]
    rec = result["recommendation"]
    assert rec["passed_checks"] and rec["drop_points"] <= 0.5
    assert rec["ms_per_image"] == min(r["ms_per_image"] for r in rows if r["passed_checks"])

    pinned = json.loads((out / "recommended" / result["recommended_artifact"].split("/")[-1] / "manifest.json").read_text())
    assert pinned["runtime_settings"] == rec["settings"] and pinned["tuned"]["median_ms"] == rec["median_ms"]
    assert json.loads((out / "tune.json").read_text())["recommendation"]["label"] == rec["label"]


def test_bench_applies_the_pinned_settings(tuned):
    result, _ = tuned
    [ref] = resolve([result["recommended_artifact"]])
    [record] = bench([ref], BenchSettings(warmup=1, runs=4, rounds=1))
    assert record["ok"]
    settings = result["recommendation"]["settings"]
    ss = record["session_settings"]
    if "threads" in settings:
        assert ss["threads"] == settings["threads"]
    if "precision_hint" in settings:
        assert ss["inference_precision"] == settings["precision_hint"]


def test_budgets_that_nothing_meets_give_no_recommendation(tiny_checkpoint, tuned, tmp_path):
    _, out = tuned
    args = ["tune", str(tiny_checkpoint.path), "--out", str(out), "--target", "onnx", "--precision", "fp32",
            "--rewrite", "none", "--runs", "4", "--rounds", "1", "--budget-ms", "0.000001"]
    result = CliRunner().invoke(main, args)                      # artifacts reused from the first run
    assert result.exit_code == 1, result.output
    assert "no candidate met the budgets" in result.output
    with pytest.raises(Exception, match="needs calibration images"):
        api.tune(str(tiny_checkpoint.path), tmp_path, options=TuneOptions(targets=("onnx",), precisions=("int8",)),
                 log=lambda m: None)


def test_recommend_picks_the_most_accurate_model_that_fits_and_labels_the_accuracy(tiny_checkpoint, tmp_path):
    opts = TuneOptions(targets=("onnx",), precisions=("fp32",), rewrites=((),), input_sizes=(32,),
                       eval_data=str(tiny_checkpoint.data / "val"), eval_limit=100, warmup=1, runs=4, rounds=1,
                       peaks=False)
    models = [str(tiny_checkpoint.path), "vanillanet_5"]
    result = api.recommend(models, tmp_path, budget_ms=5000, options=opts, log=lambda m: None)
    by_model = {r["source"]: r for r in result["models"]}
    tiny, random5 = by_model[str(tiny_checkpoint.path)], by_model["vanillanet_5"]
    assert tiny["fits"] and tiny["accuracy"] > 0.9 and tiny["accuracy_kind"].startswith("measured")
    # a random-weight variant's top-1 on the user's data means nothing: it is never ranked as measured
    assert random5["fits"] and not random5["accuracy_kind"].startswith("measured")
    assert result["accuracy_used"] == "measured" and result["recommendation"]["source"] == str(tiny_checkpoint.path)

    none = api.recommend(models[:1], tmp_path / "tight", budget_ms=1e-6, options=opts, log=lambda m: None)
    assert none["recommendation"] is None and not none["models"][0]["fits"]


def test_tune_tries_each_allowed_input_size_with_its_own_accuracy(tiny_checkpoint, tmp_path):
    opts = TuneOptions(targets=("onnx",), precisions=("fp32",), rewrites=((),), input_sizes=(32, 64),
                       eval_data=str(tiny_checkpoint.data / "val"), eval_limit=100, warmup=1, runs=4, rounds=1,
                       peaks=False)
    result = api.tune(str(tiny_checkpoint.path), tmp_path, options=opts, log=lambda m: None)
    sizes = {r["input_size"]: r for r in result["candidates"]}
    assert set(sizes) == {32, 64}
    assert all(r["top1"] is not None and r["agreement"] == 1.0 for r in sizes.values())
    assert "64px" in sizes[64]["label"] and sizes[64]["median_ms"] > 0


def test_tune_layout_axis_adds_nhwc_openvino_artifacts_verified_like_the_rest(tiny_checkpoint, tmp_path):
    opts = TuneOptions(targets=("openvino", "onnx"), precisions=("fp32",), rewrites=((),), layouts=("native", "NHWC"),
                       warmup=1, runs=4, rounds=1, peaks=False)
    result = api.tune(str(tiny_checkpoint.path), tmp_path, options=opts, log=lambda m: None)
    nhwc = [r for r in result["candidates"] if "NHWC" in r["label"]]
    assert nhwc and {r["target"] for r in nhwc} == {"openvino"}          # ONNX offers no NHWC option
    manifest = json.loads((tmp_path / "artifacts" / nhwc[0]["artifact"].split("/")[-1] / "manifest.json").read_text())
    assert manifest["input"]["layout"] == "NHWC" and manifest["input"]["shape"] == [1, 32, 32, 3]
    assert all(r["agreement"] == 1.0 and r["ok"] for r in nhwc)


def test_tune_tries_the_depthwise_split_by_default_and_refuses_unknown_rewrites(tiny_checkpoint, tmp_path):
    assert ("dw_dilated",) in TuneOptions().rewrites
    help_text = " ".join(CliRunner().invoke(main, ["tune", "--help"]).output.split())
    assert "none, relu_before_pool, dw_dilated" in help_text
    args = ["tune", str(tiny_checkpoint.path), "--out", str(tmp_path / "t"), "--rewrite", "dw_bandz"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "unknown rewrite 'dw_bandz'" in result.output and "dw_dilated" in result.output
    assert not (tmp_path / "t").exists()
