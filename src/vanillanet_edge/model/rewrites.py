"""Exact graph rewrites of the fused VanillaNet that may suit some runtimes better.

Each rewrite returns a new module computing the same function (up to float rounding order,
which none of these change); converters verify the artifact against the fused net as always,
and `tune` keeps a rewrite only where it measurably helps. Names of the rewrites are what
manifests and the tune table show.

relu_before_pool: a deploy block is conv -> maxpool -> [ReLU -> depthwise 7x7]. ReLU and max
  pooling commute (ReLU is monotonic), so conv -> ReLU -> maxpool -> depthwise 7x7 is the same
  function. The ReLU then sits right after the conv, where runtimes fuse it into the conv, and
  INT8 toolchains quantize the conv's output once, before the pool: the pool then runs on
  8-bit data (OpenVINO otherwise pools the full-resolution float tensor and reorders it).

dw_dilated, dw_blocks, dw_bands, dw_rows: the activation's k x k depthwise conv (k = 7) as a sum
  of smaller depthwise convs (bias added once, by the first). XNNPACK (LiteRT's default CPU
  kernels) runs depthwise kernels of up to 25 taps in one pass and falls into a very slow
  multi-pass path above that: a 7x7 depthwise on 28x28x1024 took ~19-23 ms at 2 threads on x86,
  a 3x7 or 4x4 one ~0.7-1.7 ms (backend-notes.md).
    dw_dilated: kernel rows {-3, 0, 3}, {-2, 2}, {-1, 1} as three row-dilated convs (3x7, 2x7,
                2x7), each over the input itself with its own symmetric padding (TFLite's SAME
                padding of that dilated kernel): no PAD and no SLICE op, which is what the
                others cost. The tune/verdict default: the one-pass pieces are memory-bound
                (a 2x7 takes as long as a 3x7), so three convs and two ADDs is the floor with
                <= 25 taps, and its INT8 graph is all-integer without a single requantization.
    dw_blocks:  the 4x4 / 4x3 / 3x4 / 3x3 blocks of the kernel (four convs), and
    dw_bands:   bands of whole rows of at most 25 taps (7x7: 3, 3 and 1 rows: three convs), and
    dw_rows:    one 1 x k conv per kernel row (seven convs), each over a shifted slice of the
                once-padded input.
  Exact in real arithmetic; in float the sum is taken in another order (fp32 relative error
  ~1e-7, never bit-identical). Each also moves a block's ReLU ahead of its pool as
  relu_before_pool does (bit-exact): LiteRT's exporter makes that move on every export and its
  INT8 path needs it, and a ReLU left inside the split activation would be fused into the pool.
  The stem's activation keeps its ReLU (it follows a conv, where runtimes fuse it).
  A piece that would read only padding (feature maps smaller than the kernel) is left out: it
  adds exactly 0, and its INT8 observer would see an all-zero range (litert-torch 0.10 then
  requantized the shared padded tensor to that range, clipping every other piece's input).
  LiteRT INT8 (PT2E): the pieces' sum is an int8 ADD (converters/litert_quantize._annotate_adds),
  so the graph is all-integer; dw_bands' PAD still comes with TRANSPOSEs and requantizations
  there, dw_dilated has neither. Measured by benchmarks/litert_depthwise.py; `tune` tries
  dw_dilated by default (TuneOptions.rewrites).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Activation, Block


class DepthwiseOnly(nn.Module):
    """The series activation without its leading ReLU (it moved before the pool): its depthwise
    conv, and its BN when the net is not fused (LiteRT's export form of a training-form net)."""

    def __init__(self, act: Activation):
        super().__init__()
        self.weight, self.bias = act.weight, act.bias
        self.pad, self.groups = act.act_num, act.dim
        self.bn = None if act.deploy else act.bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, self.bias, padding=self.pad, groups=self.groups)
        return x if self.bn is None else self.bn(x)


@torch.no_grad()
def relu_before_pool(model: nn.Module, *, fused_only: bool = True, pooling_blocks_only: bool = False) -> nn.Module:
    """A copy of a VanillaNet with every block's ReLU ahead of its pool (bit-exact: max pooling
    only selects values and ReLU is monotone, so the pool sees and picks the same numbers).

    The `relu_before_pool` rewrite (tune, manifests) is the default form: a fused (deploy-form)
    net, every block, ValueError for anything else. LiteRT's exporter applies it to any net it
    converts (converters/litert_export.relu_before_maxpool): `fused_only=False` also takes
    training-form blocks (the BN stays after the depthwise conv) and leaves blocks whose
    activation is not a VanillaNet Activation alone; `pooling_blocks_only=True` leaves the
    stride-1 blocks (no pool) alone. Blocks moved already (by this or a dw_* rewrite) stay.
    """
    out = copy.deepcopy(model).eval()
    for block in out.modules():
        if not isinstance(block, Block) or isinstance(block.act, DepthwiseOnly):
            continue                              # the ReLU is ahead of the pool already
        if not isinstance(block.act, Activation) or (fused_only and not block.deploy):
            if fused_only:
                raise ValueError("relu_before_pool needs a fused (deploy-form) VanillaNet")
            continue
        if pooling_blocks_only and isinstance(block.pool, nn.Identity):
            continue
        block.pool = nn.Sequential(nn.ReLU(), block.pool)
        block.act = DepthwiseOnly(block.act)
    return out


