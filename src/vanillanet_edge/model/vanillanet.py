"""The VanillaNet network (arXiv 2305.12972), with the official module layout."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputSizeError
from ..limits import MAX_INPUT_SIZE
from .layers import Activation, Block, conv_bn

# MAX_INPUT_SIZE (2048, from limits.py): the largest input side any command takes, and a
# manifest or our metadata may record.


@dataclass(frozen=True)
class VanillaNetConfig:
    """Everything needed to rebuild a VanillaNet: the variant plus our width and class count."""

    name: str
    dims: tuple[int, ...]             # official channel widths (stem output first)
    strides: tuple[int, ...]          # one per stage
    ada_pool: tuple[int, ...] | None = None  # adaptive max pool output size per stage (0 = none)
    width: float = 1.0                # multiplier on dims; 1.0 is the official net
    num_classes: int = 1000
    act_num: int = 3                  # activation kernel is 2*act_num+1
    in_chans: int = 3
    drop_rate: float = 0.0
    stem_stride: int = 4
    stem_padding: int = 0
    tags: dict = field(default_factory=dict, compare=False)

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(max(1, int(round(d * self.width))) for d in self.dims)

    def with_(self, **changes) -> "VanillaNetConfig":
        return replace(self, **changes)

    def min_input_size(self) -> int:
        """The smallest input side the net can take (its strides and adaptive pools decide)."""
        return next(n for n in range(4, 4096) if self._input_size_problem(n) is None)

    def check_input_size(self, size: int) -> None:
        """Refuse sizes the net cannot take, before any work starts."""
        if isinstance(size, int) and size > MAX_INPUT_SIZE:
            # A user's typo (or a hostile file) must not ask the allocator for petabytes.
            raise InputSizeError(f"input size {size} is larger than {MAX_INPUT_SIZE}",
                                 hint=f"use {self.min_input_size()}..{MAX_INPUT_SIZE} (224 for ImageNet-trained weights)")
        problem = self._input_size_problem(size)
        if problem:
            raise InputSizeError(problem, hint=f"{self.name} needs an input of at least "
                                               f"{self.min_input_size()} (224 for ImageNet-trained weights)")

    def _input_size_problem(self, size: int) -> str | None:
        """Why `size` does not fit, or None. Raises nothing, so min_input_size can search with it."""
        feat = (size + 2 * self.stem_padding - 4) // self.stem_stride + 1
        if size < 4 or feat < 1:
            return f"input size {size} is too small for {self.name}'s 4x4 stem"
        for i, s in enumerate(self.strides):
            if s == 1:
                continue
            target = self.ada_pool[i] if self.ada_pool and self.ada_pool[i] else None
            if target is not None:
                if feat < target:
                    return (f"input size {size} gives a {feat}x{feat} map at stage {i}, smaller than "
                            f"its adaptive pool output {target}x{target}")
                feat = target
            else:
                feat //= s
                if feat < 1:
                    return f"input size {size} shrinks to nothing at stage {i} of {self.name}"
        return None



class VanillaNet(nn.Module):
    """Training form (`deploy=False`) or deploy form (`deploy=True`) of one VanillaNet."""

    def __init__(self, config: VanillaNetConfig, deploy: bool = False):
        super().__init__()
        self.config = config
        self.deploy = deploy
        dims = config.channels
        c0, k, s, p = dims[0], 4, config.stem_stride, config.stem_padding
        if deploy:
            self.stem = nn.Sequential(
                nn.Conv2d(config.in_chans, c0, kernel_size=k, stride=s, padding=p),
                Activation(c0, config.act_num, deploy=True),
            )
        else:
            self.stem1 = conv_bn(config.in_chans, c0, kernel=k, stride=s, padding=p)
            self.stem2 = nn.Sequential(
                nn.Conv2d(c0, c0, kernel_size=1),
                nn.BatchNorm2d(c0, eps=1e-6),
                Activation(c0, config.act_num, deploy=False),
            )
        self._act_learn = 1.0
        ada = config.ada_pool or (0,) * len(config.strides)
        self.stages = nn.ModuleList(
            Block(dims[i], dims[i + 1], config.act_num, config.strides[i], deploy, ada[i] or None)
            for i in range(len(config.strides))
        )
        head = [nn.AdaptiveAvgPool2d((1, 1)), nn.Dropout(config.drop_rate),
                nn.Conv2d(dims[-1], config.num_classes, 1)]
        if deploy:
            self.cls = nn.Sequential(*head)
        else:
            self.cls1 = nn.Sequential(*head, nn.BatchNorm2d(config.num_classes, eps=1e-6))
            self.cls2 = nn.Sequential(nn.Conv2d(config.num_classes, config.num_classes, 1))

    @property
    def act_learn(self) -> float:
        """Slope of the leaky ReLUs between merged convs; 0 = ReLU, 1 = identity (fusable)."""
        return self._act_learn

    @act_learn.setter
    def act_learn(self, value: float) -> None:
        # The authors' change_act: the net and every stage carry their own copy.
        self._act_learn = float(value)
        for stage in self.stages:
            stage.act_learn = float(value)

    @property
    def depth(self) -> int:
        return len(self.stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            x = self.stem(x)
        else:
            x = F.leaky_relu(self.stem1(x), self._act_learn)
            x = self.stem2(x)
        for stage in self.stages:
            x = stage(x)
        if self.deploy:
            x = self.cls(x)
        else:
            x = F.leaky_relu(self.cls1(x), self._act_learn)
            x = self.cls2(x)
        # flatten(1), not the authors' view(x.size(0), -1): same result, but traced size arithmetic
        # breaks coremltools (an int() of a shape tensor) and adds Shape/Gather ops to ONNX.
        return torch.flatten(x, 1)
