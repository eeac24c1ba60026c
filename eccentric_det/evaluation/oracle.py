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
from detectron2.data import MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_json
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

IOU = 0.5


def load_coco_gt(dataset_name):
    """The COCO ground truth of a registered Detectron2 dataset (its json_file, else Detectron2's conversion)."""
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


def _tile(box, width, height, grid):
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return (min(max(int(cy * grid / height), 0), grid - 1), min(max(int(cx * grid / width), 0), grid - 1))


def _matched(items, others):
    """Per item of ``items`` (boxes with a class, xywh): does one of ``others`` of its class overlap it at IoU >=
    0.5 (pycocotools' box IoU)."""
    if not items or not others:
        return np.zeros(len(items), bool)
    iou = mask_utils.iou([o["bbox"] for o in others], [i["bbox"] for i in items], [0] * len(items)).T
    same = np.array([i["category_id"] for i in items])[:, None] == np.array([o["category_id"] for o in others])[None]
    return ((iou >= IOU) & same).any(1)


def _keyed(gt, dets, grid):
    """(tile key (image_id, row, col), detection) of every detection, each tile found once."""
    size = {img["id"]: (img["width"], img["height"]) for img in gt.loadImgs(list({d["image_id"] for d in dets}))}
    return [((d["image_id"], *_tile(d["bbox"], *size[d["image_id"]], grid)), d) for d in dets]


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
        gts = gt.loadAnns(gt.getAnnIds(imgIds=[i], iscrowd=False))
        e, c = by["edge"].get(i, []), by["cloud"].get(i, [])
        fe, fc = _matched(gts, e), _matched(gts, c)
        gains.update({(i, r, col): [0, 0] for r in range(grid) for col in range(grid)})
        for k, a in enumerate(gts):
            gains[(i, *_tile(a["bbox"], w, h, grid))][0] += int(fc[k] and not fe[k]) - int(fe[k] and not fc[k])
        for d, hit in zip(c, _matched(c, gts)):  # the cloud's false detections, a tie-break
            if not hit:
                gains[(i, *_tile(d["bbox"], w, h, grid))][1] -= 1
    return {k: tuple(v) for k, v in gains.items()}


def mix(keyed_edge, keyed_cloud, sent):
    """Detections with the cloud's in the tiles of ``sent`` and the edge's elsewhere (lists from :func:`_keyed`)."""
    return [d for k, d in keyed_cloud if k in sent] + [d for k, d in keyed_edge if k not in sent]


def oracle_curve(gt, edge, cloud, grid=1, fractions=(0.25, 0.4, 0.5, 0.6, 0.75), score=0.5, image_ids=None):
    """[{"grid", "fraction", "tiles_sent", "tiles", "AP"}] at 0, each fraction and 1 of the tiles sent, on
    ``image_ids`` (default all of ``gt``'s images; both runs must cover them). See the module."""
    ids = sorted(image_ids) if image_ids is not None else gt.getImgIds()
    keep = set(ids)
    edge, cloud = [d for d in edge if d["image_id"] in keep], [d for d in cloud if d["image_id"] in keep]
    gains = tile_gains(gt, edge, cloud, grid, score, ids)
    order = sorted(gains, key=lambda t: gains[t], reverse=True)
    keyed_edge, keyed_cloud = _keyed(gt, edge, grid), _keyed(gt, cloud, grid)
    points = []
    for f in sorted({0.0, *fractions, 1.0}):
        n = int(round(f * len(order)))
        sent = set(order[:n])
        points.append({"grid": grid, "fraction": f, "tiles_sent": n, "tiles": len(order),
                       "AP": coco_ap(gt, mix(keyed_edge, keyed_cloud, sent), ids)})
    return points
