"""The runtimes' own telemetry, turned off in every process we start, before any runtime loads.

Standard library only: this module ships in the device runner bundle, and it runs first in the
two places every process of ours passes through: `vanillanet_edge/__init__.py` (the CLI, the
bench workers `python -m vanillanet_edge.devices.worker`, Ray actors, anything importing the
package) and `remote/runner.py` (`python runner-<hash>.pyz ...` on a device).

- ONNX Runtime (official Linux/macOS builds since 1.29) sends 1DS telemetry to Microsoft, keeps
  a persistent device id and an offline event store under
  `${XDG_CACHE_HOME:-~/.cache}/Microsoft/DeveloperTools/.onnxruntime/` (`deviceid`,
  `onnxruntime.db`; written by libonnxruntime itself, no Python package involved).
  Documented opt-out (microsoft/onnxruntime docs/Privacy.md, "Disabling Telemetry"):
  `ORT_DISABLE_TELEMETRY=1` set before ONNX Runtime initializes; no uploader, events, device id or
  cache are created. An environment variable, so every child process inherits it. A value the
  user set already is left as it is.
- OpenVINO: `import openvino` imports `openvino.tools.ovc`, which starts the
  `openvino_telemetry` package (Google Analytics; NNCF uses it too). With no consent file it
  counts as consent: it writes `~/intel/openvino_ga_cid` and the usage counter `~/intel/stats`
  and sends an import event. Its documented opt-out, `opt_in_out --opt_out`, itself writes
  `~/intel/openvino_telemetry` and sends an opt-out event, and there is no environment switch.
  OpenVINO (`openvino.tools.ovc.telemetry_stub`) and NNCF (`NNCFTelemetryStub`: "openvino_telemetry
  package not found. No telemetry will be sent.") both run without that package, so our
  processes behave as if it were not installed: its name maps to None in `sys.modules`, and
  importing it raises ImportError. Nothing else of OpenVINO changes. (A process that imported it
  before us keeps it: that was its own choice.)
"""
from __future__ import annotations

import os
import sys

ENVIRONMENT = {"ORT_DISABLE_TELEMETRY": "1"}
BLOCKED_MODULES = ("openvino_telemetry",)


def turn_off_runtime_telemetry() -> None:
    """Idempotent; call before any runtime is imported."""
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for module in BLOCKED_MODULES:
        sys.modules.setdefault(module, None)  # type: ignore[assignment]
