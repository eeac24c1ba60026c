#!/usr/bin/env python
"""Train and evaluate eccentric_det models (Detectron2's standard CLI).

    python tools/train_net.py --config-file configs/FashionDet/adaptive_ecc.yaml
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS checkpoints/fashion_det/adaptive_ecc.pth
    python tools/train_net.py --num-gpus 8 --config-file ...        # DDP through detectron2's launch
"""
import os

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import eccentric_det  # noqa: F401  (registers backbones, heads, meta-arch, datasets)
from eccentric_det.checkpoint import load_edge_weights
from eccentric_det.config import fall_back_to_cpu, get_eccentric_cfg
from eccentric_det.evaluation import build_eccentric_evaluator, check_datasets
from eccentric_det.solver import build_optimizer


class Trainer(DefaultTrainer):
    """DefaultTrainer with eccentric_det's evaluator; the edge's own init (EDGE.WEIGHTS) after MODEL.WEIGHTS."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_eccentric_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """DefaultTrainer.test with evaluators that see the model (to count FLOPs per half) and write
        OUTPUT_DIR/eccentric_metrics.json (OUTPUT_DIR/inference/<dataset>/ for several test sets)."""
        if evaluators is None:
            names = cfg.DATASETS.TEST
            evaluators = [build_eccentric_evaluator(cfg, name, cfg.OUTPUT_DIR if len(names) == 1 else
                                                    os.path.join(cfg.OUTPUT_DIR, "inference", name), _unwrap(model))
                          for name in names]
        return super().test(cfg, model, evaluators)

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    def resume_or_load(self, resume=True):
        resumed = resume and self.checkpointer.has_checkpoint()
        super().resume_or_load(resume)
        if not resumed and self.cfg.MODEL.ECCENTRIC.EDGE.WEIGHTS:
            load_edge_weights(_unwrap(self.model), self.cfg.MODEL.ECCENTRIC.EDGE.WEIGHTS)


def _unwrap(model):
    return getattr(model, "module", model)


def setup(args):
    cfg = fall_back_to_cpu(get_eccentric_cfg(args.config_file, args.opts))
    if cfg.MODEL.DEVICE == "cpu":
        torch.set_flush_denormal(True)
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="eccentric_det")
    return cfg


def main(args):
    cfg = setup(args)
    check_datasets(cfg, train=not args.eval_only)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        if cfg.MODEL.ECCENTRIC.EDGE.WEIGHTS:
            load_edge_weights(model, cfg.MODEL.ECCENTRIC.EDGE.WEIGHTS)
        res = Trainer.test(cfg, model)
        if args.eval_only and cfg.TEST.EXPECTED_RESULTS:
            verify_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
