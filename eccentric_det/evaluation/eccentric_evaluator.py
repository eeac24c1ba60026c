"""EccentricEvaluator: accuracy and the three costs (bytes, compute, offloading) of each image."""
import json
import logging
import os

from detectron2.evaluation import COCOEvaluator, DatasetEvaluator
from detectron2.utils import comm

from .costs import FORMAT, cost_table, finite_json, mean_gflops, summarize
from .flops import edge_cloud_gflops, region_cloud_gflops
from .oracle import load_coco_gt

logger = logging.getLogger(__name__)

AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
CLOUD_ONLY_MODEL = "cloud-only"  # config_summary's "model" of a detector with no split (result_series reads it)


class EccentricEvaluator(DatasetEvaluator):
    """Collects the ``eccentric`` record EccentricRCNN attaches to each output (bytes counted from the
    real payload, header included), counts FLOPs per half on the first ``TEST.ECCENTRIC.FLOPS_IMAGES``
    images (when ``TEST.ECCENTRIC.FLOPS`` and ``model`` is given; under region-level Dynamic ECC the cloud's on
    every image, on the regions it really runs), and merges the AP of ``accuracy``
    (a COCOEvaluator it drives, restricted to the images it saw; a model that detects nothing on images with ground
    truth scores AP 0, as pycocotools scores it, where Detectron2 reports NaN). A model without ``eccentric``
    records (a stock detector) counts as cloud-only on the full image, with no bytes measured.
    Writes ``output_dir/eccentric_metrics.json``."""

    def __init__(self, cfg, dataset_name, output_dir=None, model=None, accuracy=None):
        self._cfg, self._dataset_name, self._output_dir = cfg, dataset_name, output_dir
        self._model, self._accuracy = model, accuracy
        self._flops_images = cfg.TEST.ECCENTRIC.FLOPS_IMAGES if cfg.TEST.ECCENTRIC.FLOPS and model is not None else 0
        self.reset()

    def reset(self):
        self._records, self._gflops, self._region_cache, self._detections = [], [], {}, 0
        if self._accuracy is not None:
            self._accuracy.reset()

    def process(self, inputs, outputs):
        if self._accuracy is not None:
            self._accuracy.process(inputs, outputs)
        for inp, out in zip(inputs, outputs):
            self._detections += len(out["instances"]) if "instances" in out else 0
            rec = {"image_id": inp.get("image_id"), "pixels": int(inp["height"]) * int(inp["width"])}
            rec.update(out.get("eccentric") or {})
            self._records.append(rec)
            if len(self._gflops) < self._flops_images:
                self._gflops.append(edge_cloud_gflops(self._model, inp, self._cfg.MODEL.RESNETS))
            if self._flops_images and getattr(self._model, "region_tile", 0) and self._model.policy == "dynamic":
                rec["cloud_gflops"] = region_cloud_gflops(self._model, inp, self._region_cache)

    def evaluate(self):
        records = [r for part in comm.gather(self._records, dst=0) for r in part]
        gflops = [g for part in comm.gather(self._gflops, dst=0) for g in part]
        detections = sum(comm.gather(self._detections, dst=0))
        results = {}
        if self._accuracy is not None:
            ids = [r["image_id"] for r in records] if comm.is_main_process() else None
            results = (self._accuracy.evaluate(img_ids=ids) if isinstance(self._accuracy, COCOEvaluator)
                       else self._accuracy.evaluate()) or {}
        if not comm.is_main_process():
            return {}
        metrics = {k: float(results["bbox"][k]) for k in AP_KEYS if k in results.get("bbox", {})}
        if isinstance(self._accuracy, COCOEvaluator) and not detections and records:
            metrics.update(no_detection_ap(self._dataset_name, [r["image_id"] for r in records]))
        metrics.update(summarize(records, mean_gflops(gflops)))
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            saved = {"format": FORMAT, "dataset": self._dataset_name, "config": config_summary(self._cfg),
                     "metrics": metrics, "images": records}
            with open(os.path.join(self._output_dir, "eccentric_metrics.json"), "w") as f:
                json.dump(finite_json(saved), f, indent=1)
        logger.info("ECCENTRIC costs on %s:\n%s", self._dataset_name, cost_table(metrics))
        return {**results, "eccentric": metrics}


def no_detection_ap(dataset_name, image_ids):
    """AP, AP50 and AP75 of a model that detected nothing on ``image_ids``: 0 where they hold ground truth (recall 0:
    pycocotools' own answer; Detectron2's COCOEvaluator gives NaN without running it), nothing when they hold none."""
    if not load_coco_gt(dataset_name).getAnnIds(imgIds=image_ids, iscrowd=False):
        return {}
    return {k: 0.0 for k in ("AP", "AP50", "AP75")}


def config_summary(cfg):
    """What identifies an operating point in eccentric_metrics.json (checked when results are reused). A detector
    other than EccentricRCNN is a cloud-only model on the full image: it has no split, codec or offloading."""
    E = cfg.MODEL.ECCENTRIC
    summary = {"meta_architecture": cfg.MODEL.META_ARCHITECTURE, "weights": cfg.MODEL.WEIGHTS,
               "input_size_test": [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST]}
    if cfg.MODEL.META_ARCHITECTURE != "EccentricRCNN":
        return {**summary, "model": CLOUD_ONLY_MODEL}
    return {**summary, "split_at": E.SPLIT_AT, "offload_mode": E.OFFLOAD_MODE, "policy": E.OFFLOAD.POLICY,
            "threshold": E.OFFLOAD.THRESHOLD, "jpeg_quality": E.JPEG_QUALITY, "codec": E.CODEC.NAME,
            **({"codec_rate": E.CODEC.RATE} if E.CODEC.RATE_WEIGHTS else {}),
            **({"region": {"tile": E.OFFLOAD.REGION.TILE, "dilate": E.OFFLOAD.REGION.DILATE,
                           "margin": E.OFFLOAD.REGION.MARGIN}} if E.OFFLOAD.REGION.TILE else {})}
