"""Oracle bounds of Dynamic ECC: the best accuracy any offload decision could reach with two runs' detections.

Given the edge's own detections and the cloud's (always-offload) on the same images, each image is cut into a
``grid`` x ``grid`` of tiles (``grid`` 1: whole images). A tile sent to the cloud takes the cloud's detections
whose box centre lies in it, every other tile the edge's. Tiles are sent in the order of what the cloud adds
there: the ground-truth objects (by box centre) that the cloud finds and the edge misses, minus those the edge
finds and the cloud misses (found: a detection of the same class with score >= ``score`` at IoU >= 0.5), ties
broken by the cloud's lower false-detection count. The curve (AP by pycocotools at each fraction of tiles sent)
is what a gate that knew the answers would reach: how close a real gate comes to it, and at what granularity
offloading can meet a budget at all.
"""
import contextlib
import io
import json
import os

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

IOU = 0.5


def load_coco_gt(dataset_name):
    """The COCO ground truth of a registered Detectron2 dataset (its json_file, else Detectron2's conversion)."""
    from detectron2.data import MetadataCatalog
    from detectron2.data.datasets.coco import convert_to_coco_json

    meta = MetadataCatalog.get(dataset_name)
    path = getattr(meta, "json_file", None)
    if not path or not os.path.isfile(path):
        path = os.path.join("output", "oracle", f"{dataset_name}_coco_format.json")
        convert_to_coco_json(dataset_name, path)
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(path)


def read_detections(run_dir):
    """The COCO-format detections an ``--eval-only`` run wrote (``coco_instances_results.json``)."""
    path = os.path.join(run_dir, "coco_instances_results.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: pass the OUTPUT_DIR of a tools/train_net.py --eval-only run")
    with open(path) as f:
        return json.load(f)


def coco_ap(gt, dets, image_ids):
    """AP (percent, COCO's 0.5:0.95) of ``dets`` on ``image_ids``; 0 without detections."""
    if not dets:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return 100.0 * max(float(ev.stats[0]), 0.0)


def _iou(a, b):
    """IoU of xywh boxes a [N, 4] against b [M, 4]."""
    ax2, ay2, bx2, by2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    return inter / (a[:, 2:].prod(1)[:, None] + b[:, 2:].prod(1)[None] - inter + 1e-9)


def _tile(box, width, height, grid):
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return (min(max(int(cy * grid / height), 0), grid - 1), min(max(int(cx * grid / width), 0), grid - 1))


def _found(gts, dets):
    """Per ground-truth object: does a confident detection of its class match it."""
    if not gts or not dets:
        return np.zeros(len(gts), bool)
    iou = _iou(np.array([g["bbox"] for g in gts], float), np.array([d["bbox"] for d in dets], float))
    same = np.array([g["category_id"] for g in gts])[:, None] == np.array([d["category_id"] for d in dets])[None]
    return ((iou >= IOU) & same).any(1)


def tile_gains(gt, edge, cloud, grid, score=0.5, image_ids=None):
    """{(image_id, row, col): (gain, -cloud false detections)} for every tile of ``image_ids`` (default all of
    ``gt``'s images; see the module)."""
    by = {"edge": {}, "cloud": {}}
    for name, dets in (("edge", edge), ("cloud", cloud)):
        for d in dets:
            if d["score"] >= score:
                by[name].setdefault(d["image_id"], []).append(d)
    gains = {}
    for img in gt.loadImgs(list(image_ids) if image_ids is not None else gt.getImgIds()):
        w, h, i = img["width"], img["height"], img["id"]
        gts = [a for a in gt.loadAnns(gt.getAnnIds(imgIds=[i], iscrowd=False))]
        e, c = by["edge"].get(i, []), by["cloud"].get(i, [])
        fe, fc = _found(gts, e), _found(gts, c)
        tiles = [_tile(a["bbox"], w, h, grid) for a in gts]
        matched_c = _found(c, gts) if c and gts else np.zeros(len(c), bool)  # cloud detections that hit an object
        for r in range(grid):
            for col in range(grid):
                here = [k for k, t in enumerate(tiles) if t == (r, col)]
                gain = int(sum(fc[k] and not fe[k] for k in here)) - int(sum(fe[k] and not fc[k] for k in here))
                false = sum(1 for d, m in zip(c, matched_c) if not m and _tile(d["bbox"], w, h, grid) == (r, col))
                gains[(i, r, col)] = (gain, -false)
    return gains


def mix(gt, edge, cloud, sent, grid):
    """Detections with the cloud's in the tiles of ``sent`` and the edge's elsewhere."""
    size = {img["id"]: (img["width"], img["height"]) for img in gt.loadImgs(gt.getImgIds())}
    out = [d for d in cloud if (d["image_id"], *_tile(d["bbox"], *size[d["image_id"]], grid)) in sent]
    return out + [d for d in edge if (d["image_id"], *_tile(d["bbox"], *size[d["image_id"]], grid)) not in sent]


def oracle_curve(gt, edge, cloud, grid=1, fractions=(0.25, 0.4, 0.5, 0.6, 0.75), score=0.5, image_ids=None):
    """[{"grid", "fraction", "tiles_sent", "tiles", "AP"}] at 0, each fraction and 1 of the tiles sent, on
    ``image_ids`` (default all of ``gt``'s images; both runs must cover them). See the module."""
    ids = sorted(image_ids) if image_ids is not None else gt.getImgIds()
    keep = set(ids)
    edge, cloud = [d for d in edge if d["image_id"] in keep], [d for d in cloud if d["image_id"] in keep]
    gains = tile_gains(gt, edge, cloud, grid, score, ids)
    order = sorted(gains, key=lambda t: gains[t], reverse=True)
    points = []
    for f in sorted({0.0, *fractions, 1.0}):
        n = int(round(f * len(order)))
        sent = set(order[:n])
        points.append({"grid": grid, "fraction": f, "tiles_sent": n, "tiles": len(order),
                       "AP": coco_ap(gt, mix(gt, edge, cloud, sent, grid), ids)})
    return points
