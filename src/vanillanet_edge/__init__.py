"""vanillanet-edge: take a trained VanillaNet to edge hardware.

The public Python API; the `vanillanet-edge` command is a thin layer over it. Names load on
first use (PEP 562), so a benchmark worker that imports only the runners does not pay for
torch (seconds to import, and hundreds of MiB that would pollute its peak-RSS reading).
The runtimes' own telemetry is turned off here, first (devices/telemetry_off.py says how).
"""
from importlib import import_module

from .devices.telemetry_off import turn_off_runtime_telemetry

# First, before any runtime can load: ONNX Runtime's and OpenVINO's telemetry off in every
# process that imports the package (and, through the environment, their children).
turn_off_runtime_telemetry()

_API = {"Int8Options": ".api", "calibrate": ".api", "convert": ".api", "run_pipeline": ".api",
        "fuse_checkpoint": ".api", "make_digits": ".api", "model_info": ".api", "train_model": ".api",
        "bench": ".api", "evaluate": ".api", "check_devices": ".api", "resolve_devices": ".api",
        "tune": ".api", "recommend": ".api", "TuneOptions": ".api",
        "create_model": ".model", "fuse_model": ".model", "load_checkpoint": ".model",
        "save_checkpoint": ".model", "verify_fusion": ".model"}
__all__ = list(_API)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name], __name__), name)
    raise AttributeError(f"module 'vanillanet_edge' has no attribute {name!r}")
