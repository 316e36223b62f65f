"""The deploy switch: fold every BatchNorm and merge stacked convs into a deploy-form VanillaNet.

Pure tensor functions first (each tested on its own), then `fuse_model`, which builds a new
deploy-form net and never mutates the training-form one, so fusing twice is a no-op and the
unfused net stays available for verification.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import FusionError
from ..metrics import Agreement, compare_logits, finite, within
from .vanillanet import VanillaNet

Tensor = torch.Tensor

# Fusion is exact algebra; what is left is float32 rounding (seen: ~1e-6 on every variant).
FUSION_REL_TOL = 1e-5


def fold_bn(weight: Tensor, bias: Tensor | None, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Conv (weight, bias) followed by BN in eval mode -> one conv.

    w' = w * g / sqrt(v + eps);  b' = beta + (b - mu) * g / sqrt(v + eps)
    """
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    b = bias if bias is not None else torch.zeros_like(bn.running_mean)
    return weight * scale.reshape(-1, 1, 1, 1), bn.bias + (b - bn.running_mean) * scale


def merge_1x1_after(w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> tuple[Tensor, Tensor]:
    """conv(w1, b1) of any kernel, then a 1x1 conv (w2, b2) -> one conv with w1's kernel.

    W2 (W1 x + b1) + b2 = (W2 W1) x + (W2 b1 + b2). Exact only if nothing non-linear sits
    between them, i.e. the leaky ReLU at slope 1.
    """
    if w2.shape[2:] != (1, 1):
        raise ValueError(f"second conv must be 1x1, got kernel {tuple(w2.shape[2:])}")
    m2 = w2[:, :, 0, 0]                                  # (out, mid)
    w = torch.einsum("om,mikl->oikl", m2, w1)
    return w, m2 @ b1 + b2


def fold_activation_bn(act) -> tuple[Tensor, Tensor]:
    """The activation's depthwise conv (no bias) + BN -> depthwise conv with a bias."""
    return fold_bn(act.weight, None, act.bn)


def _set_conv(conv: nn.Conv2d, weight: Tensor, bias: Tensor) -> None:
    conv.weight.copy_(weight)
    conv.bias.copy_(bias)


def _set_act(act, weight: Tensor, bias: Tensor) -> None:
    act.weight.copy_(weight)
    act.bias.copy_(bias)


def check_fusable(model: VanillaNet, allow_inexact: bool = False) -> None:
    slopes = {model.act_learn, *(stage.act_learn for stage in model.stages)}
    if model.deploy or slopes == {1.0}:
        return
    worst = min(slopes, key=lambda a: -abs(a - 1.0))
    msg = (f"act_learn is {worst:g}, not 1: the leaky ReLU between the 1x1 convs is "
           f"not the identity, so merging them changes the network's outputs")
    if not allow_inexact:
        raise FusionError(msg, hint="finish deep training (act_learn annealed to 1) first, or pass "
                                    "--allow-inexact to fuse anyway and see the error it causes")


@torch.no_grad()
def fuse_model(model: VanillaNet, allow_inexact: bool = False) -> VanillaNet:
    """Return the deploy-form equivalent of `model` (a deep copy if it is deploy form already)."""
    check_finite(model, "the net to fuse")
    if model.deploy:
        return copy.deepcopy(model).eval()
    check_fusable(model, allow_inexact)
    # Folding reads BN running statistics directly, so the source net needs no eval():
    # switching it would change the caller's module (e.g. a net mid-training).
    fused = VanillaNet(model.config, deploy=True).eval()

    # Stem: 4x4 conv + BN, (leaky), 1x1 conv + BN -> one 4x4 conv; then the activation.
    w1, b1 = fold_bn(model.stem1[0].weight, model.stem1[0].bias, model.stem1[1])
    w2, b2 = fold_bn(model.stem2[0].weight, model.stem2[0].bias, model.stem2[1])
    _set_conv(fused.stem[0], *merge_1x1_after(w1, b1, w2, b2))
    _set_act(fused.stem[1], *fold_activation_bn(model.stem2[2]))

    for src, dst in zip(model.stages, fused.stages):
        w1, b1 = fold_bn(src.conv1[0].weight, src.conv1[0].bias, src.conv1[1])
        w2, b2 = fold_bn(src.conv2[0].weight, src.conv2[0].bias, src.conv2[1])
        _set_conv(dst.conv, *merge_1x1_after(w1, b1, w2, b2))
        _set_act(dst.act, *fold_activation_bn(src.act))

    # Head: pool, dropout, 1x1 conv + BN, (leaky), 1x1 conv -> pool, dropout, one 1x1 conv.
    w1, b1 = fold_bn(model.cls1[2].weight, model.cls1[2].bias, model.cls1[3])
    _set_conv(fused.cls[2], *merge_1x1_after(w1, b1, model.cls2[0].weight, model.cls2[0].bias))
    check_finite(fused, "the fused net")      # e.g. a running_var below -eps folds to NaN
    return fused


def check_finite(model: nn.Module, what: str) -> None:
    """Refuse a net with NaN or inf in any weight or buffer (e.g. a BatchNorm whose running_var
    is below -eps folds to NaN): every output would be NaN, and NaN passes any `err > limit`."""
    bad = [name for name, t in [*model.named_parameters(), *model.named_buffers()]
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        raise FusionError(f"{what} holds NaN or inf values in {', '.join(bad[:5])}{more}; nothing was written",
                          hint="the checkpoint's weights or BatchNorm statistics are broken (a diverged "
                               "training run?): use an earlier checkpoint")


def fusion_finite(check: "FusionCheck") -> bool:
    """Every comparison is of finite numbers (a NaN or inf output never passes, inexact or not)."""
    return all(finite(a.rel_err) and finite(a.max_abs) for a in check.agreements)


def fusion_ok(check: "FusionCheck", tol: float = FUSION_REL_TOL) -> bool:
    """Every comparison finite and within `tol`."""
    return fusion_finite(check) and all(within(a.rel_err, tol) for a in check.agreements)


@dataclass(frozen=True)
class FusionCheck:
    random: Agreement
    real: Agreement | None

    @property
    def agreements(self) -> list[Agreement]:
        return [self.random] + ([self.real] if self.real else [])

    @property
    def worst_rel_err(self) -> float:
        """The larger relative error (NaN when either is NaN: max() would depend on the order)."""
        errs = [a.rel_err for a in self.agreements]
        return float("nan") if not all(finite(e) for e in errs) else max(errs)

    def as_dict(self) -> dict:
        return {"random_inputs": self.random.as_dict(),
                "real_inputs": self.real.as_dict() if self.real else None}


@torch.no_grad()
def verify_fusion(unfused: VanillaNet, fused: VanillaNet, input_size: int,
                  real_inputs: Tensor | None = None, n_random: int = 8, seed: int = 0) -> FusionCheck:
    """Run both nets on random inputs (and real images when given) and compare logits."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_random, unfused.config.in_chans, input_size, input_size, generator=gen)
    unfused.eval(), fused.eval()
    rand = compare_logits(fused(x).numpy(), unfused(x).numpy())
    real = None
    if real_inputs is not None and len(real_inputs):
        real = compare_logits(fused(real_inputs).numpy(), unfused(real_inputs).numpy())
    return FusionCheck(rand, real)
