"""Deep-network baselines (from timm) and full-size random VanillaNets, as `PreparedModel`s.

Both go through exactly the same converters, verification and manifests as a VanillaNet
checkpoint (converters/convert.py: `convert_one`), so their artifacts can be benchmarked side by
side with `vanillanet-edge bench`. Weights are random (no download ever happens: timm is called
with `pretrained=False`), so these artifacts are for LATENCY only; accuracy figures below are
PUBLISHED numbers from the cited model cards / papers, never measured here.

Random weights must not be degenerate (docs/backend-notes.md, "Benchmarking traps"): timm
zero-initialises the last BatchNorm gamma of every ResNet block and ConvNeXt's layer scale starts
at 1e-6, and a converter that constant-folds (LiteRT) then prunes whole branches: a ResNet-18
became 4 convs. `build_baseline` re-initialises every normalisation layer (gamma ~ U(0.5, 1.5),
small beta, running statistics measured on data), so every branch computes something and the
artifact keeps all its weights; `tests/model/test_baselines.py` checks it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import BackendMissingError, VanillaNetEdgeError

STATS_BATCHES = 2      # batches of random normal images used to measure BN running statistics
STATS_BATCH = 8


@dataclass(frozen=True)
class Baseline:
    """One deep baseline: its timm definition and its published (not measured) accuracy."""

    name: str                       # our name (also the artifact folder stem)
    timm_name: str                  # timm.create_model name (architecture only, no weights)
    published_top1: float           # ImageNet-1k top-1 %, 224x224, PUBLISHED (see source)
    published_source: str           # where that figure comes from
    depth: int | None               # depth in the paper's sense (weighted layers), None if not meaningful
    depth_note: str
    backends: str                   # which of our targets take it (see comments in BASELINES)
    other_published: tuple[tuple[str, float], ...] = ()


# Published ImageNet-1k top-1 (single 224 centre crop) from the model cards / papers named; these
# are figures for TRAINED weights and are never measured by this project.
BASELINES: dict[str, Baseline] = {b.name: b for b in (
    # The paper's comparison (VanillaNet-9 2.91 ms vs ResNet-50 7.64 ms on an A100, similar
    # accuracy). Standard ResNet-50 (v1.5, stride on the 3x3). Backends: onnx, openvino, tflite,
    # coreml (plain conv/BN/ReLU/add/max-pool/avg-pool/linear: every target takes it; ResNet-18
    # converted and verified on all four at 64x64, no branch pruned by LiteRT).
    Baseline("resnet50", "resnet50", 80.4,
             "published: timm model card resnet50.a1_in1k ('ResNet strikes back' A1 recipe, "
             "Wightman et al. 2021, 224 test); torchvision IMAGENET1K_V1 card: 76.13",
             50, "ResNet-50: 49 convs on the main path + 1 fc (projection shortcuts not counted)", "onnx, openvino, tflite, coreml",
             (("torchvision IMAGENET1K_V1", 76.13), ("torchvision IMAGENET1K_V2", 80.858),
              ("ResNet strikes back A2", 79.8))),
    # Backends: onnx, openvino, tflite, coreml (same op set as ResNet-50).
    Baseline("resnet18", "resnet18", 69.758,
             "published: torchvision resnet18 IMAGENET1K_V1 model card (timm resnet18.tv_in1k "
             "carries the same weights)",
             18, "ResNet-18: 17 convs on the main path + 1 fc (projection shortcuts not counted)", "onnx, openvino, tflite, coreml"),
    # Hard-swish, hard-sigmoid squeeze-excite, depthwise convs. Backends (fp32 at 64x64, tried
    # with timm 1.0.31): onnx, openvino, tflite convert and verify; coreml converts but cannot be
    # verified on Linux (our numpy MIL interpreter lacks sigmoid_hard / thresholded_relu), so
    # convert_one refuses it there. ONNX Runtime INT8 was seen ~4x SLOWER than fp32 on this net
    # (backend notes), so int8 rows need care.
    Baseline("mobilenetv3_large_100", "mobilenetv3_large_100", 75.2,
             "published: MobileNetV3 paper (Howard et al. 2019), Large 1.0, Table 3; torchvision "
             "mobilenet_v3_large IMAGENET1K_V1 card: 74.042",
             None, "not meaningful in the paper's sense (inverted residual blocks, SE)",
             "onnx, openvino, tflite (coreml: converts, not verifiable on Linux)",
             (("torchvision IMAGENET1K_V1", 74.042),)),
    # 7x7 depthwise conv, LayerNorm (channels-last), GELU, layer scale. Backends (fp32 at 64x64,
    # timm 1.0.31): onnx, openvino, tflite convert and verify; coreml converts but cannot be
    # verified on Linux (the numpy MIL interpreter lacks gelu / layer_norm).
    Baseline("convnext_tiny", "convnext_tiny", 82.1,
             "published: ConvNeXt paper (Liu et al. 2022), ConvNeXt-T ImageNet-1k, 224; "
             "torchvision convnext_tiny IMAGENET1K_V1 card: 82.520",
             None, "not meaningful in the paper's sense (18 residual blocks of 3 layers)",
             "onnx, openvino, tflite (coreml: converts, not verifiable on Linux)",
             (("torchvision IMAGENET1K_V1", 82.52),)),
)}


def baseline_names() -> list[str]:
    return list(BASELINES)


def _timm():
    try:
        import timm
    except ImportError:
        raise BackendMissingError("the deep baselines", "baselines", "timm") from None
    return timm


def timm_version() -> str:
    return _timm().__version__


def get_baseline(name: str) -> Baseline:
    try:
        return BASELINES[name]
    except KeyError:
        raise VanillaNetEdgeError(f"unknown baseline '{name}'",
                                  hint="choose one of: " + ", ".join(BASELINES)
                                  + " (or a VanillaNet variant such as vanillanet_9)") from None


# ------------------------------------------------------------------------------ weights

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def reinit_norms(model: nn.Module, gen: torch.Generator) -> dict:
    """gamma ~ U(0.5, 1.5), beta ~ N(0, 0.05) for every BatchNorm and LayerNorm-like layer, and
    every layer-scale vector (ConvNeXt's `gamma`, 1e-6 at init) ~ U(0.5, 1.5). Returns counts."""
    counts = {"batchnorm": 0, "layernorm": 0, "layer_scale": 0}
    for name, m in model.named_modules():
        if isinstance(m, _NORMS) or isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
            kind = "batchnorm" if isinstance(m, _NORMS) else "layernorm"
            if getattr(m, "weight", None) is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            if getattr(m, "bias", None) is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.05)
            counts[kind] += 1
        for pname, p in m.named_parameters(recurse=False):
            # timm's layer scale: LayerScale.gamma / ConvNeXtBlock.gamma (1-d, tiny at init)
            if pname == "gamma" and p.dim() == 1 and not isinstance(m, _NORMS):
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
                counts["layer_scale"] += 1
    return counts


