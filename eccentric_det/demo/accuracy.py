"""Precision and recall of a video's detections against its own boxes (the COCO json that
``datasets/prepare_demo_video.py`` writes beside a composed video: one image per frame, ``frame`` its index)."""
import json
import os

import numpy as np
from pycocotools import mask as mask_utils

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
        self.frames = self.matched = self.detections = self.objects = 0

    def add(self, frame, boxes, scores, class_names):
        """Count one frame: its detections as xyxy ``boxes``, ``scores`` and ``class_names``."""
        truth = self.boxes.get(frame, [])
        self.frames += 1
        self.objects += len(truth)
        self.detections += len(boxes)
        if not len(boxes) or not truth:
            return
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
                self.matched += 1

    def summary(self):
        """``precision`` and ``recall`` (None without detections or boxes), the counts and where the boxes came from."""
        return {"precision": self.matched / self.detections if self.detections else None,
                "recall": self.matched / self.objects if self.objects else None,
                "matched": self.matched, "detections": self.detections, "objects": self.objects,
                "iou": self.iou, "ground_truth": self.path}
