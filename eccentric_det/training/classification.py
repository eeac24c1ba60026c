"""Training, Dynamic ECC gate fitting and evaluation of SplitTimmClassifier (``tools/train_cls.py`` calls :func:`main`).

Training modes (``MODEL.ECCENTRIC.DISTILL.MODE``), with the loss functions of the detection side:

* ``task``: cross-entropy of every head the model has (the cloud's through the codec, the edge's own),
  plus lambda x rate (bits per input pixel).
* ``kd``: teacher -> edge: the edge head's cross-entropy and temperature KD to the frozen teacher's logits.
* ``adapt``: the cloud consumes the edge's coded features: feature matching to the teacher at the split and
  before the head, KD to its logits, cross-entropy, plus lambda x rate. ``DISTILL.FREEZE`` keeps the edge fixed;
  ``MODEL.ECCENTRIC.DISTILL.EDGE_LOSS_WEIGHT`` > 0 instead adapts it jointly, its own head's cross-entropy and KD kept in the loss.

The optimiser is AdamW (``SOLVER.BASE_LR``, ``WEIGHT_DECAY``, Detectron2's norm/bias parameter groups, the codec
at ``MODEL.ECCENTRIC.CODEC.LR_FACTOR`` x the LR) under Detectron2's LR schedule (``SOLVER.LR_SCHEDULER_NAME``,
``WARMUP_*``, ``MAX_ITER``); ``SOLVER.IMS_PER_BATCH`` images per step.
"""
import json
import logging
import os
import time

import numpy as np
import torch
from detectron2.solver import build_lr_scheduler
from torch.nn import functional as F

from ..calibration import fit_gate
from ..checkpoint import load_checked
from ..tasks import get_eccentric_cfg
from ..distill.losses import feature_matching_loss, logit_kd_loss
from ..distill.objective import TrainingObjective, freeze_parameters, keep_frozen_in_eval
from ..distill.teacher import frozen_teacher, warn_if_random
from ..evaluation.costs import FORMAT, cost_table, finite_json, summarize
from ..evaluation.curves import write_curve
from ..evaluation.flops import count_gflops, split_gflops
from ..solver import param_groups
from ..classification.checkpoint import edge_state, load_weights, read_state, save_weights
from ..classification.data import batches, test_data, train_and_holdout
from ..classification.split_model import SplitTimmClassifier, create_timm, encode_png

logger = logging.getLogger(__name__)


def build_cls_teacher(config_file, weights, device="cpu"):
    """A frozen unsplit classifier (a config with ``OFFLOAD_MODE`` "image", e.g. the cloud teacher's)."""
    cfg = get_eccentric_cfg(config_file, task="classification")
    if cfg.MODEL.ECCENTRIC.OFFLOAD_MODE != "image":
        raise ValueError(f"teacher config {config_file} must describe an unsplit model (OFFLOAD_MODE 'image')")
    teacher = SplitTimmClassifier(cfg).to(device)
    if weights:
        missing = load_weights(teacher, weights)
        if missing:
            raise ValueError(f"teacher weights {weights} lack {len(missing)} tensors of {config_file}")
    warn_if_random(config_file, weights)
    return frozen_teacher(teacher)