@torch.no_grad()
def measure_bn_statistics(model: nn.Module, input_size: int, gen: torch.Generator,
                          batches: int = STATS_BATCHES, batch: int = STATS_BATCH) -> int:
    """Running mean/var of every BatchNorm measured on random normal images (cumulative average
    over `batches`), so eval-mode BN keeps activations at a realistic scale through the net."""
    bns = [m for m in model.modules() if isinstance(m, _NORMS)]
    if not bns:
        return 0
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None          # cumulative moving average: every batch counts equally
    model.train()
    try:
        for _ in range(batches):
            model(torch.randn(batch, 3, input_size, input_size, generator=gen))
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        model.eval()
    return len(bns)


def zero_gammas(model: nn.Module) -> list[str]:
    """Normalisation layers with any gamma exactly zero (the pruning trap): should be empty."""
    return [n for n, m in model.named_modules()
            if isinstance(m, _NORMS + (nn.LayerNorm, nn.GroupNorm)) and getattr(m, "weight", None) is not None
            and bool((m.weight == 0).any())]


def build_baseline(name: str, num_classes: int = 1000, seed: int = 0, stats_input_size: int = 128) -> nn.Module:
    """timm architecture (pretrained=False: nothing is downloaded) with non-degenerate random
    weights: timm's own conv/linear init under `seed`, then every norm re-initialised and BN
    running statistics measured on random normal images at `stats_input_size`. Eval mode."""
    spec = get_baseline(name)
    timm = _timm()
    torch.manual_seed(seed)
    model = timm.create_model(spec.timm_name, pretrained=False, num_classes=num_classes)
    gen = torch.Generator().manual_seed(seed + 1)
    reinit_norms(model, gen)
    measure_bn_statistics(model, stats_input_size, gen)
    return model.eval()


