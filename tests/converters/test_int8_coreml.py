"""Core ML INT8 (W8A8): real coremltools quantization, calibrated by our MIL interpreter.

No mocks: every artifact is made by coremltools 9 and run by the numpy MIL interpreter (the Core
ML runner off macOS). Numbers seen on the digits fixture (vanillanet_5 width 1/32, 64
calibration images, 359 val images): fp32 top-1 98.33%, int8 98.05% (drop 0.28 points), rel err
~0.026, 9/9 convs int8, 14 quantize + 14 dequantize ops.
"""
from __future__ import annotations

import logging
import warnings
from collections import defaultdict

import numpy as np
import pytest

ct = pytest.importorskip("coremltools")

from coreml_checks import assert_float32_or_classifier_output  # noqa: E402

from vanillanet_edge.calibration.coreml_stats import (  # noqa: E402
    ActivationStats,
    collect_activation_stats,
    executed_ops,
)
from vanillanet_edge.calibration.dataset import load_calibration  # noqa: E402
from vanillanet_edge.calibration.layers import quantizable_layers  # noqa: E402
from vanillanet_edge.converters.base import ConvertRequest  # noqa: E402
from vanillanet_edge.converters.convert import (  # noqa: E402
    Int8Options,
    convert_checkpoint,
    convert_one,
    prepare,
)
from vanillanet_edge.converters.coreml import CoreMlConverter, map_layers_to_conv_ops  # noqa: E402
from vanillanet_edge.devices.coreml_mil import MILProgram  # noqa: E402
from vanillanet_edge.fileio import OWNED_MARK  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")
logging.getLogger("coremltools").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", module="coremltools")

SAMPLES = 64


@pytest.fixture(scope="module")
def prep(tiny_checkpoint, digits_data):
    return prepare(tiny_checkpoint, data=digits_data / "val")


@pytest.fixture(scope="module")
def calibration(prep, digits_data):
    return load_calibration(digits_data / "train", prep.preprocessing, SAMPLES, 0, "minmax")


@pytest.fixture(scope="module")
def fp16_program(prep, tmp_path_factory):
    """The float program INT8 is calibrated on: fp16 compute, float32 I/O (as exported)."""
    folder = tmp_path_factory.mktemp("coreml-fp16")
    request = ConvertRequest(prep.export_model, "fp16", prep.input_size, 1, prep.preprocessing,
                             prep.inputs)
    CoreMlConverter().export(request, folder)
    return MILProgram.load(folder / "model.mlpackage")


def _producer(program):
    return {o.name: op for op in program.ops for o in op.outputs}


def test_int8_converts_verifies_and_is_really_w8a8(tiny_checkpoint, digits_data, tmp_path,
                                                   record_property):
    [o] = convert_checkpoint(tiny_checkpoint, ["coreml"], ["int8"], tmp_path,
                             int8=Int8Options(calib_data=digits_data / "train", samples=SAMPLES,
                                              eval_data=digits_data / "val"))
    assert o.ok, o.error
    m = o.manifest
    v, acc, int8 = m["verification"], m["accuracy"], m["int8"]
    assert v["passed"] and v["rel_err"] <= 0.25 and v["top1_agree"] >= 0.9
    assert m["input"]["dtype"] == ("uint8" if m["input"]["pixels"] == "raw" else "float32")
    assert m["calibration"]["samples"] == SAMPLES
    assert acc["drop_points"] <= 1.0, acc
    for key in ("fp32_top1", "top1", "drop_points"):
        record_property(key, acc[key])
    record_property("rel_err", v["rel_err"])
    record_property("int8", {k: int8[k] for k in ("conv_total", "conv_int8", "quantize_ops",
                                                  "dequantize_ops")})
    print(f"\ncoreml int8: fp32 top-1 {100 * acc['fp32_top1']:.2f}% -> int8 {100 * acc['top1']:.2f}% "
          f"(drop {acc['drop_points']:.2f} points), rel err {v['rel_err']:.4f}, "
          f"agreement {100 * v['top1_agree']:.1f}%, {int8}")

    # the counts in the manifest are what the saved program really holds
    program = MILProgram.load(o.folder / "model.mlpackage")
    assert program.inputs[0].dtype == "fp32"     # an image reaches the program as fp32 values too
    assert_float32_or_classifier_output(program, o.manifest)
    assert int8["conv_total"] == program.op_types["conv"] == 9
    assert int8["quantize_ops"] == program.op_types["quantize"] > 0
    assert int8["dequantize_ops"] == program.op_types["dequantize"] > 0
    assert program.op_types["constexpr_affine_dequantize"] == int8["int8_weight_ops"] >= 9
    assert int8["fraction_conv_int8"] >= 0.9 and int8["kept_float"] == {}
    producer = _producer(program)
    for conv in (op for op in program.ops if op.type == "conv"):
        x, w = producer[conv.inputs["x"][0]], producer[conv.inputs["weight"][0]]
        assert x.type == "dequantize" and producer[x.inputs["input"][0]].type == "quantize"
        assert w.type == "constexpr_affine_dequantize"
        assert w.inputs["quantized_data"][0].dtype == np.int8
        assert np.asarray(w.inputs["scale"][0]).ndim == 1          # per output channel
    quants = [op for op in program.ops if op.type == "quantize"]
    assert all(op.outputs[0].dtype == "int8" for op in quants)


