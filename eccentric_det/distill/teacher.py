"""A frozen teacher: any Detectron2 model given by config file and weights."""
import logging

from ..config import get_eccentric_cfg

logger = logging.getLogger(__name__)


def build_teacher(config_file, weights, device="cpu"):
    """Build, load (checked: :func:`eccentric_det.checkpoint.load_model`) and freeze a teacher. Its ResNet
    bottom-up also returns the stem (for feature matching)."""
    from ..checkpoint import load_model  # not at the top: eccentric_det.checkpoint imports the modeling package

    cfg = get_eccentric_cfg(config_file, ["MODEL.WEIGHTS", weights])
    cfg.MODEL.DEVICE = str(device)
    if not weights:
        logger.warning("Teacher %s has no weights (DISTILL.TEACHER_WEIGHTS is empty): it is random.", config_file)
    model = load_model(cfg)
    for p in model.parameters():
        p.requires_grad_(False)
    return model
