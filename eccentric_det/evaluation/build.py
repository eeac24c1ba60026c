"""Evaluator construction and dataset checks for tools/train_net.py."""
from detectron2.evaluation import COCOEvaluator

from ..data import check_dataset_available
from .eccentric_evaluator import EccentricEvaluator


def fast_coco_eval_available():
    """Whether the installed Detectron2 has the compiled fast COCO evaluator (the stub does not)."""
    try:
        from detectron2 import _C

        return not getattr(_C, "_STUB", False)
    except ImportError:
        return False


def coco_evaluator(cfg, dataset_name, output_folder=None):
    return COCOEvaluator(dataset_name, output_dir=output_folder, use_fast_impl=fast_coco_eval_available())


def build_eccentric_evaluator(cfg, dataset_name, output_folder=None, model=None):
    """COCO AP (pycocotools) plus the cost table of :class:`EccentricEvaluator` (FLOPs need ``model``)."""
    return EccentricEvaluator(cfg, dataset_name, output_folder, model=model,
                              accuracy=coco_evaluator(cfg, dataset_name, output_folder))


def check_datasets(cfg, train=True):
    """Fail early, with the fix, when a dataset the config names is not registered or not on disk."""
    for name in list(cfg.DATASETS.TEST) + (list(cfg.DATASETS.TRAIN) if train else []):
        check_dataset_available(name)
