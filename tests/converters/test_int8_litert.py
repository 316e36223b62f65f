"""LiteRT INT8 (PT2E static, int8 I/O): real litert-torch conversions, run in the LiteRT interpreter.

No mocks. Numbers seen on the digits fixture (vanillanet_5 width 1/32, 32x32, 64 calibration
images from train/, 359 val images), litert-torch 0.10.0 / ai-edge-litert 2.3.0:
  fp32 artifact top-1 98.33% (113,528 bytes); int8 minmax top-1 98.33% (drop 0.00 points,
  52,528 bytes), rel err vs fp32 torch 0.021, top-1 agreement 100%; 9/9 convs int8, 13/13 ops
  int8, 0 float ops, int8 input and output, no TRANSPOSE. mse (HistogramObserver): rel err 0.020,
  top-1 98.33%. Kept float (stem.0, stages.1.act, cls.2 or similar): those convs float32, the
  rest int8, I/O still int8. builtin vs XNNPACK int8 kernels: outputs within 2 output steps.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("torchao")

from vanillanet_edge.calibration.dataset import load_calibration  # noqa: E402
from vanillanet_edge.converters.base import ConvertRequest  # noqa: E402
from vanillanet_edge.converters.convert import (  # noqa: E402
    Int8Options,
    convert_checkpoint,
    convert_one,
    prepare,
)
from vanillanet_edge.converters.litert import LiteRtConverter, inspect_tflite  # noqa: E402
from vanillanet_edge.devices.registry import get_runner  # noqa: E402
from vanillanet_edge.images import Preprocessing, load_folder  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")

SAMPLES = 64
CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D")


@pytest.fixture(scope="module")
def converted(tiny_checkpoint, digits_data, tmp_path_factory):
    """fp32 and int8 (minmax) through the shared pipeline, both measured on the val split."""
    out = tmp_path_factory.mktemp("tflite-int8")
    # normalized input: the PT2E int8 path itself (raw pixels add a uint8 QUANTIZE: test_app_inputs.py)
    outcomes = convert_checkpoint(tiny_checkpoint, ["tflite"], ["fp32", "int8"], out, data=digits_data / "val",
                                  int8=Int8Options(calib_data=digits_data / "train", samples=SAMPLES,
                                                   eval_data=digits_data / "val"), pixels="normalized")
    return {o.precision: o for o in outcomes}


@pytest.fixture(scope="module")
def prep(tiny_checkpoint, digits_data):
    return prepare(tiny_checkpoint, data=digits_data / "val")


def _calibration(prep, digits_data, method="minmax", excluded=()):
    cal = load_calibration(digits_data / "train", prep.preprocessing, SAMPLES, 0, method)
    return cal.with_excluded(excluded)


def _convs(info):
    return [op for op in info["ops"] if op["op"] in CONVS]


def test_int8_converts_verifies_and_is_all_int8(converted, record_property):
    o = converted["int8"]
    assert o.ok, o.error
    m = o.manifest
    v, int8 = m["verification"], m["int8"]
    assert v["passed"] and v["rel_err"] <= 0.25 and v["top1_agree"] >= 0.9
    assert v["runtime_settings"]["kernels"] == "xnnpack"          # auto = xnnpack, as apps run it
    assert m["calibration"]["samples"] == SAMPLES and m["calibration"]["method"] == "minmax"
    assert int8["fraction_conv_int8"] >= 0.9
    assert int8["conv_total"] == 9 and int8["float_ops"] == 0 and int8["kept_float"] == []
    assert m["input"]["dtype"] == "int8" and m["output"]["dtype"] == "int8"
    assert m["input"]["layout"] == "NHWC" and m["input"]["shape"] == [1, 32, 32, 3]

    info = inspect_tflite(o.folder / "model.tflite")              # the file itself, not the notes
    assert info["inputs"][0]["dtype"] == "int8" and info["outputs"][0]["dtype"] == "int8"
    assert "TRANSPOSE" not in info["op_counts"] and info["input_readers"] == ["CONV_2D"]
    assert "QUANTIZE" not in info["op_counts"] and "DEQUANTIZE" not in info["op_counts"]
    convs = _convs(info)
    assert sum(op["inputs"][0] == "int8" and op["inputs"][1] == "int8" for op in convs) == int8["conv_int8"] == 9
    assert all(t != "float32" for op in info["ops"] for t in op["inputs"] + op["outputs"])

    # what an app developer feeds: the notes carry the interpreter's own scale / zero point
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(o.folder / "model.tflite"))
    notes = m["conversion"]
    for detail, key in ((it.get_input_details()[0], "input_quantization"),
                        (it.get_output_details()[0], "output_quantization")):
        scale, zero = detail["quantization"]
        assert notes[key]["scale"] == pytest.approx(scale) and notes[key]["zero_point"] == zero
    assert m["input"]["name"] == it.get_input_details()[0]["name"] == "serving_default_input"
    record_property("rel_err", v["rel_err"])
    record_property("int8", {k: int8[k] for k in ("conv_total", "conv_int8", "int8_ops", "float_ops")})


def test_int8_top1_within_one_point_of_fp32(converted, record_property):
    fp32, int8 = converted["fp32"], converted["int8"]
    assert fp32.ok and int8.ok, (fp32.error, int8.error)
    acc = int8.manifest["accuracy"]
    assert acc["drop_points"] <= 1.0, acc
    assert fp32.manifest["accuracy"]["top1"] == pytest.approx(acc["fp32_top1"])   # fp32 artifact = torch
    sizes = {p: converted[p].manifest["artifact"]["size_bytes"] for p in ("fp32", "int8")}
    assert sizes["int8"] < 0.6 * sizes["fp32"]
    for key in ("fp32_top1", "top1", "drop_points"):
        record_property(key, acc[key])
    record_property("size_bytes", sizes)


def test_offered_methods_and_refusals():
    c = LiteRtConverter()
    assert "int8" in c.precisions and c.int8_methods == ("minmax", "mse") and c.excludes_layers


@pytest.mark.parametrize("method", [m for m in LiteRtConverter.int8_methods if m != "minmax"])
def test_each_other_method_converts(prep, digits_data, tmp_path, method, record_property):
    o = convert_one(prep, "tflite", "int8", tmp_path, calibration=_calibration(prep, digits_data, method))
    assert o.ok, o.error
    m = o.manifest
    assert m["calibration"]["method"] == method
    assert m["verification"]["passed"] and m["verification"]["top1_agree"] >= 0.9
    assert m["int8"]["fraction_conv_int8"] == 1.0 and m["input"]["dtype"] == "int8"
    assert "HistogramObserver" in m["conversion"]["int8"]["activations"]
    record_property("rel_err", m["verification"]["rel_err"])


def test_percentile_is_refused_with_the_offered_methods(prep, digits_data, tmp_path):
    o = convert_one(prep, "tflite", "int8", tmp_path, calibration=_calibration(prep, digits_data, "percentile"))
    assert not o.ok and o.stage == "setup" and "minmax, mse" in o.error


def test_excluded_layers_stay_float_and_io_stays_int8(prep, digits_data, tmp_path):
    keep = ("stem.0", "stages.1.act", "cls.2")         # first and last layer too
    o = convert_one(prep, "tflite", "int8", tmp_path, calibration=_calibration(prep, digits_data, excluded=keep))
    assert o.ok, o.error
    m = o.manifest
    assert m["verification"]["passed"] and m["input"]["dtype"] == m["output"]["dtype"] == "int8"
    assert m["int8"]["kept_float"] == list(keep) and m["int8"]["conv_int8"] == 6

    info = inspect_tflite(o.folder / "model.tflite")
    assert info["inputs"][0]["dtype"] == "int8" and info["outputs"][0]["dtype"] == "int8"
    assert "TRANSPOSE" not in info["op_counts"]
    layers = ["stem.0", "stem.1", "stages.0.conv", "stages.0.act", "stages.1.conv", "stages.1.act",
              "stages.2.conv", "stages.2.act", "cls.2"]
    for name, op in zip(layers, _convs(info), strict=True):
        want = "float32" if name in keep else "int8"
        assert op["inputs"][0] == op["inputs"][1] == want, (name, op)

    # unknown layer names are refused, naming the real ones
    bad = convert_one(prep, "tflite", "int8", tmp_path,
                      calibration=_calibration(prep, digits_data, excluded=("stages.9.act",)))
    assert not bad.ok and "no such quantizable layer" in bad.error and "stages.2.act" in bad.error


def test_same_calibration_gives_byte_identical_file(converted, prep, digits_data, tmp_path):
    request = ConvertRequest(prep.export_model, "int8", prep.input_size, 1, prep.preprocessing, prep.inputs,
                             calibration=_calibration(prep, digits_data))
    LiteRtConverter().export(request, tmp_path)
    again = (tmp_path / "model.tflite").read_bytes()
    assert hashlib.sha256(again).hexdigest() == converted["int8"].manifest["artifact"]["sha256"]


def test_runner_builtin_and_xnnpack_agree_on_int8(converted, digits_data):
    o = converted["int8"]
    m = o.manifest
    imgs = load_folder(digits_data / "val", Preprocessing.from_dict(m["preprocessing"]), limit=32, seed=1)
    outs, settings = {}, {}
    for kernels in ("builtin", "xnnpack", "auto"):
        session = get_runner("litert").load(o.folder / "model.tflite", m, kernels=kernels)
        outs[kernels], settings[kernels] = session.run_all(imgs.inputs), session.settings
    assert settings["builtin"]["kernels"] == "builtin" and settings["builtin"]["delegate_nodes"] == 0
    assert settings["xnnpack"]["kernels"] == "xnnpack" and settings["xnnpack"]["delegate_nodes"] >= 1
    assert settings["auto"]["kernels"] == "xnnpack"
    a, b = outs["builtin"], outs["xnnpack"]
    assert a.dtype == b.dtype == np.float32 and a.shape == (32, 10)
    step = m["conversion"]["output_quantization"]["scale"]
    assert np.abs(a - b).max() <= 3 * step + 1e-6          # kernels round differently, a few steps
    assert np.linalg.norm(a - b) / np.linalg.norm(a) < 0.05
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.95
    np.testing.assert_array_equal(outs["auto"], b)          # auto is xnnpack, bit for bit
