#!/usr/bin/env python
"""Fit the Dynamic ECC offload gate (recall-rate boosting) and write it as a small edge checkpoint; ``--fit-json``
also writes the fit as JSON (``eccentric_det.cli.fit_offload_gate``, where the options are described).

    python tools/fit_offload_gate.py --config-file configs/FashionDet/dynamic_ecc_vr.yaml \
        --weights checkpoints/fashion_det/adaptive_ecc_vr.pth --dataset fashion_det_train \
        --recall 0.9 --output checkpoints/fashion_det/offload_gate_vr.pth
    python tools/fit_offload_gate.py --regions --config-file configs/FashionDet/dynamic_region_ecc.yaml \
        --weights checkpoints/fashion_det/adaptive_ecc_vr.pth --output checkpoints/fashion_det/region_gate_vr.pth
"""
import sys

from eccentric_det.cli.fit_offload_gate import main

if __name__ == "__main__":
    sys.exit(main())
