"""Recall-rate boosting for Dynamic ECC: label the images the edge gets wrong, fit the offload gate.

An image "needs the cloud" when the edge's detections make more errors (missed objects plus false
detections, IoU 0.5, same class, score >= 0.5) than the cloud's on the same image.
"""
import logging

import numpy as np
import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.structures import BoxMode, pairwise_iou, Boxes

from .modeling.offload import detection_statistics, fit_offload_gate

logger = logging.getLogger(__name__)


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
        edge_err = count_errors(decision.instances.to("cpu"), gt_boxes, gt_classes)
        cloud_err = count_errors(cloud.to("cpu"), gt_boxes, gt_classes)
        stats.append(detection_statistics(decision.instances.scores.cpu(), model.offload_gate.min_score))
        labels.append(edge_err > cloud_err)
    return np.stack(stats), np.array(labels)


def calibrate_offload_gate(cfg, model, dataset_name, max_images=300, recall_target=0.9):
    """Fit the model's gate (in place) and return the fit: parameters, threshold, offload rate, recall."""
    stats, labels = collect_gate_data(cfg, model, dataset_name, max_images)
    logger.info("%d of %d images need the cloud", labels.sum(), len(labels))
    fit = fit_offload_gate(stats, labels, recall_target=recall_target)
    model.offload_gate.load_fit(fit)
    fit["needs_cloud_fraction"] = float(labels.mean())
    return fit
