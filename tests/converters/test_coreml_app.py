"""Core ML artifacts an app drops in: an RGB image input, classifier outputs (classLabel and a
probabilities dictionary with the class names), metadata, byte-identical packages.

Real coremltools conversions of the suite's trained digits net, run by the numpy MIL
interpreter (the Core ML runner off macOS). The requests are built here the way convert.py
builds "raw" ones: the normalization prepended to the export model, raw 0-255 sample and
calibration images, and a manifest whose input says "pixels": "raw".
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import warnings

import numpy as np
import pytest
import torch

from vanillanet_edge.calibration.dataset import load_calibration
from vanillanet_edge.converters.base import ConvertRequest
from vanillanet_edge.converters.convert import convert_checkpoint, load_eval_set, prepare
from vanillanet_edge.converters.coreml import CoreMlConverter
from vanillanet_edge.converters.verify import verify_artifact
from vanillanet_edge.devices.base import to_artifact_pixels
from vanillanet_edge.devices.coreml import CoreMlRunner, class_labels_of
from vanillanet_edge.devices.coreml_mil import MILProgram
from vanillanet_edge.errors import ConversionError

pytestmark = pytest.mark.filterwarnings("ignore")
logging.getLogger("coremltools").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", module="coremltools")

PRECISIONS = ("fp32", "fp16", "int8")
APP_INFO = {"author": "vanillanet-edge tests", "license": "MIT",
            "description": "digits classifier", "version": "1.2.3", "name": "tiny-digits"}


class _RawInput(torch.nn.Module):
    """(x / 255 - mean) / std, then the net: a model that takes RGB 0-255 pixels."""

    def __init__(self, net, mean, std):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x):
        return self.net((x / 255.0 - self.mean) / self.std)


@pytest.fixture(scope="module")
def app(tiny_checkpoint, digits_data, tmp_path_factory):
    """The digits net as raw-input Core ML classifiers, fp32/fp16/int8, each converted twice
    (~40 s), plus the digits val set."""
    prep = prepare(tiny_checkpoint, data=digits_data / "val")
    pp = prep.preprocessing
    raw_manifest = {"input": {"pixels": "raw", "dtype": "float32"}, "preprocessing": pp.as_dict()}

    def raw(x):
        return to_artifact_pixels(x, raw_manifest)

    calibration = load_calibration(digits_data / "train", pp, samples=32)
    raw_calibration = dataclasses.replace(calibration, inputs=raw(calibration.inputs))
    names = prep.model_meta["class_names"]
    model = _RawInput(prep.export_model, pp.mean, pp.std).eval()
    out = tmp_path_factory.mktemp("coreml-app")
    packages: dict[str, list] = {}
    for precision in PRECISIONS:
        for run in range(2):
            folder = out / f"{precision}-{run}"
            folder.mkdir()
            request = ConvertRequest(model, precision, prep.input_size, 1, pp, raw(prep.inputs),
                                     calibration=raw_calibration if precision == "int8" else None,
                                     pixels="raw", class_names=names, app_info=APP_INFO)
            result = CoreMlConverter().export(request, folder)
            assert result.input_dtype == "uint8"     # an 8-bit image: the harness feeds whole pixels
            manifest = {"target": "coreml", "precision": precision,
                        "input": {"name": result.input_name, "shape": [1, 3, prep.input_size, prep.input_size],
                                  "layout": "NCHW", "dtype": result.input_dtype, "pixels": "raw"},
                        "output": {"name": result.output_name, "shape": [1, len(names)]},
                        "preprocessing": pp.as_dict(), "conversion": result.notes}
            packages.setdefault(precision, []).append((folder / result.artifact, manifest))
    return prep, names, packages, load_eval_set(prep, digits_data / "val", limit=None)


def _file_hashes(package) -> dict[str, str]:
    return {p.relative_to(package).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(package.rglob("*")) if p.is_file()}


def test_spec_has_image_input_classifier_outputs_and_metadata(app):
    import coremltools as ct

    prep, names, packages, _ = app
    for precision in PRECISIONS:
        package, _ = packages[precision][0]
        spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
        [inp] = spec.description.input
        assert inp.type.WhichOneof("Type") == "imageType", precision
        image = inp.type.imageType
        assert (image.width, image.height) == (prep.input_size, prep.input_size)
        assert image.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB
        outputs = {o.name: o.type.WhichOneof("Type") for o in spec.description.output}
        assert outputs == {"classLabel": "stringType", "classLabel_probs": "dictionaryType"}
        assert spec.description.predictedFeatureName == "classLabel"
        assert spec.description.predictedProbabilitiesName == "classLabel_probs"
        assert class_labels_of(spec) == names == MILProgram.load(package).class_labels
        meta = spec.description.metadata
        assert (meta.author, meta.license, meta.versionString) == ("vanillanet-edge tests", "MIT", "1.2.3")
        assert meta.shortDescription.startswith("digits classifier")
        assert "com.github.apple.coremltools.conversion_date" not in meta.userDefined
        assert meta.userDefined["name"] == "tiny-digits"
    assert len(names) == 10


def test_same_request_gives_byte_identical_packages(app):
    _, _, packages, _ = app
    for precision in PRECISIONS:
        (first, _), (second, _) = packages[precision]
        hashes = _file_hashes(first)
        assert len(hashes) == 3 and hashes == _file_hashes(second), precision


def test_probabilities_verify_and_top1_equals_the_normalized_artifact(app, tiny_checkpoint, digits_data, tmp_path):
    from vanillanet_edge.converters.convert import Int8Options

    prep, _, packages, evaluation = app
    normalized = {o.precision: o for o in convert_checkpoint(
        tiny_checkpoint, ["coreml"], list(PRECISIONS), tmp_path, data=digits_data / "val",
        int8=Int8Options(digits_data / "train", samples=32), pixels="normalized")}
    runner = CoreMlRunner()
    for precision in PRECISIONS:
        package, manifest = packages[precision][0]
        record = verify_artifact("coreml", package, manifest, prep.inputs, prep.reference, precision)
        assert record["passed"] and record["compared"].startswith("probabilities"), record
        probs = runner.load(package, manifest, engine="interpreter").run_all(evaluation.inputs)
        assert probs.shape == (len(evaluation.labels), 10)
        assert np.allclose(probs.sum(1), 1.0, atol=1e-2)        # a distribution per image
        o = normalized[precision]
        assert o.ok, o.error
        assert o.manifest["output"]["meaning"].startswith("logits") and o.manifest["input"]["dtype"] == "float32"
        logits = runner.load(o.folder / "model.mlpackage", o.manifest, engine="interpreter").run_all(
            evaluation.inputs)
        top1_raw = float((probs.argmax(1) == evaluation.labels).mean())
        top1_norm = float((logits.argmax(1) == evaluation.labels).mean())
        assert top1_raw == top1_norm, precision


def test_requests_core_ml_cannot_honour_fail_clearly(app, tmp_path):
    prep, names, _, _ = app
    pp = prep.preprocessing
    model = _RawInput(prep.export_model, pp.mean, pp.std).eval()
    x = prep.inputs * 0 + 128
    batched = ConvertRequest(model, "fp32", prep.input_size, 2, pp, x, pixels="raw", class_names=names)
    with pytest.raises(ConversionError, match="one image per prediction") as err:
        CoreMlConverter().export(batched, tmp_path)
    assert "normalized" in err.value.hint
    wrong = ConvertRequest(model, "fp32", prep.input_size, 1, pp, x, pixels="raw", class_names=names[:3])
    with pytest.raises(ConversionError, match="3 class names for a net with 10 outputs"):
        CoreMlConverter().export(wrong, tmp_path)
    twice = ConvertRequest(model, "fp32", prep.input_size, 1, pp, x, pixels="raw",
                           class_names=names[:9] + names[:1])
    with pytest.raises(ConversionError, match="class names repeat"):
        CoreMlConverter().export(twice, tmp_path)


class _ConvMean(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return torch.relu(self.conv(x)).mean((2, 3))


def test_interpreter_applies_an_image_inputs_scale_and_bias(tmp_path):
    """What Core ML does to an image before the program (scale, per-channel bias) is part of
    the program coremltools writes; the interpreter must reproduce it exactly."""
    import coremltools as ct

    net = _ConvMean().eval()
    x = torch.zeros(1, 3, 8, 8)
    scale, bias = 2 / 255, [-1.0, -0.5, 0.25]
    mlmodel = ct.convert(torch.jit.trace(net, x), convert_to="mlprogram",
                         minimum_deployment_target=ct.target.iOS17,
                         inputs=[ct.ImageType(name="image", shape=(1, 3, 8, 8), scale=scale, bias=bias,
                                              color_layout=ct.colorlayout.RGB)],
                         compute_precision=ct.precision.FLOAT32)
    mlmodel.save(str(tmp_path / "m.mlpackage"))
    program = MILProgram.load(tmp_path / "m.mlpackage")
    pixels = np.random.default_rng(0).integers(0, 256, (1, 3, 8, 8)).astype(np.float32)
    [name] = program.output_names
    got = program.run({"image": pixels})[name]
    with torch.no_grad():
        want = net(torch.from_numpy(pixels) * scale + torch.tensor(bias).view(1, 3, 1, 1)).numpy()
    assert np.allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, net(torch.from_numpy(pixels)).detach().numpy(), rtol=1e-2)


def test_interpreter_runs_batch_norm_at_fp32_and_fp16(tmp_path):
    """coremltools turns a per-channel multiply-add (the normalization prepended to a raw-pixel
    net whose stem cannot absorb it) into batch_norm; a BatchNorm2d left in the net gives one too."""
    import coremltools as ct

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.BatchNorm2d(3), _ConvMean()).eval()
    with torch.no_grad():
        bn = net[0]
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        want = net(x).numpy()
    for precision, tol in ((ct.precision.FLOAT32, 1e-5), (ct.precision.FLOAT16, 1e-2)):
        mlmodel = ct.convert(torch.jit.trace(net, x), convert_to="mlprogram",
                             minimum_deployment_target=ct.target.iOS17,
                             inputs=[ct.TensorType(name="x", shape=(1, 3, 8, 8), dtype=np.float32)],
                             outputs=[ct.TensorType(name="y", dtype=np.float32)], compute_precision=precision)
        path = tmp_path / f"{precision.name}.mlpackage"
        mlmodel.save(str(path))
        program = MILProgram.load(path)
        assert program.op_types["batch_norm"] == 1
        got = program.run({"x": x.numpy()})["y"]
        assert np.linalg.norm(got - want) / np.linalg.norm(want) < tol, precision
