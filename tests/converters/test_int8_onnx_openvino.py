"""INT8 post-training static quantization for ONNX (onnxruntime.quantization, QDQ) and OpenVINO
(NNCF), for real: calibrated on digits, verified in each runtime, top-1 measured on the val split.

Costs (2 shared cores): one convert_checkpoint call for both targets with evaluation (~25 s),
one `prepare` shared by the method / exclusion / refusal tests (~4 s) and ~6 more conversions,
and an export-only size check on a wider random-weight net. Numbers are printed (pytest -s).
"""
from __future__ import annotations

import pytest

from vanillanet_edge.calibration.dataset import load_calibration
from vanillanet_edge.converters.base import ConvertRequest
from vanillanet_edge.converters.convert import Int8Options, convert_checkpoint, convert_one, prepare
from vanillanet_edge.converters.registry import get_converter
from vanillanet_edge.fileio import OWNED_MARK

TARGETS = ("onnx", "openvino")
EXCLUDED = ("stages.1.act", "cls.2")
# every offered method but minmax (the main test), one of them also keeping layers in float
VARIANTS = {"onnx": [("percentile", ()), ("entropy", EXCLUDED)],
            "openvino": [("percentile", ()), ("mean_minmax", EXCLUDED)]}


@pytest.fixture(scope="module")
def main_int8(tiny_checkpoint, digits_data, tmp_path_factory):
    """Both targets, minmax on 64 training images, top-1 on the whole val split (~25 s)."""
    out = tmp_path_factory.mktemp("int8")
    outcomes = convert_checkpoint(
        tiny_checkpoint, list(TARGETS), ["int8"], out,
        int8=Int8Options(calib_data=digits_data / "train", samples=64, method="minmax",
                         eval_data=digits_data / "val"))
    return {o.target: o for o in outcomes}


@pytest.fixture(scope="module")
def prepared(tiny_checkpoint):
    """The fused net and its verification images, for convert_one (~4 s)."""
    return prepare(tiny_checkpoint)


@pytest.fixture(scope="module")
def variants(prepared, digits_data, tmp_path_factory):
    """The other methods of each target (32 images), one with layers kept in float (~25 s)."""
    out = tmp_path_factory.mktemp("variants")
    results = {}
    for target, runs in VARIANTS.items():
        for method, excluded in runs:
            cal = load_calibration(digits_data / "train", prepared.preprocessing, 32, 0, method)
            results[target, method] = convert_one(prepared, target, "int8", out / f"{method}",
                                                  calibration=cal.with_excluded(excluded))
    return results


@pytest.mark.parametrize("target", TARGETS)
def test_int8_converts_verifies_and_keeps_top1(main_int8, target):
    o = main_int8[target]
    assert o.ok, o.error
    m = o.manifest
    assert m["precision"] == "int8"
    cal = m["calibration"]
    assert cal["method"] == "minmax" and cal["samples"] == 64 and cal["seed"] == 0
    assert len(cal["files_sha256"]) == 64 and cal["excluded_layers"] == []
    q = m["int8"]
    assert q["conv_total"] == 9     # stem.0, stem.1, 3 x (stages.i.conv, stages.i.act), cls.2
    assert q["conv_int8"] == q["conv_total"] and q["fraction_conv_int8"] >= 0.9
    assert q["quantize_nodes"] > 0 and q["dequantize_nodes"] > 0 and q["how"]
    v = m["verification"]
    assert v["passed"] and v["rel_err"] < 0.1 and v["top1_agree"] >= 0.95
    acc = m["accuracy"]
    print(f"\n{target} int8 minmax: fp32 top-1 {100 * acc['fp32_top1']:.2f}% -> int8 "
          f"{100 * acc['top1']:.2f}% (drop {acc['drop_points']:.2f} points) on {acc['data']}; "
          f"rel err {v['rel_err']:.4f}, agreement {100 * v['top1_agree']:.1f}%; "
          f"int8 convs {q['conv_int8']}/{q['conv_total']}")
    assert acc["fp32_top1"] > 0.8                      # the net really learnt the digits
    assert acc["drop_points"] <= 1.0
    assert m["input"]["dtype"] == "float32" and m["output"]["dtype"] == "float32"


