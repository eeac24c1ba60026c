"""Train and evaluate eccentric_det models (Detectron2's standard CLI); ``tools/train_net.py`` and
``python -m eccentric_det.cli.train_net`` run :func:`main`.

    python tools/train_net.py --config-file configs/FashionDet/adaptive_ecc.yaml
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS checkpoints/fashion_det/adaptive_ecc_vr.pth
    python tools/train_net.py --num-gpus 8 --config-file ...        # DDP through detectron2's launch
"""
import os

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import verify_results
from detectron2.utils import comm

from .. import data  # noqa: F401  (registers the datasets)
from .. import modeling  # noqa: F401  (registers the backbones, ROI heads, EccentricRCNN)
from ..checkpoint import load_weights
from ..tasks import get_eccentric_cfg
from ..data import check_class_count
from ..evaluation import build_eccentric_evaluator, check_datasets
from ..solver import build_optimizer
from ..training.hooks import EarlyStop, StopAtPlateau
from .logs import setup_logging


class Trainer(DefaultTrainer):
    """DefaultTrainer with eccentric_det's evaluator and optimizer, and its checked loader for MODEL.WEIGHTS and
    MODEL.ECCENTRIC.EDGE.WEIGHTS."""

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

    def build_hooks(self):
        """Detectron2's hooks, then :class:`StopAtPlateau` (after the EvalHook it reads): it writes
        OUTPUT_DIR/stop.json, and ends the run early at SOLVER.PLATEAU.STOP or SOLVER.MAX_MINUTES."""
        return super().build_hooks() + [StopAtPlateau.from_config(self.cfg, self.checkpointer)]

    def train(self):
        """Detectron2's training; a run stopped at its plateau or time budget returns its last evaluation."""
        try:
            return super().train()
        except EarlyStop:
            return getattr(self, "_last_eval_results", None)

    def resume_or_load(self, resume=True):
        """Detectron2's resume from OUTPUT_DIR's last checkpoint (model, optimizer, scheduler, iteration);
        otherwise the checked MODEL.WEIGHTS and MODEL.ECCENTRIC.EDGE.WEIGHTS."""
        if resume and self.checkpointer.has_checkpoint():
            super().resume_or_load(resume=True)
        else:
            load_weights(_unwrap(self.model), self.cfg)


def _unwrap(model):
    return getattr(model, "module", model)


def setup(args):
    cfg = get_eccentric_cfg(args.config_file, args.opts)
    if cfg.MODEL.DEVICE == "cpu":
        torch.set_flush_denormal(True)
    cfg.freeze()
    default_setup(cfg, args)
    setup_logging(cfg.OUTPUT_DIR, comm.get_rank(), names=("eccentric_det",))  # default_setup set up detectron2
    return cfg


def run(args):
    """One process's training or evaluation (what Detectron2's ``launch`` runs in each)."""
    cfg = setup(args)
    check_datasets(cfg, train=not args.eval_only)
    check_class_count(cfg, cfg.DATASETS.TEST if args.eval_only else None)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        checkpointer = DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
        if args.resume and checkpointer.has_checkpoint():
            checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=True)  # this run's last checkpoint
        else:
            load_weights(model, cfg, complete=True)
        res = Trainer.test(cfg, model)
        if args.eval_only and cfg.TEST.EXPECTED_RESULTS:
            verify_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def main(argv=None):
    """Detectron2's command line (``argv``, default ``sys.argv[1:]``): :func:`run` on ``--num-gpus`` processes."""
    args = default_argument_parser().parse_args(argv)
    launch(run, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    main()
