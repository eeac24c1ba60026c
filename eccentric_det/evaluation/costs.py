"""Task-neutral costs of a split model's evaluation (detection and classification): bytes, offloading, time
and GFLOPs per image, the table that shows them, and eccentric_metrics.json's format."""
import math

import numpy as np
from tabulate import tabulate

FORMAT = 1  # version of eccentric_metrics.json
GFLOP_KEYS = ("edge", "encoder", "cloud", "cloud_only")


def mean_gflops(per_image):
    """Mean of the per-image GFLOP dicts (:func:`eccentric_det.evaluation.flops.edge_cloud_gflops`; None when
    none were counted)."""
    if not per_image:
        return None
    return {k: float(np.mean([g[k] for g in per_image])) for k in GFLOP_KEYS}


def summarize(records, gflops=None):
    """Costs per image: bytes (mean, median, p95), bits per input pixel, offload rate, edge and cloud ms,
    and with ``gflops`` (of an offloaded image, ``GFLOP_KEYS``) the GFLOPs per image on
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
        cloud, offloaded = gflops["cloud"] * rate, gflops["cloud"]
        if records and all("cloud_gflops" in r for r in records):  # counted per image (region-level offloading)
            per_image = [r["cloud_gflops"] for r in records]
            cloud = float(np.mean(per_image))
            offloaded = float(np.mean([g for g, r in zip(per_image, records) if r["offloaded"]] or [0.0]))
        out.update({
            "edge_gflops": gflops["edge"] - gflops["encoder"] * (1.0 - rate), "cloud_gflops": cloud,
            "cloud_gflops_offloaded": offloaded, "cloud_only_gflops": gflops["cloud_only"],
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


def finite_json(obj):
    """NaN (pycocotools' AP of an empty area range) as null, so the JSON is standard."""
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite_json(v) for v in obj]
    return None if isinstance(obj, float) and math.isnan(obj) else obj
