"""Runtime name -> runner. The only place that knows which runtimes exist."""
from __future__ import annotations

import importlib

from ..errors import VanillaNetEdgeError
from .base import Runner

_RUNTIMES = {
    "onnxruntime": "vanillanet_edge.devices.onnxruntime:OnnxRuntimeRunner",
    "openvino": "vanillanet_edge.devices.openvino:OpenVinoRunner",
    "litert": "vanillanet_edge.devices.litert:LiteRtRunner",
    "coreml": "vanillanet_edge.devices.coreml:CoreMlRunner",
    "torch": "vanillanet_edge.devices.torch_eager:TorchRunner",
}


def runtime_names() -> list[str]:
    return list(_RUNTIMES)


def get_runner(name: str) -> Runner:
    if name not in _RUNTIMES:
        raise VanillaNetEdgeError(f"unknown runtime '{name}'", hint=f"choose one of: {', '.join(_RUNTIMES)}")
    module, _, cls = _RUNTIMES[name].partition(":")
    return getattr(importlib.import_module(module), cls)()