def test_ranges_cover_every_sample_not_only_the_last(fp16_program, calibration):
    from coremltools.optimize.coreml.experimental._model_debugger import ModelDebugger

    program, inputs = fp16_program, calibration.inputs[:16]
    stats = collect_activation_stats(program, inputs, "minmax")
    assert stats.samples == 16

    # a direct numpy reduction over every sample's recorded outputs
    ops = executed_ops(program)
    seen: dict[str, list[np.ndarray]] = {}
    for x in inputs:
        it = iter(ops)
        program.run({"input": x[None]},
                    record=lambda n, t, out: seen.setdefault(next(it).outputs[0].name, []).append(
                        np.array(out, np.float32)))
    assert set(seen) <= set(stats.minmax)
    for var, outs in seen.items():
        assert stats.minmax[var] == (float(np.min(outs)), float(np.max(outs))), var
    assert stats.minmax["input"] == (float(inputs.min()), float(inputs.max()))

    # coremltools 9.0's own bookkeeping, fed the same outputs sample by sample, keeps only the
    # last sample's range; ours is wider on many variables
    ct_stats: dict = defaultdict(dict)
    for var, outs in seen.items():
        for out in outs:
            ModelDebugger.record_intermediate_output(out, var, ct_stats)
    last = {var: (float(outs[-1].min()), float(outs[-1].max())) for var, outs in seen.items()}
    assert all((float(ct_stats[v]["rmin"]), float(ct_stats[v]["rmax"])) == last[v] for v in seen)
    wider = [v for v in seen if stats.minmax[v] != last[v]]
    assert len(wider) >= len(seen) // 2, wider
    assert all(stats.minmax[v][0] <= last[v][0] and stats.minmax[v][1] >= last[v][1] for v in seen)

    # percentile: two-sided, on the signed values of all samples, to a histogram bin
    pstats = collect_activation_stats(program, inputs, "percentile", percentile=99.0)
    for var, outs in seen.items():
        values = np.sort(np.concatenate([o.ravel() for o in outs]))
        lo, hi = stats.minmax[var]
        tol = (hi - lo) / 4096 + 1e-6                  # one histogram bin

        def near_order_statistic(value, q):            # within a bin of the q*n-th value
            k = q * len(values)
            below = values[max(int(np.floor(k)) - 1, 0)]
            above = values[min(int(np.ceil(k)), len(values) - 1)]
            return below - tol <= value <= above + tol

        r = pstats.ranges[var]
        assert near_order_statistic(r["rmax"], 0.99), (var, r, np.percentile(values, 99.0))
        assert near_order_statistic(r["rmin"], 0.01), (var, r, np.percentile(values, 1.0))
        assert lo <= r["rmin"] <= r["rmax"] <= hi

    # what coremltools receives is safe for its float16 scales
    safe = ActivationStats("minmax", 1, None, {}, {"dead": {"rmin": 0.0, "rmax": 0.0},
                                                   "huge": {"rmin": -1e6, "rmax": 3.0}}).for_coremltools()
    assert safe["dead"]["rmax"] > 0 and safe["huge"] == {"rmin": -65504.0, "rmax": 3.0}


def test_layers_map_to_convs_and_excluded_layers_stay_float(prep, calibration, fp16_program,
                                                            digits_data, tmp_path):
    import torch

    x = torch.from_numpy(prep.inputs[:1])
    mapping = map_layers_to_conv_ops(prep.export_model, fp16_program, x)
    assert list(mapping) == quantizable_layers(prep.fused)     # every layer, in forward order
    assert len(set(mapping.values())) == len(mapping)
    # independent evidence: the jit route names each weight after its torch parameter
    producer = _producer(fp16_program)
    convs = {op.name: op for op in fp16_program.ops if op.type == "conv"}
    for layer, op_name in mapping.items():
        weight_var = str(convs[op_name].inputs["weight"][0])
        assert weight_var.startswith(layer.replace(".", "_") + "_weight"), (layer, weight_var)
        assert producer[weight_var].type == "const"

    keep = ["stem.0", "stages.1.act"]
    o = convert_one(prep, "coreml", "int8", tmp_path, calibration=calibration.with_excluded(keep))
    assert o.ok, o.error
    int8 = o.manifest["int8"]
    assert int8["kept_float"] == {layer: mapping[layer] for layer in keep}
    assert int8["conv_int8"] == int8["conv_total"] - 2
    assert sorted(int8["float_convs"]) == sorted(mapping[layer] for layer in keep)
    program = MILProgram.load(o.folder / "model.mlpackage")
    producer = _producer(program)
    for layer in keep:
        [conv] = [op for op in program.ops if op.name == mapping[layer]]
        w, x = producer[conv.inputs["weight"][0]], producer[conv.inputs["x"][0]]
        assert w.type == "const" and w.outputs[0].dtype == "fp16"      # float weights
        assert x.type not in ("dequantize", "quantize")                  # and a float input
        assert x.outputs[0].dtype == "fp16"

    bad = convert_one(prep, "coreml", "int8", tmp_path / "bad",
                      calibration=calibration.with_excluded(["stages.9.conv"]))
    assert not bad.ok and "stages.9.conv" in bad.error and "stages.1.act" in bad.error


def test_unsupported_method_is_refused_with_the_supported_list(prep, calibration, tmp_path):
    from dataclasses import replace

    assert CoreMlConverter.int8_methods == ("minmax", "percentile")
    o = convert_one(prep, "coreml", "int8", tmp_path, calibration=replace(calibration, method="entropy"))
    assert not o.ok and o.stage == "setup"
    assert "cannot calibrate with 'entropy'" in o.error and "minmax, percentile" in o.error
    assert [p.name for p in tmp_path.iterdir()] in ([], [OWNED_MARK])
    with pytest.raises(ValueError, match="minmax"):
        collect_activation_stats(None, calibration.inputs, "entropy")

