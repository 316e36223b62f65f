"""The exact AdaptiveMaxPool2d rewrite (model/adapool.py): bit-identical to PyTorch's op."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from vanillanet_edge.model.adapool import (
    FixedAdaptiveMaxPool2d,
    adaptive_windows,
    exact_adaptive_max_pool,
    replace_adaptive_max_pools,
)
from vanillanet_edge.model.fuse import fuse_model
from vanillanet_edge.model.variants import create_model

ADA = "vanillanet_13_x1_5_ada_pool"


@pytest.mark.parametrize("n,m", [(75, 38), (38, 19), (19, 10), (7, 3), (10, 4), (5, 5), (3, 7), (1, 4), (224, 7)])
def test_windows_are_pytorchs(n, m):
    windows = adaptive_windows(n, m)
    assert len(windows) == m
    for i, (start, end) in enumerate(windows):
        assert start == (i * n) // m and end == -((-(i + 1) * n) // m)   # floor / ceil, integers
        assert 0 <= start < end <= n
    assert windows[0][0] == 0 and windows[-1][1] == n


@pytest.mark.parametrize("in_hw,out_hw", [
    ((75, 75), (38, 38)), ((38, 38), (19, 19)), ((19, 19), (10, 10)),     # the ada_pool net at 224
    ((7, 7), (3, 3)), ((10, 13), (4, 5)), ((9, 9), (9, 9)), ((3, 5), (7, 6)),  # odd, identity, upsampling
    ((12, 12), (4, 4)), ((1, 1), (3, 3)),
])
def test_rewrite_is_bit_exact(in_hw, out_hw):
    gen = torch.Generator().manual_seed(sum(in_hw) * 31 + sum(out_hw))
    x = torch.randn(3, 5, *in_hw, generator=gen)
    x[0, 0].fill_(1.5)                        # ties inside a window
    x[1, 1, 0, 0] = float("-inf")
    ref = nn.AdaptiveMaxPool2d(out_hw)(x)
    pool = exact_adaptive_max_pool(in_hw, out_hw)
    out = pool(x)
    assert out.shape == ref.shape
    assert torch.equal(out, ref)
    divides = in_hw[0] % out_hw[0] == 0 and in_hw[1] % out_hw[1] == 0
    assert isinstance(pool, nn.MaxPool2d if divides else FixedAdaptiveMaxPool2d)
    assert not any(isinstance(mod, nn.AdaptiveMaxPool2d) for mod in pool.modules())


def test_gather_form_is_exact_even_where_a_plain_pool_would_do():
    x = torch.randn(2, 4, 12, 12)
    assert torch.equal(FixedAdaptiveMaxPool2d((12, 12), (4, 4))(x), nn.AdaptiveMaxPool2d(4)(x))


def test_rewrite_refuses_another_input_size():
    pool = FixedAdaptiveMaxPool2d((75, 75), (38, 38))
    with pytest.raises(ValueError, match="75"):
        pool(torch.randn(1, 2, 74, 74))


def _count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


@pytest.mark.parametrize("form", ["train", "deploy"])
def test_full_ada_pool_net_is_bit_exact_after_rewrite(form):
    torch.manual_seed(0)
    model = create_model(ADA, width=1 / 16).eval()
    if form == "deploy":
        model = fuse_model(model)
    rewritten = replace_adaptive_max_pools(model, 224)
    assert _count(model, nn.AdaptiveMaxPool2d) == 3            # the original is left alone
    assert _count(rewritten, nn.AdaptiveMaxPool2d) == 0
    # 75 -> 38 and 19 -> 10 do not divide: gather form; 38 -> 19 does: a plain MaxPool2d(2).
    s1, s2, s9 = (rewritten.stages[i].pool for i in (1, 2, 9))
    assert isinstance(s1, FixedAdaptiveMaxPool2d) and (s1.in_hw, s1.out_hw) == ((75, 75), (38, 38))
    assert isinstance(s2, nn.MaxPool2d) and s2.kernel_size == (2, 2) and s2.stride == (2, 2)
    assert isinstance(s9, FixedAdaptiveMaxPool2d) and (s9.in_hw, s9.out_hw) == ((19, 19), (10, 10))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, out = model(x), rewritten(x)
    assert torch.equal(out, ref)
    assert float(ref.std(0).mean()) > 0          # outputs depend on the input


def test_net_without_adaptive_pools_is_copied_unchanged():
    model = create_model("vanillanet_5", 1 / 32, 10).eval()
    copy_ = replace_adaptive_max_pools(model, 64)
    assert copy_ is not model
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(copy_(x), model(x))


def test_window_lengths_are_few():
    """75 -> 38 needs only windows of 2 and 3: two stride-1 pools, then one gather per axis."""
    lengths = {e - s for s, e in adaptive_windows(75, 38)}
    assert lengths == {2, 3}
