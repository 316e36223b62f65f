"""MNN: real conversions (torch -> ONNX -> MNN's converter and quantizer), run in MNN's CPU
session. No mocks: the digits tiny net on real digits images, the authors' deploy form, the CLI.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

if importlib.util.find_spec("MNN") is None:      # not importorskip: MNN prints a banner when loaded
    pytest.skip("MNN is not installed", allow_module_level=True)

from vanillanet_edge.calibration.dataset import load_calibration  # noqa: E402
from vanillanet_edge.converters.base import ConvertRequest  # noqa: E402
from vanillanet_edge.converters.convert import Int8Options, convert_checkpoint, convert_one, prepare  # noqa: E402
from vanillanet_edge.converters.mnn import MnnConverter, run_tool, write_calibration  # noqa: E402
from vanillanet_edge.devices.mnn import runtime_op_types  # noqa: E402
from vanillanet_edge.devices.registry import get_runner  # noqa: E402
from vanillanet_edge.errors import ConversionError, VanillaNetEdgeError  # noqa: E402
from vanillanet_edge.fileio import sha256_path  # noqa: E402
from vanillanet_edge.model.fuse import fuse_model  # noqa: E402
from vanillanet_edge.model.variants import create_model  # noqa: E402

SAMPLES = 64
CLI = Path(sys.executable).with_name("vanillanet-edge")
# The wheel's telemetry logger (MNN/tools/utils/log.py: os.system("pip install ..."), remote
# server), and the wrapper package that imports it: nothing of ours may load either.
TELEMETRY = ("MNN.tools", "MNN.tools.utils.log", "aliyun")


@pytest.fixture(scope="module")
def converted(tiny_checkpoint, digits_data, tmp_path_factory):
    """The digits tiny net to MNN fp32, fp16 and int8 (entropy), each measured on the val split."""
    out = tmp_path_factory.mktemp("mnn")
    outcomes = convert_checkpoint(tiny_checkpoint, ["mnn"], ["fp32", "fp16", "int8"], out,
                                  data=digits_data / "val",
                                  int8=Int8Options(calib_data=digits_data / "train", samples=SAMPLES,
                                                   method="entropy", eval_data=digits_data / "val"))
    return {o.precision: o for o in outcomes}


def test_every_precision_converts_verifies_and_loads_nothing_of_the_telemetry(converted):
    for precision in ("fp32", "fp16", "int8"):
        o = converted[precision]
        assert o.ok, o.error
        m = o.manifest
        assert m["target"] == "mnn" and m["runtime"] == "mnn" and m["artifact"]["file"] == "model.mnn"
        assert m["input"] == {"name": "input", "shape": [1, 3, 32, 32], "layout": "NCHW",
                              "dtype": "float32", "color": "RGB", "pixels": "normalized"}
        v = m["verification"]
        assert v["passed"] and v["runtime"] == "mnn", v
        assert isinstance(v["runtime_settings"]["threads"], int)
        assert m["tools"]["MNN"] != "not installed"
    assert converted["fp32"].manifest["verification"]["rel_err"] < 1e-5
    assert converted["fp32"].manifest["verification"]["runtime_settings"]["precision_mode"] == "high"
    assert converted["fp16"].manifest["verification"]["runtime_settings"]["precision_mode"] == "low"
    sizes = {p: converted[p].manifest["artifact"]["size_bytes"] for p in converted}
    assert sizes["fp16"] < 0.6 * sizes["fp32"] and sizes["int8"] < 0.6 * sizes["fp32"]
    assert not [name for name in sys.modules if name.startswith(TELEMETRY)]


def test_int8_is_int8_in_the_file_and_at_run_time(converted, tmp_path):
    m = converted["int8"].manifest
    int8 = m["int8"]
    assert int8["conv_total"] == 9 and int8["conv_int8"] == 9 and int8["fraction_conv_int8"] == 1.0
    assert m["calibration"]["method"] == "entropy" and m["calibration"]["samples"] == SAMPLES
    # The file itself: MNN's own JSON dump of the model (its converter, MNN -> JSON).
    dump = tmp_path / "model.json"
    run_tool("mnnconvert", ["-f", "MNN", "--modelFile", str(converted["int8"].folder / "model.mnn"),
                            "--JsonFile", str(dump)], tmp_path)
    ops = json.loads(dump.read_text())["oplists"]
    convs = [op for op in ops if op["type"] in ("Convolution", "ConvolutionDepthwise")]
    assert len(convs) == 9
    assert all(op["main"]["symmetricQuan"]["nbits"] == 8 and op["main"]["symmetricQuan"]["outputDataType"]
               == "DT_INT8" for op in convs)
    # ReLU before pool: fused into each stage's 1x1 conv, no float ReLU left between int8 ops
    assert all(op["main"]["common"]["relu"] for op in convs[2:8:2])
    assert "ReLU" not in {op["type"] for op in ops}


def test_int8_top1_within_one_point_of_fp32(converted, record_property):
    acc = converted["int8"].manifest["accuracy"]
    assert acc["drop_points"] <= 1.0, acc
    assert converted["fp32"].manifest["accuracy"]["top1"] == pytest.approx(acc["fp32_top1"])
    for key in ("fp32_top1", "top1", "drop_points"):
        record_property(key, acc[key])


def test_calibration_files_hold_the_tensors_exactly(tmp_path):
    # Values of every magnitude, the extremes of float32 included: read back as MNN's quantizer
    # reads them (a double, then float), each is the same float32, bit for bit.
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 3, 5, 7)) * 10.0 ** rng.integers(-30, 30, (3, 3, 5, 7))).astype(np.float32)
    x.flat[:4] = [np.finfo(np.float32).max, np.finfo(np.float32).tiny, -0.0, 1 / 3]
    assert write_calibration(x, 2, tmp_path) == 2           # 3 images in batches of 2: 2 folders
    back = [np.array([float(t) for t in (d / "input.txt").read_text().split()]).astype(np.float32)
            for d in sorted(tmp_path.iterdir())]
    expect = np.concatenate([x, x[:1]]).reshape(2, -1)        # the last batch wraps around
    assert all(np.array_equal(b.view(np.uint32), e.view(np.uint32)) for b, e in zip(back, expect))
    shape = json.loads((tmp_path / "000000" / "input.json").read_text())["inputs"][0]["shape"]
    assert shape == [2, 3, 5, 7]


def _first_conv_input_scale(model: Path, tmp: Path) -> float:
    """The int8 input scale of the first conv, from MNN's own JSON dump of the file."""
    dump = tmp / (model.parent.name + ".json")
    run_tool("mnnconvert", ["-f", "MNN", "--modelFile", str(model), "--JsonFile", str(dump)], tmp)
    ops = json.loads(dump.read_text())["oplists"]
    return next(op for op in ops if op["type"] == "Convolution")["main"]["quanParameter"]["scaleIn"]


