#!/usr/bin/env python
"""Fit the Dynamic ECC offload gate (recall-rate boosting) and write it as a small edge checkpoint
(``offload_gate.*`` only; load it with MODEL.ECCENTRIC.EDGE.WEIGHTS over the model's own weights). With
``--regions`` (a config with OFFLOAD.REGION.TILE > 0) it fits the per-tile region gate instead (``region_gate.*``).

    python tools/fit_offload_gate.py --config-file configs/FashionDet/adaptive_ecc.yaml \
        --weights checkpoints/fashion_det/adaptive_ecc.pth --dataset fashion_det_train \
        --recall 0.9 --output checkpoints/fashion_det/offload_gate.pth
    python tools/fit_offload_gate.py --regions --config-file configs/FashionDet/dynamic_region_ecc.yaml \
        --weights checkpoints/fashion_det/adaptive_ecc_vr.pth --output checkpoints/fashion_det/region_gate_vr.pth
"""
import argparse
import json

import eccentric_det.data  # noqa: F401  (registers the datasets)
import eccentric_det.modeling  # noqa: F401  (registers the backbones, ROI heads, EccentricRCNN)
from eccentric_det.calibration import calibrate_offload_gate
from eccentric_det.checkpoint import export_checkpoint, load_model
from eccentric_det.tasks import get_eccentric_cfg
from eccentric_det.data import check_class_count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dataset", default="", help="registered dataset to fit on (default: the config's first "
                        "DATASETS.TRAIN). Images the model was not trained on fit a truer gate: train on a "
                        "DATASETS.REGISTER entry [NAME, 'subset', PARENT, 'train', F] and fit on [NAME, 'subset', "
                        "PARENT, 'holdout', F]")
    parser.add_argument("--max-images", type=int, default=300)
    parser.add_argument("--recall", type=float, default=0.9, help="recall of 'needs the cloud' images to reach")
    parser.add_argument("--regions", action="store_true", help="fit the per-tile region gate (region-level Dynamic "
                        "ECC, OFFLOAD.REGION.TILE > 0): recall is then of the tiles that need the cloud")
    parser.add_argument("--output", required=True)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    args = parser.parse_args()
    cfg = get_eccentric_cfg(args.config_file, ["MODEL.WEIGHTS", args.weights, "MODEL.DEVICE", "cpu",
                                               "MODEL.ECCENTRIC.EDGE.WEIGHTS", ""] + args.opts)
    dataset = args.dataset or (cfg.DATASETS.TRAIN[0] if cfg.DATASETS.TRAIN else "")
    if not dataset:
        parser.error("the config names no DATASETS.TRAIN: pass --dataset NAME")
    check_class_count(cfg, [dataset])
    if args.regions and not cfg.MODEL.ECCENTRIC.OFFLOAD.REGION.TILE:
        parser.error("--regions needs a region-level config (MODEL.ECCENTRIC.OFFLOAD.REGION.TILE > 0, e.g. "
                     "configs/FashionDet/dynamic_region_ecc.yaml)")
    model = load_model(cfg)
    fit = calibrate_offload_gate(cfg, model, dataset, args.max_images, args.recall, regions=args.regions)
    prefix = "region_gate." if args.regions else "offload_gate."
    export_checkpoint({k: v for k, v in model.state_dict().items() if k.startswith(prefix)}, args.output)
    print(json.dumps({k: fit[k] for k in ("threshold", "offload_rate", "recall", "needs_cloud_fraction")}, indent=1))
    print(f"wrote {args.output}; set MODEL.ECCENTRIC.OFFLOAD.THRESHOLD {fit['threshold']:.4f}")


if __name__ == "__main__":
    main()
