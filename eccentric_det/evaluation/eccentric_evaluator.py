"""EccentricEvaluator: bytes, offload rate and per-half time of each image, beside COCO AP."""
import json
import logging
import os

import numpy as np
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from tabulate import tabulate

logger = logging.getLogger(__name__)


class EccentricEvaluator(DatasetEvaluator):
    """Collects the ``eccentric`` record EccentricRCNN attaches to each output (bytes counted from the
    real payload, header included). A model without it (a stock detector) counts as cloud-only on the
    full image, with no bytes measured."""

    def __init__(self, cfg, dataset_name, output_dir=None, model=None):
        self._dataset_name, self._output_dir, self._model = dataset_name, output_dir, model
        self._cfg = cfg
        self._records = []

    def reset(self):
        self._records = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            info = out.get("eccentric")
            rec = {"image_id": inp.get("image_id"), "pixels": int(inp["height"]) * int(inp["width"])}
            rec.update(info if info is not None else {})
            self._records.append(rec)

    def evaluate(self):
        records = [r for part in comm.gather(self._records, dst=0) for r in part]
        if not comm.is_main_process():
            return {}
        metrics = summarize(records)
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            with open(os.path.join(self._output_dir, "eccentric_metrics.json"), "w") as f:
                json.dump({"dataset": self._dataset_name, "metrics": metrics, "images": records}, f)
        logger.info("ECCENTRIC costs on %s:\n%s", self._dataset_name,
                    tabulate([[k, f"{v:.4g}"] for k, v in metrics.items()], headers=["cost", "value"]))
        return {"eccentric": metrics}


def summarize(records):
    """Mean/median/p95 bytes, bits per input pixel, offload rate and per-half ms over images."""
    if not records or "bytes" not in records[0]:
        return {"images": len(records)}
    b = np.array([r["bytes"] for r in records], dtype=np.float64)
    px = np.array([r["pixels"] for r in records], dtype=np.float64)
    return {
        "images": len(records),
        "bytes_mean": float(b.mean()), "bytes_median": float(np.median(b)), "bytes_p95": float(np.percentile(b, 95)),
        "bpp": float((8 * b / px).mean()),
        "offload_rate": float(np.mean([r["offloaded"] for r in records])),
        "edge_ms": float(np.mean([r["edge_ms"] for r in records])),
        "cloud_ms": float(np.mean([r["cloud_ms"] for r in records])),
    }
