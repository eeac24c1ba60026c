"""Shared test fixtures: small configs and inputs."""
import numpy as np
import torch

from eccentric_det.tasks import get_eccentric_cfg

# FPN levels that remain after dropping the ones before each split point.
LEVELS = {
    "stem": (["res2", "res3", "res4", "res5"], [[32], [64], [128], [256], [512]]),
    "res2": (["res2", "res3", "res4", "res5"], [[32], [64], [128], [256], [512]]),
    "res3": (["res3", "res4", "res5"], [[64], [128], [256], [512]]),
    "res4": (["res4", "res5"], [[128], [256], [512]]),
}


def stock_cfg(split="res2", depth=50):
    """Faster R-CNN R-{depth}-FPN (random init, CPU) with the FPN levels a split at ``split`` keeps."""
    cfg = get_eccentric_cfg("Base-RCNN-FPN.yaml")
    feats, sizes = LEVELS[split]
    p = ["p" + f[-1] for f in feats]
    cfg.merge_from_list([
        "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.RESNETS.DEPTH", depth,
        "MODEL.RESNETS.OUT_FEATURES", feats, "MODEL.FPN.IN_FEATURES", feats,
        "MODEL.ANCHOR_GENERATOR.SIZES", sizes, "MODEL.RPN.IN_FEATURES", p + ["p6"],
        "MODEL.ROI_HEADS.IN_FEATURES", p, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
        "MODEL.RPN.POST_NMS_TOPK_TEST", 100, "TEST.DETECTIONS_PER_IMAGE", 30,
    ])
    if depth in (18, 34):
        cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    return cfg


def split_cfg(split="res2", codec="passthrough", depth=50):
    """The same model as :func:`stock_cfg`, as an EccentricRCNN split at ``split``."""
    cfg = stock_cfg(split, depth)
    cfg.merge_from_list([
        "MODEL.META_ARCHITECTURE", "EccentricRCNN", "MODEL.BACKBONE.NAME", "build_split_resnet_fpn_backbone",
        "MODEL.ROI_HEADS.NAME", "KnowledgeAdaptedROIHeads", "MODEL.ECCENTRIC.SPLIT_AT", split,
        "MODEL.ECCENTRIC.CODEC.NAME", codec,
    ])
    return cfg


def image_input(h=120, w=160, seed=0):
    """A Detectron2 input dict holding a smooth random BGR image (uint8 values as float tensor)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (3, h // 8 + 1, w // 8 + 1)).astype(np.float32)
    img = torch.nn.functional.interpolate(torch.from_numpy(small)[None], size=(h, w), mode="bilinear")[0]
    return {"image": img.round().clamp(0, 255), "height": h, "width": w}
