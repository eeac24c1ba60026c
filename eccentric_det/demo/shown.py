"""Which of a frame's detections the demo shows: those at or above a confidence threshold and, optionally, one label
per object (class-agnostic non-maximum suppression: of boxes of any classes overlapping at IoU >= ``agnostic_iou``,
the highest-scoring one)."""
import numpy as np

from ..split.reuse import box_iou


def shown(boxes, scores, confidence_threshold=0.5, agnostic_iou=0.0):
    """Indices (in order of score, highest first) of the detections shown: xyxy ``boxes`` [N, 4] and ``scores``
    [N]; ``agnostic_iou`` 0 keeps every class's boxes (Detectron2's per-class NMS only)."""
    if not 0.0 <= agnostic_iou <= 1.0:
        raise ValueError(f"the class-agnostic NMS IoU must lie in [0, 1] (0: off), got {agnostic_iou}")
    scores = np.asarray(scores, np.float64).reshape(-1)
    order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] >= confidence_threshold]
    if not agnostic_iou or len(order) < 2:
        return order
    iou = box_iou(np.asarray(boxes, np.float64).reshape(-1, 4)[order], np.asarray(boxes, np.float64)[order])
    kept = []
    for k in range(len(order)):
        if all(iou[k, j] < agnostic_iou for j in kept):
            kept.append(k)
    return [order[k] for k in kept]