def test_onnx_int8_is_qdq_with_float_io_and_fuses_to_qlinearconv(main_int8):
    import onnx

    o = main_int8["onnx"]
    model = onnx.load(str(o.folder / "model.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") == o.manifest["int8"]["quantize_nodes"]
    float32 = onnx.TensorProto.FLOAT
    assert model.graph.input[0].type.tensor_type.elem_type == float32
    assert model.graph.output[0].type.tensor_type.elem_type == float32
    weights = {i.name: i for i in model.graph.initializer}
    assert weights["stages.1.conv.weight_quantized"].data_type == onnx.TensorProto.INT8
    assert o.manifest["int8"]["runtime_qlinearconv"] == 9   # what ORT's CPU provider really runs
    note = o.manifest["conversion"]["int8"]
    assert "QUInt8" in note["activations"] and "QInt8" in note["weights"]


def test_openvino_int8_runs_integer_kernels_and_stores_int8_weights(main_int8):
    import openvino as ov

    o = main_int8["openvino"]
    q = o.manifest["int8"]
    assert set(q["runtime_precision"].values()) <= {"u8", "i8"}
    assert q["conv_int8_ir"] == q["conv_total"]
    model = ov.Core().read_model(str(o.folder / "model.xml"))
    assert model.inputs[0].get_element_type() == ov.Type.f32
    assert model.outputs[0].get_element_type() == ov.Type.f32
    int8_consts = [op for op in model.get_ordered_ops() if op.get_type_name() == "Constant"
                   and op.get_output_element_type(0) == ov.Type.i8]
    assert len(int8_consts) == q["conv_total"]          # every conv's weights stored as int8
    assert not any(op.get_output_element_type(0) == ov.Type.f16 for op in model.get_ordered_ops()
                   if op.get_type_name() == "Constant")  # not fp16-compressed on save
    assert o.manifest["conversion"]["int8"]["fast_bias_correction"] is False


@pytest.mark.parametrize("target,method", [(t, m) for t, runs in VARIANTS.items() for m, _ in runs])
def test_every_offered_method_converts(variants, target, method):
    assert set(get_converter(target).int8_methods) == {"minmax", *(m for m, _ in VARIANTS[target])}
    o = variants[target, method]
    assert o.ok, o.error
    v = o.manifest["verification"]
    print(f"\n{target} int8 {method} (32 images, kept float: "
          f"{o.manifest['calibration']['excluded_layers']}): rel err {v['rel_err']:.4f}, "
          f"agreement {100 * v['top1_agree']:.1f}%, int8 convs "
          f"{o.manifest['int8']['conv_int8']}/{o.manifest['int8']['conv_total']}")
    assert o.manifest["calibration"]["method"] == method
    if method == "percentile":
        assert o.manifest["calibration"]["percentile"] == 99.99
    if method == "entropy":   # more bins than ORT's 128, which would give MinMax's ranges
        assert o.manifest["conversion"]["int8"]["calibration"]["num_bins"] > 128


@pytest.mark.parametrize("target", TARGETS)
def test_excluded_layers_stay_float(main_int8, variants, target):
    method = next(m for m, excluded in VARIANTS[target] if excluded)
    o = variants[target, method]
    assert o.ok, o.error
    q, full = o.manifest["int8"], main_int8[target].manifest["int8"]
    assert o.manifest["calibration"]["excluded_layers"] == list(EXCLUDED)
    assert set(q["kept_float"]) == set(EXCLUDED)
    assert q["conv_total"] == full["conv_total"]
    assert q["conv_int8"] == full["conv_int8"] - len(EXCLUDED)   # one conv per layer
    if target == "onnx":
        import onnx

        assert q["runtime_qlinearconv"] == q["conv_int8"]
        # the act layer is its Relu and its depthwise Conv; both are excluded by name
        assert len(q["kept_float"]["stages.1.act"]) == 2
        model = onnx.load(str(o.folder / "model.onnx"))
        weights = {i.name for i in model.graph.initializer}
        assert "stages.1.act.weight" in weights and "cls.2.weight" in weights   # still float
        assert "stages.2.act.weight_quantized" in weights
    else:
        for ops in q["kept_float"].values():
            assert all(q["runtime_precision"][op] == "f32" for op in ops)


@pytest.mark.parametrize("target", TARGETS)
def test_unsupported_method_is_refused_listing_the_supported_ones(prepared, digits_data, tmp_path, target):
    cal = load_calibration(digits_data / "train", prepared.preprocessing, 8, 0, "no-such-method")
    o = convert_one(prepared, target, "int8", tmp_path, calibration=cal)
    assert not o.ok and o.stage == "setup"
    assert "cannot calibrate with 'no-such-method'" in o.error
    assert ", ".join(get_converter(target).int8_methods) in o.error
    assert [p.name for p in tmp_path.iterdir()] in ([], [OWNED_MARK])   # nothing published


@pytest.mark.parametrize("target", TARGETS)
def test_unknown_layer_to_keep_float_is_a_clear_error(prepared, digits_data, tmp_path, target):
    cal = load_calibration(digits_data / "train", prepared.preprocessing, 8, 0, "minmax")
    o = convert_one(prepared, target, "int8", tmp_path, calibration=cal.with_excluded(["stages.7.act"]))
    assert not o.ok
    assert "stages.7.act" in o.error and "no such quantizable layer" in o.error
    assert "stages.1.act" in o.error                     # the hint lists the real layers


def test_int8_artifacts_are_much_smaller_for_a_wider_net(digits_data, tmp_path):
    """Export only (no verification): random weights, vanillanet_5 at width 1/4 (~0.8 M params)."""
    import torch

    from vanillanet_edge.model.checkpoint import save_checkpoint
    from vanillanet_edge.model.variants import create_model

    torch.manual_seed(0)
    ckpt = save_checkpoint(create_model("vanillanet_5", width=1 / 4, num_classes=10),
                           tmp_path / "wide.pth", meta={"input_size": 32})
    prep = prepare(ckpt, data=digits_data / "val", n_verify=4)
    cal = load_calibration(digits_data / "train", prep.preprocessing, 16, 0, "minmax")
    for target in TARGETS:
        sizes = {}
        for precision in ("fp32", "int8"):
            folder = tmp_path / f"{target}-{precision}"
            folder.mkdir()
            request = ConvertRequest(prep.export_model, precision, prep.input_size, 1, prep.preprocessing,
                                     prep.inputs, {}, cal if precision == "int8" else None)
            result = get_converter(target).export(request, folder)
            if precision == "int8":
                assert result.int8["fraction_conv_int8"] >= 0.9
            sizes[precision] = sum(p.stat().st_size for p in folder.iterdir())
        print(f"\n{target} vanillanet_5 width 1/4: fp32 {sizes['fp32']} B, int8 {sizes['int8']} B "
              f"({sizes['int8'] / sizes['fp32']:.2f}x)")
        assert sizes["int8"] < 0.35 * sizes["fp32"]
