"""A frozen teacher: any Detectron2 model given by config file and weights."""
import logging

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from ..config import add_eccentric_config, resolve_config_file

logger = logging.getLogger(__name__)


def build_teacher(config_file, weights, device="cpu"):
    """Build, load and freeze a teacher. Its ResNet bottom-up also returns the stem (for feature matching)."""
    cfg = get_cfg()
    add_eccentric_config(cfg)
    cfg.merge_from_file(resolve_config_file(config_file))
    cfg.MODEL.DEVICE = str(device)
    cfg.MODEL.WEIGHTS = weights
    model = build_model(cfg)
    if weights:
        DetectionCheckpointer(model).load(weights)
    else:
        logger.warning("Teacher %s has no weights (DISTILL.TEACHER_WEIGHTS is empty): it is random.", config_file)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
