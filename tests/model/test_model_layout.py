"""State-dict keys and shapes of both forms against the facts sheet, and input-size checks.

Full-size nets are built on the meta device: shapes without allocating hundreds of MB.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from vanillanet_edge.errors import InputSizeError, VanillaNetEdgeError
from vanillanet_edge.model.variants import PUBLISHED, VARIANTS, create_model, variant_config

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
WB = ("weight", "bias")

# The facts sheet's table, written out independently of variants.py: (units, mult, strides).
M13 = (128, 128, 256, *[512] * 7, 1024, 1024)
S13 = (1, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1)
FACTS = {
    "vanillanet_5": ((128, 256, 512, 1024), 4, (2, 2, 2)),
    "vanillanet_6": ((128, 256, 512, 1024, 1024), 4, (2, 2, 2, 1)),
    "vanillanet_7": ((128, 128, 256, 512, 1024, 1024), 4, (1, 2, 2, 2, 1)),
    "vanillanet_8": ((128, 128, 256, 512, 512, 1024, 1024), 4, (1, 2, 2, 1, 2, 1)),
    "vanillanet_9": ((128, 128, 256, 512, 512, 512, 1024, 1024), 4, (1, 2, 2, 1, 1, 2, 1)),
    "vanillanet_10": ((128, 128, 256, *[512] * 4, 1024, 1024), 4, (1, 2, 2, 1, 1, 1, 2, 1)),
    "vanillanet_11": ((128, 128, 256, *[512] * 5, 1024, 1024), 4, (1, 2, 2, 1, 1, 1, 1, 2, 1)),
    "vanillanet_12": ((128, 128, 256, *[512] * 6, 1024, 1024), 4, (1, 2, 2, 1, 1, 1, 1, 1, 2, 1)),
    "vanillanet_13": (M13, 4, S13),
    "vanillanet_13_x1_5": (M13, 6, S13),
    "vanillanet_13_x1_5_ada_pool": (M13, 6, S13),
}
ADA_SIZES = (0, 38, 19, 0, 0, 0, 0, 0, 0, 10, 0)


def facts_dims(name):
    units, mult, strides = FACTS[name]
    return [u * mult for u in units], strides


def meta_model(name, deploy=False, **kw):
    with torch.device("meta"):
        return create_model(name, deploy=deploy, **kw)


def expected_train_keys(n_stages: int) -> set[str]:
    keys = {f"stem1.0.{p}" for p in WB} | {f"stem1.1.{p}" for p in BN}
    keys |= {f"stem2.0.{p}" for p in WB} | {f"stem2.1.{p}" for p in BN}
    keys |= {"stem2.2.weight"} | {f"stem2.2.bn.{p}" for p in BN}
    for i in range(n_stages):
        s = f"stages.{i}"
        keys |= {f"{s}.conv1.0.{p}" for p in WB} | {f"{s}.conv1.1.{p}" for p in BN}
        keys |= {f"{s}.conv2.0.{p}" for p in WB} | {f"{s}.conv2.1.{p}" for p in BN}
        keys |= {f"{s}.act.weight"} | {f"{s}.act.bn.{p}" for p in BN}
    keys |= {f"cls1.2.{p}" for p in WB} | {f"cls1.3.{p}" for p in BN} | {f"cls2.0.{p}" for p in WB}
    return keys


def expected_deploy_keys(n_stages: int) -> set[str]:
    keys = {f"stem.0.{p}" for p in WB} | {f"stem.1.{p}" for p in WB}
    for i in range(n_stages):
        keys |= {f"stages.{i}.conv.{p}" for p in WB} | {f"stages.{i}.act.{p}" for p in WB}
    return keys | {f"cls.2.{p}" for p in WB}


def test_variant_table_matches_facts_sheet():
    assert set(VARIANTS) == set(FACTS)
    for name in FACTS:
        dims, strides = facts_dims(name)
        cfg = variant_config(name)
        assert list(cfg.channels) == dims, name
        assert tuple(cfg.strides) == strides, name
    ada = variant_config("vanillanet_13_x1_5_ada_pool")
    assert tuple(ada.ada_pool) == ADA_SIZES
    assert (ada.stem_stride, ada.stem_padding) == (3, 1)
    plain = variant_config("vanillanet_13_x1_5")
    assert (plain.stem_stride, plain.stem_padding) == (4, 0) and not plain.ada_pool


@pytest.mark.parametrize("name", ["vanillanet_5", "vanillanet_13_x1_5_ada_pool"])
def test_exact_key_sets(name):
    n = len(FACTS[name][2])
    assert set(meta_model(name).state_dict()) == expected_train_keys(n)
    assert set(meta_model(name, deploy=True).state_dict()) == expected_deploy_keys(n)


def test_vanillanet_5_training_form_shapes():
    sd = meta_model("vanillanet_5").state_dict()
    want = {
        "stem1.0.weight": (512, 3, 4, 4), "stem1.0.bias": (512,),
        "stem1.1.running_var": (512,), "stem1.1.num_batches_tracked": (),
        "stem2.0.weight": (512, 512, 1, 1), "stem2.1.weight": (512,),
        "stem2.2.weight": (512, 1, 7, 7), "stem2.2.bn.running_mean": (512,),
        "stages.0.conv1.0.weight": (512, 512, 1, 1), "stages.0.conv1.1.bias": (512,),
        "stages.0.conv2.0.weight": (1024, 512, 1, 1), "stages.0.conv2.1.running_var": (1024,),
        "stages.0.act.weight": (1024, 1, 7, 7), "stages.0.act.bn.weight": (1024,),
        "stages.0.act.bn.bias": (1024,), "stages.0.act.bn.running_mean": (1024,),
        "stages.0.act.bn.running_var": (1024,), "stages.0.act.bn.num_batches_tracked": (),
        "stages.1.conv2.0.weight": (2048, 1024, 1, 1), "stages.1.act.weight": (2048, 1, 7, 7),
        "stages.2.conv1.0.weight": (2048, 2048, 1, 1),
        "stages.2.conv2.0.weight": (4096, 2048, 1, 1), "stages.2.act.bn.weight": (4096,),
        "cls1.2.weight": (1000, 4096, 1, 1), "cls1.2.bias": (1000,), "cls1.3.running_var": (1000,),
        "cls2.0.weight": (1000, 1000, 1, 1), "cls2.0.bias": (1000,),
    }
    for key, shape in want.items():
        assert tuple(sd[key].shape) == shape, key
    # The activation's depthwise conv has no bias in training form (its BN carries it).
    assert "stages.0.act.bias" not in sd and "stem2.2.bias" not in sd
    for bn in [m for m in meta_model("vanillanet_5").modules() if isinstance(m, nn.BatchNorm2d)]:
        assert bn.eps == 1e-6


def test_vanillanet_5_deploy_form_shapes():
    sd = meta_model("vanillanet_5", deploy=True).state_dict()
    want = {
        "stem.0.weight": (512, 3, 4, 4), "stem.0.bias": (512,),
        "stem.1.weight": (512, 1, 7, 7), "stem.1.bias": (512,),
        "stages.0.conv.weight": (1024, 512, 1, 1), "stages.0.conv.bias": (1024,),
        "stages.0.act.weight": (1024, 1, 7, 7), "stages.0.act.bias": (1024,),
        "stages.2.conv.weight": (4096, 2048, 1, 1), "stages.2.act.bias": (4096,),
        "cls.2.weight": (1000, 4096, 1, 1), "cls.2.bias": (1000,),
    }
    for key, shape in want.items():
        assert tuple(sd[key].shape) == shape, key


@pytest.mark.parametrize("name", list(FACTS))
def test_every_variant_channel_chain(name):
    dims, strides = facts_dims(name)
    train, deploy = meta_model(name).state_dict(), meta_model(name, deploy=True).state_dict()
    assert tuple(train["stem1.0.weight"].shape) == (dims[0], 3, 4, 4)
    assert tuple(deploy["stem.0.weight"].shape) == (dims[0], 3, 4, 4)
    for i, (c_in, c_out) in enumerate(zip(dims, dims[1:])):
        assert tuple(train[f"stages.{i}.conv1.0.weight"].shape) == (c_in, c_in, 1, 1)
        assert tuple(train[f"stages.{i}.conv2.0.weight"].shape) == (c_out, c_in, 1, 1)
        assert tuple(deploy[f"stages.{i}.conv.weight"].shape) == (c_out, c_in, 1, 1)
        assert tuple(deploy[f"stages.{i}.act.weight"].shape) == (c_out, 1, 7, 7)
    assert f"stages.{len(strides)}.conv.weight" not in deploy
    assert tuple(train["cls1.2.weight"].shape) == (1000, dims[-1], 1, 1)
    assert tuple(deploy["cls.2.weight"].shape) == (1000, dims[-1], 1, 1)


@pytest.mark.parametrize("name", ["vanillanet_5", "vanillanet_9", "vanillanet_13_x1_5_ada_pool"])
def test_feature_map_sizes_at_224(name):
    """Stem /4 (ada_pool: stride 3, pad 1 -> 75), MaxPool(2) at stride-2 stages, 38/19/10 pools."""
    _, strides = facts_dims(name)
    model = meta_model(name, deploy=True)
    sizes = []
    hooks = [s.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[2:]))) for s in model.stages]
    with torch.device("meta"):
        out = model(torch.empty(2, 3, 224, 224))
    for h in hooks:
        h.remove()
    assert tuple(out.shape) == (2, 1000)
    if "ada_pool" in name:
        expect, feat = [], 75
        for s, a in zip(strides, ADA_SIZES):
            feat = a if (s > 1 and a) else feat
            expect.append((feat, feat))
        assert expect[1] == (38, 38) and expect[2] == (19, 19) and expect[-1] == (10, 10)
    else:
        expect, feat = [], 56
        for s in strides:
            feat //= s
            expect.append((feat, feat))
        assert expect[-1] == (7, 7)
    assert sizes == expect


def test_pools_and_stem_modules():
    ada = meta_model("vanillanet_13_x1_5_ada_pool")
    assert ada.stem1[0].stride == (3, 3) and ada.stem1[0].padding == (1, 1)
    for i, (s, a) in enumerate(zip(S13, ADA_SIZES)):
        pool = ada.stages[i].pool
        if s == 1:
            assert isinstance(pool, nn.Identity)
        else:
            assert isinstance(pool, nn.AdaptiveMaxPool2d) and pool.output_size == (a, a)
    v9 = meta_model("vanillanet_9", deploy=True)
    kinds = [type(st.pool) for st in v9.stages]
    assert kinds == [nn.Identity if s == 1 else nn.MaxPool2d for s in FACTS["vanillanet_9"][2]]
    assert v9.stem[0].stride == (4, 4) and v9.stem[0].padding == (0, 0)


def test_width_and_classes_scale_the_net():
    m = create_model("vanillanet_5", width=1 / 32, num_classes=10)
    sd = m.state_dict()
    assert tuple(sd["stem1.0.weight"].shape) == (16, 3, 4, 4)
    assert tuple(sd["stages.2.conv2.0.weight"].shape) == (128, 64, 1, 1)
    assert tuple(sd["cls2.0.weight"].shape) == (10, 10, 1, 1)
    assert tuple(m.eval()(torch.randn(2, 3, 32, 32)).shape) == (2, 10)


def test_unknown_variant_and_bad_settings_are_refused():
    with pytest.raises(VanillaNetEdgeError) as err:
        variant_config("vanillanet_4")
    assert "vanillanet_4" in str(err.value) and "vanillanet_5" in err.value.hint
    with pytest.raises(VanillaNetEdgeError):
        variant_config("vanillanet_5", width=0)
    with pytest.raises(VanillaNetEdgeError):
        variant_config("vanillanet_5", num_classes=0)
    assert set(PUBLISHED) == set(VARIANTS)


# ---- input sizes -----------------------------------------------------------------------------

@pytest.mark.parametrize("name,size", [("vanillanet_5", 2), ("vanillanet_5", 16), ("vanillanet_5", 31),
                                       ("vanillanet_13", 20), ("vanillanet_13_x1_5_ada_pool", 3),
                                       ("vanillanet_13_x1_5_ada_pool", 64),
                                       ("vanillanet_13_x1_5_ada_pool", 112)])
def test_too_small_input_raises_with_hint(name, size):
    cfg = variant_config(name)
    with pytest.raises(InputSizeError) as err:
        cfg.check_input_size(size)
    assert str(size) in str(err.value)
    assert err.value.hint and str(cfg.min_input_size()) in err.value.hint
    assert "hint:" in str(err.value)


@pytest.mark.parametrize("name,minimum", [("vanillanet_5", 32), ("vanillanet_9", 32),
                                          ("vanillanet_13_x1_5_ada_pool", 113)])
def test_min_input_size_is_the_smallest_that_runs(name, minimum):
    cfg = variant_config(name)
    assert cfg.min_input_size() == minimum
    cfg.check_input_size(minimum)        # no error
    cfg.check_input_size(224)
    with pytest.raises(InputSizeError):
        cfg.check_input_size(minimum - 1)
    model = create_model(name, width=1 / 32, num_classes=10).eval()
    with torch.no_grad():
        assert tuple(model(torch.randn(1, 3, minimum, minimum)).shape) == (1, 10)


def test_plain_net_really_fails_below_its_minimum():
    """The check is not over-cautious for plain nets: torch itself fails one pixel below."""
    model = create_model("vanillanet_5", width=1 / 32, num_classes=10).eval()
    with pytest.raises(RuntimeError):
        model(torch.randn(1, 3, 31, 31))


def test_model_info_refuses_small_input():
    from vanillanet_edge.api import model_info

    with pytest.raises(InputSizeError) as err:
        model_info("vanillanet_5", input_size=16, width=1 / 32)
    assert "32" in err.value.hint
