"""Parameter and MAC counts with a per-layer table, from one real forward pass with hooks."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .layers import Activation
from .vanillanet import VanillaNet


@dataclass
class LayerRow:
    name: str
    op: str
    out_shape: tuple[int, ...]
    params: int
    macs: int


def _conv_macs(weight: torch.Tensor, out: torch.Tensor) -> int:
    # each weight element is used once per output pixel (groups are already in its shape)
    return int(out.shape[0] * out.shape[2] * out.shape[3] * weight.numel())


@torch.no_grad()
def layer_table(model: VanillaNet, input_size: int) -> list[LayerRow]:
    """Run a batch of one and record every conv, activation, pool and norm with its cost."""
    model.config.check_input_size(input_size)
    rows: list[LayerRow] = []
    hooks = []

    def hook(name, module):
        def fn(mod, inputs, out):
            params = sum(p.numel() for p in mod.parameters(recurse=False))
            if isinstance(mod, Activation):
                params += sum(p.numel() for p in mod.bn.parameters()) if not mod.deploy else 0
                op = f"relu+dwconv{mod.weight.shape[-1]}x{mod.weight.shape[-1]}" + ("" if mod.deploy else "+bn")
                macs = _conv_macs(mod.weight, out)
            elif isinstance(mod, nn.Conv2d):
                op = f"conv{mod.kernel_size[0]}x{mod.kernel_size[1]}" + (f"/s{mod.stride[0]}" if mod.stride[0] > 1 else "")
                macs = _conv_macs(mod.weight, out)
            elif isinstance(mod, nn.BatchNorm2d):
                op, macs = "batchnorm", 0
            else:
                op, macs = type(mod).__name__, 0
            rows.append(LayerRow(name, op, tuple(out.shape[1:]), params, macs))
        return fn

    acts = [n + "." for n, m in model.named_modules() if isinstance(m, Activation)]
    for name, mod in model.named_modules():
        if any(name.startswith(a) for a in acts):
            continue   # the activation's BN is counted with the activation
        if isinstance(mod, (Activation, nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d,
                            nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)):
            hooks.append(mod.register_forward_hook(hook(name, mod)))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, model.config.in_chans, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return rows


def summarize(model: VanillaNet, input_size: int) -> dict:
    rows = layer_table(model, input_size)
    return {
        "variant": model.config.name,
        "width": model.config.width,
        "num_classes": model.config.num_classes,
        "form": "deploy" if model.deploy else "train",
        "input_size": input_size,
        "params": sum(p.numel() for p in model.parameters()),
        "macs": sum(r.macs for r in rows),
        "depth": model.depth + 2,  # stem + stages + head: the paper counts non-linear layers + 1
        "layers": [asdict(r) for r in rows],
    }