@torch.no_grad()
def _normalise_outputs(model: nn.Module, input_size: int, gen: torch.Generator,
                       layer_types=(nn.Conv2d,), batch: int = 8) -> int:
    """Data-driven init in one pass (what a BatchNorm after each conv would do, folded in): each
    conv's output channels are centred and scaled to unit std over random normal images, by
    rewriting that conv's weight and bias; forward hooks hand the normalised output on, so every
    later layer is fitted to what it really receives."""
    hooks = []

    def hook(mod, _inputs, out):
        dims = (0, 2, 3) if out.dim() == 4 else (0,)
        mean = out.mean(dims)
        std = out.std(dims).clamp_min(1e-6)
        shape = (-1,) + (1,) * (mod.weight.dim() - 1)
        mod.weight.div_(std.reshape(shape))
        mod.bias.copy_((mod.bias - mean) / std)
        view = (1, -1) + (1,) * (out.dim() - 2)
        return (out - mean.reshape(view)) / std.reshape(view)

    for m in model.modules():
        if isinstance(m, layer_types):
            hooks.append(m.register_forward_hook(hook))
    try:
        model(torch.randn(batch, 3, input_size, input_size, generator=gen))
    finally:
        for h in hooks:
            h.remove()
    return len(hooks)


def build_vanillanet_random(variant: str, seed: int = 0, num_classes: int = 1000,
                            stats_input_size: int = 128, width: float = 1.0):
    """Full-size deploy-form VanillaNet with non-degenerate random weights (latency only).

    Deploy form straight away (create_model(deploy=True)): conv weights ~ N(0, 1/fan_in) (the
    activation's depthwise conv gets gain 2 for its ReLU), biases ~ N(0, 0.05); then each conv's
    output channels are centred and scaled to unit std on random images (a folded BatchNorm), so
    10+ BN-free layers neither vanish nor blow up, and the logits depend on the input (the
    verification's top-1 agreement means something).
    """
    from .layers import Activation
    from .variants import create_model

    torch.manual_seed(seed)
    model = create_model(variant, width=width, num_classes=num_classes, deploy=True).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, Activation)):
                fan_in = m.weight[0].numel()
                gain = 2.0 if isinstance(m, Activation) else 1.0
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (gain / fan_in) ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.05)
    size = max(model.config.min_input_size(), min(stats_input_size, 224))
    _normalise_outputs(model, size, gen, (nn.Conv2d, Activation))
    return model.eval()


# ------------------------------------------------------------------------------ counting

@torch.no_grad()
def count_macs(model: nn.Module, input_size: int, in_chans: int = 3) -> dict:
    """Multiply-accumulates of one image, from a forward pass with hooks on every Conv2d and
    Linear (norms, activations, pools and adds are not counted, as in the papers' FLOPs):
    conv = output pixels x weight elements (groups are in the weight's shape);
    linear = output elements x in_features (covers channels-last Linears at every pixel)."""
    from .layers import Activation

    total = {"conv": 0, "linear": 0}
    hooks = []

    def conv_hook(mod, _inputs, out):
        total["conv"] += int(out.shape[2] * out.shape[3] * mod.weight.numel())

    def act_hook(mod, _inputs, out):
        total["conv"] += int(out.shape[2] * out.shape[3] * mod.weight.numel())

    def linear_hook(mod, _inputs, out):
        total["linear"] += int(out.numel() // out.shape[0] * mod.in_features)

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, Activation):
            hooks.append(m.register_forward_hook(act_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, in_chans, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {"macs": total["conv"] + total["linear"], **{f"{k}_macs": v for k, v in total.items()}}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["BASELINES", "Baseline", "baseline_names", "build_baseline", "build_vanillanet_random",
           "count_macs", "zero_gammas"]


def architecture_for(model_meta: dict) -> nn.Module:
    """An untrained module of the architecture a manifest's `model` section names (a VanillaNet
    variant in deploy form, or a timm baseline), to load an eager artifact's state_dict into.
    Nothing is downloaded: timm builds its definition with pretrained=False."""
    from .variants import VARIANTS, create_model

    variant, classes = model_meta.get("variant"), int(model_meta.get("num_classes") or 1000)
    if model_meta.get("family") == "baseline":
        return _timm().create_model(get_baseline(variant).timm_name, pretrained=False, num_classes=classes).eval()
    if variant in VARIANTS:
        return create_model(variant, num_classes=classes, deploy=True).eval()
    raise ValueError(f"no architecture known for model {variant!r}")
