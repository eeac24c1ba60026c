#!/usr/bin/env python
"""Learning curves of training runs on their held-out training images, with the plateau verdict of each
(eccentric_det.evaluation.curves: best of the last quarter of iterations < best before it + 0.3).

    python tools/plot_curves.py --run teacher=output/converge/teacher --metric bbox/AP \\
        --output docs/curves/fashion_det_teacher
    python tools/plot_curves.py --run cloud=output/classification/fashion_mnist_cloud_teacher \\
        --output docs/curves/fashion_mnist_teacher

A run folder holds Detectron2's metrics.json (TEST.EVAL_PERIOD on a held-out split) or tools/train_cls.py's
curve.json. Writes OUTPUT.json (each run's points and verdict) and OUTPUT.png.
"""
import argparse
import json
import os
import sys

import eccentric_det.cli  # noqa: F401  (first: quiets the libraries' torch.jit deprecation warnings)

from eccentric_det.evaluation.curves import detectron2_curve, plateau, plot_curves


def read_run(folder, metric):
    """The curve record of a run folder: its curve.json, else ``metric`` from Detectron2's metrics.json."""
    path = os.path.join(folder, "curve.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    if not os.path.isfile(os.path.join(folder, "metrics.json")):
        raise FileNotFoundError(f"{folder} holds neither curve.json nor metrics.json: pass a training OUTPUT_DIR")
    points = detectron2_curve(folder, metric)
    if not points:
        raise ValueError(f"{folder}/metrics.json has no {metric!r}: train with TEST.EVAL_PERIOD > 0, or pick --metric")
    return {"metric": f"{metric} (held-out)", "points": points, "plateau": plateau(points)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", nargs="+", action="extend", required=True, metavar="LABEL=DIR",
                   help="training runs to plot (--run A B or --run A --run B)")
    p.add_argument("--metric", default="bbox/AP", help="Detectron2 metric of metrics.json runs")
    p.add_argument("--title", default="")
    p.add_argument("--output", required=True, help="path without extension: OUTPUT.json and OUTPUT.png")
    args = p.parse_args(argv)
    runs = {}
    try:
        for item in args.run:
            label, sep, folder = item.partition("=")
            if not sep:
                raise ValueError(f"--run {item!r}: give LABEL=DIR")
            runs[label] = read_run(folder, args.metric)
    except (ValueError, FileNotFoundError) as e:
        print(f"plot_curves.py: error: {e}", file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output + ".json", "w") as f:
        json.dump(runs, f, indent=1)
    plot_curves(runs, args.output + ".png", args.title)
    for label, rec in runs.items():
        print(f"{label}: final {rec['plateau']['final']}, best {rec['plateau']['best']}, flat: {rec['plateau']['flat']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
