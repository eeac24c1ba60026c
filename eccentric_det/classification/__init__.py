"""Classification on timm backbones with the same edge/cloud split, codec and Payload as detection.

``get_cls_cfg(config_file, opts)`` builds the config (``MODEL.ECCENTRIC`` + ``MODEL.CLS`` + ``DATA_CLS``);
``SplitTimmClassifier(cfg)`` the model; ``eccentric_det.classification.train`` trains and evaluates it.
"""
from .checkpoint import load_weights, save_weights, timm_to_split
from .config import add_classification_config, get_cls_cfg
from .split_model import ClsOutput, EdgeDecision, SplitTimmClassifier

__all__ = ["ClsOutput", "EdgeDecision", "SplitTimmClassifier", "add_classification_config", "get_cls_cfg",
           "load_weights", "save_weights", "timm_to_split"]
