"""The VanillaNet architecture, checkpoints, fusion, counting and training. Pure torch."""
from .checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from .fuse import fuse_model, verify_fusion
from .variants import PUBLISHED, VARIANTS, create_model, variant_config
from .vanillanet import VanillaNet, VanillaNetConfig

__all__ = ["LoadedCheckpoint", "load_checkpoint", "save_checkpoint", "fuse_model", "verify_fusion",
           "PUBLISHED", "VARIANTS", "create_model", "variant_config", "VanillaNet", "VanillaNetConfig"]
