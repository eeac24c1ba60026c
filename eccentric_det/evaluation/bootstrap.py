"""Bootstrap confidence intervals over test images: COCO AP (pycocotools' per-image matches, re-accumulated on
resampled image sets) and any per-image mean (top-1, bytes).

:func:`coco_ap_interval` runs ``COCOeval.evaluate`` once, then for each of ``n`` resamples of the images (with
replacement) accumulates AP@[.5:.95] exactly as ``COCOeval.accumulate`` does (area "all", 100 detections per
image), an image drawn twice counting twice. On the full image set it gives pycocotools' AP to the digit.
"""
import contextlib
import io
import json
import os

import numpy as np
from pycocotools.cocoeval import COCOeval

from .oracle import load_coco_gt

CONFIDENCE = 0.95
BLOCK_FRAMES = 25  # a video's bootstrap block: one second of frames at 25 fps


def percentile_interval(samples, confidence):
    tail = 100 * (1 - confidence) / 2
    return float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))


def block_counts(n, block, rng):
    """How often each of ``n`` frames, in order, is drawn by one circular block bootstrap resample (Politis and
    Romano): runs of ``block`` consecutive frames, wrapping from the last frame to the first, with uniform starts,
    drawn with replacement until ``n`` frames are drawn. Neighbouring frames show the same objects, so a frame alone
    is not an independent draw; wrapping gives every frame the same chance, where plain moving blocks under-draw the
    first and last ``block`` - 1 frames."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    size = max(min(block, n), 1)
    starts = rng.integers(0, n, -(-n // size))
    return np.bincount(((starts[:, None] + np.arange(size)) % n).ravel()[:n], minlength=n)


def mean_interval(values, n=1000, seed=0, confidence=CONFIDENCE):
    """(mean, low, high) of per-image ``values`` with a percentile bootstrap interval."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n, len(values)))].mean(axis=1)
    return (float(values.mean()), *percentile_interval(means, confidence))


class PerImageMatches:
    """For each category, per image: detection scores, match flags per IoU threshold, ignore flags, and the
    count of non-ignored ground truth (from an evaluated COCOeval, area "all", maxDets[-1])."""

    def __init__(self, coco_eval):
        p = coco_eval.params
        self.image_ids, self.rec_thrs = list(p.imgIds), p.recThrs
        area = [tuple(a) for a in p.areaRng].index(tuple(p.areaRng[0]))  # "all" comes first
        max_det, n_img, n_area = p.maxDets[-1], len(p.imgIds), len(p.areaRng)
        self.per_cat = []
        for k in range(len(p.catIds)):
            per_image = {}
            for i in range(n_img):
                e = coco_eval.evalImgs[k * n_area * n_img + area * n_img + i]
                if e is None:
                    continue
                per_image[i] = (e["dtScores"][:max_det], e["dtMatches"][:, :max_det] > 0,
                                e["dtIgnore"][:, :max_det] > 0, int(np.count_nonzero(e["gtIgnore"] == 0)))
            self.per_cat.append(per_image)

    def ap(self, counts):
        """AP@[.5:.95] (0-100) with image ``i`` counted ``counts[i]`` times."""
        aps = []
        for per_image in self.per_cat:
            chosen = [(per_image[i], c) for i, c in enumerate(counts) if c and i in per_image]
            n_pos = sum(e[3] * c for e, c in chosen)
            if not chosen or n_pos == 0:
                continue
            scores = np.concatenate([np.tile(e[0], c) for e, c in chosen])
            matched = np.concatenate([np.tile(e[1], (1, c)) for e, c in chosen], axis=1)
            ignored = np.concatenate([np.tile(e[2], (1, c)) for e, c in chosen], axis=1)
            order = np.argsort(-scores, kind="mergesort")
            matched, ignored = matched[:, order], ignored[:, order]
            tp = np.cumsum(matched & ~ignored, axis=1, dtype=float)
            fp = np.cumsum(~matched & ~ignored, axis=1, dtype=float)
            aps.append(np.mean([self._precision(t, f, n_pos) for t, f in zip(tp, fp)]))
        return 100.0 * float(np.mean(aps)) if aps else float("nan")

    def _precision(self, tp, fp, n_pos):
        """Mean interpolated precision at the recall thresholds (pycocotools' accumulate for one IoU)."""
        if not len(tp):
            return 0.0
        recall = tp / n_pos
        precision = np.maximum.accumulate((tp / (fp + tp + np.spacing(1)))[::-1])[::-1]
        idx = np.searchsorted(recall, self.rec_thrs, side="left")
        q = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
        return float(q.mean())


def per_image_matches(coco_gt, detections, image_ids=None):
    """:class:`PerImageMatches` of COCO-format ``detections`` against ``coco_gt`` (``image_ids``: only these), or None
    without detections."""
    if not len(detections):
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco_gt, coco_gt.loadRes(detections), "bbox")
        if image_ids is not None:
            ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
    return PerImageMatches(ev)


