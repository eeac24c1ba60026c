"""Recall-rate boosting for Dynamic ECC, both tasks: label the images the edge gets wrong, fit the offload gate.

Under an offload budget, missing an image that needs the cloud costs accuracy, while offloading an easy one
only costs bytes: the gate is fitted with the positive class up-weighted, and its threshold set to reach a
target recall of those images (:func:`threshold_for_recall`).

* Detection: an image "needs the cloud" when the edge's detections make more errors (missed objects plus
  false detections, IoU 0.5, same class, score >= 0.5) than the cloud's on the same image; the gate
  (``OffloadGate``) is a logistic model over statistics of the edge detector's scores
  (:func:`calibrate_offload_gate`, :func:`fit_offload_gate`).
* Region-level detection: a tile needs the cloud when the cloud finds more of the ground-truth objects centred
  there than the edge does (score >= 0.5, IoU 0.5, same class); the gate (``RegionGate``) is a logistic model over
  per-tile statistics of the edge's detections and RPN objectness (:func:`calibrate_offload_gate` with ``regions``).
* Classification: an image needs the cloud when the edge's own head gets it wrong; the gate is a threshold
  on 1 - the edge's max softmax (:func:`fit_gate`).
"""
import json
import logging
import os

import numpy as np
import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import BoxMode, Boxes, pairwise_iou
from torch import nn

from .split.gate import detection_statistics, softmax_uncertainty
from .split.regions import centre_tiles

logger = logging.getLogger(__name__)
FIT_KEYS = ("threshold", "offload_rate", "recall", "needs_cloud_fraction")  # what a fit's JSON record keeps


class NothingToFit(ValueError):
    """The images give the gate nothing to learn: every one of them needs the cloud, or none does."""


def count_errors(instances, gt_boxes, gt_classes, score_thresh=0.5, iou_thresh=0.5):
    """Missed ground-truth objects + unmatched detections (greedy matching by score)."""
    keep = instances.scores >= score_thresh
    boxes, classes = instances.pred_boxes[keep], instances.pred_classes[keep]
    if len(gt_classes) == 0 or len(boxes) == 0:
        return len(gt_classes) + len(boxes)
    iou = pairwise_iou(boxes, Boxes(gt_boxes)).numpy()
    iou[classes.numpy()[:, None] != gt_classes.numpy()[None, :]] = 0
    matched, hits = set(), 0
    for i in range(len(boxes)):  # already sorted by score
        j = int(np.argmax(np.where([k not in matched for k in range(len(gt_classes))], iou[i], -1)))
        if iou[i, j] >= iou_thresh and j not in matched:
            matched.add(j)
            hits += 1
    return (len(gt_classes) - hits) + (len(boxes) - hits)


def _ground_truth(record):
    anns = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
    boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns]
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor([a["category_id"] for a in anns])


@torch.no_grad()
def collect_gate_data(cfg, model, dataset_name, max_images=300):
    """Edge statistics and "needs the cloud" labels over the first ``max_images`` of a dataset."""
    mapper = DatasetMapper(cfg, is_train=False)
    model.policy = "dynamic"  # make the edge run its detector
    stats, labels = [], []
    for record in DatasetCatalog.get(dataset_name)[:max_images]:
        inp = mapper(dict(record))
        decision = model.edge_step([inp], force_offload=True)[0]
        cloud = model.cloud([decision.payload])[0]["instances"]
        gt_boxes, gt_classes = _ground_truth(record)
        edge_err = count_errors(decision.answer.to("cpu"), gt_boxes, gt_classes)
        cloud_err = count_errors(cloud.to("cpu"), gt_boxes, gt_classes)
        stats.append(detection_statistics(decision.answer.scores.cpu(), model.offload_gate.min_score))
        labels.append(edge_err > cloud_err)
    return np.stack(stats), np.array(labels)


def found(instances, gt_boxes, gt_classes, score_thresh=0.5, iou_thresh=0.5):
    """Bool per ground-truth object: does a detection of its class with score >= ``score_thresh`` overlap it at
    IoU >= ``iou_thresh``?"""
    keep = instances.scores >= score_thresh
    boxes, classes = instances.pred_boxes[keep], instances.pred_classes[keep]
    if len(gt_classes) == 0 or len(boxes) == 0:
        return np.zeros(len(gt_classes), bool)
    iou = pairwise_iou(Boxes(gt_boxes), boxes).numpy()
    iou[gt_classes.numpy()[:, None] != classes.numpy()[None, :]] = 0
    return (iou >= iou_thresh).any(1)


@torch.no_grad()
def collect_region_data(cfg, model, dataset_name, max_images=300):
    """Per-tile statistics and "needs the cloud" labels (the cloud finds more of the objects centred in the tile than
    the edge) over the first ``max_images`` of a dataset, with the cloud on whole latents."""
    mapper = DatasetMapper(cfg, is_train=False)
    tile_px = model.region_tile * model.latent_stride()
    stats, labels = [], []
    for record in DatasetCatalog.get(dataset_name)[:max_images]:
        inp = mapper(dict(record))
        x, image_size, output_size, _ = model.edge_input(inp)
        raw, tile_stats, grid = model.edge_regions(x, image_size)
        stats.append(tile_stats)
        edge = detector_postprocess(raw, *output_size).to("cpu")
        cloud = model.cloud([model.edge([inp])[0]])[0]["instances"].to("cpu")
        gt_boxes, gt_classes = _ground_truth(record)
        gain = found(cloud, gt_boxes, gt_classes).astype(int) - found(edge, gt_boxes, gt_classes).astype(int)
        sy, sx = image_size[0] / record["height"], image_size[1] / record["width"]
        r, c = centre_tiles(gt_boxes.numpy(), tile_px, grid, (sy, sx))
        tile_gain = np.zeros(grid[0] * grid[1], int)
        np.add.at(tile_gain, r * grid[1] + c, gain)
        labels.append(tile_gain > 0)
    return np.concatenate(stats), np.concatenate(labels)


