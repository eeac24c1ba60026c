"""The task adapters by name: their config extensions and how a config file shows its task. :func:`get_eccentric_cfg` is the config factory of every entry point; importing this module registers
eccentric_det's Detectron2 components (:mod:`eccentric_det.modeling`)."""
from . import modeling  # noqa: F401  (registers the backbones, ROI heads and EccentricRCNN)
from .classification import add_classification_config
from .config import build_cfg, is_classification_config

TASKS = {"detection": (), "classification": (add_classification_config,)}  # task -> its config extensions


def task_of(config_file):
    """"classification" when the config file (with its ``_BASE_`` files) sets MODEL.CLS or DATA_CLS, else
    "detection"."""
    return "classification" if config_file and is_classification_config(config_file) else "detection"


def get_eccentric_cfg(config_file=None, opts=(), *, task=None, extensions=()):
    """:func:`eccentric_det.config.build_cfg` with the keys of ``task`` (one of :data:`TASKS`; None: read from the
    file, :func:`task_of`) and of ``extensions`` (e.g. ``add_serving_config``). Not frozen."""
    task = task or task_of(config_file)
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return build_cfg(config_file, opts, TASKS[task] + tuple(extensions))

