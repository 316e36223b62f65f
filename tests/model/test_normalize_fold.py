"""Raw-pixel input: (x/255 - mean)/std folded into VanillaNet's stem on every variant, the
prepended ops for nets that cannot absorb it, and the refusals."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vanillanet_edge.errors import VanillaNetEdgeError
from vanillanet_edge.images import IMAGENET_MEAN, IMAGENET_STD
from vanillanet_edge.model.fuse import fuse_model
from vanillanet_edge.model.normalize import (
    RawInput,
    fold_normalization,
    from_raw,
    raw_input_model,
    to_raw,
)
from vanillanet_edge.model.variants import VARIANTS, create_model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def pixels(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Real-ish images: smooth colour gradients plus texture, whole values 0-255, NCHW float32."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(1, size - 1)
    base = np.stack([yy, xx, 1 - yy * xx])[None] * rng.uniform(80, 200, (n, 3, 1, 1))
    noise = rng.normal(0, 25, (n, 3, size, size))
    return np.clip(np.rint(base + noise + 30), 0, 255).astype(np.float32)


@pytest.mark.parametrize("name", sorted(VARIANTS))
@torch.no_grad()
def test_fold_is_exact_on_every_variant(name):
    torch.manual_seed(0)
    net = fuse_model(create_model(name, width=1 / 64, num_classes=10)).eval()
    size = max(32, net.config.min_input_size())
    raw = pixels(4, size)
    folded, how = raw_input_model(net, IMAGENET_MEAN, IMAGENET_STD)
    ref = net(torch.from_numpy(from_raw(raw, IMAGENET_MEAN, IMAGENET_STD)))
    assert rel_err(folded(torch.from_numpy(raw)), ref) < 1e-6
    if net.config.stem_padding:
        # the ada_pool stem pads by 1: zeros there are not normalized zeros, so the ops go first
        assert isinstance(folded, RawInput) and "prepended" in how
        return
    # folded: no op added, the stem's weights changed, the original untouched
    assert "folded" in how and type(folded) is type(net)
    assert sum(1 for _ in folded.modules()) == sum(1 for _ in net.modules())
    assert not torch.equal(folded.stem[0].weight, net.stem[0].weight)


def test_fold_normalization_formula_matches_normalize_then_conv():
    gen = torch.Generator().manual_seed(3)
    conv = nn.Conv2d(3, 5, 4, stride=4, bias=False)
    x = torch.rand(2, 3, 16, 16, generator=gen) * 255
    mean, std = (0.3, 0.5, 0.7), (0.2, 0.25, 0.3)
    w, b = fold_normalization(conv.weight, None, mean, std)
    xn = (x / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert rel_err(nn.functional.conv2d(x, w, b, stride=4), conv(xn)) < 1e-6


@torch.no_grad()
def test_padded_stem_and_other_nets_get_prepended_ops():
    net = fuse_model(create_model("vanillanet_5", width=1 / 64, num_classes=10)).eval()
    padded = create_model("vanillanet_5", width=1 / 64, num_classes=10, deploy=True).eval()
    padded.stem[0].padding = (1, 1)          # the fold would be wrong at the borders
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    raw = pixels(2, 32)
    for model in (padded, plain):
        wrapped, how = raw_input_model(model, IMAGENET_MEAN, IMAGENET_STD)
        assert "prepended" in how and isinstance(wrapped, RawInput) == (model is padded)
        assert set(wrapped.state_dict()) == set(model.state_dict())   # same weights, same names
        ref = model(torch.from_numpy(from_raw(raw, IMAGENET_MEAN, IMAGENET_STD)))
        assert rel_err(wrapped(torch.from_numpy(raw)), ref) < 1e-6
    assert np.allclose(to_raw(from_raw(raw, IMAGENET_MEAN, IMAGENET_STD), IMAGENET_MEAN, IMAGENET_STD),
                       raw, atol=1e-3)
    assert net.stem[0].padding == (0, 0)


@pytest.mark.parametrize("mean,std", [((0.5, 0.5), (0.2, 0.2)), ((0.5,) * 3, (0.2, 0.0, 0.2)),
                                      ((0.5,) * 3, (0.2, float("nan"), 0.2))])
def test_refuses_what_is_not_a_normalization(mean, std):
    net = fuse_model(create_model("vanillanet_5", width=1 / 64, num_classes=10))
    with pytest.raises(VanillaNetEdgeError) as err:
        raw_input_model(net, mean, std)
    assert err.value.hint
    with pytest.raises(VanillaNetEdgeError):
        raw_input_model(object(), IMAGENET_MEAN, IMAGENET_STD)
