#!/usr/bin/env python
"""Oracle bounds of Dynamic ECC from two --eval-only runs on the same images: the edge alone and always-offload.

    python tools/train_net.py --eval-only --config-file configs/FashionDet/dynamic_ecc_vr.yaml \\
        MODEL.ECCENTRIC.OFFLOAD.POLICY never OUTPUT_DIR output/oracle/edge
    python tools/train_net.py --eval-only --config-file configs/FashionDet/dynamic_ecc_vr.yaml \\
        MODEL.ECCENTRIC.OFFLOAD.POLICY always OUTPUT_DIR output/oracle/cloud
    python tools/oracle.py --dataset fashion_det_val --edge output/oracle/edge --cloud output/oracle/cloud \\
        --grids 1 2 4 --output output/oracle/oracle.json

Prints and writes AP at each fraction of whole images (grid 1) or tiles sent to the cloud, for a gate that knew
the answers (eccentric_det.evaluation.oracle). Compare a real gate's points (tools/pareto.py --sweep thresholds=...)
at the same offload rate.
"""
import argparse
import json
import os
import sys

import eccentric_det.cli  # noqa: F401  (first: quiets the libraries' torch.jit deprecation warnings)

from tabulate import tabulate

import eccentric_det.data  # noqa: F401  (registers the datasets)
from eccentric_det.evaluation.oracle import load_coco_gt, oracle_curve, read_detections


def _image_ids(run_dir):
    path = os.path.join(run_dir, "eccentric_metrics.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return {r["image_id"] for r in json.load(f).get("images", [])}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="the registered dataset both runs evaluated")
    p.add_argument("--edge", required=True, help="OUTPUT_DIR of the edge-only run (OFFLOAD.POLICY never)")
    p.add_argument("--cloud", required=True, help="OUTPUT_DIR of the always-offload run")
    p.add_argument("--grids", type=int, nargs="+", default=[1, 2, 4], help="tiles per side (1: whole images)")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.4, 0.5, 0.6, 0.75])
    p.add_argument("--score", type=float, default=0.5, help="score of a detection that counts as finding an object")
    p.add_argument("--output", default="", help="oracle.json to write")
    args = p.parse_args(argv)
    if any(g < 1 for g in args.grids) or any(not 0 <= f <= 1 for f in args.fractions):
        p.error("--grids are >= 1 and --fractions in [0, 1]")
    gt = load_coco_gt(args.dataset)
    ids = [_image_ids(d) for d in (args.edge, args.cloud)]
    if ids[0] is not None and ids[1] is not None and ids[0] != ids[1]:
        p.error(f"the runs evaluated different images ({len(ids[0])} and {len(ids[1])}): run both on the same ones")
    image_ids = ids[0] if ids[0] is not None else ids[1]
    edge, cloud = read_detections(args.edge), read_detections(args.cloud)
    curves = {g: oracle_curve(gt, edge, cloud, g, args.fractions, args.score, image_ids) for g in args.grids}
    rows = [[f"{pt['fraction']:.2f}"] + [f"{curves[g][i]['AP']:.2f}" for g in args.grids]
            for i, pt in enumerate(curves[args.grids[0]])]
    print(tabulate(rows, headers=["sent"] + [f"{g}x{g} {'image' if g == 1 else 'tiles'}" for g in args.grids],
                   tablefmt="pipe"))
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump({"dataset": args.dataset, "edge": args.edge, "cloud": args.cloud, "score": args.score,
                       "curves": {str(g): c for g, c in curves.items()}}, f, indent=1)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
