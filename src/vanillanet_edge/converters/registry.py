"""Target name -> converter. The only place that knows which targets exist."""
from __future__ import annotations

import importlib

from ..errors import VanillaNetEdgeError
from .base import Converter

# Imported lazily: a missing toolchain only matters when its target is used.
_TARGETS = {
    "onnx": "vanillanet_edge.converters.onnx:OnnxConverter",
    "openvino": "vanillanet_edge.converters.openvino:OpenVinoConverter",
    "tflite": "vanillanet_edge.converters.litert:LiteRtConverter",
    "coreml": "vanillanet_edge.converters.coreml:CoreMlConverter",
}


def target_names() -> list[str]:
    return list(_TARGETS)


def get_converter(target: str) -> Converter:
    if target not in _TARGETS:
        raise VanillaNetEdgeError(f"unknown target '{target}'",
                                  hint=f"choose one of: {', '.join(_TARGETS)}, or all")
    module, _, cls = _TARGETS[target].partition(":")
    return getattr(importlib.import_module(module), cls)()


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
