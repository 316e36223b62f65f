"""LiteRT runner on real .tflite files: kernel sets, threads, batches, int8 I/O, availability."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from vanillanet_edge.api import make_digits  # noqa: E402
from vanillanet_edge.converters.convert import convert_checkpoint  # noqa: E402
from vanillanet_edge.devices.litert import LiteRtRunner, dequantize, quantize  # noqa: E402
from vanillanet_edge.devices.registry import get_runner  # noqa: E402
from vanillanet_edge.errors import BackendMissingError, VanillaNetEdgeError  # noqa: E402
from vanillanet_edge.images import Preprocessing, load_folder  # noqa: E402
from vanillanet_edge.model.checkpoint import save_checkpoint  # noqa: E402
from vanillanet_edge.model.fuse import fuse_model  # noqa: E402
from vanillanet_edge.model.variants import create_model  # noqa: E402


def rel_err(a, b) -> float:
    return float(np.linalg.norm(np.float64(a) - b) / np.linalg.norm(np.float64(b)))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A small deploy-form net, real digit images, and its tflite fp32 artifacts at batch 1 and 2."""
    root = tmp_path_factory.mktemp("litert_runner")
    make_digits(root / "digits")
    torch.manual_seed(0)
    model = fuse_model(create_model("vanillanet_5", width=1 / 32, num_classes=10)).eval()
    ckpt = save_checkpoint(model, root / "v5.pth", meta={"input_size": 32})
    arts = {}
    for batch in (1, 2):
        [o] = convert_checkpoint(ckpt, ["tflite"], ["fp32"], root / f"b{batch}", batch=batch,
                                 data=root / "digits" / "val")
        assert o.ok, o.error
        arts[batch] = o
    m = arts[1].manifest
    images = load_folder(root / "digits" / "val", Preprocessing.from_dict(m["preprocessing"]),
                         limit=8, seed=3).inputs
    with torch.no_grad():
        reference = model(torch.from_numpy(images)).numpy()
    return {"model": model, "artifacts": arts, "images": images, "reference": reference, "root": root}


def _load(outcome, **settings):
    return get_runner("litert").load(outcome.folder / "model.tflite", outcome.manifest, **settings)


def test_availability_names_the_interpreter_package():
    ok, reason = LiteRtRunner().availability()
    assert ok and "ai_edge_litert" in reason


