"""Raw-pixel input: the net takes RGB values 0-255 and normalizes inside, so an app feeds camera
pixels as they come instead of re-implementing per-channel mean/std (a classic silent loss).

VanillaNet: the stem is a 4x4 stride-4 conv WITHOUT padding, so x_n = (x/255 - mean)/std is an
affine map per input channel that every tap of the conv sees; it folds into the stem's weights
and bias exactly (`fold_normalization`): no op is added, nothing changes at the borders. With
padding the fold would be wrong at the borders (zeros in normalized space are -mean/std*255 in
raw space), so a padded stem, or any other net (the deep baselines), gets the normalization
prepended as two ops instead (`Normalize`: exact, a multiply and an add per pixel).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import VanillaNetEdgeError

Tensor = torch.Tensor
PIXEL_SCALE = 1.0 / 255.0      # raw 0-255 -> the [0, 1] the preprocessing's mean/std refer to


def _affine(mean, std, channels: int) -> tuple[Tensor, Tensor]:
    """Per channel (a, b) with x_n = a * x_raw + b, in float64; refuses what cannot be an image's
    normalization (wrong channel count, zero / negative / non-finite std)."""
    m = torch.as_tensor(mean, dtype=torch.float64).flatten()
    s = torch.as_tensor(std, dtype=torch.float64).flatten()
    if len(m) != channels or len(s) != channels:
        raise VanillaNetEdgeError(
            f"the preprocessing has {len(m)} mean and {len(s)} std values for a {channels}-channel input",
            hint="raw-pixel input needs one mean and one std per input channel; use --input normalized")
    if not (torch.isfinite(m).all() and torch.isfinite(s).all() and (s > 0).all()):
        raise VanillaNetEdgeError(f"cannot fold normalization with mean {m.tolist()} and std {s.tolist()}",
                                  hint="std must be positive and finite; use --input normalized")
    return PIXEL_SCALE / s, -m / s


def fold_normalization(weight: Tensor, bias: Tensor | None, mean, std) -> tuple[Tensor, Tensor]:
    """Conv (weight, bias) fed (x/255 - mean)/std -> the conv fed raw x. Exact for an unpadded,
    ungrouped conv: conv(w, a*x + b) = conv(w * a[c], x) + sum_{c,k} w[o,c,k] * b[c].
    Computed in float64, returned in the weight's dtype."""
    a, b = _affine(mean, std, weight.shape[1])
    w = weight.detach().double()
    new_w = w * a.reshape(1, -1, 1, 1)
    shift = (w * b.reshape(1, -1, 1, 1)).sum(dim=(1, 2, 3))
    old_b = bias.detach().double() if bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    return new_w.to(weight.dtype), (old_b + shift).to(weight.dtype)


class Normalize(nn.Module):
    """x_raw (0-255) -> (x/255 - mean)/std, as one multiply and one add per channel."""

    def __init__(self, mean, std, channels: int = 3):
        super().__init__()
        a, b = _affine(mean, std, channels)
        self.register_buffer("scale", a.float().reshape(1, -1, 1, 1))
        self.register_buffer("shift", b.float().reshape(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift


class RawInput:
    """Mixed in front of a net's own class by `raw_input_model`: normalize, then the net's own
    forward. The net keeps its class's behaviour and every module name (layer names are how INT8
    keeps layers in float and how converters map layers to graph nodes); the normalization is
    one more child, `input_normalize`, whose buffers stay out of the state_dict."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(self.input_normalize(x))  # type: ignore[misc]


def _prepend(model: nn.Module, mean, std, channels: int) -> nn.Module:
    out = copy.deepcopy(model).eval()
    norm = Normalize(mean, std, channels)
    for name in ("scale", "shift"):      # not weights: keep the state_dict the architecture's
        norm.register_buffer(name, getattr(norm, name), persistent=False)
    if type(out) is nn.Sequential:
        # Sequential runs every child in order: put the normalization first, names unchanged.
        from collections import OrderedDict
        return nn.Sequential(OrderedDict([("input_normalize", norm), *out.named_children()])).eval()
    out.add_module("input_normalize", norm)
    cls = type(model)
    out.__class__ = type(f"RawInput{cls.__name__}", (RawInput, cls), {"__module__": __name__})
    return out


def foldable_stem(model: nn.Module) -> nn.Conv2d | None:
    """VanillaNet's deploy-form stem conv when the fold is exact (no padding, no groups, a plain
    conv reading the input directly), else None."""
    stem = getattr(model, "stem", None)
    if not getattr(model, "deploy", False) or not isinstance(stem, nn.Sequential) or not len(stem):
        return None
    conv = stem[0]
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or conv.padding_mode != "zeros":
        return None
    if any(p != 0 for p in (conv.padding if isinstance(conv.padding, tuple) else (conv.padding,))):
        return None
    return conv


@torch.no_grad()
def raw_input_model(model: nn.Module, mean, std, channels: int = 3) -> tuple[nn.Module, str]:
    """A copy of `model` that takes raw 0-255 pixels, and how: folded into VanillaNet's stem
    when exact, else the normalization prepended as ops. The original is never changed."""
    if not isinstance(model, nn.Module):
        raise VanillaNetEdgeError(f"cannot give a {type(model).__name__} raw-pixel input",
                                  hint="use --input normalized")
    conv = foldable_stem(model)
    if conv is not None and conv.in_channels == channels:
        out = copy.deepcopy(model).eval()
        stem = out.stem[0]
        w, b = fold_normalization(stem.weight, stem.bias, mean, std)
        if stem.bias is None:
            stem.bias = nn.Parameter(torch.zeros(stem.out_channels, dtype=stem.weight.dtype))
        stem.weight.copy_(w)
        stem.bias.copy_(b)
        return out, "folded into the stem conv (4x4, stride 4, no padding: exact)"
    return _prepend(model, mean, std, channels), \
        "prepended as ops (x * 1/(255 std) - mean/std): the first layer cannot absorb it exactly"


def to_raw(x_normalized, mean, std):
    """Normalized NCHW images -> the raw 0-255 pixels they came from (float, not rounded)."""
    import numpy as np

    m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return ((np.asarray(x_normalized, dtype=np.float32) * s + m) * np.float32(255.0)).astype(np.float32)


def from_raw(x_raw, mean, std):
    """Raw 0-255 NCHW pixels -> the normalized input the net was trained on."""
    import numpy as np

    m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return ((np.asarray(x_raw, dtype=np.float32) / np.float32(255.0) - m) / s).astype(np.float32)
