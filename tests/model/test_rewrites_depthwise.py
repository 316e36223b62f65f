"""dw_blocks / dw_bands / dw_rows / dw_dilated: the 7x7 activation as a sum of smaller depthwise convs.

Every variant (deploy form, random weights) against the plain net; then real conversions of the
tiny digits net (LiteRT fp32 and int8 with XNNPACK, ONNX fp32) through the shared pipeline.
The split changes the order of the float sum, so outputs are never bit-identical (fp32
relative error ~1e-7 here; in float64 ~1e-16, i.e. exact in real arithmetic); the ReLU move
(relu_before_pool) stays bit-exact.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from vanillanet_edge.model.adapool import replace_adaptive_max_pools
from vanillanet_edge.model.baselines import build_vanillanet_random
from vanillanet_edge.model.fuse import fuse_model
from vanillanet_edge.model.layers import Activation, Block
from vanillanet_edge.model.rewrites import (
    REWRITES,
    DepthwiseDilated,
    DepthwiseOnly,
    DepthwiseSplit,
    DepthwiseSum,
    apply_rewrites,
    band_pieces,
    block_pieces,
    dilated_row_groups,
    relu_before_pool,
    row_pieces,
)
from vanillanet_edge.model.variants import VARIANTS, create_model

SPLITS = ("dw_blocks", "dw_bands", "dw_rows", "dw_dilated")
PIECES = {"dw_blocks": 4, "dw_bands": 3, "dw_rows": 7, "dw_dilated": 3}
SPLIT_TYPES = DepthwiseSum


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _activation_inputs(net, x) -> dict:
    """Each activation's input in a run of the plain net, by module name."""
    seen, hooks = {}, []
    for name, m in net.named_modules():
        if isinstance(m, Activation):
            hooks.append(m.register_forward_pre_hook(lambda mod, args, name=name: seen.__setitem__(name, args[0])))
    try:
        net(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


# Every variant at a quarter of its width (the x1.5 ones took a minute of the suite's 2 cores
# at full width, and all of them together most of this file's time): the same graph, kernels
# and feature-map sizes, 128-1152 channels; channels do not change what the split computes
# per channel. The x1.5 variants stay marked slow.
SLOW = {"vanillanet_13_x1_5", "vanillanet_13_x1_5_ada_pool"}
WIDTH = 0.25


@pytest.mark.parametrize("variant", [pytest.param(v, marks=pytest.mark.slow) if v in SLOW else v for v in VARIANTS])
def test_every_variant_split_matches_the_plain_net(variant):
    """Each split activation against its plain 7x7 conv on the same input: fp32 relative error
    < 1e-6. Whole net: < 1e-5 in fp32 (a full-size plain net is itself 1e-6..5e-6 away from its
    float64 result at the logits, so 1e-6 there would test rounding noise) and < 1e-12 in float64."""
    torch.manual_seed(0)
    size = max(VARIANTS[variant].min_input_size(), 32)
    # deploy form, random non-degenerate weights (BN-like output scaling)
    net = replace_adaptive_max_pools(build_vanillanet_random(variant, num_classes=10, stats_input_size=size,
                                                             width=WIDTH), size)
    x = torch.randn(2, 3, size, size)
    n_acts = len(net.stages) + 1
    with torch.no_grad():
        ref = net(x)
        inputs = _activation_inputs(net, x)
        assert len(inputs) == n_acts
        ref64 = net.double()(x.double())
        net.float()
        for name in SPLITS:
            split = apply_rewrites(net, [name])
            parts = [m for m in split.modules() if isinstance(m, SPLIT_TYPES)]
            assert len(parts) == n_acts and all(m.parts == PIECES[name] for m in parts)
            for layer, inp in inputs.items():
                part = split.get_submodule(layer)
                assert isinstance(part, SPLIT_TYPES) and part.relu == (layer == "stem.1")
                plain = net.get_submodule(layer)(inp)
                assert _rel(part(inp if part.relu else torch.relu(inp)), plain) < 1e-6, (name, layer)
            assert _rel(split(x), ref) < 1e-5, name
            if name in ("dw_bands", "dw_dilated"):
                assert _rel(split.double()(x.double()), ref64) < 1e-12, name    # exact in real arithmetic
        assert torch.equal(net(x), ref)                                   # the input net is untouched


@pytest.mark.parametrize("name", SPLITS)
def test_composes_with_relu_before_pool(name):
    """Either order gives the same net, bit for bit (the ReLU move is part of every split)."""
    torch.manual_seed(0)
    net = replace_adaptive_max_pools(create_model("vanillanet_13_x1_5_ada_pool", width=1 / 16, num_classes=10,
                                                  deploy=True).eval(), 64)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
        x = torch.randn(2, 3, 64, 64)
        split = apply_rewrites(net, [name])
        assert _rel(split(x), net(x)) < 1e-6
        assert torch.equal(apply_rewrites(net, ["relu_before_pool", name])(x), split(x))
        assert torch.equal(relu_before_pool(split)(x), split(x))


def test_piece_plans_tile_the_kernel():
    assert block_pieces(7) == [(0, 0, 4, 4), (0, 4, 4, 3), (4, 0, 3, 4), (4, 4, 3, 3)]
    assert band_pieces(7) == [(0, 0, 3, 7), (3, 0, 3, 7), (6, 0, 1, 7)]
    assert max(h * w for _, _, h, w in band_pieces(7)) <= 25          # XNNPACK's one-pass tile
    assert len(row_pieces(7)) == 7
    assert dilated_row_groups(7) == [(-3, 0, 3), (-2, 2), (-1, 1)]
    for k in (1, 3, 5, 7, 9):                  # every row offset exactly once, at most 3 rows (25 taps) a group
        groups = dilated_row_groups(k)
        assert sorted(o for g in groups for o in g) == list(range(-(k // 2), k // 2 + 1))
        assert all(len(g) <= 3 for g in groups)
    for k in (3, 5, 7, 9):
        for pieces in (block_pieces(k), band_pieces(k), row_pieces(k)):
            assert sum(h * w for _, _, h, w in pieces) == k * k
    w = torch.randn(4, 1, 7, 7)
    with pytest.raises(ValueError, match="tile"):
        DepthwiseSplit(w, None, [(0, 0, 4, 7)], relu=False, plan="half")


def test_refuses_training_form_and_double_splits():
    train_form = create_model("vanillanet_5", width=1 / 32, num_classes=10).eval()
    for name in SPLITS:
        with pytest.raises(ValueError, match="fused"):
            REWRITES[name](train_form)
    fused = create_model("vanillanet_5", width=1 / 32, num_classes=10, deploy=True).eval()
    with pytest.raises(ValueError, match="split already"):
        apply_rewrites(fused, ["dw_blocks", "dw_bands"])
    with pytest.raises(ValueError, match="no VanillaNet activation"):
        REWRITES["dw_blocks"](torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1)))


# ---------------------------------------------------------------------------------------------
# Real conversions of the trained digits net


@pytest.fixture(scope="module")
def digits_prep(tiny_checkpoint):
    from vanillanet_edge.converters.convert import load_eval_set, prepare

    prep = prepare(tiny_checkpoint.path, data=tiny_checkpoint.data / "val")
    return prep, load_eval_set(prep, tiny_checkpoint.data / "val")


def _rewritten(prep, name):
    meta = {**prep.model_meta, "rewrites": [name]}
    return dataclasses.replace(prep, name=f"{prep.name}-{name}", model_meta=meta,
                               export_model=apply_rewrites(prep.export_model, [name]))


@pytest.mark.parametrize("name", ["dw_dilated", "dw_bands"])
def test_rewritten_digits_net_converts_and_keeps_its_accuracy(name, digits_prep, tiny_checkpoint, tmp_path):
    """LiteRT fp32 / int8 and ONNX fp32 of the split net verify and keep top-1 (int8 within 0.5
    points of fp32, with the kernels latency uses: LiteRT kernels="auto" = XNNPACK). The split
    convs share their input's scale; their sum is re-quantized by an int8 ADD: the INT8 graph is
    all-integer (no DEQUANTIZE / QUANTIZE between its int8 input and output). dw_dilated needs
    no PAD or SLICE at all. (dw_blocks and dw_rows differ from dw_bands only in their pieces,
    checked above.)"""
    pytest.importorskip("litert_torch")
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("onnxruntime")
    from vanillanet_edge.calibration.dataset import load_calibration
    from vanillanet_edge.converters.convert import convert_one

    prep, evaluation = digits_prep
    variant = _rewritten(prep, name)
    cal = load_calibration(tiny_checkpoint.data / "train", prep.preprocessing, 64, 0, "minmax")
    n_acts = len(prep.fused.stages) + 1
    jobs = [("tflite", "fp32", None), ("tflite", "int8", cal), ("onnx", "fp32", None)]
    for target, precision, calibration in jobs:
        o = convert_one(variant, target, precision, tmp_path, calibration=calibration, evaluation=evaluation)
        assert o.ok, o.error
        m = o.manifest
        assert m["verification"]["passed"], m["verification"]
        assert m["model"]["rewrites"] == [name]
        assert abs(m["accuracy"]["drop_points"]) <= 0.5, m["accuracy"]
        if target == "tflite":
            ops = m["conversion"]["op_counts"]
            # 32x32 input: the 2x2 and 1x1 maps leave out pieces that would read padding only
            assert n_acts < ops["DEPTHWISE_CONV_2D"] <= PIECES[name] * n_acts, ops
            if name == "dw_dilated":       # nothing but the convs and their int8 sums
                assert ops.get("PAD", 0) == 0 and ops.get("SLICE", 0) == 0 and ops.get("TRANSPOSE", 0) == 0, ops
            elif precision == "fp32":      # litert-torch's int8 PAD of dw_bands comes with TRANSPOSEs
                assert ops.get("TRANSPOSE", 0) == 0
            if precision == "int8":
                assert m["input"]["dtype"] == "int8" and m["verification"]["top1_agree"] >= 0.9
                assert ops.get("DEQUANTIZE", 0) == 0, ops      # no float island: every op runs in int8
                if name == "dw_dilated":
                    assert ops.get("QUANTIZE", 0) == 0, ops    # not even a requantization


def test_pieces_reading_only_padding_are_left_out():
    """On a 1x1 map only the kernel's centre sees data: dw_bands keeps its middle band alone."""
    torch.manual_seed(0)
    act = Activation(8, deploy=True).eval()
    with torch.no_grad():
        act.weight.normal_()
        act.bias.normal_()
        split = DepthwiseSplit(act.weight, act.bias, band_pieces(7), relu=True, plan="dw_bands")
        for size in (1, 2, 3, 5):
            x = torch.randn(2, 8, size, size)
            assert _rel(split(x), act(x)) < 1e-6, size
        dilated = DepthwiseDilated(act.weight, act.bias, relu=True)
        for size in (1, 2, 3, 5):
            x = torch.randn(2, 8, size, size)
            assert _rel(dilated(x), act(x)) < 1e-6, size
    for module in (split, dilated):
        graph = torch.export.export(module, (torch.randn(1, 8, 1, 1),)).graph
        convs = [n for n in graph.nodes if n.op == "call_function" and "conv" in str(n.target)]
        assert len(convs) == 1


# ----------------------------------------------------------------------------- the ReLU move's two forms

def _moved(net) -> list:
    return [b for b in net.modules() if isinstance(b, Block) and isinstance(b.act, DepthwiseOnly)]


def test_relu_before_pool_default_form_needs_a_fused_net_and_moves_every_block():
    torch.manual_seed(0)
    net = create_model("vanillanet_6", width=1 / 16, num_classes=10).eval()       # training form
    with pytest.raises(ValueError, match="fused"):
        relu_before_pool(net)
    fused = fuse_model(net)
    out = relu_before_pool(fused)
    blocks = [b for b in fused.modules() if isinstance(b, Block)]
    assert len(_moved(out)) == len(blocks) and all(b.act.bn is None for b in _moved(out))
    x = torch.randn(2, 3, 64, 64) * 3
    with torch.no_grad():
        assert torch.equal(fused(x), out(x))


def test_relu_before_pool_litert_form_takes_training_nets_and_leaves_stride_1_blocks():
    """fused_only=False, pooling_blocks_only=True: what LiteRT's export applies to any net."""
    torch.manual_seed(0)
    net = create_model("vanillanet_6", width=1 / 16, num_classes=10).eval()       # training form: BNs
    out = relu_before_pool(net, fused_only=False, pooling_blocks_only=True)
    pooling = [n for n, b in net.named_modules() if isinstance(b, Block) and not isinstance(b.pool, torch.nn.Identity)]
    still = [n for n, b in out.named_modules() if isinstance(b, Block) and isinstance(b.act, Activation)]
    assert 0 < len(pooling) and len(_moved(out)) == len(pooling) and still       # stride-1 blocks kept theirs
    assert all(b.act.bn is not None for b in _moved(out))                        # the BN stays, after the conv
    assert len(_moved(relu_before_pool(out, fused_only=False, pooling_blocks_only=True))) == len(pooling)
    x = torch.randn(2, 3, 64, 64) * 3
    with torch.no_grad():
        assert torch.equal(net(x), out(x))