def test_the_quantizer_reads_the_calibration_tensors_themselves(tiny_checkpoint, digits_data, tmp_path):
    # KL's histogram is scale-free (bins of max|x| / 2048): the same tensors times 2 (exact in
    # float) must give exactly twice the input scale. Images re-decoded and re-normalised by
    # MNN could not follow a change made to the tensors.
    prep = prepare(tiny_checkpoint, data=digits_data / "val", n_verify=4)
    cal = load_calibration(digits_data / "train", prep.preprocessing, 16, 0, "entropy")
    scales = []
    for factor in (1, 2):
        request = ConvertRequest(prep.export_model, "int8", prep.input_size, 1, prep.preprocessing, prep.inputs,
                                 calibration=dataclasses.replace(cal, inputs=cal.inputs * np.float32(factor)))
        folder = tmp_path / f"x{factor}"
        folder.mkdir()
        MnnConverter().export(request, folder)
        scales.append(_first_conv_input_scale(folder / "model.mnn", tmp_path))
    assert scales[1] == pytest.approx(2 * scales[0], rel=2e-4)      # the dump prints 5-6 digits


def test_converting_twice_gives_the_same_bytes(tiny_checkpoint, digits_data, tmp_path, monkeypatch):
    prep = prepare(tiny_checkpoint, data=digits_data / "val", n_verify=4)
    cal = load_calibration(digits_data / "train", prep.preprocessing, 16, 0, "mse")
    monkeypatch.chdir(tmp_path)           # relative output folders, as `tune --out runs/x` gives
    for precision in ("fp32", "int8"):
        a = convert_one(prep, "mnn", precision, Path("a"), calibration=cal)
        b = convert_one(prep, "mnn", precision, Path("b"), calibration=cal)
        assert a.ok and b.ok, (a.error, b.error)
        assert sha256_path(a.folder / "model.mnn") == sha256_path(b.folder / "model.mnn")
        assert a.manifest["conversion"]["mnn_uuid"] == b.manifest["conversion"]["mnn_uuid"]
    assert b.manifest["int8"]["conv_int8"] == 9                  # mse (ADMM) quantizes too


def test_layers_kept_in_float_run_in_float(tiny_checkpoint, digits_data, tmp_path):
    prep = prepare(tiny_checkpoint, data=digits_data / "val", n_verify=8)
    cal = load_calibration(digits_data / "train", prep.preprocessing, 16, 0, "entropy")
    keep = ["stem.0", "stages.1.act"]
    o = convert_one(prep, "mnn", "int8", tmp_path, calibration=cal.with_excluded(keep))
    assert o.ok, o.error
    int8 = o.manifest["int8"]
    assert int8["kept_float"] == keep and int8["conv_total"] == 9 and int8["conv_int8"] == 7
    ran = dict(runtime_op_types(o.folder / "model.mnn", o.manifest))      # what MNN really runs
    assert len(int8["float_conv_ops"]) == 2
    assert all("DT_INT8" not in ran[op] for op in int8["float_conv_ops"])
    bad = convert_one(prep, "mnn", "int8", tmp_path / "x", calibration=cal.with_excluded(["stages.9.conv"]))
    assert not bad.ok and "no such quantizable layer" in bad.error and "stages.1.act" in bad.error