def calibrate_offload_gate(cfg, model, dataset_name, max_images=300, recall_target=0.9, regions=False):
    """Fit the model's gate, or with ``regions`` its region gate (in place), and return the fit: parameters,
    threshold, offload rate (of images, or of tiles), recall."""
    collect, gate, unit = ((collect_region_data, model.region_gate, "tiles") if regions
                           else (collect_gate_data, model.offload_gate, "images"))
    stats, labels = collect(cfg, model, dataset_name, max_images)
    logger.info("%d of %d %s need the cloud", labels.sum(), len(labels), unit)
    fit = fit_offload_gate(stats, labels, recall_target=recall_target)
    gate.load_fit(fit)
    fit["needs_cloud_fraction"] = float(labels.mean())
    return fit


def write_fit(path, fit=None, reason="", **about):
    """Write a gate fit as JSON for the programs that read it (the recipe's gate stage), atomically: ``"fitted":
    true`` with the threshold and what it implies on the images it was fitted on (:data:`FIT_KEYS` of ``fit``, from
    :func:`calibrate_offload_gate`), or ``"fitted": false`` and the ``reason`` nothing was fitted; then ``about``
    (the dataset, the recall target, ...). Returns the record."""
    record = ({"fitted": True, **{k: fit[k] for k in FIT_KEYS if k in fit}} if fit is not None
              else {"fitted": False, "reason": reason})
    record.update(about)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)
    return record


def fit_offload_gate(stats, needs_cloud, recall_target=0.9, positive_weight=None, steps=2000, lr=0.1):
    """Recall-boosted logistic regression. ``stats``: [N, F] from :func:`detection_statistics`;
    ``needs_cloud``: [N] bool. Returns the parameters and the threshold reaching ``recall_target``
    of the positives on these images, with the offload rate it implies."""
    x = torch.as_tensor(np.asarray(stats), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(needs_cloud), dtype=torch.float32)
    if len(y) == 0 or y.sum() == 0 or y.sum() == len(y):
        raise NothingToFit("fitting the offload gate needs images both needing and not needing the cloud")
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    pos_w = positive_weight or float((1 - y).sum() / y.sum())  # boost recall: balance the classes at least
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=lr, max_iter=steps)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_w))

    def closure():
        opt.zero_grad()
        loss = loss_fn(z @ w + b, y) + 1e-3 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        p = torch.sigmoid(z @ w + b)
    threshold = threshold_for_recall(p.numpy(), y.numpy().astype(bool), recall_target)
    return {"weight": w.detach().tolist(), "bias": float(b.detach()), "mean": mean.tolist(), "std": std.tolist(),
            "threshold": threshold, "offload_rate": float((p.numpy() >= threshold).mean()),
            "recall": float(((p.numpy() >= threshold) & y.numpy().astype(bool)).sum() / y.sum())}


def threshold_for_recall(probs, positives, recall_target):
    """The largest threshold whose offloaded set (probs >= threshold) holds ``recall_target`` of the positives."""
    pos = np.sort(np.asarray(probs)[np.asarray(positives)])[::-1]
    k = max(1, int(np.ceil(recall_target * len(pos))))
    return float(pos[k - 1])


@torch.no_grad()
def edge_confidence(model, data, batch_size=256):
    """Classification: the edge's "needs the cloud" score (1 - max softmax) and its correctness on every image of
    ``data``."""
    scores, correct = [], []
    for start in range(0, len(data), batch_size):
        images, labels = data.images[start:start + batch_size], data.labels[start:start + batch_size]
        logits = model.edge_half(model.edge_normalizer(images))[1].cpu()
        scores.append(softmax_uncertainty(logits))
        correct.append(logits.argmax(1) == labels)
    return torch.cat(scores).numpy(), torch.cat(correct).numpy()


def fit_gate(model, data, recall, batch_size=256):
    """Classification's recall-rate boosting: the threshold at which the edge offloads ``recall`` of the images of
    ``data`` it gets wrong, set as ``model.threshold``. Returns the threshold and what it implies on ``data``."""
    model.eval()
    scores, correct = edge_confidence(model, data, batch_size)
    if correct.all():
        raise ValueError(f"the edge gets all {len(correct)} held-out images right: nothing to fit the gate on")
    threshold = threshold_for_recall(scores, ~correct, recall)
    model.threshold = threshold
    offload = scores >= threshold
    return {"threshold": threshold, "offload_rate": float(offload.mean()), "edge_top1": float(100 * correct.mean()),
            "recall": float((offload & ~correct).sum() / (~correct).sum())}