# ---------------------------------------------------------------------------------------------
# The activation's depthwise conv as a sum of smaller ones

XNNPACK_UNIPASS_TAPS = 25   # XNNPACK's largest one-pass depthwise tile on x86 (measured: 28 taps is slow)


class DepthwiseSum(DepthwiseOnly):
    """A k x k depthwise conv (+ bias) computed as a sum of smaller depthwise convs (`parts` of
    them; bias added once, by the first). `relu`: apply the activation's leading ReLU first
    (when it did not move ahead of a pool). A DepthwiseOnly, so calibration.layers still lists
    it under the activation's name."""

    def _start(self, weight: torch.Tensor, relu: bool, plan: str) -> int:
        nn.Module.__init__(self)
        dim, one, k, k2 = weight.shape
        if one != 1 or k != k2 or k % 2 == 0:
            raise ValueError(f"expected a (dim, 1, k, k) depthwise weight with odd k, got {tuple(weight.shape)}")
        self.plan, self.relu, self.pad, self.groups, self.kernel = plan, bool(relu), k // 2, dim, k
        return k

    def _pieces(self) -> list:
        raise NotImplementedError

    def _describe(self) -> str:
        raise NotImplementedError

    @property
    def parts(self) -> int:
        return len(self._pieces())

    def extra_repr(self) -> str:
        return f"{self.groups}, kernel={self.kernel}x{self.kernel}, plan={self.plan} ({self._describe()}), relu={self.relu}"


class DepthwiseSplit(DepthwiseSum):
    """A k x k depthwise conv (+ bias) as a sum of depthwise convs over kernel pieces.

    `pieces` are (row, col, height, width) rectangles that tile the k x k kernel exactly once.
    The input is padded once by k // 2; piece (r, c, h, w) convolves the slice starting at
    (r, c) of that padded input with its part of the kernel, unpadded, giving the same output
    size.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, pieces, relu: bool, plan: str):
        k = self._start(weight, relu, plan)
        cover = torch.zeros(k, k, dtype=torch.int64)
        for r, c, h, w in pieces:
            cover[r:r + h, c:c + w] += 1
        if not bool((cover == 1).all()):
            raise ValueError(f"the {plan} pieces do not tile the {k}x{k} kernel exactly once")
        self.pieces = [tuple(int(v) for v in p) for p in pieces]
        with torch.no_grad():
            for i, (r, c, h, w) in enumerate(self.pieces):
                self.register_parameter(f"weight{i}", nn.Parameter(weight[:, :, r:r + h, c:c + w].clone()))
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.relu:
            x = F.relu(x)
        height, width = int(x.shape[-2]), int(x.shape[-1])
        p = self.pad
        xp = F.pad(x, (p, p, p, p))
        y = None
        for i, (r, c, h, w) in enumerate(self.pieces):
            if _only_padding(r, h, height, p) or _only_padding(c, w, width, p):
                continue            # it would read zeros only: adds exactly 0 (and INT8 observers see no range)
            part = F.conv2d(xp[:, :, r:r + height + h - 1, c:c + width + w - 1], getattr(self, f"weight{i}"),
                            self.bias if y is None else None, groups=self.groups)
            y = part if y is None else y + part
        return y

    def _pieces(self) -> list:
        return self.pieces

    def _describe(self) -> str:
        return ", ".join(f"{h}x{w}" for _, _, h, w in self.pieces)


class DepthwiseDilated(DepthwiseSum):
    """A k x k depthwise conv (+ bias) as a sum of row-dilated depthwise convs, each padded
    symmetrically by itself (no PAD, no SLICE ops in the exported graph).

    k = 2p+1: kernel rows at offsets {-p, 0, p} form one (3 x k) conv with row dilation p, and
    each pair {-j, j} (0 < j < p) one (2 x k) conv with row dilation 2j; every group pads
    (its reach, p), which is what TFLite's SAME padding is for that dilated kernel, so the
    exporter needs no PAD op, and XNNPACK reads the padding through its indirection buffer.
    A group whose rows all fall outside a small feature map (|offset| >= height) adds exactly
    0 and is left out, as in DepthwiseSplit.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool, plan: str = "dw_dilated"):
        k = self._start(weight, relu, plan)
        p = k // 2
        self.groups_rows = dilated_row_groups(k)
        with torch.no_grad():
            for i, offsets in enumerate(self.groups_rows):
                rows = [p + o for o in offsets]
                self.register_parameter(f"weight{i}", nn.Parameter(weight[:, :, rows, :].clone()))
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.relu:
            x = F.relu(x)
        height = int(x.shape[-2])
        y = None
        for i, offsets in enumerate(self.groups_rows):
            reach = max(abs(o) for o in offsets)
            if min(abs(o) for o in offsets) >= height:
                continue            # reads zeros only: adds exactly 0
            dilation = offsets[1] - offsets[0] if len(offsets) > 1 else 1
            part = F.conv2d(x, getattr(self, f"weight{i}"), self.bias if y is None else None,
                            padding=(reach, self.pad), dilation=(dilation, 1), groups=self.groups)
            y = part if y is None else y + part
        return y

    def _pieces(self) -> list:
        return self.groups_rows

    def _describe(self) -> str:
        return "rows " + ", ".join("{" + ",".join(str(o) for o in g) + "}" for g in self.groups_rows)