def test_minmax_is_refused_with_what_mnn_offers(tiny_checkpoint, digits_data, tmp_path):
    prep = prepare(tiny_checkpoint, data=digits_data / "val", n_verify=4)
    cal = load_calibration(digits_data / "train", prep.preprocessing, 16, 0, "minmax")
    o = convert_one(prep, "mnn", "int8", tmp_path, calibration=cal)
    assert not o.ok and "entropy, mse" in o.error and "no plain min/max" in o.error
    assert MnnConverter.int8_methods == ("entropy", "mse")


def test_authors_deploy_form_reproduces_the_model(tmp_path):
    """vanillanet_5 as the authors' --switch_to_deploy saves it, reduced width, at 224."""
    torch.manual_seed(0)
    model = create_model("vanillanet_5", width=1 / 16, num_classes=10).eval()
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_var.uniform_(0.5, 2.0)
                mod.running_mean.uniform_(-0.2, 0.2)
    fused = fuse_model(model)
    path = tmp_path / "vanillanet_5-deploy.pth"
    torch.save({"model": fused.state_dict()}, path)
    outcomes = convert_checkpoint(path, ["mnn"], ["fp32"], tmp_path / "out", input_size=224)
    assert outcomes[0].ok, outcomes[0].error
    m = outcomes[0].manifest
    assert m["source"]["form"] == "deploy"
    x = np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        ref = fused(torch.from_numpy(x)).numpy()
    out = get_runner("mnn").load(outcomes[0].folder / "model.mnn", m, threads=2).run_all(x)
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 1e-5


def test_session_refuses_a_wrong_shape_and_an_unknown_precision_mode(converted):
    o = converted["fp32"]
    runner = get_runner("mnn")
    session = runner.load(o.folder, o.manifest, threads=1)
    with pytest.raises(VanillaNetEdgeError, match="does not fit"):
        session.run(np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(VanillaNetEdgeError, match="precision mode"):
        runner.load(o.folder, o.manifest, precision_mode="fastest")
    # what the maths ran in: fp32 artifacts load "high"; "low" is fp16 only where MNN found fp16
    assert session.settings["precision_mode"] == "high" and runner.computed_in("fp32", session.settings) == "fp32"
    low = runner.load(o.folder, o.manifest, precision_mode="low").settings
    assert runner.computed_in("fp32", low) == ("fp16" if low["fp16_arithmetic"] else "fp32")
    assert runner.computed_in("fp16", {"precision_mode": "high"}) == "fp16"     # fp16 weights either way


def test_cut_files_and_failing_tools_give_clear_errors(converted, tmp_path):
    cut = tmp_path / "model.mnn"
    cut.write_bytes((converted["fp32"].folder / "model.mnn").read_bytes()[:200])
    with pytest.raises(VanillaNetEdgeError, match="MNN cannot load") as err:
        get_runner("mnn").load(cut, converted["fp32"].manifest)
    assert err.value.hint
    # MNN's converter exits 0 when it cannot read its input; the missing output is what tells
    with pytest.raises(ConversionError, match="wrote no out.mnn"):
        run_tool("mnnconvert", ["-f", "ONNX", "--modelFile", str(tmp_path / "absent.onnx"),
                                "--MNNModel", str(tmp_path / "out.mnn")], tmp_path, tmp_path / "out.mnn")


def test_profile_rows_come_from_mnn_op_callbacks(converted):
    o = converted["int8"]
    rows = get_runner("mnn").profile_layers(o.folder / "model.mnn", o.manifest, runs=3, warmup=1, threads=1)
    convs = [r for r in rows if r["op_type"] in ("Convolution", "ConvolutionDepthwise")]
    assert len(convs) == 9 and all(r["precision"] == "i8" and r["calls"] == 3 for r in convs)
    assert all(r["time_ms"] > 0 for r in rows)


def test_cli_bench_and_eval_state_threads_and_print_only_our_lines(converted, digits_data, tmp_path):
    folder = str(converted["int8"].folder)
    runs = {
        "bench": [str(CLI), "bench", folder, "--runs", "4", "--rounds", "1", "--warmup", "1", "--threads", "2"],
        "eval": [str(CLI), "eval", folder, "--data", str(digits_data / "val"), "--limit", "60"],
    }
    for kind, args in runs.items():
        saved = tmp_path / f"{kind}.json"
        proc = subprocess.run(args + ["--save", str(saved)], capture_output=True, text=True, timeout=300,
                              cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        records = json.loads(saved.read_text())
        assert records and all(r["runtime"] == "mnn" and r["ok"] for r in records), records
        threads = {r["session_settings"]["threads"] for r in records}
        assert threads == ({2} if kind == "bench" else {get_runner("mnn").load(
            converted["int8"].folder, converted["int8"].manifest).settings["threads"]})
        if kind == "bench":
            assert "threads=2" in proc.stdout
        text = proc.stdout + proc.stderr                 # MNN's C++ prints stay out of the console
        assert "The device supports" not in text and "MNN use" not in text
