"""Runtime name -> runner. The only place that knows which runtimes exist.

Everything else asks here. What each runtime declares (profiler, peak probe, tuning options,
the precision it computes in...) is an attribute of its Runner class, read with `runner_class`
without loading the runtime itself. The pip packages that provide it sit on its registry line:
a device describes itself (machine.describe_machine) with the standard library only, before
numpy or any runner module can be imported there.
"""
from __future__ import annotations

import importlib
from typing import NamedTuple

from ..errors import VanillaNetEdgeError


class _Entry(NamedTuple):
    path: str                    # module:Class, imported when asked for
    packages: tuple[str, ...]    # pip distributions providing it: the first is what a device installs
    listing: int                 # where its versions come in machine descriptions (low first)


_RUNTIMES = {
    "onnxruntime": _Entry("vanillanet_edge.devices.onnxruntime:OnnxRuntimeRunner", ("onnxruntime",), 1),
    "openvino": _Entry("vanillanet_edge.devices.openvino:OpenVinoRunner", ("openvino",), 2),
    "litert": _Entry("vanillanet_edge.devices.litert:LiteRtRunner", ("ai-edge-litert", "tflite-runtime"), 3),
    "coreml": _Entry("vanillanet_edge.devices.coreml:CoreMlRunner", ("coremltools",), 4),
    "torch": _Entry("vanillanet_edge.devices.torch_eager:TorchRunner", ("torch",), 0),
    "ncnn": _Entry("vanillanet_edge.devices.ncnn:NcnnRunner", ("ncnn",), 5),
    "mnn": _Entry("vanillanet_edge.devices.mnn:MnnRunner", ("MNN",), 6),
}

# The runtime of the eager PyTorch reference (converters/eager.py writes its artifacts): it runs
# only where the model code is (never through the device runner bundle).
EAGER_RUNTIME = "torch"


def runtime_names() -> list[str]:
    return list(_RUNTIMES)


def _entry(name: str) -> _Entry:
    if name not in _RUNTIMES:
        raise VanillaNetEdgeError(f"unknown runtime '{name}'", hint=f"choose one of: {', '.join(_RUNTIMES)}")
    return _RUNTIMES[name]


def runner_class(name: str) -> type:
    """The Runner class of a runtime (its declared facts), without loading the runtime."""
    module, _, cls = _entry(name).path.partition(":")
    return getattr(importlib.import_module(module), cls)


def get_runner(name: str):
    """A Runner (devices/base.py) for the runtime."""
    return runner_class(name)()


def runner_classes() -> list[type]:
    return [runner_class(n) for n in _RUNTIMES]


def packages_of(name: str) -> tuple[str, ...]:
    """The pip distributions that provide a runtime; the first is what a device installs."""
    return _entry(name).packages


def runtime_packages() -> list[str]:
    """Every runtime's pip distributions, in listing order (machine descriptions). Stdlib only."""
    entries = sorted(_RUNTIMES.values(), key=lambda e: e.listing)
    return list(dict.fromkeys(p for e in entries for p in e.packages))


def reported_packages() -> list[str]:
    """The distributions the report's machine line names (one per runtime), in listing order."""
    names = sorted(_RUNTIMES, key=lambda n: _RUNTIMES[n].listing)
    return [_RUNTIMES[n].packages[0] for n in names if runner_class(n).version_in_report]


def peak_runtimes() -> tuple[str, ...]:
    """The runtimes that offer a matmul peak probe (devices/peak.py)."""
    return tuple(c.name for c in runner_classes() if c.peak_precisions)
