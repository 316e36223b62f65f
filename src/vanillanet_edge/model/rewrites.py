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
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Activation, Block


class DepthwiseOnly(nn.Module):
    """The series activation without its leading ReLU (it moved before the pool)."""

    def __init__(self, act: Activation):
        super().__init__()
        self.weight, self.bias = act.weight, act.bias
        self.pad, self.groups = act.act_num, act.dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=self.pad, groups=self.groups)


def relu_before_pool(model: nn.Module) -> nn.Module:
    """A copy of a fused (deploy-form) VanillaNet with every block's ReLU ahead of its pool."""
    out = copy.deepcopy(model).eval()
    for block in out.modules():
        if isinstance(block, Block):
            if not block.deploy or not isinstance(block.act, Activation):
                raise ValueError("relu_before_pool needs a fused (deploy-form) VanillaNet")
            block.pool = nn.Sequential(nn.ReLU(), block.pool)
            block.act = DepthwiseOnly(block.act)
    return out


REWRITES = {"relu_before_pool": relu_before_pool}


def apply_rewrites(model: nn.Module, names) -> nn.Module:
    for name in names:
        if name not in REWRITES:
            raise ValueError(f"unknown rewrite {name!r}; known: {', '.join(REWRITES)}")
        model = REWRITES[name](model)
    return model
