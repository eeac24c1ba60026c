"""Datasets: the FashionDet generator and Detectron2 registration (FashionDet registers on import)."""
from .datasets import check_dataset_available, default_fashion_det_root, register_fashion_det
from .fashion_det import FASHION_CLASSES, generate_fashion_det, read_idx

__all__ = [
    "FASHION_CLASSES",
    "check_dataset_available",
    "default_fashion_det_root",
    "generate_fashion_det",
    "read_idx",
    "register_fashion_det",
]
