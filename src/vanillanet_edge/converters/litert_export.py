"""The exact rewrites LiteRT's export applies (NHWC signature wrapper, ReLU before max pools,
adaptive pools as strided max pools), each checked bit-exact by export_form. The ReLU move is
model/rewrites.relu_before_pool in its any-net, pooling-blocks-only form."""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConversionError
from ..model.adapool import FixedAdaptiveMaxPool2d, adaptive_windows
from ..model.rewrites import DepthwiseOnly, relu_before_pool  # noqa: F401 - litert.py re-exports DepthwiseOnly

INPUT_KEY = "input"      # signature input name (the interpreter calls the tensor serving_default_input)
OUTPUT_KEY = "logits"    # signature output name
MAX_RUNS_PER_AXIS = 4    # beyond this an adaptive pool keeps its gather form (still exact)


class NhwcInput(nn.Module):
    """NHWC input named `input`, (batch, classes) output named `logits`.

    Uses litert-torch's own channel-last wrapper: its NHWC->NCHW permute is cancelled by the
    converter's layout pass, so no TRANSPOSE reaches the flatbuffer.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        import litert_torch
        self.net = litert_torch.to_channel_last_io(model, args=[0])

    def forward(self, input: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: A002 - the signature name
        return {OUTPUT_KEY: self.net(input)}


class StridedAdaptiveMaxPool2d(nn.Module):
    """AdaptiveMaxPool2d for one input size as strided MaxPool2d ops on slices (exact).

    Along each axis, consecutive output cells whose windows have the same length and whose
    starts step by the same amount form a run: one max pool (kernel = length, stride = step)
    over the slice they cover. Every (row run, column run) pair is one pool; the blocks are
    concatenated back in order. 75 -> 38 and 19 -> 10 give 3 runs per axis.
    """

    def __init__(self, in_hw: tuple[int, int], out_hw: tuple[int, int]):
        super().__init__()
        self.in_hw, self.out_hw = tuple(in_hw), tuple(out_hw)
        self.row_runs = window_runs(in_hw[0], out_hw[0])
        self.col_runs = window_runs(in_hw[1], out_hw[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.in_hw:
            raise ValueError(f"this pool was built for {self.in_hw} inputs, got {tuple(x.shape[2:])}")
        rows = []
        for r_len, r_start, r_stop, r_step in self.row_runs:
            band = x[:, :, r_start:r_stop]
            blocks = [F.max_pool2d(band[:, :, :, c_start:c_stop], (r_len, c_len), stride=(r_step, c_step))
                      for c_len, c_start, c_stop, c_step in self.col_runs]
            rows.append(blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=3))
        return rows[0] if len(rows) == 1 else torch.cat(rows, dim=2)


def window_runs(n: int, m: int) -> list[tuple[int, int, int, int]]:
    """Adaptive windows of n -> m grouped into (length, start, stop, stride) pooling runs."""
    windows = adaptive_windows(n, m)
    runs, i = [], 0
    while i < m:
        start, end = windows[i]
        length, j, step = end - start, i + 1, None
        while j < m and windows[j][1] - windows[j][0] == length:
            d = windows[j][0] - windows[j - 1][0]
            if d <= 0 or (step is not None and d != step):
                break
            step, j = d, j + 1
        count = j - i
        step = step or length
        runs.append((length, start, start + (count - 1) * step + length, step))
        i = j
    return runs


def relu_before_maxpool(model: nn.Module) -> nn.Module:
    """A copy where every Block's ReLU runs before its max pool instead of after it.

    conv -> pool -> Activation(ReLU -> depthwise) becomes conv -> (ReLU -> pool) -> depthwise.
    Exact: max pooling only selects values and ReLU is monotone, so the pool sees and picks
    the same numbers. Blocks without a pool (stride 1) are left alone; unfused nets too.
    """
    return relu_before_pool(model, fused_only=False, pooling_blocks_only=True)


@torch.no_grad()
def layout_friendly_adaptive_pools(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy whose gather-based adaptive pools are strided max pools; and how many changed."""
    model = copy.deepcopy(model).eval()
    replaced = 0
    for name, module in list(model.named_modules()):
        if not isinstance(module, FixedAdaptiveMaxPool2d):
            continue
        new = StridedAdaptiveMaxPool2d(module.in_hw, module.out_hw)
        if max(len(new.row_runs), len(new.col_runs)) > MAX_RUNS_PER_AXIS:
            continue
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
        replaced += 1
    return model, replaced


@torch.no_grad()
def export_form(model: nn.Module, sample: np.ndarray) -> tuple[nn.Module, list[str]]:
    """The model LiteRT converts, with the rewrites applied, checked bit-exact on `sample`."""
    out, replaced = layout_friendly_adaptive_pools(model)
    rewrites = [f"{replaced} adaptive max pool(s) as strided max pools"] if replaced else []
    out = relu_before_maxpool(out)
    rewrites.append("ReLU before MaxPool")
    x = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32))
    if not torch.equal(model.eval()(x), out(x)):
        raise ConversionError("the LiteRT export rewrites changed the model's outputs (they must be exact)",
                              hint="report this with the checkpoint")
    return out, rewrites
