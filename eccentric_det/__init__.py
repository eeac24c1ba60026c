"""eccentric_det: edge-cloud collaborative object detection for Detectron2 (after ECCENTRIC, arXiv 2511.11719).

``add_eccentric_config(cfg)`` adds ``cfg.MODEL.ECCENTRIC`` (keys only); importing ``eccentric_det.modeling``
registers eccentric_det's Detectron2 components (the split backbones, KnowledgeAdaptedROIHeads, EccentricRCNN),
and ``get_eccentric_cfg`` (``eccentric_det.tasks``) does both for a config file of either task. ``import
eccentric_det`` itself loads nothing else, so that an edge device importing ``eccentric_det.edge`` carries
neither Detectron2 nor the cloud half. The layers and what may import what: ``docs/architecture.md``.
"""
import importlib

__version__ = "0.1.0"
_EXPORTS = {"add_eccentric_config": ".config", "get_eccentric_cfg": ".tasks", "resolve_config_file": ".config",
            "Payload": ".codec.payload", "PayloadError": ".codec.payload"}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'eccentric_det' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
