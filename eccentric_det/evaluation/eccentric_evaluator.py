"""EccentricEvaluator: accuracy and the three costs (bytes, compute, offloading) of each image."""
import json
import logging
import math
import os

import numpy as np
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator
from detectron2.utils import comm
from tabulate import tabulate

from .flops import edge_cloud_gflops

logger = logging.getLogger(__name__)

FORMAT = 1  # version of eccentric_metrics.json
AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
GFLOP_KEYS = ("edge", "encoder", "cloud", "cloud_only")


class EccentricEvaluator(DatasetEvaluator):
    """Collects the ``eccentric`` record EccentricRCNN attaches to each output (bytes counted from the
    real payload, header included), counts FLOPs per half on the first ``TEST.ECCENTRIC.FLOPS_IMAGES``
    images (when ``TEST.ECCENTRIC.FLOPS`` and ``model`` is given), and merges the AP of ``accuracy``
    (a COCOEvaluator it drives, restricted to the images it saw). A model without ``eccentric``
    records (a stock detector) counts as cloud-only on the full image, with no bytes measured.
    Writes ``output_dir/eccentric_metrics.json``."""

    def __init__(self, cfg, dataset_name, output_dir=None, model=None, accuracy=None):
        self._cfg, self._dataset_name, self._output_dir = cfg, dataset_name, output_dir
        self._model, self._accuracy = model, accuracy
        self._flops_images = cfg.TEST.ECCENTRIC.FLOPS_IMAGES if cfg.TEST.ECCENTRIC.FLOPS and model is not None else 0
        self.reset()

    def reset(self):
        self._records, self._gflops = [], []
        if self._accuracy is not None:
            self._accuracy.reset()

    def process(self, inputs, outputs):
        if self._accuracy is not None:
            self._accuracy.process(inputs, outputs)
        for inp, out in zip(inputs, outputs):
            rec = {"image_id": inp.get("image_id"), "pixels": int(inp["height"]) * int(inp["width"])}
            rec.update(out.get("eccentric") or {})
            self._records.append(rec)
            if len(self._gflops) < self._flops_images:
                self._gflops.append(edge_cloud_gflops(self._model, inp, self._cfg.MODEL.RESNETS))

    def evaluate(self):
        records = [r for part in comm.gather(self._records, dst=0) for r in part]
        gflops = [g for part in comm.gather(self._gflops, dst=0) for g in part]
        results = {}
        if self._accuracy is not None:
            ids = [r["image_id"] for r in records] if comm.is_main_process() else None
            results = (self._accuracy.evaluate(img_ids=ids) if isinstance(self._accuracy, COCOEvaluator)
                       else self._accuracy.evaluate()) or {}
        if not comm.is_main_process():
            return {}
        metrics = {k: float(results["bbox"][k]) for k in AP_KEYS if k in results.get("bbox", {})}
        metrics.update(summarize(records, mean_gflops(gflops)))
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            saved = {"format": FORMAT, "dataset": self._dataset_name, "config": config_summary(self._cfg),
                     "metrics": metrics, "images": records}
            with open(os.path.join(self._output_dir, "eccentric_metrics.json"), "w") as f:
                json.dump(finite_json(saved), f, indent=1)
        logger.info("ECCENTRIC costs on %s:\n%s", self._dataset_name, cost_table(metrics))
        return {**results, "eccentric": metrics}


def mean_gflops(per_image):
    """Mean of the per-image dicts of :func:`edge_cloud_gflops` (None when none were counted)."""
    if not per_image:
        return None
    return {k: float(np.mean([g[k] for g in per_image])) for k in GFLOP_KEYS}


def summarize(records, gflops=None):
    """Costs per image: bytes (mean, median, p95), bits per input pixel, offload rate, edge and cloud ms,
    and with ``gflops`` (of an offloaded image, see :func:`edge_cloud_gflops`) the GFLOPs per image on
    average over the images' real offload decisions, and the fraction of the cloud-only work saved."""
    out = {"images": len(records)}
    if records and "bytes" in records[0]:
        b = np.array([r["bytes"] for r in records], dtype=np.float64)
        px = np.array([r["pixels"] for r in records], dtype=np.float64)
        out.update({
            "bytes_mean": float(b.mean()), "bytes_median": float(np.median(b)),
            "bytes_p95": float(np.percentile(b, 95)), "bpp": float((8 * b / px).mean()),
            "offload_rate": float(np.mean([r["offloaded"] for r in records])),
            "edge_ms": float(np.mean([r["edge_ms"] for r in records])),
            "cloud_ms": float(np.mean([r["cloud_ms"] for r in records])),
        })
    if gflops is not None:
        rate = out.get("offload_rate", 1.0)
        cloud = gflops["cloud"] * rate
        out.update({
            "edge_gflops": gflops["edge"] - gflops["encoder"] * (1.0 - rate), "cloud_gflops": cloud,
            "cloud_gflops_offloaded": gflops["cloud"], "cloud_only_gflops": gflops["cloud_only"],
            "cloud_saved": 1.0 - cloud / gflops["cloud_only"] if gflops["cloud_only"] else 0.0,
        })
    return out


_ROWS = [("AP", "AP", "{:.2f}"), ("AP50", "AP50", "{:.2f}"), ("images", "images", "{:d}"),
         ("bytes_mean", "bytes/image mean", "{:.1f}"), ("bytes_median", "bytes/image median", "{:.1f}"),
         ("bytes_p95", "bytes/image p95", "{:.1f}"), ("bpp", "bits per input pixel", "{:.4f}"),
         ("offload_rate", "offload rate", "{:.3f}"), ("edge_gflops", "edge GFLOPs/image", "{:.3f}"),
         ("cloud_gflops", "cloud GFLOPs/image", "{:.3f}"), ("cloud_only_gflops", "cloud-only GFLOPs/image", "{:.3f}"),
         ("cloud_saved", "cloud work saved", "{:.1%}"), ("edge_ms", "edge ms/image", "{:.1f}"),
         ("cloud_ms", "cloud ms/image", "{:.1f}")]


def cost_table(metrics):
    """The metrics as a two-column table (rows for the metrics present)."""
    return tabulate([[name, fmt.format(metrics[k])] for k, name, fmt in _ROWS if k in metrics],
                    headers=["cost", "value"], tablefmt="pipe")


def config_summary(cfg):
    """What identifies an operating point in eccentric_metrics.json (checked when results are reused)."""
    E = cfg.MODEL.ECCENTRIC
    return {"meta_architecture": cfg.MODEL.META_ARCHITECTURE, "weights": cfg.MODEL.WEIGHTS,
            "input_size_test": [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST], "split_at": E.SPLIT_AT,
            "offload_mode": E.OFFLOAD_MODE, "policy": E.OFFLOAD.POLICY, "threshold": E.OFFLOAD.THRESHOLD,
            "jpeg_quality": E.JPEG_QUALITY, "codec": E.CODEC.NAME}


def finite_json(obj):
    """NaN (pycocotools' AP of an empty area range) as null, so the JSON is standard."""
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite_json(v) for v in obj]
    return None if isinstance(obj, float) and math.isnan(obj) else obj
