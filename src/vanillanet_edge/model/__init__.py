"""The VanillaNet architecture, checkpoints, fusion, counting and training. Pure torch."""
from .checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from .fuse import fuse_model, verify_fusion
from .vanillanet import VanillaNet, VanillaNetConfig
from .variants import PUBLISHED, VARIANTS, create_model, variant_config

__all__ = ["LoadedCheckpoint", "load_checkpoint", "save_checkpoint", "fuse_model", "verify_fusion",
           "PUBLISHED", "VARIANTS", "create_model", "variant_config", "VanillaNet", "VanillaNetConfig"]