def test_availability_without_any_interpreter(monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    ok, reason = LiteRtRunner().availability()
    assert not ok and "ai_edge_litert" in reason and "tflite-runtime" in reason
    with pytest.raises(BackendMissingError):
        LiteRtRunner().require()


def test_both_kernel_sets_agree_with_each_other_and_torch(setup):
    o = setup["artifacts"][1]
    x, ref = setup["images"], setup["reference"]
    xnn = _load(o, kernels="xnnpack")
    builtin = _load(o, kernels="builtin")
    assert xnn.settings["kernels"] == "xnnpack" and xnn.settings["delegate_nodes"] >= 1
    assert xnn.settings["op_resolver"] == "AUTO"
    assert builtin.settings["kernels"] == "builtin" and builtin.settings["delegate_nodes"] == 0
    assert builtin.settings["op_resolver"] == "BUILTIN_WITHOUT_DEFAULT_DELEGATES"
    a, b = xnn.run_all(x), builtin.run_all(x)
    assert rel_err(a, b) < 1e-5
    assert rel_err(a, ref) < 1e-4 and rel_err(b, ref) < 1e-4
    assert (a.argmax(1) == ref.argmax(1)).all()


def test_auto_is_xnnpack_for_float_and_int8_alike(setup):
    """One kernel choice for bench, eval and verification, as apps run it: the built-in kernels
    only when asked (tune's option), never picked silently by precision."""
    o = setup["artifacts"][1]
    auto = _load(o)
    assert auto.settings["kernels"] == "xnnpack" and auto.settings["kernels_requested"] == "auto"
    as_int8 = dict(o.manifest, precision="int8")
    s = get_runner("litert").load(o.folder / "model.tflite", as_int8)
    assert s.settings["kernels"] == "xnnpack" and s.settings["delegate_nodes"] >= 1


def test_threads_and_interpreter_recorded(setup):
    s = _load(setup["artifacts"][1], threads=2)
    assert s.settings["threads"] == 2
    assert s.settings["interpreter"].startswith("ai_edge_litert ")
    np.testing.assert_allclose(s.run_all(setup["images"][:2]), setup["reference"][:2], rtol=1e-4, atol=1e-5)
    with pytest.raises(VanillaNetEdgeError, match="kernels"):
        _load(setup["artifacts"][1], kernels="gpu")
    with pytest.raises(VanillaNetEdgeError, match="threads"):
        _load(setup["artifacts"][1], threads=0)


def test_batch2_artifact_runs_five_inputs(setup):
    o2 = setup["artifacts"][2]
    assert o2.manifest["input"]["shape"] == [2, 32, 32, 3]
    s = _load(o2)
    assert s.batch == 2
    x, ref = setup["images"][:5], setup["reference"][:5]
    out = s.run_all(x)                                  # 2 + 2 + 1 (padded)
    assert out.shape == (5, 10)
    assert rel_err(out, ref) < 1e-4
    one = _load(setup["artifacts"][1]).run_all(x)
    assert rel_err(out, one) < 1e-5


def test_wrong_batch_is_refused(setup):
    s = _load(setup["artifacts"][2])
    with pytest.raises(VanillaNetEdgeError, match="does not fit"):
        s.run(setup["images"][:1])


def test_quantize_dequantize_round_trip():
    detail = {"name": "t", "dtype": np.int8, "quantization": (0.5, -3)}
    x = np.array([-100.0, -1.2, 0.0, 0.26, 10.0, 100.0], np.float32)
    q = quantize(x, detail)
    assert q.dtype == np.int8 and q.tolist() == [-128, -5, -3, -2, 17, 127]
    np.testing.assert_array_equal(dequantize(q, detail), (q.astype(np.float32) + 3) * 0.5)
    f = {"name": "f", "dtype": np.float32, "quantization": (0.0, 0)}
    assert quantize(x, f).dtype == np.float32 and dequantize(x, f) is not x


def test_int8_io_model_is_quantized_and_dequantized(setup, tmp_path):
    """A real int8-in/int8-out model (PT2E through litert-torch): the session feeds float NCHW."""
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e

    from vanillanet_edge.converters.litert import NhwcInput, inspect_tflite, relu_before_maxpool

    model, x = setup["model"], setup["images"]
    wrapped = NhwcInput(relu_before_maxpool(model)).eval()
    x_nhwc = torch.from_numpy(x).permute(0, 2, 3, 1).contiguous()
    gm = torch.export.export(wrapped, (), {"input": x_nhwc[:1]}).module()
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
    gm = quantize_pt2e.prepare_pt2e(gm, quantizer)
    for i in range(len(x)):
        gm(input=x_nhwc[i:i + 1])
    gm = quantize_pt2e.convert_pt2e(gm, fold_quantize=False)
    path = tmp_path / "model.tflite"
    litert_torch.convert(gm, sample_kwargs={"input": x_nhwc[:1]},
                         quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(path))
    info = inspect_tflite(path)
    assert info["inputs"][0]["dtype"] == "int8" and info["outputs"][0]["dtype"] == "int8"

    manifest = {"precision": "int8", "input": {"name": info["inputs"][0]["name"], "shape": [1, 32, 32, 3],
                                              "layout": "NHWC", "dtype": "int8"},
                "output": {"name": info["outputs"][0]["name"]}}
    s = get_runner("litert").load(path, manifest)
    assert s.settings["kernels"] == "xnnpack"          # as apps run it (auto never picks by precision)
    out = s.run_all(x)
    assert out.dtype == np.float32 and out.shape == (len(x), 10)
    with torch.no_grad():
        fake_quant = np.concatenate([gm(input=x_nhwc[i:i + 1])["logits"].numpy() for i in range(len(x))])
    out_scale = s._out["quantization"][0]
    assert np.abs(out - fake_quant).max() <= 3 * out_scale    # same int8 grid, a few steps at most
    assert rel_err(out, setup["reference"]) < 0.25
