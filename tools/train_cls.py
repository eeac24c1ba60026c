#!/usr/bin/env python
"""Train and evaluate split timm classifiers (eccentric_det.classification).

    python tools/train_cls.py --config-file configs/Classification/fashion_mnist_adaptive_ecc.yaml
    python tools/train_cls.py --config-file ... --eval-only MODEL.WEIGHTS checkpoints/classification/....pth
"""
import argparse
import logging
import os

import eccentric_det.cli  # noqa: F401  (first: quiets the libraries' torch.jit deprecation warnings)

import torch

from eccentric_det.training.classification import main
from eccentric_det.tasks import get_eccentric_cfg
from eccentric_det.cli.logs import setup_logging


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--eval-only", action="store_true", help="evaluate MODEL.WEIGHTS without training")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last_checkpoint.pth")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE pairs")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    cfg = get_eccentric_cfg(args.config_file, args.opts, task="classification")
    if cfg.MODEL.DEVICE == "cpu":
        torch.set_flush_denormal(True)
    cfg.freeze()
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    setup_logging(os.path.join(cfg.OUTPUT_DIR, "log.txt"), names=("eccentric_det",))
    with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    logging.getLogger("eccentric_det").info("Config %s:\n%s", args.config_file, cfg.dump())
    main(cfg, eval_only=args.eval_only, resume=args.resume)
