#!/usr/bin/env python
"""Pick a sweep's operating point on held-out images (never on val or test) and write it as JSON.

    python tools/pareto.py --config-file configs/FashionDet/dynamic_region_ecc.yaml --dataset fashion_det_train_holdout \\
        --sweep thresholds=0,0.5,0.7,0.9 --output output/holdout_regions -- DATASETS.REGISTER "..."
    python tools/select_point.py --pareto output/holdout_regions/pareto.json --series "Dynamic ECC (regions)" \\
        --reference "threshold 0" --output output/holdout_regions/selected.json
"""
import argparse
import json
import sys

import eccentric_det.cli  # noqa: F401  (first: quiets the libraries' torch.jit deprecation warnings)

from eccentric_det.reports.select import select_point


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pareto", required=True, help="pareto.json of a sweep on held-out images")
    p.add_argument("--series", required=True, help="the series to choose from, e.g. 'Dynamic ECC (regions)'")
    p.add_argument("--reference", required=True, help="label of the point to keep the accuracy of, e.g. 'threshold 0'")
    p.add_argument("--tolerance", type=float, default=1.0, help="accuracy the choice may lose (default 1)")
    p.add_argument("--max-share", type=float, default=0.5, help="largest share of the reference's bytes and cloud "
                                                                "GFLOPs (default 0.5)")
    p.add_argument("--accuracy", default="AP")
    p.add_argument("--output", required=True, help="JSON file to write")
    args = p.parse_args(argv)
    try:
        with open(args.pareto) as f:
            points = json.load(f)["points"]
        choice = select_point(points, args.series, args.reference, args.tolerance, args.max_share, args.accuracy)
    except (OSError, ValueError, KeyError) as e:
        print(f"select_point.py: error: {e}", file=sys.stderr)
        return 2
    choice["pareto"] = args.pareto
    with open(args.output, "w") as f:
        json.dump(choice, f, indent=1)
    print(f"{choice['label']} ({'goal met' if choice['met'] else 'goal missed'}): {choice['why']} -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
