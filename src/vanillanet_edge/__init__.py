"""vanillanet-edge: take a trained VanillaNet to edge hardware.

The public Python API; the `vanillanet-edge` command is a thin layer over it.
"""
from .api import Int8Options, calibrate, convert, fuse_checkpoint, run_pipeline, make_digits, model_info, train_model
from .model import create_model, fuse_model, load_checkpoint, save_checkpoint, verify_fusion

__all__ = ["Int8Options", "calibrate", "convert", "run_pipeline", "fuse_checkpoint", "make_digits", "model_info", "train_model", "create_model",
           "fuse_model", "load_checkpoint", "save_checkpoint", "verify_fusion"]
__version__ = "0.1.0"
