"""vanillanet-edge: take a trained VanillaNet to edge hardware.

The public Python API; the `vanillanet-edge` command is a thin layer over it. Names load on
first use (PEP 562), so a benchmark worker that imports only the runners does not pay for
torch (seconds to import, and hundreds of MiB that would pollute its peak-RSS reading).
"""
from importlib import import_module

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
