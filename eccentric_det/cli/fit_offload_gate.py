"""Fit the Dynamic ECC offload gate (recall-rate boosting) and write it as a small edge checkpoint
(``offload_gate.*`` only; load it with MODEL.ECCENTRIC.EDGE.WEIGHTS over the model's own weights). With
``--regions`` (a config with OFFLOAD.REGION.TILE > 0) it fits the per-tile region gate instead (``region_gate.*``).
``tools/fit_offload_gate.py`` and ``python -m eccentric_det.cli.fit_offload_gate`` run :func:`main`.

    python tools/fit_offload_gate.py --config-file configs/FashionDet/dynamic_ecc_vr.yaml \
        --weights checkpoints/fashion_det/adaptive_ecc_vr.pth --dataset fashion_det_train \
        --recall 0.9 --output checkpoints/fashion_det/offload_gate_vr.pth
    python tools/fit_offload_gate.py --regions --config-file configs/FashionDet/dynamic_region_ecc.yaml \
        --weights checkpoints/fashion_det/adaptive_ecc_vr.pth --output checkpoints/fashion_det/region_gate_vr.pth

``--fit-json FIT.json`` also writes the fit as JSON (``eccentric_det.calibration.write_fit``: ``fitted``, the
threshold, offload rate, recall, share of images needing the cloud, dataset, recall target): what other programs
read (the recipe's gate stage). When the images leave nothing to fit (each needs the cloud, or none does) the
program exits with status 3 (:data:`NOTHING_TO_FIT`), and FIT.json says ``"fitted": false`` and why.
"""
import argparse
import json
import sys

from .. import data  # noqa: F401  (registers the datasets)
from .. import modeling  # noqa: F401  (registers the backbones, ROI heads, EccentricRCNN)
from ..calibration import FIT_KEYS, NothingToFit, calibrate_offload_gate, write_fit
from ..checkpoint import export_checkpoint, load_model
from ..data import check_class_count
from ..tasks import get_eccentric_cfg

NOTHING_TO_FIT = 3  # the exit status when the images leave nothing to fit


def main(argv=None):
    """Fit the gate of ``argv`` (default ``sys.argv[1:]``). Returns the exit status: 0, or :data:`NOTHING_TO_FIT`."""
    parser = argparse.ArgumentParser(prog="fit_offload_gate.py", description=__doc__.splitlines()[0])
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
    parser.add_argument("--fit-json", default="", metavar="FIT.json", help="also write the fit (or why there is "
                        "none: exit status 3) to this JSON file, for the programs that read it")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    args = parser.parse_args(argv)
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
    about = {"dataset": dataset, "recall_target": args.recall, "regions": args.regions, "gate": args.output}
    try:
        fit = calibrate_offload_gate(cfg, model, dataset, args.max_images, args.recall, regions=args.regions)
    except NothingToFit as e:
        if args.fit_json:
            write_fit(args.fit_json, reason=str(e), **about)
        print(f"fit_offload_gate.py: error: {e} (among at most {args.max_images} images of {dataset!r}); nothing "
              f"written to {args.output}", file=sys.stderr)
        return NOTHING_TO_FIT
    prefix = "region_gate." if args.regions else "offload_gate."
    export_checkpoint({k: v for k, v in model.state_dict().items() if k.startswith(prefix)}, args.output)
    if args.fit_json:
        write_fit(args.fit_json, fit, **about)
    print(json.dumps({k: fit[k] for k in FIT_KEYS}, indent=1))
    print(f"wrote {args.output}; set MODEL.ECCENTRIC.OFFLOAD.THRESHOLD {fit['threshold']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
