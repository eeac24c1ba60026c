"""Detectron2 components of eccentric_det; importing registers them."""
from . import backbone as _backbone  # registration only
from . import roi_heads as _roi_heads  # registration only
from .meta_arch import EccentricRCNN
