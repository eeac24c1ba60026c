#!/usr/bin/env python
"""Fit what the demo shows (``tools/demo.py --confidence-threshold``, ``--agnostic-iou``, ``--label-decay``) on demo
runs over videos of Fashion-MNIST *training* items, never on the default (test-item) video:

    python datasets/prepare_demo_video.py --items train --seed 12 --out output/demo_fit/train_seed12.mp4
    python tools/demo.py --video-input output/demo_fit/train_seed12.mp4 --output output/demo_fit/run12
    python benchmarks/fit_demo_filter.py output/demo_fit/run12 ... --output output/demo_fit/fit.json

Each run folder holds a demo's ``*.summary.json`` (its log and the video's boxes). Every setting of a confidence
threshold (at least the runs' own), a class-agnostic NMS IoU and a label vote's decay is applied to the logged
detections (the vote frame by frame in order, as the demo does it), and precision and recall are counted over all
runs together (``eccentric_det.demo.accuracy``, IoU 0.5, the same class). The chosen setting has the highest recall
among those with precision >= ``--precision`` (else the highest precision); with ``--recall R`` (a goal on both), the
largest smaller margin, min(precision - P, recall - R), so that neither sits at its edge on the videos it was fitted
on. Ties go to the simpler one (no vote, no NMS, the lower threshold come first). The chosen setting's precision
and recall come with 95% block bootstrap intervals over the runs' frames (``--bootstrap``, ``--block-frames``).
"""
import argparse
import glob
import json
import os
import sys

import numpy as np

from eccentric_det.demo.accuracy import BoxAccuracy, pooled
from eccentric_det.demo.shown import ShownFilter
from eccentric_det.evaluation.bootstrap import BLOCK_FRAMES


def load_run(folder):
    """(summary, records) of the demo run in ``folder``."""
    paths = glob.glob(os.path.join(folder, "*.summary.json"))
    if len(paths) != 1:
        sys.exit(f"fit_demo_filter.py: error: {folder} must hold exactly one demo *.summary.json, found {len(paths)}")
    with open(paths[0]) as f:
        summary = json.load(f)
    if not summary.get("ground_truth") or not summary.get("log"):
        sys.exit(f"fit_demo_filter.py: error: {paths[0]} has no log or no ground truth: run tools/demo.py with "
                 "--output on a composed video (its .json beside it)")
    with open(summary["log"]) as f:
        return summary, [json.loads(line) for line in f]


def count(runs, confidence, agnostic_iou, label_decay=0.0, bootstrap=0, block=BLOCK_FRAMES):
    """Pooled precision, recall and counts of ``runs`` filtered at ``confidence`` and ``agnostic_iou``, labels voted
    at ``label_decay``; with ``bootstrap`` resamples, their block-bootstrap intervals (:func:`pooled`)."""
    accuracies = []
    for summary, records in runs:
        acc, display = BoxAccuracy(summary["ground_truth"]), ShownFilter(confidence, agnostic_iou, label_decay)
        for r in sorted(records, key=lambda r: r["frame"]):  # the vote runs in frame order, as in the demo
            d = r["detections"]
            keep, classes = display([x["box"] for x in d], [x["score"] for x in d], [x["class"] for x in d])
            acc.add(r["frame"], [d[k]["box"] for k in keep], [d[k]["score"] for k in keep], classes)
        accuracies.append(acc)
    out = {"confidence": confidence, "agnostic_iou": agnostic_iou, "label_decay": label_decay,
           **pooled(accuracies, block, bootstrap)}
    return {**out, "precision": out["precision"] or 0.0, "recall": out["recall"] or 0.0}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="demo output folders, one run on one video each (fit on training-item "
                   "videos; one setting given: its reading on any videos)")
    p.add_argument("--precision", type=float, default=0.8, help="the precision to reach")
    p.add_argument("--recall", type=float, default=None,
                   help="the recall to reach too: choose the largest smaller margin to both (default: the highest "
                        "recall at --precision)")
    p.add_argument("--confidence", type=float, nargs="+", default=[round(x, 2) for x in np.arange(0.5, 0.96, 0.05)])
    p.add_argument("--agnostic-iou", type=float, nargs="+", default=[0.0, 0.5, 0.7])
    p.add_argument("--label-decay", type=float, nargs="+", default=[0.0],
                   help="label vote decays to try (0: no vote; e.g. 0 0.5 0.8 0.9 0.95 1)")
    p.add_argument("--bootstrap", type=int, default=1000,
                   help="resamples of the chosen setting's block bootstrap interval (0: none)")
    p.add_argument("--block-frames", type=int, default=BLOCK_FRAMES,
                   help="the bootstrap's block of consecutive frames (neighbouring frames are not independent draws)")
    p.add_argument("--output", required=True, help="the json written: every pair counted and the chosen one")
    args = p.parse_args(argv)
    runs = [load_run(folder) for folder in args.runs]
    logged = max(s["confidence_threshold"] for s, _ in runs)
    if min(args.confidence) < logged or any(s.get("agnostic_iou") or s.get("label_decay") for s, _ in runs):
        sys.exit(f"fit_demo_filter.py: error: the runs logged detections at score >= {logged} without class-agnostic "
                 f"NMS or label vote; fit thresholds >= {logged} only, or rerun the demo with a lower --confidence-threshold")
    grid = [count(runs, c, a, v) for v in args.label_decay for a in args.agnostic_iou for c in args.confidence]
    if args.recall is not None:
        best = max(grid, key=lambda g: min(g["precision"] - args.precision, g["recall"] - args.recall))
    else:
        meets = [g for g in grid if g["precision"] >= args.precision]
        best = max(meets, key=lambda g: (g["recall"], g["precision"])) if meets else max(grid, key=lambda g: g["precision"])
    best = count(runs, best["confidence"], best["agnostic_iou"], best["label_decay"], args.bootstrap, args.block_frames)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"runs": [s["input"] for s, _ in runs], "target_precision": args.precision,
                   "target_recall": args.recall, "chosen": best, "grid": grid}, f, indent=1)
    ci = lambda key: f" [{best[key][0]:.3f}, {best[key][1]:.3f}]" if best.get(key) else ""  # noqa: E731
    print(f"chosen: --confidence-threshold {best['confidence']:g} --agnostic-iou {best['agnostic_iou']:g} "
          f"--label-decay {best['label_decay']:g}: precision {best['precision']:.3f}{ci('precision_ci95')}, recall "
          f"{best['recall']:.3f}{ci('recall_ci95')} over {len(runs)} runs -> {args.output}")


if __name__ == "__main__":
    main()
