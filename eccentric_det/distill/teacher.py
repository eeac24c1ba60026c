"""A frozen teacher: any Detectron2 model given by config file and weights; how both tasks' teachers are frozen."""
import functools
import logging

from ..checkpoint import load_model
from ..config import build_cfg

logger = logging.getLogger(__name__)

STUDENT_KEYS = ("MODEL.ROI_HEADS.NUM_CLASSES", "DATASETS.REGISTER")  # what a teacher takes from its student


def teacher_cfg(config_file, weights="", student=None):
    """The teacher's config: ``config_file`` with MODEL.WEIGHTS ``weights`` and, given the ``student``'s config,
    the student's dataset keys (:data:`STUDENT_KEYS`) and then its MODEL.ECCENTRIC.DISTILL.TEACHER_OPTS."""
    opts = ["MODEL.WEIGHTS", weights]
    if student is not None:
        for key in STUDENT_KEYS:
            opts += [key, functools.reduce(getattr, key.split("."), student)]
        extra = list(student.MODEL.ECCENTRIC.DISTILL.TEACHER_OPTS)
        if len(extra) % 2:
            raise ValueError(f"MODEL.ECCENTRIC.DISTILL.TEACHER_OPTS must be KEY VALUE pairs, got {extra}: give each "
                             f"key its value, e.g. ['MODEL.FPN.OUT_CHANNELS', 128]")
        opts += extra
    return build_cfg(config_file, opts)


def build_teacher(config_file, weights, device="cpu", student=None):
    """Build, load (checked: :func:`eccentric_det.checkpoint.load_model`) and freeze the teacher of
    :func:`teacher_cfg` (pass the ``student``'s config so that the teacher follows its dataset and TEACHER_OPTS).
    Its ResNet bottom-up also returns the stem (for feature matching)."""
    cfg = teacher_cfg(config_file, weights, student)
    cfg.MODEL.DEVICE = str(device)
    warn_if_random(config_file, cfg.MODEL.WEIGHTS)
    return frozen_teacher(load_model(cfg, label="the distillation teacher: MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS"))


def warn_if_random(config_file, weights):
    """Warn that the teacher of ``config_file`` is random when it has no ``weights`` (both tasks' teachers)."""
    if not weights:
        logger.warning("Teacher %s has no weights (DISTILL.TEACHER_WEIGHTS is empty): it is random.", config_file)


def frozen_teacher(model):
    """A teacher ``model`` in eval mode with no parameter that trains (both tasks' teachers)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
