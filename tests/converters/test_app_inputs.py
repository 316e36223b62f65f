"""Artifacts that drop into apps: raw-pixel input (normalization folded into the stem), TFLite
metadata read by MediaPipe Tasks' ImageClassifier, uint8 input for INT8 LiteRT, the app
contract in ONNX metadata_props and OpenVINO rt_info (u8 NHWC input through its
PrePostProcessor). Every artifact here is converted, verified and run in its real runtime."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vanillanet_edge.converters.convert import Int8Options, convert_checkpoint
from vanillanet_edge.converters.registry import get_converter
from vanillanet_edge.converters.verify import run_artifact
from vanillanet_edge.images import ImageFolder, load_images

N_IMAGES = 60      # digits val images classified by MediaPipe and by our own runner


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _val_images(data: Path, manifest: dict):
    """(normalized inputs as the harness loads them, the same images as uint8 RGB HWC pixels
    the way an app holds them: resized and cropped as the manifest says, nothing else)."""
    from vanillanet_edge.images import Preprocessing

    prep = Preprocessing.from_dict(manifest["preprocessing"])
    loaded = load_images(ImageFolder(data / "val").sample(N_IMAGES, 0), prep)
    pixels = []
    for path in loaded.paths:
        img = Image.open(path).convert("RGB")
        w, h = prep.resized_size(*img.size)
        img = img.resize((w, h), Image.BICUBIC)
        left, top = (w - prep.crop) // 2, (h - prep.crop) // 2
        pixels.append(np.asarray(img.crop((left, top, left + prep.crop, top + prep.crop)), dtype=np.uint8))
    return loaded, pixels


@pytest.fixture(scope="module")
def tflite_raw(tiny_checkpoint, digits_data, tmp_path_factory):
    """The tflite fp32 default (raw pixels + metadata), converted twice (determinism)."""
    folders = []
    for i in range(2):
        out = tmp_path_factory.mktemp(f"tflite-raw-{i}")
        outcome, = convert_checkpoint(tiny_checkpoint, ["tflite"], ["fp32"], out,
                                      app_info={"author": "A. Tester", "license": "MIT"})
        assert outcome.ok, outcome.error
        folders.append(outcome.folder)
    return folders


def test_tflite_defaults_to_raw_pixels_with_metadata_mediapipe_classifies(tflite_raw, digits_data):
    folder = tflite_raw[0]
    m = _manifest(folder)
    assert m["input"]["pixels"] == "raw" and m["input"]["dtype"] == "float32"
    assert "no normalization" in m["input"]["app_must"] and "folded" in m["input"]["normalization"]
    meta = m["conversion"]["metadata"]
    assert meta["written"] and meta["labels"] == 10 and meta["author"] == "A. Tester"
    assert m["verification"]["passed"] and m["verification"]["rel_err"] < 1e-4
    # byte-identical when converted again, metadata and labels zip included
    assert _sha(folder / "model.tflite") == _sha(tflite_raw[1] / "model.tflite")

    ours = _mediapipe_agrees_with_our_eval(folder, m, digits_data)
    assert np.mean(ours.argmax(1) == _val_images(digits_data, m)[0].labels) > 0.5    # a trained net


def _mediapipe_agrees_with_our_eval(folder: Path, m: dict, data: Path) -> np.ndarray:
    """MediaPipe Tasks' ImageClassifier (CPU) on uint8 RGB images as an app holds them: labels
    come out, and its top-1 is our own runner's on the same images. Returns our logits."""
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    loaded, pixels = _val_images(data, m)
    ours, _ = run_artifact("litert", folder / "model.tflite", m, loaded.inputs)
    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_path=str(folder / "model.tflite")), max_results=1)
    names = m["model"]["labels"]
    with vision.ImageClassifier.create_from_options(options) as classifier:
        top = [classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(p)))
               .classifications[0].categories[0] for p in pixels]
    assert [c.category_name for c in top] == [names[c.index] for c in top]     # labels came out
    assert [c.index for c in top] == ours.argmax(1).tolist()
    return ours


def test_tflite_int8_raw_input_is_uint8_and_verifies(tiny_checkpoint, digits_data, tmp_path):
    outcome, = convert_checkpoint(tiny_checkpoint, ["tflite"], ["int8"], tmp_path,
                                  int8=Int8Options(digits_data / "train", samples=32))
    assert outcome.ok, outcome.error
    m = outcome.manifest
    q = m["conversion"]["input_quantization"]
    assert (m["input"]["dtype"], q["dtype"], q["scale"], q["zero_point"]) == ("uint8", "uint8", 1.0, 0)
    assert m["int8"]["io"] == {"input": "uint8", "output": "float32"}      # MediaPipe takes no int8 output
    assert m["int8"]["conv_int8"] == m["int8"]["conv_total"] and m["output"]["dtype"] == "float32"
    assert m["verification"]["passed"] and m["conversion"]["metadata"]["written"]
    _mediapipe_agrees_with_our_eval(outcome.folder, m, digits_data)
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(outcome.folder / "model.tflite"))
    detail = it.get_input_details()[0]
    assert detail["dtype"] == np.uint8 and detail["quantization"] == (1.0, 0)
    # the folded stem's small weights keep their own per-channel scales (litert-torch's weight
    # observer floor of 2^-12 clamped them all: a coarse stem, 3.5x the error of normalized)
    stem = next(d for d in it.get_tensor_details() if len(d["shape"]) == 4 and d["shape"][1:3].tolist() == [4, 4]
                and d["dtype"] == np.int8)
    scales = stem["quantization_parameters"]["scales"]
    assert len(scales) > 1 and scales.min() < 2 ** -12
    # latency's example inputs and the op probe keep working on the uint8 artifact
    _bench_once(outcome.folder, m)
    from vanillanet_edge.devices.op_probe import probe_ops

    rows = probe_ops(outcome.folder, m, threads=1, seconds=0.01, rounds=1, min_calls=1)["rows"]
    assert any(r["op_type"] == "QUANTIZE" and "uint8" in r["name"] for r in rows), [r["name"] for r in rows]


