"""Precision and recall of a video's detections against its own boxes (the COCO json that
``datasets/prepare_demo_video.py`` writes beside a composed video: one image per frame, ``frame`` its index), with
block bootstrap intervals over the frames, of one video or several pooled."""
import json
import os

import numpy as np
from pycocotools import mask as mask_utils

from ..evaluation.bootstrap import BLOCK_FRAMES, CONFIDENCE, block_counts, percentile_interval

IOU = 0.5


def ground_truth_of(video_path):
    """The boxes json beside ``video_path`` (same name, .json) when it is a COCO file with one image per frame,
    else None."""
    path = os.path.splitext(video_path)[0] + ".json"
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            coco = json.load(f)
    except ValueError:
        return None
    if not isinstance(coco, dict) or not all(k in coco for k in ("images", "annotations", "categories")):
        return None
    if not all("frame" in im for im in coco["images"]):
        return None
    return path


class BoxAccuracy:
    """Counts, frame by frame, detections that match a ground-truth box of their class at IoU >= ``iou`` (each box
    matched once, detections in order of score) against the boxes of ``coco_json``."""

    def __init__(self, coco_json, iou=IOU):
        with open(coco_json) as f:
            coco = json.load(f)
        frame_of = {im["id"]: im["frame"] for im in coco["images"]}
        self.category = {c["name"]: c["id"] for c in coco["categories"]}
        self.boxes = {}
        for a in coco["annotations"]:
            self.boxes.setdefault(frame_of[a["image_id"]], []).append((a["category_id"], a["bbox"]))
        self.path, self.iou = coco_json, iou
        self._counts = {}  # frame -> (matched, detections, objects)

    def add(self, frame, boxes, scores, class_names):
        """Count one frame: its detections as xyxy ``boxes``, ``scores`` and ``class_names``."""
        if frame in self._counts:
            raise ValueError(f"frame {frame} is already counted against {self.path}")
        truth = self.boxes.get(frame, [])
        self._counts[frame] = (self._match(boxes, scores, class_names, truth), len(boxes), len(truth))

    def _match(self, boxes, scores, class_names, truth):
        if not len(boxes) or not truth:
            return 0
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        xywh = np.c_[boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]
        ious = mask_utils.iou(xywh.tolist(), [b for _, b in truth], [0] * len(truth))
        free = np.ones(len(truth), bool)
        for d in np.argsort(-np.asarray(scores), kind="stable"):
            same = np.array([c == self.category.get(class_names[d]) for c, _ in truth]) & free
            candidates = np.where(same, ious[d], -1.0)
            best = int(np.argmax(candidates))
            if candidates[best] >= self.iou:
                free[best] = False
        return int((~free).sum())

    def counts(self):
        """[frames, 3] int array: each counted frame's (matched, detections, objects), in frame order."""
        return np.array([self._counts[f] for f in sorted(self._counts)], dtype=np.int64).reshape(-1, 3)

    def summary(self, block=BLOCK_FRAMES, n=1000):
        """``precision`` and ``recall`` (None without detections or boxes) with their intervals (:func:`pooled`), the
        counts and where the boxes came from."""
        return {**pooled([self], block, n), "ground_truth": self.path}


def pooled(accuracies, block=BLOCK_FRAMES, n=1000, seed=0, confidence=CONFIDENCE):
    """Precision and recall of the frames of ``accuracies`` (:class:`BoxAccuracy`, one a video) counted together,
    each with a 95% block bootstrap interval (``precision_ci95``, ``recall_ci95``; None where undefined): a
    resample draws, in every video, runs of ``block`` consecutive frames with replacement, and counts both on that
    draw (``n`` 0: no interval)."""
    counts = [a.counts() for a in accuracies]
    matched, detections, objects = (int(v) for v in sum(c.sum(0) for c in counts))
    out = {"precision": matched / detections if detections else None,
           "recall": matched / objects if objects else None,
           "matched": matched, "detections": detections, "objects": objects, "iou": accuracies[0].iou,
           "precision_ci95": None, "recall_ci95": None, "block_frames": block, "bootstrap": n}
    if n and counts:
        rng = np.random.default_rng(seed)
        drawn = sum(np.stack([block_counts(len(c), block, rng) for _ in range(n)]) @ c for c in counts)
        for key, of in (("precision", 1), ("recall", 2)):
            ratios = drawn[drawn[:, of] > 0]
            if len(ratios):
                out[key + "_ci95"] = list(percentile_interval(ratios[:, 0] / ratios[:, of], confidence))
    return out
