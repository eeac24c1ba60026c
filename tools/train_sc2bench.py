#!/usr/bin/env python
"""Train the sc2bench baseline (benchmark-only extra: pip install -e .[bench]) on a cloud config.

sc2bench's learned bottleneck for ResNet replaces the cloud detector's stem and res2 and is trained as
its entropic student: stage 1 distils the teacher's res2 feature at a rate weight, stage 2 freezes the
encoder and entropy model and fine-tunes the decoder and the detector on the detection losses.
Give it the budget of the split model it is compared with (data: the config's DATASETS.TRAIN; on FashionDet:
the teacher and the codec's + adaptation's iterations; `benchmarks/converge_fashion_det.sh sc2bench` runs exactly
that, with the learning curve on the held-out split):

    python tools/train_sc2bench.py --config-file configs/FashionDet/cloud_teacher.yaml --rate-weight 0.5 \\
        --stage1-lr 5e-3 --iters 500 3000 --output output/sc2bench/lambda0.5.pth \\
        MODEL.WEIGHTS checkpoints/fashion_det/cloud_teacher_8000.pth SOLVER.BASE_LR 0.01 SOLVER.WARMUP_ITERS 50
    python tools/pareto.py --config-file configs/FashionDet/adaptive_ecc_vr_joint_8000.yaml \\
        --sweep sc2bench=output/sc2bench/lambda0.5.pth
"""
import argparse
import json
import os
import sys

import eccentric_det.cli  # noqa: F401  (first: quiets the libraries' torch.jit deprecation warnings)

import torch
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.evaluation import inference_on_dataset

import eccentric_det.data  # noqa: F401  (registers the datasets)
import eccentric_det.modeling  # noqa: F401  (registers the backbones, ROI heads, EccentricRCNN)
from eccentric_det.baselines import Sc2benchDetector, fit_sc2bench_bottleneck, fit_sc2bench_detector, save_sc2bench
from eccentric_det.checkpoint import load_model
from eccentric_det.evaluation.build import coco_evaluator
from eccentric_det.tasks import get_eccentric_cfg
from eccentric_det.data import check_dataset_available
from eccentric_det.cli.logs import setup_logging


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, help="the cloud detector's config (a stock ResNet-FPN R-CNN)")
    p.add_argument("--rate-weight", type=float, required=True, help="lambda of stage 1: MSE + lambda x bpp")
    p.add_argument("--iters", type=int, nargs=2, default=(300, 300), metavar=("STAGE1", "STAGE2"),
                   help="iterations of each stage, at the config's SOLVER.IMS_PER_BATCH")
    p.add_argument("--bottleneck-channels", type=int, default=24, help="latent channels of the bottleneck")
    p.add_argument("--stage1-lr", type=float, default=1e-3, help="Adam learning rate of stage 1 (sc2bench's own: 1e-3)")
    p.add_argument("--output", required=True, help="checkpoint to write (.pth)")
    p.add_argument("--eval-period", type=int, default=0,
                   help="stage 2's learning curve: COCO AP on DATASETS.TEST[0] (a held-out split of the training "
                        "images) every N iterations and after the last, written as Detectron2's metrics.json to "
                        "--curve-dir (tools/plot_curves.py reads it)")
    p.add_argument("--curve-dir", help="folder of the curve's metrics.json (needed with --eval-period)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, e.g. MODEL.WEIGHTS teacher.pth")
    return p.parse_args(argv)


def held_out_curve(cfg, folder):
    """``evaluate(model, iteration)`` for stage 2: COCO AP on ``cfg.DATASETS.TEST[0]``, one line of
    ``folder/metrics.json`` per call (Detectron2's format: the iteration counted from 0; a new run starts the file
    anew)."""
    name = cfg.DATASETS.TEST[0]
    loader = build_detection_test_loader(cfg, name)
    evaluator = coco_evaluator(cfg, name, folder)  # the folder: where a split without a COCO json gets one
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "metrics.json")
    open(path, "w").close()

    def evaluate(model, iteration):
        results = inference_on_dataset(model, loader, evaluator)["bbox"]
        with open(path, "a") as f:
            f.write(json.dumps({"iteration": iteration - 1, **{f"bbox/{k}": v for k, v in results.items()}}) + "\n")
        print(f"stage 2 iteration {iteration}: {name} AP {results['AP']:.2f}", flush=True)

    return evaluate


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    try:
        if min(args.iters) < 1:
            raise ValueError(f"--iters must be positive, got {args.iters}")
        if args.eval_period < 0 or (args.eval_period and not args.curve_dir):
            raise ValueError(f"--eval-period must be >= 0 and needs --curve-dir, got {args.eval_period}, "
                             f"{args.curve_dir}")
        cfg = get_eccentric_cfg(args.config_file, args.opts)
        if args.eval_period and not cfg.DATASETS.TEST:
            raise ValueError("--eval-period evaluates on DATASETS.TEST[0]: set DATASETS.TEST to a held-out split")
        for name in cfg.DATASETS.TRAIN + (cfg.DATASETS.TEST[:1] if args.eval_period else ()):
            check_dataset_available(name)
        model = Sc2benchDetector(load_model(cfg), args.bottleneck_channels)
    except (ValueError, KeyError, FileNotFoundError, ImportError) as e:
        print(f"train_sc2bench.py: error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    torch.manual_seed(cfg.SEED if cfg.SEED >= 0 else 0)
    batches = iter(build_detection_train_loader(cfg))
    stage1 = fit_sc2bench_bottleneck(model, batches, args.iters[0], args.rate_weight, args.stage1_lr)
    evaluate = held_out_curve(cfg, args.curve_dir) if args.eval_period else None
    stage2 = fit_sc2bench_detector(model, batches, args.iters[1], cfg, evaluate, args.eval_period)
    save_sc2bench(model, args.output, rate_weight=args.rate_weight, iterations=list(args.iters),
                  ims_per_batch=cfg.SOLVER.IMS_PER_BATCH, config_file=args.config_file,
                  stage1_losses=stage1, stage2_losses=stage2)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
