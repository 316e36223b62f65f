"""Moved: general image I/O lives in vanillanet_edge/images.py (the lowest layer, so model/ can
read images without importing calibration/). This name stays for existing imports."""
from ..images import *  # noqa: F401,F403
from ..images import _why  # noqa: F401