def coco_ap_interval(coco_gt, detections, n=1000, seed=0, confidence=CONFIDENCE, image_ids=None):
    """(AP, low, high), AP@[.5:.95] in 0-100 with a percentile bootstrap interval over the images of
    ``coco_gt`` (a pycocotools COCO; ``image_ids``: only these). ``detections``: COCO-format results (a list of
    dicts)."""
    matches = per_image_matches(coco_gt, detections, image_ids)
    if matches is None:
        return 0.0, 0.0, 0.0
    n_img = len(matches.image_ids)
    ap = matches.ap(np.ones(n_img, dtype=int))
    rng = np.random.default_rng(seed)
    samples = [matches.ap(np.bincount(rng.integers(0, n_img, n_img), minlength=n_img)) for _ in range(n)]
    return (ap, *percentile_interval(samples, confidence))


def _images_of(output_dir):
    """The per-image records of an evaluation folder's ``eccentric_metrics.json``, or None."""
    metrics_file = os.path.join(output_dir, "eccentric_metrics.json")
    if not os.path.isfile(metrics_file):
        return None
    with open(metrics_file) as f:
        return json.load(f)["images"]


def _detections_of(output_dir):
    """An evaluation folder's ``coco_instances_results.json`` (Detectron2's COCOEvaluator), or None."""
    results = os.path.join(output_dir, "coco_instances_results.json")
    if not os.path.isfile(results):
        return None
    with open(results) as f:
        return json.load(f)


def result_interval(output_dir, dataset, accuracy="AP", n=1000, seed=0):
    """(low, high) of the 95% bootstrap interval of an evaluation folder's ``accuracy``: "AP" from its
    ``coco_instances_results.json`` (Detectron2's COCOEvaluator) against ``dataset``'s ground truth, on the images
    of its ``eccentric_metrics.json``; "top1" from the per-image records of a classification run. None for other
    metrics or a folder without those files."""
    images = _images_of(output_dir)
    if images is None:
        return None
    if accuracy == "top1":
        return mean_interval([100.0 * (r["pred"] == r["label"]) for r in images], n, seed)[1:]
    detections = _detections_of(output_dir) if accuracy == "AP" else None
    if detections is None:
        return None
    return coco_ap_interval(load_coco_gt(dataset), detections, n, seed, image_ids=[r["image_id"] for r in images])[1:]


def paired_differences(output_dirs, reference_dir, dataset, accuracy="AP", n=1000, seed=0, confidence=CONFIDENCE):
    """Per evaluation folder of ``output_dirs``, (mean, low, high): its ``accuracy`` ("AP" or "top1", as
    :func:`result_interval` reads them) minus the reference folder's, on the images both evaluated, with a paired
    percentile bootstrap: each resample draws the same images for both, so what the two share (hard images are hard
    for both) cancels, and the interval is that of the difference, narrower than the two intervals side by side
    suggest. None for other metrics or folders without those files; a ValueError for a folder evaluated on other
    images than the reference. The reference is read and matched once."""
    reference = _images_of(reference_dir)
    if reference is None or accuracy not in ("AP", "top1"):
        return [None] * len(output_dirs)
    ids = sorted(r["image_id"] for r in reference)
    if accuracy == "top1":
        right = {r["image_id"]: r["pred"] == r["label"] for r in reference}
    else:
        ref_detections = _detections_of(reference_dir)
        if ref_detections is None:
            return [None] * len(output_dirs)
        coco_gt = load_coco_gt(dataset)
        ref_matches = per_image_matches(coco_gt, ref_detections, ids)
        ref_ap = (lambda counts: ref_matches.ap(counts)) if ref_matches is not None else (lambda counts: 0.0)
    out = []
    for output_dir in output_dirs:
        run = _images_of(output_dir)
        if run is not None and sorted(r["image_id"] for r in run) != ids:
            raise ValueError(f"{output_dir} and {reference_dir} were evaluated on different images ({len(run)} and "
                             f"{len(ids)}): a paired difference needs the same images (the same dataset and "
                             f"--max-images)")
        detections = _detections_of(output_dir) if run is not None and accuracy == "AP" else None
        if run is None or (accuracy == "AP" and detections is None):
            out.append(None)
        elif accuracy == "top1":
            out.append(mean_interval([100.0 * ((r["pred"] == r["label"]) - right[r["image_id"]]) for r in run], n,
                                     seed, confidence))
        else:
            matches = per_image_matches(coco_gt, detections, ids)

            def difference(counts):
                return (matches.ap(counts) if matches is not None else 0.0) - ref_ap(counts)

            rng = np.random.default_rng(seed)
            samples = [difference(np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids)))
                       for _ in range(n)]
            out.append((difference(np.ones(len(ids), dtype=int)), *percentile_interval(samples, confidence)))
    return out
