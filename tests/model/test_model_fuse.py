"""The deploy switch: pure folding functions, whole-net equivalence on all 11 variants, and its rules."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vanillanet_edge.errors import FusionError
from vanillanet_edge.model.fuse import fold_activation_bn, fold_bn, fuse_model, merge_1x1_after, verify_fusion
from vanillanet_edge.model.layers import Activation
from vanillanet_edge.model.variants import VARIANTS, create_model

REL_TOL = 1e-5


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def random_bn(bn: nn.BatchNorm2d, gen: torch.Generator) -> nn.BatchNorm2d:
    n = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(torch.rand(n, generator=gen) + 0.5)
        bn.bias.copy_(torch.randn(n, generator=gen) * 0.5)
        bn.running_mean.copy_(torch.randn(n, generator=gen))
        bn.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.25)
    return bn.eval()


@torch.no_grad()
def randomize_bn_stats(model: nn.Module, input_size: int, seed: int = 0) -> nn.Module:
    """Non-trivial BN everywhere: random gamma/beta, running stats calibrated on random data
    (so the signal survives 13 stages), then randomly perturbed mean and variance."""
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        n = bn.num_features
        bn.weight.copy_(torch.rand(n, generator=gen) + 0.5)
        bn.bias.copy_(torch.randn(n, generator=gen) * 0.2)
        bn.reset_running_stats()
        bn.momentum = None                       # cumulative average over the calibration batch
    model.train()
    model(torch.randn(8, 3, input_size, input_size, generator=gen))
    for bn in bns:
        n = bn.num_features
        bn.running_mean.add_(torch.randn(n, generator=gen) * 0.1 * bn.running_var.sqrt())
        bn.running_var.mul_(torch.rand(n, generator=gen) * 0.5 + 0.75)
        bn.momentum = 0.1
    return model.eval()


# ---- pure functions ---------------------------------------------------------------------------

@pytest.mark.parametrize("with_bias", [True, False])
def test_fold_bn_matches_conv_then_bn(with_bias):
    gen = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, padding=1, bias=with_bias)
    bn = random_bn(nn.BatchNorm2d(5, eps=1e-6), gen)
    x = torch.randn(3, 6, 9, 9, generator=gen)
    with torch.no_grad():
        ref = bn(conv(x))
        w, b = fold_bn(conv.weight, conv.bias, bn)
        out = F.conv2d(x, w, b, padding=1)
    assert w.shape == conv.weight.shape and b.shape == (5,)
    assert rel_err(out, ref) < 1e-6
    # the formula itself: w' = w * g / sqrt(v + eps)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    assert torch.allclose(w, conv.weight * scale[:, None, None, None])


@pytest.mark.parametrize("kernel,stride,padding", [(4, 4, 0), (4, 3, 1), (1, 1, 0), (3, 1, 1)])
def test_merge_1x1_after_matches_two_convs(kernel, stride, padding):
    gen = torch.Generator().manual_seed(1)
    c1 = nn.Conv2d(3, 8, kernel, stride=stride, padding=padding)
    c2 = nn.Conv2d(8, 6, 1)
    x = torch.randn(2, 3, 17, 17, generator=gen)
    with torch.no_grad():
        ref = c2(c1(x))
        w, b = merge_1x1_after(c1.weight, c1.bias, c2.weight, c2.bias)
        out = F.conv2d(x, w, b, stride=stride, padding=padding)
    assert tuple(w.shape) == (6, 3, kernel, kernel)
    assert out.shape == ref.shape
    assert rel_err(out, ref) < 1e-6


def test_merge_1x1_after_refuses_a_larger_second_kernel():
    with pytest.raises(ValueError, match="1x1"):
        merge_1x1_after(torch.randn(4, 3, 1, 1), torch.randn(4), torch.randn(5, 4, 3, 3), torch.randn(5))


def test_fold_activation_bn_matches_training_activation():
    gen = torch.Generator().manual_seed(2)
    train_act = Activation(7, act_num=3, deploy=False)
    with torch.no_grad():
        train_act.weight.copy_(torch.randn(7, 1, 7, 7, generator=gen) * 0.2)
    random_bn(train_act.bn, gen)
    train_act.eval()
    deploy_act = Activation(7, act_num=3, deploy=True)
    with torch.no_grad():
        w, b = fold_activation_bn(train_act)
        deploy_act.weight.copy_(w)
        deploy_act.bias.copy_(b)
        x = torch.randn(2, 7, 12, 12, generator=gen)
        ref, out = train_act(x), deploy_act(x)
    assert tuple(w.shape) == (7, 1, 7, 7) and tuple(b.shape) == (7,)
    assert rel_err(out, ref) < 1e-6


# ---- whole nets -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(VARIANTS))
def test_fusion_is_exact_for_every_variant(name):
    size = 128 if "ada_pool" in name else 64
    torch.manual_seed(0)
    model = randomize_bn_stats(create_model(name, width=1 / 16), size, seed=1)
    fused = fuse_model(model)
    assert fused.deploy and not model.deploy
    assert set(fused.state_dict()) == set(create_model(name, 1 / 16, deploy=True).state_dict())
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref, out = model(x), fused(x)
    # a meaningful comparison: the logits depend on the input, not only on biases
    assert float(ref.std(0).mean() / ref.std()) > 0.1
    assert rel_err(out, ref) < REL_TOL
    assert torch.equal(out.argmax(1), ref.argmax(1))
    # fewer parameters after fusion
    assert sum(p.numel() for p in fused.parameters()) < sum(p.numel() for p in model.parameters())


def test_verify_fusion_reports_agreement():
    model = randomize_bn_stats(create_model("vanillanet_5", 1 / 16, num_classes=10), 32)
    fused = fuse_model(model)
    real = torch.randn(5, 3, 32, 32)
    check = verify_fusion(model, fused, 32, real_inputs=real)
    assert check.random.samples == 8 and check.real.samples == 5
    assert check.random.rel_err < REL_TOL and check.real.rel_err < REL_TOL
    assert check.random.top1_agree == 1.0 and check.real.top1_agree == 1.0
    assert check.as_dict()["real_inputs"]["samples"] == 5


def test_fusing_a_fused_net_is_a_no_op():
    model = randomize_bn_stats(create_model("vanillanet_6", 1 / 16, num_classes=10), 64)
    fused = fuse_model(model)
    again = fuse_model(fused)
    assert again is not fused and again.deploy
    a, b = fused.state_dict(), again.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(a[k].data_ptr() != b[k].data_ptr() for k in a)   # a copy, not shared storage


def test_fuse_model_does_not_mutate_its_input():
    model = randomize_bn_stats(create_model("vanillanet_7", 1 / 16, num_classes=10), 64)
    model.train()                                        # e.g. a net in the middle of training
    before = copy.deepcopy(model.state_dict())
    fused = fuse_model(model)
    after = model.state_dict()
    assert list(before) == list(after)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training and not model.deploy           # still in training mode and form
    assert model.act_learn == 1.0
    assert all(not m.deploy for m in model.stages)
    # the result does not share parameters with the source
    src_ptrs = {p.data_ptr() for p in model.parameters()}
    assert not any(p.data_ptr() in src_ptrs for p in fused.parameters())


def test_act_learn_below_one_refuses_unless_allowed():
    model = randomize_bn_stats(create_model("vanillanet_5", 1 / 16, num_classes=10), 64)
    model.act_learn = 0.5
    with pytest.raises(FusionError) as err:
        fuse_model(model)
    assert "0.5" in str(err.value) and "allow-inexact" in err.value.hint
    fused = fuse_model(model, allow_inexact=True)
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, out = model(x), fused(x)
    assert rel_err(out, ref) > 1e-3           # the error is visible, not hidden
    # at act_learn 1 the same weights fuse exactly
    model.act_learn = 1.0
    with torch.no_grad():
        assert rel_err(fuse_model(model)(x), model(x)) < REL_TOL


def test_act_learn_setter_reaches_every_stage():
    model = create_model("vanillanet_13", 1 / 32, num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        at_one = model(x)
        model.act_learn = 0.25
        assert model.act_learn == 0.25
        assert [s.act_learn for s in model.stages] == [0.25] * len(model.stages)
        assert not torch.allclose(model(x), at_one)
        model.act_learn = 1
        assert all(s.act_learn == 1.0 for s in model.stages)
        assert torch.equal(model(x), at_one)
