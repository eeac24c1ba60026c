"""eccentric_det: edge-cloud collaborative object detection for Detectron2 (after ECCENTRIC, arXiv 2511.11719).

``import eccentric_det`` registers the split backbones, KnowledgeAdaptedROIHeads, EccentricRCNN and
the embedded datasets; ``add_eccentric_config(cfg)`` adds ``cfg.MODEL.ECCENTRIC``.
"""
from .config import add_eccentric_config, get_eccentric_cfg, resolve_config_file
from . import modeling as _modeling  # registration only
from . import data as _data  # registration only
from .codec import Payload, PayloadError

__version__ = "0.1.0"
__all__ = ["add_eccentric_config", "get_eccentric_cfg", "resolve_config_file", "Payload", "PayloadError"]
