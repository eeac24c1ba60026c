"""Datasets: the FashionDet generator, Detectron2 registration (FashionDet registers on import; datasets of your
own through DATASETS.REGISTER) and the checks run before training or evaluation."""
from .datasets import (check_class_count, check_dataset_available, default_fashion_det_root, register_fashion_det,
                       thing_classes)
from .fashion_det import FASHION_CLASSES, generate_fashion_det, read_idx
from .register import in_holdout, register_dataset, register_datasets

__all__ = [
    "FASHION_CLASSES",
    "check_class_count",
    "check_dataset_available",
    "default_fashion_det_root",
    "generate_fashion_det",
    "in_holdout",
    "read_idx",
    "register_dataset",
    "register_datasets",
    "register_fashion_det",
    "thing_classes",
]
