"""Exact rewrite of AdaptiveMaxPool2d into ops every exporter takes.

torch's ONNX exporters refuse AdaptiveMaxPool2d when the output size does not divide the input
(75 -> 38, 38 -> 19, 19 -> 10 in vanillanet_13_x1_5_ada_pool at 224). For a fixed input size the
windows are known: output cell i covers [floor(i*n/m), ceil((i+1)*n/m)). Max over a rectangle is
max over rows of max over columns, so per axis we take stride-1 max pools of each window length
that occurs, stack them, and pick each output's window with a constant-index gather. Only max
and copies are involved, so the result is bit-identical to the PyTorch op.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


def adaptive_windows(n: int, m: int) -> list[tuple[int, int]]:
    """(start, end) of each of the m windows PyTorch uses to pool n elements."""
    return [(math.floor(i * n / m), math.ceil((i + 1) * n / m)) for i in range(m)]


class _AxisAdaptiveMax(nn.Module):
    """Adaptive max along one axis (2 = height, 3 = width) for a fixed input length."""

    def __init__(self, n: int, m: int, axis: int):
        super().__init__()
        self.axis = axis
        windows = adaptive_windows(n, m)
        self.lengths = sorted({end - start for start, end in windows})
        offsets, total = {}, 0
        for length in self.lengths:
            offsets[length] = total
            total += n - length + 1            # a stride-1 max pool of this length yields this many
        index = [offsets[end - start] + start for start, end in windows]
        self.register_buffer("index", torch.tensor(index, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pools = []
        for length in self.lengths:
            kernel = (length, 1) if self.axis == 2 else (1, length)
            pools.append(x if length == 1 else F.max_pool2d(x, kernel, stride=1))
        stacked = pools[0] if len(pools) == 1 else torch.cat(pools, dim=self.axis)
        return torch.index_select(stacked, self.axis, self.index)


class FixedAdaptiveMaxPool2d(nn.Module):
    """AdaptiveMaxPool2d for one known input size, in standard ops."""

    def __init__(self, in_hw: tuple[int, int], out_hw: tuple[int, int]):
        super().__init__()
        self.in_hw, self.out_hw = tuple(in_hw), tuple(out_hw)
        self.rows = _AxisAdaptiveMax(in_hw[0], out_hw[0], axis=2)
        self.cols = _AxisAdaptiveMax(in_hw[1], out_hw[1], axis=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.in_hw:
            raise ValueError(f"this pool was built for {self.in_hw} inputs, got {tuple(x.shape[2:])}")
        return self.cols(self.rows(x))


def exact_adaptive_max_pool(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> nn.Module:
    """The simplest exact module: a plain MaxPool2d when the sizes divide, else the gather form."""
    if in_hw[0] % out_hw[0] == 0 and in_hw[1] % out_hw[1] == 0:
        k = (in_hw[0] // out_hw[0], in_hw[1] // out_hw[1])
        return nn.MaxPool2d(k, stride=k)
    return FixedAdaptiveMaxPool2d(in_hw, out_hw)


def _output_size(pool: nn.AdaptiveMaxPool2d, in_hw: tuple[int, int]) -> tuple[int, int]:
    size = pool.output_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    return tuple(i if o is None else o for i, o in zip(in_hw, size))


@torch.no_grad()
def replace_adaptive_max_pools(model: nn.Module, input_size: int) -> nn.Module:
    """A copy of `model` whose AdaptiveMaxPool2d modules are exact fixed-size rewrites."""
    model = copy.deepcopy(model).eval()
    seen: dict[str, tuple[int, int]] = {}
    hooks = [m.register_forward_hook(
                 lambda mod, inp, out, name=name: seen.__setitem__(name, tuple(inp[0].shape[2:])))
             for name, m in model.named_modules() if isinstance(m, nn.AdaptiveMaxPool2d)]
    if not hooks:
        return model
    try:
        model(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
    for name, in_hw in seen.items():
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, attr)
        setattr(parent, attr, exact_adaptive_max_pool(in_hw, _output_size(old, in_hw)))
    return model