def _bench_once(folder: Path, manifest: dict) -> None:
    from vanillanet_edge.devices.artifacts import ArtifactRef
    from vanillanet_edge.devices.latency import BenchSettings, measure_in_process

    ref = ArtifactRef(folder, folder / manifest["artifact"]["file"], manifest, manifest["runtime"])
    record = measure_in_process(ref, manifest["runtime"], BenchSettings(threads=1, warmup=1, runs=2))
    assert record["status"] == "ok" and len(record["times_ms"]) == 2


def test_onnx_and_openvino_raw_carry_the_app_contract(tiny_checkpoint, digits_data, tmp_path):
    outcomes = convert_checkpoint(tiny_checkpoint, ["onnx", "openvino"], ["fp32"], tmp_path, pixels="raw")
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    onnx_dir, ov_dir = (o.folder for o in outcomes)
    names = outcomes[0].manifest["model"]["labels"]

    import onnxruntime as ort
    import openvino as ov

    m = _manifest(onnx_dir)
    assert (m["input"]["pixels"], m["input"]["dtype"], m["input"]["layout"]) == ("raw", "float32", "NCHW")
    sess = ort.InferenceSession(str(onnx_dir / "model.onnx"))
    props = sess.get_modelmeta().custom_metadata_map
    assert json.loads(props["labels"]) == names and props["pixels"] == "raw" and "mean" not in props
    loaded, pixels = _val_images(digits_data, m)
    ours, _ = run_artifact("onnxruntime", onnx_dir / "model.onnx", m, loaded.inputs)
    app = [sess.run(None, {"input": p.transpose(2, 0, 1)[None].astype(np.float32)})[0] for p in pixels]
    assert np.concatenate(app).argmax(1).tolist() == ours.argmax(1).tolist()

    m = _manifest(ov_dir)
    assert (m["input"]["pixels"], m["input"]["dtype"], m["input"]["layout"]) == ("raw", "uint8", "NHWC")
    assert m["verification"]["passed"]
    model = ov.Core().read_model(str(ov_dir / "model.xml"))
    assert model.inputs[0].get_element_type() == ov.Type.u8
    assert model.get_rt_info(["model_info", "labels"]).astype(str).split() == names
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ours, _ = run_artifact("openvino", ov_dir / "model.xml", m, loaded.inputs, precision_hint="f32")
    app = [compiled({0: p[None]})[0] for p in pixels]                  # camera frames as they are
    assert np.concatenate(app).argmax(1).tolist() == ours.argmax(1).tolist()
    _bench_once(ov_dir, m)


def test_normalized_stays_the_default_elsewhere_and_says_its_mean_std(tiny_checkpoint, tmp_path):
    import onnxruntime as ort

    outcome, = convert_checkpoint(tiny_checkpoint, ["onnx"], ["fp32"], tmp_path)
    assert outcome.ok, outcome.error
    m = outcome.manifest
    assert m["input"]["pixels"] == "normalized" and "app_must" not in m["input"]
    props = ort.InferenceSession(str(outcome.folder / "model.onnx")).get_modelmeta().custom_metadata_map
    assert json.loads(props["mean"]) == list(m["preprocessing"]["mean"]) and props["pixels"] == "normalized"


def test_missing_mediapipe_names_the_extra_before_any_work(tiny_checkpoint, tmp_path, monkeypatch):
    from vanillanet_edge.cli.main import main

    # mediapipe absent: every mediapipe module unimportable (None in sys.modules = not installed)
    for name in [n for n in sys.modules if n == "mediapipe" or n.startswith("mediapipe.")] + ["mediapipe"]:
        monkeypatch.setitem(sys.modules, name, None)
    result = CliRunner().invoke(main, ["convert", str(tiny_checkpoint), "--target", "tflite",
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "mediapipe" in result.output and "--no-metadata" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
    tflite = get_converter("tflite")
    tflite.check_app_request("raw", {"metadata": False})        # --no-metadata needs no mediapipe
    tflite.check_app_request("normalized", {})
    bad = CliRunner().invoke(main, ["convert", str(tiny_checkpoint), "--target", "onnx", "--input", "rgb",
                                    "--out", str(tmp_path / "o")])
    assert bad.exit_code == 2 and "raw" in bad.output



def test_labels_file_is_one_line_per_output():
    from vanillanet_edge.converters.litert_metadata import labels_for
    from vanillanet_edge.errors import ConversionError

    assert labels_for(["tabby\ncat", "  ", "dog"], 3) == ["tabby cat", "1", "dog"]   # no shifted lines
    assert labels_for(None, 2) == ["0", "1"]
    with pytest.raises(ConversionError):
        labels_for(["a", "b"], 3)
