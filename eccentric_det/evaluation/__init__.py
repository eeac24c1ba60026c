"""Evaluation of the three costs: accuracy, bytes, compute."""
from .build import build_eccentric_evaluator, check_datasets, coco_evaluator