class ClsLosses(TrainingObjective):
    """The loss dict of one batch for ``DISTILL.MODE``. The mode checks, weights, rate term, ``DISTILL.FREEZE`` and
    the teacher's life are :class:`~eccentric_det.distill.objective.TrainingObjective`'s; classification adds its
    cross-entropy and logit/feature losses, the check that the edge has its own head, and its teacher (an unsplit
    classifier, built at once)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        E, D = cfg.MODEL.ECCENTRIC, cfg.MODEL.ECCENTRIC.DISTILL
        self.split_index = cfg.MODEL.CLS.SPLIT_INDEX
        if self.w_edge > 0 and D.MODE == "adapt" and E.OFFLOAD.POLICY == "always":
            raise ValueError("DISTILL.EDGE_LOSS_WEIGHT trains the edge's own head, which OFFLOAD.POLICY 'always' "
                             "drops: set OFFLOAD.POLICY 'dynamic' (or EDGE_LOSS_WEIGHT 0)")
        # built now rather than on first use (as detection's is): before training draws random numbers, as always
        self._teacher = self.build_teacher() if self.mode != "task" else None

    def build_teacher(self):
        D = self._cfg.MODEL.ECCENTRIC.DISTILL
        return build_cls_teacher(D.TEACHER_CONFIG, D.TEACHER_WEIGHTS, self._cfg.MODEL.DEVICE)

    def _run_teacher(self, images):
        t = self.teacher
        final, (feat,) = t.cloud_half.model.forward_intermediates(t.normalizer(images), indices=[self.split_index])
        return t.cloud_half.model.forward_head(final), {"split": feat, "final": final}

    def __call__(self, model, images, labels):
        if self.mode == "kd" and (model.edge_half is None or not model.edge_half.own_head):
            raise ValueError("DISTILL.MODE 'kd' trains the edge's own head: set OFFLOAD.POLICY 'never' or 'dynamic'")
        rates, weights = self.sample_rates(model.codec, len(images))
        out = model(images, run_cloud=self.mode != "kd", rate=rates)
        losses = {}
        if out.logits is not None:
            losses["loss_cls"] = self.w_task * F.cross_entropy(out.logits, labels)
        edge = out.edge_logits is not None and self.w_edge > 0
        if edge:
            losses["edge_loss_cls"] = self.w_edge * self.w_task * F.cross_entropy(out.edge_logits, labels)
        if model.codec is not None and out.logits is not None:
            losses["loss_rate"] = self.rate_term(out.likelihoods, images.shape[0] * images[0, 0].numel(), weights)[0]
        if self.teacher is not None:
            with torch.no_grad():
                t_logits, t_feats = self._run_teacher(images)
            if edge:
                losses["edge_loss_kd"] = self.w_edge * self.w_logit * logit_kd_loss(out.edge_logits, t_logits, self.T)
            if self.mode == "adapt":
                scale = self.distill_scale
                losses["loss_kd"] = scale * self.w_logit * logit_kd_loss(out.logits, t_logits, self.T)
                losses["loss_feature_match"] = scale * self.w_feat * feature_matching_loss(out.features, t_feats,
                                                                                           list(t_feats))
        return losses


def train(cfg, model, data, losses=None, holdout=None, resume=False):
    """``SOLVER.MAX_ITER`` steps on ``data`` (:class:`ClsData`); returns each step's float losses (of this call).

    Every ``TEST.EVAL_PERIOD`` iterations (and at the last) top-1 on ``holdout`` is logged and the learning curve
    written to ``OUTPUT_DIR/curve.json`` (:func:`eccentric_det.evaluation.curves.write_curve`). Every
    ``SOLVER.CHECKPOINT_PERIOD`` iterations the model, optimiser, schedule and curve are saved to
    ``OUTPUT_DIR/last_checkpoint.pth``; ``resume`` continues from it (the same steps as an uninterrupted run)."""
    losses = losses or ClsLosses(cfg)
    frozen = cfg.MODEL.ECCENTRIC.DISTILL.FREEZE  # prefixes, frozen as detection's are (TrainingObjective)
    freeze_parameters(model, frozen)
    optimizer = torch.optim.AdamW(param_groups(cfg, model), lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY)
    scheduler = build_lr_scheduler(cfg, optimizer)
    gen = torch.Generator().manual_seed(max(cfg.SEED, 0))
    state_path = os.path.join(cfg.OUTPUT_DIR, "last_checkpoint.pth")
    start, curve = 0, []
    if resume and os.path.isfile(state_path):
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, curve = state["iter"], state["curve"]
        logger.info("Resumed from %s at iteration %d", state_path, start)
    stream = batches(data, cfg.SOLVER.IMS_PER_BATCH, gen, flip=cfg.DATA_CLS.FLIP,
                     crop_padding=cfg.DATA_CLS.CROP_PADDING, erase_prob=cfg.DATA_CLS.ERASE_PROB)
    for _ in range(start):  # a resumed run draws the batches it trained on again: the same data order after them
        next(stream)
    model.train()
    keep_frozen_in_eval(model, frozen)
    device, history, t0 = model.device, [], time.perf_counter()
    period, max_iter = cfg.TEST.EVAL_PERIOD, cfg.SOLVER.MAX_ITER
    for it in range(start, max_iter):
        images, labels = next(stream)
        losses.iteration = it
        loss_dict = losses(model, images.to(device), labels.to(device))
        total = sum(loss_dict.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        scheduler.step()
        history.append({k: v.item() for k, v in loss_dict.items()})
        done = it + 1
        if done % 20 == 0 or done == max_iter:
            logger.info("iter %d/%d  lr %.2e  %.2f s/it  total %.4f  %s", done, max_iter,
                        optimizer.param_groups[0]["lr"], (time.perf_counter() - t0) / (done - start), total.item(),
                        "  ".join(f"{k} {v:.4f}" for k, v in history[-1].items()))
        if holdout is not None and period and (done % period == 0 or done == max_iter):
            curve.append((done, holdout_top1(model, holdout, cfg.DATA_CLS.TEST_BATCH_SIZE)))
            verdict = write_curve(os.path.join(cfg.OUTPUT_DIR, "curve.json"), curve, "top-1 (%, held-out)",
                                  images_per_iter=cfg.SOLVER.IMS_PER_BATCH, dataset=holdout.name)["plateau"]
            logger.info("iter %d: held-out top-1 %.2f%% (plateau rule: %s)", done, curve[-1][1], verdict)
            model.train()
            keep_frozen_in_eval(model, frozen)
        if cfg.SOLVER.CHECKPOINT_PERIOD and done % cfg.SOLVER.CHECKPOINT_PERIOD == 0 and done < max_iter:
            os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iter": done,
                        "scheduler": scheduler.state_dict(), "curve": curve},
                       state_path + ".tmp")
            os.replace(state_path + ".tmp", state_path)
    model.eval()
    return history


@torch.no_grad()
def holdout_top1(model, data, batch_size):
    """Top-1 (%) of the training path on ``data``: the cloud's logits, or the edge's when the model has no cloud
    (the learning curve's measure; no bytes are coded)."""
    model.eval()
    correct = 0
    for start in range(0, len(data), batch_size):
        images = data.images[start:start + batch_size].to(model.device)
        out = model(images, run_cloud=model.cloud_half is not None)
        logits = out.logits if out.logits is not None else out.edge_logits
        correct += int((logits.argmax(1).cpu() == data.labels[start:start + batch_size]).sum())
    return 100.0 * correct / len(data)


@torch.no_grad()
def classifier_gflops(model):
    """GFLOPs of one image, as the detection side counts them (:func:`eccentric_det.evaluation.flops.split_gflops`):
    ``edge`` (all the edge runs for an offloaded image), ``encoder`` (the part of it that runs only when
    offloading), ``cloud`` (the cloud's work for an offloaded image) and ``cloud_only`` (the unsplit cloud model)."""
    model.eval()
    image = torch.zeros(1, model.in_chans, *model.image_size)
    x_cloud, x = model.normalizer(image), model.edge_normalizer(image)
    full = create_timm(*model.cloud_spec).to(x.device).eval()
    g = {"edge": 0.0, "encoder": 0.0, "cloud": 0.0, "cloud_only": count_gflops(full, (x_cloud,))}
    if model.edge_half is None:
        g["cloud"] = g["cloud_only"]
    elif model.codec is None:
        g["edge"] = count_gflops(lambda t: [o for o in model.edge_half(t) if o is not None], (x,), model.edge_half)
    else:
        edge, codec, tail = model.split_parts()
        g.update(split_gflops(edge, codec, tail, x, (edge,), (tail,)))
        del g["tail"]
    return g


def config_summary(cfg):
    """What identifies an operating point in eccentric_metrics.json."""
    C, E = cfg.MODEL.CLS, cfg.MODEL.ECCENTRIC
    return {"task": "classification", "weights": cfg.MODEL.WEIGHTS, "edge_weights": E.EDGE.WEIGHTS,
            "timm_name": C.TIMM_NAME, "edge_timm_name": C.EDGE_TIMM_NAME or C.TIMM_NAME, "split_index": C.SPLIT_INDEX,
            "input_size_test": [C.IMAGE_SIZE, C.IMAGE_SIZE], "edge_input_size": [C.EDGE_IMAGE_SIZE or C.IMAGE_SIZE] * 2,
            "offload_mode": E.OFFLOAD_MODE,
            "policy": E.OFFLOAD.POLICY, "threshold": E.OFFLOAD.THRESHOLD, "codec": E.CODEC.NAME,
            "image_codec": [C.IMAGE_CODEC, C.IMAGE_QUALITY]}


@torch.no_grad()
def evaluate(cfg, model, data, output_dir=""):
    """Edge (one image at a time) -> real payload bytes -> cloud (batched) on every image of ``data``.
    Returns top-1 (%), bytes per image, offload rate, per-half ms and GFLOPs (:func:`summarize` of the detection
    side) and the mean size of the images as PNG; writes ``output_dir/eccentric_metrics.json`` as detection does."""
    model.eval()
    records, bs = [], cfg.DATA_CLS.TEST_BATCH_SIZE
    for start in range(0, len(data), bs):
        images, labels = data.images[start:start + bs], data.labels[start:start + bs]
        decisions = model.edge_step(images)
        sent = {i: d.payload.to_bytes() for i, d in enumerate(decisions) if d.offload}
        cloud, cloud_ms = {}, 0.0
        if sent:
            t0 = time.perf_counter()
            cloud = dict(zip(sent, model.cloud(list(sent.values())).cpu()))
            cloud_ms = (time.perf_counter() - t0) * 1e3 / len(sent)
        for i, d in enumerate(decisions):
            pred = int((cloud[i] if d.offload else d.answer).argmax())
            records.append({"image_id": start + i, "label": int(labels[i]), "pred": pred,
                            "pixels": int(images[i, 0].numel()), "bytes": len(sent.get(i, b"")),
                            "offloaded": d.offload, "score": d.score, "edge_ms": d.edge_ms,
                            "cloud_ms": cloud_ms if d.offload else 0.0})
    metrics = {"top1": 100.0 * float(np.mean([r["pred"] == r["label"] for r in records])),
               **summarize(records, classifier_gflops(model)),
               "png_bytes_mean": float(np.mean([len(encode_png(img)) for img in data.images]))}
    if model.policy == "dynamic":
        metrics["offload_threshold"] = model.threshold
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        path = os.path.join(output_dir, "eccentric_metrics.json")
        with open(path + ".tmp", "w") as f:  # written whole or not at all: an interrupted run leaves no half file
            json.dump(finite_json({"format": FORMAT, "dataset": data.name, "config": config_summary(cfg),
                                   "metrics": metrics, "images": records}), f, indent=1)
        os.replace(path + ".tmp", path)
    logger.info("Results on %s: top-1 %.2f%%, image as PNG %.1f bytes\n%s", data.name, metrics["top1"],
                metrics["png_bytes_mean"], cost_table(metrics))
    return metrics


def load_initial_weights(cfg, model, complete=False):
    """``MODEL.WEIGHTS`` into the whole model (with ``MODEL.ECCENTRIC.CODEC.PRIOR_WEIGHTS`` over it) and
    ``MODEL.ECCENTRIC.EDGE.WEIGHTS`` into the edge half (see :func:`edge_state`: an unsplit checkpoint of the edge's
    timm model also serves), checked as detection's are (:func:`eccentric_det.checkpoint.load_checked`;
    ``complete`` for evaluation)."""
    path, edge_path = cfg.MODEL.WEIGHTS, cfg.MODEL.ECCENTRIC.EDGE.WEIGHTS
    weights = (f"{path} (MODEL.WEIGHTS)", read_state(path)) if path else None
    prior = cfg.MODEL.ECCENTRIC.CODEC.PRIOR_WEIGHTS
    if prior:  # the fitted positional prior, over MODEL.WEIGHTS' own
        if getattr(model.codec, "symbol_prior", None) is None:
            raise ValueError(f"{prior} (MODEL.ECCENTRIC.CODEC.PRIOR_WEIGHTS) is a positional prior: it needs "
                             f"MODEL.ECCENTRIC.CODEC.POSITIONAL_PRIOR True and CODEC.NAME 'factorized'")
        counts = read_state(prior)
        other = [k for k in counts if not k.startswith("codec.symbol_prior.")]
        if other:
            raise ValueError(f"{prior} (MODEL.ECCENTRIC.CODEC.PRIOR_WEIGHTS) holds {len(other)} tensors besides a "
                             f"positional prior (e.g. {other[0]}): give the file tools/fit_symbol_prior.py writes, "
                             f"the model's weights as MODEL.WEIGHTS")
        source, state = weights or (None, {})
        label = f"{prior} (MODEL.ECCENTRIC.CODEC.PRIOR_WEIGHTS)"
        weights = (f"{source} with {label}" if source else label, {**state, **counts})
    edge = None
    if edge_path and model.edge_half is not None:
        edge = (f"{edge_path} (MODEL.ECCENTRIC.EDGE.WEIGHTS)", edge_state(read_state(edge_path)))
    load_checked(model, weights, edge, complete)


def main(cfg, eval_only=False, resume=False):
    """Build, train (unless ``eval_only`` or ``SOLVER.MAX_ITER`` is 0; ``resume`` from ``OUTPUT_DIR``'s last
    checkpoint), save and reload ``OUTPUT_DIR/model_final.pth``, fit the Dynamic ECC gate on the held-out images
    (``MODEL.CLS.GATE_RECALL``), evaluate on ``DATASETS.TEST[0]``."""
    torch.manual_seed(max(cfg.SEED, 0))
    model = SplitTimmClassifier(cfg).to(cfg.MODEL.DEVICE)
    load_initial_weights(cfg, model, complete=eval_only)
    if not eval_only and cfg.SOLVER.MAX_ITER:
        fit, holdout = train_and_holdout(cfg)
        train(cfg, model, fit, holdout=holdout, resume=resume)
        path = save_weights(model, os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
        load_weights(model, path)  # evaluate what was saved (float16)
    if model.policy == "dynamic" and cfg.MODEL.CLS.GATE_RECALL:
        holdout = train_and_holdout(cfg)[1]
        fit = fit_gate(model, holdout, cfg.MODEL.CLS.GATE_RECALL, cfg.DATA_CLS.TEST_BATCH_SIZE)
        logger.info("Offload gate fitted on %d held-out images: %s (deploy with MODEL.ECCENTRIC.OFFLOAD.THRESHOLD "
                    "%.6g, MODEL.CLS.GATE_RECALL 0)", len(holdout), fit, fit["threshold"])
    return evaluate(cfg, model, test_data(cfg), cfg.OUTPUT_DIR)
