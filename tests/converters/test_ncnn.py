"""ncnn: pnnx's .param/.bin from the shared tiny net, run in the real ncnn wheel on real images
(scikit-learn digits), the manifest, int8 refused with the reason, byte-identical conversions,
the authors' deploy-form checkpoint, and `bench` / `eval` through the CLI."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vanillanet_edge.cli.main import main
from vanillanet_edge.converters.convert import Int8Options, convert_checkpoint, convert_one, prepare
from vanillanet_edge.converters.ncnn import INT8_NOTE
from vanillanet_edge.devices.machine import default_threads
from vanillanet_edge.devices.registry import get_runner
from vanillanet_edge.errors import VanillaNetEdgeError
from vanillanet_edge.fileio import OWNED_MARK
from vanillanet_edge.metrics import compare_logits
from vanillanet_edge.model.fuse import fuse_model
from vanillanet_edge.model.variants import create_model
from vanillanet_edge.pipeline.config import validate
from vanillanet_edge.pipeline.context import Context
from vanillanet_edge.pipeline.rundir import RunDir
from vanillanet_edge.pipeline.stages import RUNNERS, STAGES

pytest.importorskip("ncnn")
pytest.importorskip("pnnx")


@pytest.fixture(scope="module")
def ncnn_artifacts(tiny_checkpoint, digits_data, tmp_path_factory):
    """fp32 and fp16 ncnn artifacts of the tiny digits net, with top-1 on 200 val images."""
    out = tmp_path_factory.mktemp("ncnn")
    outcomes = convert_checkpoint(tiny_checkpoint, ["ncnn"], ["fp32", "fp16"], out,
                                  eval_data=digits_data / "val")
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    return {o.precision: o for o in outcomes}


def test_fp32_and_fp16_verify_on_real_images(ncnn_artifacts):
    for precision, o in ncnn_artifacts.items():
        m = o.manifest
        v = m["verification"]
        assert v["passed"] and "real images" in v["inputs"] or "val" in v["inputs"], v["inputs"]
        assert v["runtime"] == "ncnn" and v["runtime_settings"]["threads"] == default_threads()
        # fp32 runs with every fp16 path off: float32 reordering only.
        limit = 1e-5 if precision == "fp32" else 1e-2
        assert v["rel_err"] < limit and v["top1_agree"] >= 0.95, (precision, v)
        assert v["runtime_settings"]["fp16_storage"] == (precision == "fp16")
        acc = m["accuracy"]
        assert acc["top1"] > 0.5 and acc["drop_points"] <= (0.5 if precision == "fp32" else 2.0), acc


def test_manifest_describes_the_param_bin_pair(ncnn_artifacts):
    fp32, fp16 = ncnn_artifacts["fp32"], ncnn_artifacts["fp16"]
    for o in (fp32, fp16):
        m = o.manifest
        files = m["artifact"]["files"]
        assert m["artifact"]["file"] == "model.ncnn.param" and set(files) == {"model.ncnn.param", "model.ncnn.bin"}
        assert m["artifact"]["size_bytes"] == sum(f["size_bytes"] for f in files.values())
        assert m["input"]["layout"] == "NCHW" and m["input"]["shape"][0] == 1
        assert m["target"] == m["runtime"] == "ncnn"
        assert m["tools"]["pnnx"] and m["tools"]["ncnn"]
        assert "ncnn2int8" in m["conversion"]["int8"]
        assert not (o.folder / "model.pt").exists()          # pnnx's by-products stay behind
    # fp16 weights: the .bin is about half the fp32 one.
    size = {p: ncnn_artifacts[p].manifest["artifact"]["files"]["model.ncnn.bin"]["size_bytes"] for p in ("fp32", "fp16")}
    assert size["fp16"] < 0.6 * size["fp32"], size


def test_int8_is_refused_with_the_reason(tiny_checkpoint, digits_data, tmp_path):
    [o] = convert_checkpoint(tiny_checkpoint, ["ncnn"], ["int8"], tmp_path,
                             int8=Int8Options(digits_data / "train", samples=8))
    assert not o.ok and INT8_NOTE in o.error and "fp32, fp16" in o.error
    assert [p.name for p in tmp_path.iterdir()] in ([], [OWNED_MARK])
    result = CliRunner().invoke(main, ["convert", str(tiny_checkpoint), "--target", "ncnn", "--precision", "int8",
                                       "--calib-data", str(digits_data / "train"), "--calib-samples", "8", "--out", str(tmp_path / "cli")])
    assert result.exit_code == 1 and "ncnn2table" in result.output and "Traceback" not in result.output, result.output


def test_converting_twice_gives_identical_files(tiny_checkpoint, tmp_path):
    prep = prepare(tiny_checkpoint)
    first = convert_one(prep, "ncnn", "fp16", tmp_path / "a")
    second = convert_one(prep, "ncnn", "fp16", tmp_path / "b")
    assert first.ok and second.ok, (first.error, second.error)
    a, b = first.manifest["artifact"], second.manifest["artifact"]
    assert a["files"] == b["files"]
    for name in a["files"]:
        assert (first.folder / name).read_bytes() == (second.folder / name).read_bytes()


def test_a_batch_2_artifact_runs_image_by_image(tiny_checkpoint, tmp_path):
    prep = prepare(tiny_checkpoint)
    o = convert_one(prep, "ncnn", "fp32", tmp_path, batch=2)
    assert o.ok and o.manifest["input"]["shape"][0] == 2, o.error
    session = get_runner("ncnn").load(o.folder / o.manifest["artifact"]["file"], o.manifest, threads=1)
    assert session.batch == 2 and session.settings["threads"] == 1
    out = session.run_all(prep.inputs[:5])                 # 2 + 2 + a padded last batch
    assert compare_logits(out, prep.reference[:5]).rel_err < 1e-5


@torch.no_grad()
def test_authors_deploy_form_vanillanet_5_reproduces_its_outputs(tmp_path, digits_data):
    """The authors' --switch_to_deploy output ({"model": deploy state_dict}) at width 1/16 and
    224: ncnn fp32 against the deploy model itself. Full size: benchmarks/ncnn_full_size.py."""
    torch.manual_seed(0)
    model = create_model("vanillanet_5", 1 / 16, num_classes=1000)
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    deploy = fuse_model(model.eval()).eval()
    path = tmp_path / "vanillanet_5_deploy.pth"
    torch.save({"model": deploy.state_dict()}, path)
    [o] = convert_checkpoint(path, ["ncnn"], ["fp32"], tmp_path / "out", data=digits_data / "val")
    assert o.ok, o.error
    assert o.manifest["input"]["shape"] == [1, 3, 224, 224] and o.manifest["model"]["num_classes"] == 1000
    prep = prepare(path, data=digits_data / "val")
    session = get_runner("ncnn").load(o.folder / o.manifest["artifact"]["file"], o.manifest)
    x = prep.inputs[:4]
    ours = session.run_all(x)
    theirs = deploy(torch.from_numpy(x)).numpy()
    agreement = compare_logits(ours, theirs)
    assert agreement.rel_err < 1e-5 and agreement.top1_agree == 1.0, agreement


def test_bench_and_eval_through_the_cli(ncnn_artifacts, digits_data, tmp_path):
    folder = ncnn_artifacts["fp32"].folder
    result = CliRunner().invoke(main, ["bench", str(folder), "--threads", "1", "--warmup", "1", "--runs", "3",
                                       "--rounds", "1", "--json"])
    assert result.exit_code == 0, result.output
    [rec] = json.loads(result.output[result.output.index("["):])
    assert rec["ok"] and rec["runtime"] == "ncnn" and rec["session_settings"]["threads"] == 1, rec
    assert rec["latency"]["runs"] == 3 and rec["latency"]["median_ms"] > 0, rec["latency"]
    result = CliRunner().invoke(main, ["eval", str(folder), "--data", str(digits_data / "val"), "--limit", "60",
                                       "--json"])
    assert result.exit_code == 0, result.output
    [rec] = json.loads(result.output[result.output.index("["):])
    assert rec["ok"] and rec["runtime"] == "ncnn" and rec["images"] == 60 and rec["top1"] > 0.5, rec
    assert rec["agreement_with_fp32"] > 0.95, rec
    assert rec["session_settings"]["threads"] == default_threads()


def test_cut_or_missing_files_are_clear_errors(ncnn_artifacts, tmp_path):
    manifest = ncnn_artifacts["fp32"].manifest
    folder = tmp_path / "art"
    shutil.copytree(ncnn_artifacts["fp32"].folder, folder)
    runner = get_runner("ncnn")
    weights = folder / "model.ncnn.bin"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(VanillaNetEdgeError, match="cannot read the weights"):
        runner.load(folder / "model.ncnn.param", manifest)
    weights.unlink()
    with pytest.raises(VanillaNetEdgeError, match="not found"):
        runner.load(folder, manifest)
    (folder / "model.ncnn.param").write_text("not a graph")
    shutil.copyfile(ncnn_artifacts["fp32"].folder / "model.ncnn.bin", weights)
    with pytest.raises(VanillaNetEdgeError, match="cannot read the graph"):
        runner.load(folder, manifest)
    session = runner.load(ncnn_artifacts["fp32"].folder, manifest)
    with pytest.raises(VanillaNetEdgeError, match="does not fit"):
        session.run(np.zeros((1, 3, 8, 8), np.float32))


def test_pipeline_leaves_out_the_int8_ncnn_does_not_offer(tiny_checkpoint, digits_data, tmp_path):
    """targets x precisions is a grid: the pipeline's convert stage leaves ncnn int8 out with the
    reason (not a failed run), and calibrates nothing when no target offers int8. The stages up
    to calibrate run for real; eval and bench are those of every artifact (tested elsewhere)."""
    cfg = validate({"model": {"checkpoint": str(tiny_checkpoint)}, "data": {"root": str(digits_data)},
                    "convert": {"targets": ["ncnn"], "precisions": ["fp32", "int8"]},
                    "baselines": {"models": []}, "verdict": {"models": []}}, tmp_path)
    logs: list[str] = []
    with RunDir(tmp_path / "run") as run:
        ctx = Context(cfg, run, logs.append)
        for stage in STAGES[:STAGES.index("calibrate") + 1]:
            RUNNERS[stage](ctx)
    assert not ctx.failures, ctx.failures
    assert [p.name for p in ctx.artifacts] == ["tiny-ncnn-fp32"]
    assert any("ncnn offers no int8" in line and "ncnn2table" in line for line in logs), logs
    assert not (tmp_path / "run" / "calibration").exists()


def test_a_target_grid_leaves_out_the_int8_ncnn_does_not_offer():
    """`convert --target all --precision int8` and the pipeline leave ncnn int8 out, saying why;
    a pair a target offers is never left out."""
    from vanillanet_edge.converters.registry import left_out_reason, target_names

    why = left_out_reason("ncnn", "int8")
    assert why.startswith("ncnn offers no int8 (") and "ncnn2int8" in why
    assert left_out_reason("ncnn", "fp32") is None
    assert all(left_out_reason(t, "fp32") is None for t in target_names())
