"""Per-layer activation statistics and INT8 sensitivity, simulated in torch.

Backend-independent on purpose: the ranking is a property of the network and the data, so the
same list drives the accuracy budget on every target. A layer's sensitivity is what it costs
to quantize that layer alone (int8 per-channel symmetric weights, 8-bit per-tensor activations
from the calibration ranges), everything else in float.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from ..metrics import compare_logits, finite
from ..model.layers import Activation
from .layers import quantizable_layers

PERCENTILES = (0.01, 0.1, 1, 50, 99, 99.9, 99.99)
HIST_BINS = 64


def layer_input(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the integer kernel of this layer really sees: the activation's conv takes relu(x)."""
    return torch.relu(x) if isinstance(module, Activation) else x


@torch.no_grad()
def activation_statistics(model: nn.Module, inputs: np.ndarray, batch: int = 32) -> dict[str, dict]:
    """min, max, percentiles and a histogram of each quantizable layer's input."""
    model.eval()
    layers = dict(model.named_modules())
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in quantizable_layers(model)}
    hooks = [layers[name].register_forward_pre_hook(
        lambda mod, args, name=name: chunks[name].append(layer_input(mod, args[0]).flatten().numpy()))
        for name in chunks]
    try:
        for i in range(0, len(inputs), batch):
            model(torch.from_numpy(inputs[i:i + batch]))
    finally:
        for h in hooks:
            h.remove()
    stats = {}
    for name, parts in chunks.items():
        values = np.concatenate(parts)
        counts, edges = np.histogram(values, bins=HIST_BINS)
        stats[name] = {
            "min": float(values.min()), "max": float(values.max()),
            "mean": float(values.mean()), "std": float(values.std()),
            "percentiles": {str(p): float(v) for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))},
            "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
        }
    return stats


def _fake_quant_activation(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    lo, hi = min(lo, 0.0), max(hi, 0.0)           # zero must be exactly representable
    scale = max((hi - lo) / 255.0, 1e-12)
    zero_point = int(round(-lo / scale))
    return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, 255)


def _fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    scale = (w.abs().flatten(1).max(dim=1).values / 127.0).clamp_min(1e-12)
    zero = torch.zeros(len(scale), dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


@contextlib.contextmanager
def quantized_layer(model: nn.Module, name: str, stats: dict):
    """Within the block, layer `name` runs with fake-quantized weights and input."""
    module = model.get_submodule(name)
    original = module.weight.data.clone()
    module.weight.data = _fake_quant_weight(original)
    lo, hi = stats[name]["min"], stats[name]["max"]
    handle = module.register_forward_pre_hook(
        lambda mod, args: (_fake_quant_activation(layer_input(mod, args[0]), lo, hi),) + tuple(args[1:]))
    try:
        yield module
    finally:
        handle.remove()
        module.weight.data = original


@torch.no_grad()
def layer_sensitivity(model: nn.Module, inputs: np.ndarray, stats: dict | None = None,
                      batch: int = 32, progress=None) -> list[dict]:
    """Each layer quantized alone: output relative error and top-1 agreement, worst first."""
    model.eval()
    stats = stats or activation_statistics(model, inputs, batch)

    def run() -> np.ndarray:
        return np.concatenate([model(torch.from_numpy(inputs[i:i + batch])).numpy()
                               for i in range(0, len(inputs), batch)])

    reference = run()
    rows = []
    names = quantizable_layers(model)
    for i, name in enumerate(names):
        with quantized_layer(model, name, stats):
            agreement = compare_logits(run(), reference)
        rows.append({"layer": name, "rel_err": agreement.rel_err, "top1_agree": agreement.top1_agree,
                     "max_abs": agreement.max_abs})
        if progress:
            progress(i + 1, len(names), name)
    # NaN/inf first (most sensitive): NaN in a sort key would leave the order arbitrary
    return sorted(rows, key=lambda r: (-r["rel_err"] if finite(r["rel_err"]) else -float("inf"), r["top1_agree"]))


def sensitivity_ranking(model: nn.Module, inputs: np.ndarray) -> list[str]:
    """Layer names, most sensitive first."""
    return [row["layer"] for row in layer_sensitivity(model, inputs)]
