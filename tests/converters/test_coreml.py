"""Core ML artifacts, verified on Linux through the numpy MIL interpreter."""
from __future__ import annotations

import numpy as np
from coreml_checks import assert_float32_or_classifier_output

from vanillanet_edge.converters.convert import convert_checkpoint
from vanillanet_edge.devices.coreml import CoreMlRunner, on_macos
from vanillanet_edge.devices.coreml_mil import MILProgram


def test_fp32_and_fp16_mlpackages_verify(tiny_checkpoint, tmp_path):
    outcomes = convert_checkpoint(tiny_checkpoint, ["coreml"], ["fp32", "fp16"], tmp_path)
    by_precision = {o.precision: o for o in outcomes}
    for o in outcomes:
        assert o.ok, o.error
        assert (o.folder / "model.mlpackage" / "Manifest.json").exists()
        # Core ML's default input is an 8-bit RGB image (raw pixels); a MultiArray is float32
        assert o.manifest["input"]["dtype"] == ("uint8" if o.manifest["input"]["pixels"] == "raw" else "float32")
    v32 = by_precision["fp32"].manifest["verification"]
    v16 = by_precision["fp16"].manifest["verification"]
    assert v32["rel_err"] < 1e-4 and v32["top1_agree"] == 1.0
    assert 1e-6 < v16["rel_err"] < 1e-2            # really fp16, and within the limit
    engine = v32["runtime_settings"]["engine"]
    assert ("Core ML" == engine) if on_macos() else ("interpreter" in engine)


def test_fp16_program_holds_fp16_weights_and_float32_io(tiny_checkpoint, tmp_path):
    [o] = convert_checkpoint(tiny_checkpoint, ["coreml"], ["fp16"], tmp_path)
    program = MILProgram.load(o.folder / "model.mlpackage")
    assert program.inputs[0].dtype == "fp32"     # an image reaches the program as fp32 values too
    assert_float32_or_classifier_output(program, o.manifest)
    assert program.op_types["cast"] >= 2            # cast in, cast out
    assert program.op_types["conv"] >= 5


def test_runner_reports_what_it_can_do_here():
    ok, why = CoreMlRunner().availability()
    assert ok
    assert ("macOS" in why) if on_macos() else ("interpreter" in why and "no latency" in why)


def test_record_callback_sees_every_layer(tiny_checkpoint, tmp_path, digits_data):
    [o] = convert_checkpoint(tiny_checkpoint, ["coreml"], ["fp32"], tmp_path)
    session = CoreMlRunner().load(o.folder / "model.mlpackage", o.manifest, engine="interpreter")
    seen = []
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    session.run(x, record=lambda name, op_type, out: seen.append(op_type))
    assert seen.count("conv") == session.program.op_types["conv"]
    assert "max_pool" in seen and "relu" in seen

