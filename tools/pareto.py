#!/usr/bin/env python
"""Sweep operating points and baselines on the same images; write pareto.json and pareto.png
(``eccentric_det.cli.pareto``).

    python tools/pareto.py --config-file configs/FashionDet/dynamic_ecc_vr.yaml \\
        --sweep thresholds=0.1,0.3,0.5,0.7,0.9 edge_only jpeg=10,30,50,70,90 webp=10,50,90 \\
        --independent-config configs/FashionDet/independent_ecc.yaml --sweep independent=30,50,70,90 \\
        --output output/pareto
    python tools/pareto.py --dataset fashion_det_val --results output/a output/b --output output/pareto
"""
import sys

from eccentric_det.cli.pareto import main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
