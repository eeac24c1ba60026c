"""Classification on timm backbones with the same edge/cloud split, codec and Payload as detection.

``eccentric_det.config.get_eccentric_cfg(config_file, opts)`` builds the config (``MODEL.ECCENTRIC`` + ``MODEL.CLS``
+ ``DATA_CLS``, detected from the file); ``SplitTimmClassifier(cfg)`` the model; ``eccentric_det.training.classification``
trains and evaluates it.
"""
from .checkpoint import load_weights, save_weights, timm_to_split
from .config import add_classification_config
from .split_model import ClsOutput, SplitTimmClassifier

__all__ = ["ClsOutput", "SplitTimmClassifier", "add_classification_config", "load_weights", "save_weights",
           "timm_to_split"]
