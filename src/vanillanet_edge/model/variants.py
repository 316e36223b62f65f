"""The 11 official VanillaNet variants, under their official names."""
from __future__ import annotations

from ..errors import VanillaNetEdgeError
from .vanillanet import VanillaNet, VanillaNetConfig


def _dims(mult: int, *units: int) -> tuple[int, ...]:
    return tuple(u * mult for u in units)


_M13 = (128, 128, 256, *[512] * 7, 1024, 1024)
_S13 = (1, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1)

# name -> (dims, strides, extra config). Published numbers are kept for `info` and `recommend`:
# params (M, deployed), MACs (G, the paper's "FLOPs"), ImageNet top-1.
VARIANTS: dict[str, VanillaNetConfig] = {}
PUBLISHED: dict[str, dict] = {}


def _add(name, dims, strides, params_m, gmacs, top1, **extra):
    VARIANTS[name] = VanillaNetConfig(name=name, dims=dims, strides=strides, **extra)
    PUBLISHED[name] = {"params_m": params_m, "gmacs": gmacs, "imagenet_top1": top1}


_add("vanillanet_5", _dims(4, 128, 256, 512, 1024), (2, 2, 2), 15.5, 5.2, 72.49)
_add("vanillanet_6", _dims(4, 128, 256, 512, 1024, 1024), (2, 2, 2, 1), 32.5, 6.0, 76.36)
_add("vanillanet_7", _dims(4, 128, 128, 256, 512, 1024, 1024), (1, 2, 2, 2, 1), 32.8, 6.9, 77.98)
_add("vanillanet_8", _dims(4, 128, 128, 256, 512, 512, 1024, 1024), (1, 2, 2, 1, 2, 1), 37.1, 7.7, 79.13)
_add("vanillanet_9", _dims(4, 128, 128, 256, 512, 512, 512, 1024, 1024),
     (1, 2, 2, 1, 1, 2, 1), 41.4, 8.6, 79.87)
_add("vanillanet_10", _dims(4, 128, 128, 256, *[512] * 4, 1024, 1024),
     (1, 2, 2, 1, 1, 1, 2, 1), 45.7, 9.4, 80.57)
_add("vanillanet_11", _dims(4, 128, 128, 256, *[512] * 5, 1024, 1024),
     (1, 2, 2, 1, 1, 1, 1, 2, 1), 50.0, 10.3, 81.08)
_add("vanillanet_12", _dims(4, 128, 128, 256, *[512] * 6, 1024, 1024),
     (1, 2, 2, 1, 1, 1, 1, 1, 2, 1), 54.3, 11.1, 81.55)
_add("vanillanet_13", _dims(4, *_M13), _S13, 58.6, 11.9, 82.05)
_add("vanillanet_13_x1_5", _dims(6, *_M13), _S13, 127.8, 26.5, 82.53)
# ada_pool: a 4x4 stride-3 padding-1 stem (224 -> 75) and adaptive max pools 38, 19, 10.
_add("vanillanet_13_x1_5_ada_pool", _dims(6, *_M13), _S13, 127.8, 48.9, 83.11,
     ada_pool=(0, 38, 19, 0, 0, 0, 0, 0, 0, 10, 0), stem_stride=3, stem_padding=1)


def variant_config(name: str, width: float = 1.0, num_classes: int = 1000) -> VanillaNetConfig:
    try:
        base = VARIANTS[name]
    except KeyError:
        raise VanillaNetEdgeError(
            f"unknown variant '{name}'", hint="choose one of: " + ", ".join(VARIANTS)) from None
    if width <= 0:
        raise VanillaNetEdgeError(f"width must be positive, got {width}")
    if num_classes < 1:
        raise VanillaNetEdgeError(f"num_classes must be at least 1, got {num_classes}")
    return base.with_(width=float(width), num_classes=int(num_classes))


def create_model(name: str, width: float = 1.0, num_classes: int = 1000,
                 deploy: bool = False) -> VanillaNet:
    """Build a variant by official name, in training form or deploy form."""
    return VanillaNet(variant_config(name, width, num_classes), deploy=deploy)
