"""Evaluation of the three costs: accuracy, bytes, compute."""
from .build import build_eccentric_evaluator, check_datasets, coco_evaluator
from .eccentric_evaluator import EccentricEvaluator

__all__ = ["EccentricEvaluator", "build_eccentric_evaluator", "check_datasets", "coco_evaluator"]
