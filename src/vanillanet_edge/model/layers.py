"""VanillaNet building blocks, with the official attribute names (and so state_dict keys).

Training form and deploy form live in the same classes, switched by `deploy`, exactly as the
authors' release does, so that their checkpoints load without renaming. The fusion maths is
in `fuse.py`; these classes only hold parameters and run them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-6  # the authors' BatchNorm eps everywhere


class Activation(nn.ReLU):
    """Series-informed activation: ReLU, then a (2n+1)x(2n+1) depthwise conv (+BN in training).

    Subclasses nn.ReLU like the original, so `stages.N.act.weight` and `stages.N.act.bn.*`
    are the official keys; the deploy form carries `bias` instead of `bn`.
    """

    def __init__(self, dim: int, act_num: int = 3, deploy: bool = False):
        super().__init__()
        self.dim = dim
        self.act_num = act_num
        self.deploy = deploy
        k = 2 * act_num + 1
        self.weight = nn.Parameter(torch.empty(dim, 1, k, k))
        nn.init.trunc_normal_(self.weight, std=0.02)
        if deploy:
            self.bias = nn.Parameter(torch.zeros(dim))
        else:
            self.bias = None
            self.bn = nn.BatchNorm2d(dim, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(F.relu(x), self.weight, self.bias, padding=self.act_num, groups=self.dim)
        return x if self.deploy else self.bn(x)


def conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, padding: int = 0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=kernel, stride=stride, padding=padding),
        nn.BatchNorm2d(c_out, eps=BN_EPS),
    )


class Block(nn.Module):
    """One stage: 1x1 conv (+BN), leaky ReLU(act_learn), 1x1 conv (+BN), pool, activation.

    Deploy form: a single 1x1 conv `conv`, pool, activation.
    """

    def __init__(self, dim: int, dim_out: int, act_num: int = 3, stride: int = 2,
                 deploy: bool = False, ada_pool: int | None = None):
        super().__init__()
        self.act_learn = 1.0
        self.deploy = deploy
        if deploy:
            self.conv = nn.Conv2d(dim, dim_out, kernel_size=1)
        else:
            self.conv1 = conv_bn(dim, dim)
            self.conv2 = conv_bn(dim, dim_out)
        if stride == 1:
            self.pool = nn.Identity()
        elif ada_pool:
            self.pool = nn.AdaptiveMaxPool2d((ada_pool, ada_pool))
        else:
            self.pool = nn.MaxPool2d(stride)
        self.act = Activation(dim_out, act_num, deploy=deploy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            x = self.conv(x)
        else:
            x = self.conv1(x)
            x = F.leaky_relu(x, self.act_learn)
            x = self.conv2(x)
        return self.act(self.pool(x))
