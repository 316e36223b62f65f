"""LiteRT (.tflite) target: real litert-torch conversions through the shared pipeline."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from vanillanet_edge.converters.convert import convert_checkpoint  # noqa: E402
from vanillanet_edge.converters.litert import (  # noqa: E402
    DepthwiseOnly,
    StridedAdaptiveMaxPool2d,
    inspect_tflite,
    layout_friendly_adaptive_pools,
    relu_before_maxpool,
    window_runs,
)
from vanillanet_edge.devices.registry import get_runner  # noqa: E402
from vanillanet_edge.fileio import OWNED_MARK
from vanillanet_edge.model.adapool import replace_adaptive_max_pools  # noqa: E402
from vanillanet_edge.model.checkpoint import save_checkpoint  # noqa: E402
from vanillanet_edge.model.fuse import fuse_model  # noqa: E402
from vanillanet_edge.model.layers import Block  # noqa: E402
from vanillanet_edge.model.variants import create_model  # noqa: E402


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    """vanillanet_5 at width 1/32, 10 classes, deploy form, random weights, 32x32 input."""
    torch.manual_seed(0)
    model = fuse_model(create_model("vanillanet_5", width=1 / 32, num_classes=10))
    return save_checkpoint(model, tmp_path_factory.mktemp("small") / "small.pth", meta={"input_size": 32})


@pytest.fixture(scope="module")
def converted(small_checkpoint, digits_data, tmp_path_factory):
    """fp32 and fp16 artifacts verified on real digit images (int8: tests/converters/test_int8_litert.py)."""
    out = tmp_path_factory.mktemp("tflite")
    outcomes = convert_checkpoint(small_checkpoint, ["tflite"], ["fp32", "fp16"], out,
                                  data=digits_data / "val")
    return {o.precision: o for o in outcomes}


@pytest.mark.parametrize("precision, limit", [("fp32", 1e-4), ("fp16", 1e-2)])
def test_manifest_nhwc_float_io_and_verified(converted, digits_data, precision, limit):
    outcome = converted[precision]
    assert outcome.ok, outcome.error
    m = outcome.manifest
    assert m["target"] == "tflite" and m["runtime"] == "litert"
    assert m["input"]["layout"] == "NHWC"
    assert m["input"]["shape"] == [1, 32, 32, 3] and m["input"]["dtype"] == "float32"
    assert m["output"]["shape"] == [1, 10] and m["output"]["dtype"] == "float32"
    assert {p.name for p in outcome.folder.iterdir()} == {"model.tflite", "manifest.json", OWNED_MARK}
    v = m["verification"]
    assert v["passed"] and v["rel_err"] < limit and v["top1_agree"] >= 0.95
    assert str(digits_data / "val") in v["inputs"]
    assert v["runtime_settings"]["interpreter"].startswith("ai_edge_litert")
    for tool in ("litert-torch", "ai-edge-litert"):
        assert m["tools"][tool] not in ("", "not installed")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_graph_has_no_transpose_and_names_are_the_interpreters(converted, precision):
    outcome = converted[precision]
    notes = outcome.manifest["conversion"]
    info = inspect_tflite(outcome.folder / "model.tflite")   # read the file, not only the notes
    assert "TRANSPOSE" not in info["op_counts"] and notes["transpose_ops"] == 0
    assert info["input_readers"] == ["CONV_2D"] and notes["input_transposes"] == 0
    assert notes["op_counts"] == info["op_counts"]
    assert info["op_counts"]["CONV_2D"] == 5 and info["op_counts"]["DEPTHWISE_CONV_2D"] == 4
    assert info["op_counts"]["MAX_POOL_2D"] == 3
    assert "ReLU before MaxPool" in notes["rewrites"]

    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(outcome.folder / "model.tflite"))
    assert outcome.manifest["input"]["name"] == it.get_input_details()[0]["name"]
    assert outcome.manifest["output"]["name"] == it.get_output_details()[0]["name"]
    assert it.get_signature_list() == {"serving_default": {"inputs": ["input"], "outputs": ["logits"]}}


def test_fp16_stores_float16_weights_and_is_smaller(converted):
    fp32, fp16 = converted["fp32"], converted["fp16"]
    c32, c16 = fp32.manifest["conversion"], fp16.manifest["conversion"]
    assert "float16" not in c32["constant_dtypes"]
    assert c16["constant_dtypes"]["float16"] >= 9          # every conv / depthwise weight
    assert c16["op_counts"]["DEQUANTIZE"] == c16["constant_dtypes"]["float16"]
    assert fp16.manifest["artifact"]["size_bytes"] < 0.7 * fp32.manifest["artifact"]["size_bytes"]
    assert fp16.manifest["verification"]["rel_err"] > 0    # float16 weights really are used


def test_runner_matches_the_fused_torch_model(converted, small_checkpoint, digits_data):
    from vanillanet_edge.images import Preprocessing, load_folder
    from vanillanet_edge.model.checkpoint import load_checkpoint
    outcome = converted["fp32"]
    m = outcome.manifest
    imgs = load_folder(digits_data / "val", Preprocessing.from_dict(m["preprocessing"]), limit=8, seed=1)
    session = get_runner("litert").load(outcome.folder / "model.tflite", m)
    out = session.run_all(imgs.inputs)
    with torch.no_grad():
        ref = fuse_model(load_checkpoint(small_checkpoint).model)(torch.from_numpy(imgs.inputs)).numpy()
    assert out.shape == (8, 10) and out.dtype == np.float32
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 1e-4


# ----------------------------------------------------------------------------- exact rewrites


@pytest.mark.parametrize("deploy", [True, False])
def test_relu_before_maxpool_is_exact(deploy):
    torch.manual_seed(0)
    model = create_model("vanillanet_6", width=1 / 16, num_classes=10, deploy=deploy).eval()
    rewritten = relu_before_maxpool(model)
    pooled = [b for b in rewritten.modules() if isinstance(b, Block) and isinstance(b.act, DepthwiseOnly)]
    assert len(pooled) == 3                                  # stride-1 stage left alone
    assert all(isinstance(b.pool[0], torch.nn.ReLU) for b in pooled)
    assert not any(isinstance(b.act, DepthwiseOnly) for b in model.modules() if isinstance(b, Block))
    x = torch.randn(4, 3, 64, 64) * 3
    with torch.no_grad():
        assert torch.equal(model(x), rewritten(x))


def test_relu_before_maxpool_is_exact_on_ada_pool_variant():
    torch.manual_seed(0)
    model = fuse_model(create_model("vanillanet_13_x1_5_ada_pool", width=1 / 32, num_classes=10))
    model = replace_adaptive_max_pools(model, 96)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(model(x), relu_before_maxpool(model)(x))


@pytest.mark.parametrize("n, m", [(75, 38), (19, 10), (38, 19), (10, 7), (13, 4), (9, 9), (31, 12)])
def test_strided_adaptive_max_pool_is_exact(n, m):
    pool = StridedAdaptiveMaxPool2d((n, n + 1), (m, m))
    x = torch.randn(2, 5, n, n + 1)
    assert torch.equal(pool(x), F.adaptive_max_pool2d(x, (m, m)))
    assert sum(1 + (stop - start - length) // step for length, start, stop, step in window_runs(n, m)) == m


def test_ada_pool_windows_need_three_runs():
    assert window_runs(75, 38) == [(2, 0, 2, 2), (3, 1, 74, 2), (2, 73, 75, 2)]
    assert len(window_runs(19, 10)) == 3


def test_layout_friendly_pools_replace_only_gather_pools():
    model = fuse_model(create_model("vanillanet_13_x1_5_ada_pool", width=1 / 32, num_classes=10))
    model = replace_adaptive_max_pools(model, 224)
    rewritten, replaced = layout_friendly_adaptive_pools(model)
    assert replaced == 2                                    # 75 -> 38 and 19 -> 10; 38 -> 19 is MaxPool2d
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model(x), rewritten(x))


# ----------------------------------------------------------------------------- ada_pool at 224


@pytest.mark.slow
def test_ada_pool_variant_converts_at_224(tmp_path):
    torch.manual_seed(0)
    model = fuse_model(create_model("vanillanet_13_x1_5_ada_pool", width=1 / 16, num_classes=10))
    ckpt = save_checkpoint(model, tmp_path / "ada.pth", meta={"input_size": 224})
    [outcome] = convert_checkpoint(ckpt, ["tflite"], ["fp32"], tmp_path / "out")
    assert outcome.ok, outcome.error
    m = outcome.manifest
    assert m["input"]["shape"] == [1, 224, 224, 3] and m["input"]["layout"] == "NHWC"
    assert m["verification"]["rel_err"] < 1e-4
    ops = m["conversion"]["op_counts"]
    assert "TRANSPOSE" not in ops and "GATHER_ND" not in ops and "GATHER" not in ops
    assert ops["CONV_2D"] == 13 and ops["DEPTHWISE_CONV_2D"] == 12
    assert any("adaptive" in r for r in m["conversion"]["rewrites"])


@pytest.mark.slow
def test_trained_net_fp16_and_fp32_agree_on_labels(tiny_checkpoint, digits_data, tmp_path):
    """The deep-trained tiny net (shared fixture): fp16 weights change logits a little, not labels."""
    outcomes = convert_checkpoint(tiny_checkpoint, ["tflite"], ["fp32", "fp16"], tmp_path,
                                  data=digits_data / "val")
    for o in outcomes:
        assert o.ok, o.error
    fp32, fp16 = (o.manifest["verification"] for o in outcomes)
    assert fp32["rel_err"] < 1e-4 and fp32["top1_agree"] == 1.0
    assert 0 < fp16["rel_err"] < 1e-2 and fp16["top1_agree"] >= 0.95
