"""Baselines evaluated on the same images as the split models, with the same ``eccentric`` records.

* :class:`ImageCodecBaseline` (``image_codec``): cloud-only detection of the image sent through an OpenCV codec.
* :class:`Sc2benchDetector` (``sc2bench``): sc2bench's learned bottleneck in the cloud detector, its two-stage
  training and its checkpoints (needs the ``bench`` extra).
"""
from .image_codec import ImageCodecBaseline
from .sc2bench import Sc2benchDetector, fit_sc2bench_bottleneck, fit_sc2bench_detector, load_sc2bench, save_sc2bench

__all__ = ["ImageCodecBaseline", "Sc2benchDetector", "fit_sc2bench_bottleneck", "fit_sc2bench_detector",
           "load_sc2bench", "save_sc2bench"]
