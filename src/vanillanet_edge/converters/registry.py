"""Target name -> converter. The only place that knows which targets exist.

The facts each target declares are attributes of its Converter class (converters/base.py); the
two that the CLI needs before any toolchain (or torch) is imported sit on its registry line.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, NamedTuple

from ..errors import VanillaNetEdgeError

if TYPE_CHECKING:
    from .base import Converter


class _Entry(NamedTuple):
    path: str                 # module:Class, imported lazily (a missing toolchain only matters when used)
    measured: bool = True     # in the default target lists (verdict, tune): its latency means something here


_TARGETS = {
    "onnx": _Entry("vanillanet_edge.converters.onnx:OnnxConverter"),
    "openvino": _Entry("vanillanet_edge.converters.openvino:OpenVinoConverter"),
    "tflite": _Entry("vanillanet_edge.converters.litert:LiteRtConverter"),
    # Core ML latency exists only on macOS: not measured unless asked for.
    "coreml": _Entry("vanillanet_edge.converters.coreml:CoreMlConverter", measured=False),
    "ncnn": _Entry("vanillanet_edge.converters.ncnn:NcnnConverter", measured=False),
    "mnn": _Entry("vanillanet_edge.converters.mnn:MnnConverter", measured=False),
}

# The plain export `tune` compares its candidates against (tune/search.py TuneOptions.anchor).
TUNE_ANCHOR_TARGET = "openvino"
# The targets the verdict converts the exactly rewritten VanillaNets to by default (its
# `rewrite_targets`): LiteRT, whose depthwise kernels the dw_dilated rewrite is for.
REWRITE_TARGETS = ("tflite",)


def target_names() -> list[str]:
    return list(_TARGETS)


def default_targets() -> list[str]:
    """The targets measured by default (the verdict's and tune's default lists)."""
    return [name for name, entry in _TARGETS.items() if entry.measured]


def converter_class(target: str) -> type[Converter]:
    """The Converter class of a target (its declared facts); imports its module, not its toolchain."""
    if target not in _TARGETS:
        raise VanillaNetEdgeError(f"unknown target '{target}'",
                                  hint=f"choose one of: {', '.join(_TARGETS)}, or all")
    module, _, cls = _TARGETS[target].path.partition(":")
    return getattr(importlib.import_module(module), cls)


def left_out_reason(target: str, precision: str) -> str | None:
    """Why a grid of targets x precisions (`--target all`, the pipeline) leaves a pair out: the
    target does not offer that precision (ncnn int8). None when it does."""
    cls = converter_class(target)
    if precision in cls.precisions:
        return None
    why = cls.int8_methods_note if precision == "int8" else ""
    return f"{target} offers no {precision}" + (f" ({why})" if why else "")


def get_converter(target: str) -> Converter:
    return converter_class(target)()


def expand_targets(targets: list[str] | tuple[str, ...] | str) -> list[str]:
    """'all' or a list (possibly comma-separated) -> ordered, de-duplicated target names."""
    if isinstance(targets, str):
        targets = [targets]
    names: list[str] = []
    for t in targets:
        for part in t.split(","):
            part = part.strip()
            for name in (target_names() if part == "all" else [part]):
                if name not in _TARGETS:
                    get_converter(name)   # raises the friendly unknown-target error
                if name not in names:
                    names.append(name)
    return names
