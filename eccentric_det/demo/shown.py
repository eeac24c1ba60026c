"""Which of a frame's detections the demo shows: those at or above a confidence threshold and, optionally, one label
per object (class-agnostic non-maximum suppression: of boxes of any classes overlapping at IoU >= ``agnostic_iou``,
the highest-scoring one), and optionally one label per object over time (:class:`LabelVote`); :class:`ShownFilter`
chains them over a stream, as the demo and the fit of its settings (benchmarks/fit_demo_filter.py) both run it."""
import numpy as np

from ..split.reuse import box_iou, greedy_match

TRACK_IOU = 0.5  # a shown box continues the track of last frame's box it overlaps most, at least this much


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


class LabelVote:
    """One label per object over a stream: each shown box continues the track of the last frame's shown box it
    overlaps most (any class, IoU >= ``TRACK_IOU``), a track sums its boxes' scores per class, the sum so far weighed
    by ``decay`` each frame, and a box is shown with its track's leading class. ``decay`` 0: off (each frame's own
    labels); 1: the whole track counts alike. A camera's objects keep their class; a detector unsure between two
    classes changes its mind from frame to frame."""

    def __init__(self, decay=0.0):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"the label vote's decay must lie in [0, 1] (0: off), got {decay}")
        self.decay = float(decay)
        self.reset()

    def reset(self):
        """A new stream: no tracks."""
        self._boxes, self._votes = np.zeros((0, 4)), []

    def __call__(self, boxes, scores, classes):
        """The classes to show for one frame's shown ``boxes`` [N, 4] (xyxy), ``scores`` and ``classes`` [N] (ids or
        names)."""
        classes = list(classes)
        if not self.decay:
            return classes
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        previous = dict(greedy_match(box_iou(boxes, self._boxes), TRACK_IOU)) if len(self._votes) else {}
        votes = []
        for k, (score, c) in enumerate(zip(scores, classes)):
            v = {cls: w * self.decay for cls, w in self._votes[previous[k]].items()} if k in previous else {}
            v[c] = v.get(c, 0.0) + float(score)
            votes.append(v)
        self._boxes, self._votes = boxes, votes
        return [max(v, key=lambda cls: (v[cls], cls == c)) for v, c in zip(votes, classes)]


class ShownFilter:
    """What the demo shows of a stream, frame by frame: :func:`shown` at ``confidence_threshold`` and
    ``agnostic_iou``, then the labels voted along tracks (:class:`LabelVote` at ``label_decay``). A setting out of
    range raises ValueError here."""

    def __init__(self, confidence_threshold=0.5, agnostic_iou=0.0, label_decay=0.0):
        shown([], [], confidence_threshold, agnostic_iou)
        self.confidence_threshold, self.agnostic_iou = confidence_threshold, agnostic_iou
        self.vote = LabelVote(label_decay)

    def reset(self):
        """A new stream."""
        self.vote.reset()

    def __call__(self, boxes, scores, classes):
        """(the indices shown, highest score first; their classes to show) of one frame's xyxy ``boxes`` [N, 4],
        ``scores`` and ``classes`` [N]."""
        keep = shown(boxes, scores, self.confidence_threshold, self.agnostic_iou)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)[keep]
        scores = np.asarray(scores, np.float64).reshape(-1)[keep]
        return keep, self.vote(boxes, scores, [classes[k] for k in keep])