def dilated_row_groups(k: int) -> list[tuple[int, ...]]:
    """Row offsets of each dilated group for a k x k kernel (7: (-3, 0, 3), (-2, 2), (-1, 1))."""
    p = k // 2
    if p == 0:
        return [(0,)]
    return [(-p, 0, p)] + [(-j, j) for j in range(p - 1, 0, -1)]


def _only_padding(start: int, length: int, size: int, pad: int) -> bool:
    """Whether a piece starting at `start` (of `length` taps) of a kernel sliding over `size`
    values padded by `pad` on both sides reads the padding only (small feature maps)."""
    return start + size + length - 1 <= pad or start >= pad + size


def _axis_split(k: int, first: int) -> list[tuple[int, int]]:
    """(start, length) runs along one axis of k: `first`, then the rest in runs of at most `first`."""
    runs, start = [], 0
    while start < k:
        length = min(first, k - start)
        runs.append((start, length))
        start += length
    return runs


def block_pieces(k: int) -> list[tuple[int, int, int, int]]:
    """k = 2n+1: the (n+1) and n blocks along each axis (7x7: 4x4, 4x3, 3x4, 3x3)."""
    runs = _axis_split(k, k // 2 + 1)
    return [(r, c, h, w) for r, h in runs for c, w in runs]


def band_pieces(k: int, max_taps: int = XNNPACK_UNIPASS_TAPS) -> list[tuple[int, int, int, int]]:
    """Whole-row bands of at most `max_taps` taps (7x7: 3, 3 and 1 rows)."""
    return [(r, 0, h, k) for r, h in _axis_split(k, max(1, max_taps // k))]


def row_pieces(k: int) -> list[tuple[int, int, int, int]]:
    return [(r, 0, 1, k) for r in range(k)]


def _split(weight, bias, relu: bool, plan: str, pieces_for):
    if pieces_for is None:
        return DepthwiseDilated(weight, bias, relu, plan)
    return DepthwiseSplit(weight, bias, pieces_for(weight.shape[-1]), relu, plan)


def _split_activations(model: nn.Module, plan: str, pieces_for) -> nn.Module:
    out = copy.deepcopy(model).eval()
    found = 0
    for parent in list(out.modules()):
        if isinstance(parent, Block):
            act = parent.act
            if not parent.deploy or not isinstance(act, (Activation, DepthwiseOnly)) \
                    or (isinstance(act, Activation) and not act.deploy):
                raise ValueError(f"{plan} needs a fused (deploy-form) VanillaNet")
            if isinstance(act, DepthwiseSum):
                raise ValueError(f"{plan}: the activation of this block is split already ({act.plan})")
            if isinstance(act, Activation):          # move its ReLU ahead of the pool (exact)
                parent.pool = nn.Sequential(nn.ReLU(), parent.pool)
            parent.act = _split(act.weight, act.bias, False, plan, pieces_for)
            found += 1
            continue
        for name, child in list(parent.named_children()):
            if isinstance(child, Activation) and not isinstance(parent, Block):   # the stem's
                if not child.deploy:
                    raise ValueError(f"{plan} needs a fused (deploy-form) VanillaNet")
                setattr(parent, name, _split(child.weight, child.bias, True, plan, pieces_for))
                found += 1
    if not found:
        raise ValueError(f"{plan} found no VanillaNet activation to split")
    return out


def dw_blocks(model: nn.Module) -> nn.Module:
    """A copy of a fused VanillaNet whose 7x7 activations run as 4x4/4x3/3x4/3x3 block convs."""
    return _split_activations(model, "dw_blocks", block_pieces)


def dw_bands(model: nn.Module) -> nn.Module:
    """A copy whose 7x7 activations run as three whole-row band convs (3x7, 3x7, 1x7)."""
    return _split_activations(model, "dw_bands", band_pieces)


def dw_dilated(model: nn.Module) -> nn.Module:
    """A copy whose 7x7 activations run as three row-dilated convs (3x7, 2x7, 2x7), no PAD/SLICE."""
    return _split_activations(model, "dw_dilated", None)


def dw_rows(model: nn.Module) -> nn.Module:
    """A copy whose 7x7 activations run as seven 1x7 row convs."""
    return _split_activations(model, "dw_rows", row_pieces)


REWRITES = {"relu_before_pool": relu_before_pool, "dw_blocks": dw_blocks, "dw_bands": dw_bands,
            "dw_rows": dw_rows, "dw_dilated": dw_dilated}


def apply_rewrites(model: nn.Module, names) -> nn.Module:
    for name in names:
        if name not in REWRITES:
            raise ValueError(f"unknown rewrite {name!r}; known: {', '.join(REWRITES)}")
        model = REWRITES[name](model)
    return model
