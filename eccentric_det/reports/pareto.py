"""Operating points, Pareto fronts and BD-rate.

A sweep evaluates a detector at several operating points (Dynamic ECC thresholds, checkpoints
trained at several rate weights, Independent ECC JPEG qualities) and the baselines on the same
images (cloud-only on JPEG/WebP/PNG images, edge-only, the sc2bench bottleneck), keeps the points
no other point beats on accuracy and a cost together, and measures each curve's BD-rate against
image offloading (cloud-only JPEG), the measure feature-coding-for-machines work uses.
"""
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Tuple

import numpy as np
from detectron2.data import DatasetCatalog, DatasetMapper, build_detection_test_loader
from detectron2.evaluation import inference_on_dataset

from ..baselines import ImageCodecBaseline, load_sc2bench
from ..checkpoint import load_model
from ..tasks import get_eccentric_cfg
from ..data import check_class_count, check_dataset_available
from ..evaluation.bootstrap import paired_differences, result_interval
from ..evaluation.build import coco_evaluator
from ..evaluation.costs import FORMAT, finite_json
from ..evaluation.eccentric_evaluator import AP_KEYS, CLOUD_ONLY_MODEL, EccentricEvaluator
from .series import (ADAPTIVE_VARIABLE_RATE, ANCHOR, CLOUD_ONLY, CONFIG, EARLIER_RUNS, EDGE_ONLY, IMAGE_CODEC_SERIES,
                     INDEPENDENT, RATE_WEIGHTS, SC2BENCH, adaptive_series, dynamic_series, image_codec_series,
                     independent_series)
from .table import front_legend, points_table

logger = logging.getLogger(__name__)

# plot/front axis -> (metric key, axis label)
AXES = {"bytes": ("bytes_mean", "bytes / image"), "edge_gflops": ("edge_gflops", "edge GFLOPs / image"),
        "cloud_gflops": ("cloud_gflops", "cloud GFLOPs / image"), "offload": ("offload_rate", "offload rate")}
SWEEP_KEYS = {
    "thresholds": "Dynamic ECC offload thresholds (the config's own model)",
    "rates": "levels of the config's variable-rate codec (CODEC.RATE; 'all': every trained level)",
    "weights": "checkpoints of the config trained at several rate weights",
    "independent": "Independent ECC JPEG qualities (--independent-config)",
    "jpeg": "cloud-only on JPEG images at these qualities (--cloud-config)",
    "webp": "cloud-only on WebP images at these qualities, 101: lossless (--cloud-config)",
    "avif": "cloud-only on AVIF images (Pillow's libavif) at these qualities (--cloud-config)",
    "png": "cloud-only on PNG images at these compression levels (--cloud-config)",
    "edge_only": "the config's edge detector alone (no values)",
    "sc2bench": "sc2bench baseline checkpoints of tools/train_sc2bench.py (--cloud-config)",
}


# ---------------------------------------------------------------------------------------- fronts
def pareto_mask(points, accuracy="AP", costs=("bytes_mean",)):
    """For each point (a dict of metrics), whether it is non-dominated: no other point is at least as
    accurate and at most as costly on every cost axis, and strictly better somewhere. A point that
    lacks one of the values is not on the front."""
    vals = [_values(p, accuracy, costs) for p in points]
    mask = []
    for v in vals:
        mask.append(v is not None and not any(
            w is not None and w[0] >= v[0] and all(a <= b for a, b in zip(w[1:], v[1:])) and w != v
            for w in vals))
    return mask


def _values(point, accuracy, costs):
    vals = [point.get(k) for k in (accuracy, *costs)]
    if any(v is None or not np.isfinite(v) for v in vals):
        return None
    return (vals[0], *vals[1:])


def bd_rate(anchor_rate, anchor_acc, test_rate, test_acc, method="pchip"):
    """Bjontegaard delta rate, in percent, of a test curve against an anchor: the mean difference of
    log-rate at equal accuracy over the accuracy interval both curves cover (negative: fewer bytes).
    A point that a cheaper point of its own curve matches in accuracy is dropped first (the measure
    assumes accuracy rises with rate; saturated codecs break that). ``method``: "pchip"
    (piecewise-cubic monotone interpolation, VCEG-AL22; uses scipy) or "cubic" (a polynomial of
    degree <= 3 through each curve, VCEG-M33)."""
    a_acc, a_log = _curve(anchor_rate, anchor_acc, "anchor")
    t_acc, t_log = _curve(test_rate, test_acc, "test")
    lo, hi = max(a_acc[0], t_acc[0]), min(a_acc[-1], t_acc[-1])
    if hi <= lo:
        raise ValueError(f"the curves do not overlap in accuracy (anchor {a_acc[0]:.2f}..{a_acc[-1]:.2f}, "
                         f"test {t_acc[0]:.2f}..{t_acc[-1]:.2f}): BD-rate is undefined")
    diff = _integral(t_acc, t_log, lo, hi, method) - _integral(a_acc, a_log, lo, hi, method)
    return float((np.exp(diff / (hi - lo)) - 1.0) * 100.0)


def _curve(rate, acc, name):
    """(accuracy, log-rate) of the points whose accuracy beats every cheaper point, by accuracy."""
    rate, acc = np.asarray(rate, np.float64), np.asarray(acc, np.float64)
    if rate.shape != acc.shape or rate.ndim != 1:
        raise ValueError(f"the {name} curve needs as many rates as accuracies")
    if np.any(rate <= 0) or not np.all(np.isfinite(acc)):
        raise ValueError(f"the {name} curve needs positive rates and finite accuracies")
    order = np.lexsort((-acc, rate))
    keep = [i for k, i in enumerate(order) if k == 0 or acc[i] > acc[order[:k]].max()]
    if len(keep) < 2:
        raise ValueError(f"the {name} curve needs at least 2 points whose accuracy rises with rate")
    return acc[keep], np.log(rate[keep])


def _integral(acc, log_rate, lo, hi, method):
    if method == "cubic":
        p = np.polyint(np.polyfit(acc, log_rate, min(3, len(acc) - 1)))
        return np.polyval(p, hi) - np.polyval(p, lo)
    if method == "pchip":
        from scipy.interpolate import PchipInterpolator

        return float(PchipInterpolator(acc, log_rate).integrate(lo, hi))
    raise ValueError(f"BD-rate method must be 'cubic' or 'pchip', got {method!r}")


# ---------------------------------------------------------------------------------------- points
@dataclass
class OperatingPoint:
    """One evaluation: a config with overrides, possibly wrapped as a baseline."""

    series: str
    label: str
    config_file: str
    opts: List[str] = field(default_factory=list)
    image_codec: Optional[Tuple[str, int]] = None  # (codec, quality): cloud-only on coded images
    sc2bench_weights: Optional[str] = None  # checkpoint of a trained sc2bench baseline


def parse_sweep(tokens):
    """``["thresholds=0.2,0.4", "jpeg=30,50", "edge_only"]`` -> ``{"thresholds": ["0.2", "0.4"], ...}``."""
    sweep = {}
    for tok in tokens:
        key, _, values = tok.partition("=")
        if key not in SWEEP_KEYS:
            hint = " (config overrides go last, after '--')" if "." in key and key.isupper() else ""
            raise ValueError(f"unknown sweep {key!r}{hint}; use "
                             + "; ".join(f"{k}: {v}" for k, v in SWEEP_KEYS.items()))
        vals = [v for v in values.split(",") if v]
        if (key == "edge_only") != (not vals):
            raise ValueError(f"sweep {key!r} " + ("takes no values" if key == "edge_only" else "needs values: "
                                                    f"{key}=v1,v2,..."))
        sweep[key] = vals
    return sweep


def plan(config_file, sweep, cloud_config="", cloud_weights="", independent_config="", opts=()):
    """The operating points of a sweep (``parse_sweep``'s dict). Without any, the config as it is.
    The cloud-only model defaults to the config's distillation teacher."""
    if not sweep:
        return [OperatingPoint(CONFIG, os.path.basename(config_file), config_file)]
    if not cloud_config and config_file:
        D = get_eccentric_cfg(config_file, list(opts)).MODEL.ECCENTRIC.DISTILL
        cloud_config, cloud_weights = D.TEACHER_CONFIG, cloud_weights or D.TEACHER_WEIGHTS
    needs = {"config": ("thresholds", "rates", "weights", "edge_only"), "cloud": (*IMAGE_CODEC_SERIES, "sc2bench"),
             "independent": ("independent",)}
    given = {"config": config_file, "cloud": cloud_config, "independent": independent_config}
    flag = {"config": "--config-file", "cloud": "--cloud-config", "independent": "--independent-config"}
    for which, keys in needs.items():
        used = [k for k in keys if k in sweep]
        if used and not given[which]:
            raise ValueError(f"sweep {', '.join(used)} needs {flag[which]}")
    cloud_opts = ["MODEL.WEIGHTS", cloud_weights] if cloud_weights else []
    points = []
    dynamic = dynamic_series(regions=bool(
        sweep.get("thresholds") and get_eccentric_cfg(config_file, list(opts)).MODEL.ECCENTRIC.OFFLOAD.REGION.TILE))
    for t in sweep.get("thresholds", []):
        points.append(OperatingPoint(dynamic, f"threshold {t}", config_file, [
            "MODEL.ECCENTRIC.OFFLOAD.POLICY", "dynamic", "MODEL.ECCENTRIC.OFFLOAD.THRESHOLD", _number(t, float)]))
    for r in _rates(config_file, sweep.get("rates", []), opts):
        points.append(OperatingPoint(ADAPTIVE_VARIABLE_RATE, f"rate {r:g}", config_file,
                                     ["MODEL.ECCENTRIC.CODEC.RATE", r]))
    for w in sweep.get("weights", []):
        points.append(OperatingPoint(RATE_WEIGHTS, os.path.basename(w), config_file,
                                     ["MODEL.WEIGHTS", w, "MODEL.ECCENTRIC.EDGE.WEIGHTS", ""]))
    if "edge_only" in sweep:
        points.append(OperatingPoint(EDGE_ONLY, "edge-only", config_file,
                                     ["MODEL.ECCENTRIC.OFFLOAD.POLICY", "never"]))
    for q in sweep.get("independent", []):
        points.append(OperatingPoint(INDEPENDENT, f"JPEG q{q}", independent_config,
                                     ["MODEL.ECCENTRIC.JPEG_QUALITY", _number(q, int)]))
    for codec, series in IMAGE_CODEC_SERIES.items():
        for q in sweep.get(codec, []):
            points.append(OperatingPoint(series, f"{codec} {q}", cloud_config, cloud_opts,
                                         image_codec=(codec, _number(q, int))))
    for path in sweep.get("sc2bench", []):
        points.append(OperatingPoint(SC2BENCH, os.path.basename(path), cloud_config, cloud_opts,
                                     sc2bench_weights=path))
    return points


def _rates(config_file, values, opts=()):
    """The rates of a ``rates`` sweep: numbers, or "all" for each trained level of the config's codec (with the
    sweep's overrides ``opts``)."""
    if not values:
        return []
    levels = len(get_eccentric_cfg(config_file, list(opts)).MODEL.ECCENTRIC.CODEC.RATE_WEIGHTS)
    if levels < 2:
        raise ValueError(f"sweep 'rates' needs a variable-rate codec: {config_file} sets no "
                         f"MODEL.ECCENTRIC.CODEC.RATE_WEIGHTS (sweep 'weights' takes one checkpoint per rate)")
    rates = []
    for v in values:
        for r in (range(levels) if v == "all" else [_number(v, float)]):
            if not 0 <= r <= levels - 1:
                raise ValueError(f"sweep rate {r} is outside the codec's levels 0..{levels - 1}")
            rates.append(float(r))
    return rates


def _number(text, kind):
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"sweep value {text!r} is not a{'n integer' if kind is int else ' number'}") from None


def dataset_dicts(name, max_images=None):
    """The first ``max_images`` records of a registered dataset, with a clear error when it is
    unregistered, missing on disk or empty."""
    if max_images is not None and max_images <= 0:
        raise ValueError(f"--max-images must be positive, got {max_images}")
    check_dataset_available(name)
    dicts = DatasetCatalog.get(name)
    if not dicts:
        raise ValueError(f"dataset {name!r} holds no images: nothing to evaluate")
    return dicts[:max_images] if max_images else dicts


def build_point_model(point, opts=()):
    """The config and the loaded, checked model of one operating point (wrapped as its baseline)."""
    cfg = get_eccentric_cfg(point.config_file, list(opts) + list(point.opts))
    model = load_model(cfg)
    if point.image_codec:
        model = ImageCodecBaseline(model, *point.image_codec, input_format=cfg.INPUT.FORMAT)
    elif point.sc2bench_weights:
        model, meta = load_sc2bench(model, point.sc2bench_weights)
        logger.info("sc2bench baseline %s: rate weight %s, %s iterations", point.sc2bench_weights,
                    meta.get("rate_weight"), meta.get("iterations"))
    return cfg, model


def evaluate_point(point, dataset, dicts, output_dir, opts=()):
    """Evaluate one operating point on ``dicts`` (records of ``dataset``); returns its record for
    pareto.json (the evaluator also writes ``output_dir/eccentric_metrics.json``)."""
    cfg, model = build_point_model(point, opts)
    loader = build_detection_test_loader(dicts, mapper=DatasetMapper(cfg, is_train=False))
    evaluator = EccentricEvaluator(cfg, dataset, output_dir, model=model,
                                   accuracy=coco_evaluator(cfg, dataset, output_dir))
    metrics = inference_on_dataset(model, loader, evaluator)["eccentric"]
    return {**asdict(point), "output_dir": output_dir, "metrics": finite_json(metrics)}


def load_results(path, dataset, image_ids=None, input_size=None, accuracy="AP"):
    """The record of an earlier ``--eval-only`` run (its folder or eccentric_metrics.json), checked to
    be on the same dataset, images and test input size as this sweep, and to hold ``accuracy``; its series
    is what it evaluated (:func:`result_series`), its label its folder's name."""
    file = os.path.join(path, "eccentric_metrics.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise FileNotFoundError(f"no eccentric_metrics.json in {path!r}: run tools/train_net.py --eval-only "
                                f"with OUTPUT_DIR {path} first")
    try:
        with open(file) as f:
            data = json.load(f)
    except ValueError as e:
        raise ValueError(f"{file} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or "metrics" not in data:
        raise ValueError(f"{file} is not an eccentric_metrics.json of format {FORMAT} (made by another tool or "
                         f"an older eccentric_det): re-run its evaluation")
    if data["dataset"] != dataset:
        raise ValueError(f"{file} holds results on dataset {data['dataset']!r}, this sweep is on {dataset!r}")
    ids = [r["image_id"] for r in data["images"]]
    if image_ids is not None and sorted(ids) != sorted(image_ids):
        raise ValueError(f"{file} was evaluated on {len(ids)} images of {dataset!r}, not the {len(image_ids)} "
                         f"of this sweep: use the same --max-images (or the whole dataset) for both")
    size = data["config"]["input_size_test"]
    images = data["images"]
    pixels = {r["image_id"]: r["pixels"] for r in images} if all("pixels" in r for r in images) else None
    if input_size is not None and not _same_input(input_size, size, pixels):
        raise ValueError(f"{file} was evaluated at test input size {size}, this sweep at {input_size['size']}, and "
                         f"its images were not resized alike: bytes and FLOPs are not comparable")
    if accuracy not in data["metrics"]:
        held = [k for k in (*AP_KEYS, "top1") if k in data["metrics"]]
        raise ValueError(f"{file} holds no {accuracy} (it has {', '.join(held) or 'no accuracy'}): choose "
                         f"--accuracy among those, or re-run its evaluation with the COCO evaluator")
    label = os.path.basename(os.path.dirname(os.path.abspath(file)))
    return {"series": result_series(data["config"]), "label": label, "config_file": "", "opts": [],
            "output_dir": path,
            "metrics": data["metrics"], "image_ids": ids, "input_size": {"size": list(size), "pixels": pixels}}


def _same_input(reference, size, pixels):
    """Whether a result at test input ``size`` with per-image input ``pixels`` compares with ``reference`` ({"size":
    [MIN_SIZE_TEST, MAX_SIZE_TEST], "pixels": per image or None}): the same size, or sizes that resized every image
    alike (e.g. a larger MAX_SIZE_TEST on square images)."""
    same_pixels = pixels is not None and reference["pixels"] is not None and pixels == reference["pixels"]
    return list(size) == list(reference["size"]) or same_pixels


def result_series(summary):
    """The series of an ``--eval-only`` result, from its config summary (``config`` of eccentric_metrics.json):
    cloud-only, edge-only, Independent ECC (or its dynamic variant), Dynamic ECC (or its regions variant), Adaptive
    ECC (or its variable-rate variant), the names (:mod:`eccentric_det.reports.series`) a sweep gives its points, so
    that separate runs form curves (and BD-rates) with them; "earlier runs" when the summary cannot tell."""
    if summary.get("model") == CLOUD_ONLY_MODEL or summary.get("meta_architecture", "EccentricRCNN") != "EccentricRCNN":
        return CLOUD_ONLY  # a stock detector (also in files written before the summary said so)
    mode, policy = summary.get("offload_mode"), summary.get("policy")
    if policy is None:
        return EARLIER_RUNS
    if mode == "image" and summary.get("task") == "classification":  # the unsplit classifier on coded images
        codec = (summary.get("image_codec") or ["png"])[0]
        return CLOUD_ONLY if codec == "png" else image_codec_series(codec)
    if policy == "never":
        return EDGE_ONLY
    if mode == "image":
        return independent_series(dynamic=policy == "dynamic")
    if policy == "dynamic":
        return dynamic_series(regions="region" in summary)
    return adaptive_series(variable_rate="codec_rate" in summary)


def result_entry(entry):
    """(tag or None, path) of one ``--results`` entry: ``DIR``, or ``TAG=DIR`` to tag its points' series
    ("TAG: Adaptive ECC (variable rate)"), so that two sweeps of the same kind (e.g. two checkpoints' rates) stay
    two curves."""
    name, sep, path = entry.partition("=")
    if not sep or os.path.exists(entry) or not name or "/" in name:
        return None, entry
    return name, path


def load_sweep_or_results(path, dataset, image_ids=None, input_size=None, accuracy="AP"):
    """The records of an earlier sweep (a folder with pareto.json: each point keeps its series, label and
    bootstrap intervals) or of one ``--eval-only`` run (see :func:`load_results`), checked the same way."""
    sweep_file = os.path.join(path, "pareto.json")
    if not os.path.isfile(sweep_file):
        return [load_results(path, dataset, image_ids, input_size, accuracy)]
    with open(sweep_file) as f:
        sweep = json.load(f)
    records = []
    for p in sweep.get("points", []):
        point_dir = os.path.join(path, "points", os.path.basename(os.path.normpath(p["output_dir"])))
        rec = load_results(point_dir if os.path.isdir(point_dir) else p["output_dir"], dataset, image_ids,
                           input_size, accuracy)
        image_ids, input_size = rec["image_ids"], rec["input_size"]
        kept = {k: v for k, v in p.get("metrics", {}).items() if k.endswith("_ci95")}  # its --bootstrap intervals
        records.append({**rec, "series": p["series"], "label": p["label"], "config_file": p["config_file"],
                        "opts": p["opts"], "metrics": {**rec["metrics"], **kept}})
    return records


# ---------------------------------------------------------------------------------------- a sweep
def run_sweep(config_file, sweep, dataset=None, max_images=None, output_dir="output/pareto", opts=(),
              results=(), cloud_config="", cloud_weights="", independent_config="", bd_method="pchip",
              accuracy="AP", bootstrap=0, paired_against=""):
    """Evaluate the sweep's points and earlier results on the same images; write ``pareto.json`` and
    ``pareto.png`` to ``output_dir`` (and first ``plan.json``, :func:`write_plan`). ``accuracy``: the metric on the
    fronts' accuracy axis (AP, AP50, ...; top1 for classification results); ``bootstrap`` > 0 adds its 95% interval
    over the images from that many resamples (``metrics[accuracy + "_ci95"]``; AP and top1). ``paired_against``: an
    evaluation folder (e.g. the equal-budget cloud's) that each point's accuracy is compared with, paired over the same
    images (``metrics[accuracy + "_minus_reference"]``: mean, low, high; :func:`paired_differences`, ``bootstrap``
    resamples or 1000). Returns the pareto.json dict."""
    points = plan(config_file, sweep, cloud_config, cloud_weights, independent_config, opts) if config_file else []
    if not points and not results:
        raise ValueError("nothing to compare: give --config-file (and --sweep) or --results")
    if points and accuracy not in AP_KEYS:
        raise ValueError(f"a detection sweep measures {', '.join(AP_KEYS)}, not {accuracy!r}; top1 fronts come "
                         f"from --results of classification runs (tools/train_cls.py --eval-only)")
    base = get_eccentric_cfg(config_file, list(opts)) if config_file else None
    dataset = dataset or (base.DATASETS.TEST[0] if base is not None and base.DATASETS.TEST else None)
    if not dataset:
        raise ValueError("name the dataset: --dataset NAME")
    records, image_ids, input_size = [], None, None
    for point in points:  # a model of another class count than the dataset's is refused before anything runs
        check_class_count(get_eccentric_cfg(point.config_file, list(opts) + point.opts), [dataset])
    if points:
        dicts = dataset_dicts(dataset, max_images)
        image_ids = [d["image_id"] for d in dicts]
        input_size = {"size": [base.INPUT.MIN_SIZE_TEST, base.INPUT.MAX_SIZE_TEST], "pixels": None}
        for point in points:  # every config and checkpoint is checked before hours of evaluation start
            build_point_model(point, opts)
        outs = [os.path.join(output_dir, "points", re.sub(r"[^\w.-]+", "_", f"{i:02d}_{p.series}_{p.label}"))
                for i, p in enumerate(points)]
        write_plan(output_dir, points, outs)
        for i, (point, out) in enumerate(zip(points, outs)):
            logger.info("Operating point %d/%d: %s, %s", i + 1, len(points), point.series, point.label)
            records.append(evaluate_point(point, dataset, dicts, out, opts))
    for entry in results:
        tag, path = result_entry(entry)
        for rec in load_sweep_or_results(path, dataset, image_ids, input_size, accuracy):
            image_ids = image_ids if image_ids is not None else rec["image_ids"]
            input_size = input_size if input_size is not None else rec["input_size"]
            records.append({**rec, "series": f"{tag}: {rec['series']}"} if tag else rec)
    if bootstrap:
        for rec in records:
            interval = result_interval(rec["output_dir"], dataset, accuracy, bootstrap)
            if interval is not None:
                rec["metrics"][f"{accuracy}_ci95"] = list(interval)
    if paired_against:
        differences = paired_differences([rec["output_dir"] for rec in records], paired_against, dataset, accuracy,
                                         bootstrap or 1000)
        for rec, difference in zip(records, differences):
            if difference is not None:
                rec["metrics"][f"{accuracy}_minus_reference"] = list(difference)
    result = summarize_points(records, dataset, bd_method, accuracy)
    if paired_against:
        result["reference"] = paired_against
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "pareto.json"), "w") as f:
        json.dump(result, f, indent=1)
    plot_pareto(result, os.path.join(output_dir, "pareto.png"))
    return result


def write_plan(output_dir, points, outs):
    """``output_dir/plan.json`` (atomically), before a sweep evaluates anything: each point's series, label and
    folder, where its eccentric_metrics.json appears once it is evaluated (how a caller follows the sweep)."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "plan.json")
    with open(path + ".tmp", "w") as f:
        json.dump({"points": [{"series": p.series, "label": p.label, "output_dir": out}
                              for p, out in zip(points, outs)]}, f, indent=1)
    os.replace(path + ".tmp", path)


def summarize_points(records, dataset, bd_method="pchip", accuracy="AP"):
    """Mark each record's fronts and compute each series' BD-rate against the image-offload anchor."""
    metrics = [r["metrics"] for r in records]
    fronts = {axis: pareto_mask(metrics, accuracy, (key,)) for axis, (key, _) in AXES.items()}
    points = [{k: v for k, v in r.items() if k not in ("image_ids", "input_size")} for r in records]
    for i, p in enumerate(points):
        p["front"] = {axis: mask[i] for axis, mask in fronts.items()}
    return {"dataset": dataset, "images": metrics[0].get("images") if metrics else 0, "accuracy": accuracy,
            "anchor": ANCHOR, "bd_method": bd_method, "bd_rate": series_bd_rates(points, bd_method, accuracy),
            "points": points}


def series_bd_rates(points, method="pchip", accuracy="AP"):
    """``{series: BD-rate % vs the anchor, or a string saying why there is none}``."""
    curves = {}
    for p in points:
        m = p["metrics"]
        if m.get("bytes_mean", 0) > 0 and m.get(accuracy) is not None:
            curves.setdefault(p["series"], []).append((m["bytes_mean"], m[accuracy]))
    out = {}
    for series in dict.fromkeys(p["series"] for p in points):
        if series == ANCHOR:
            continue
        if ANCHOR not in curves:
            out[series] = f"no anchor: add a JPEG sweep (jpeg=q1,q2,...) for BD-rate against {ANCHOR}"
        elif len(curves.get(series, [])) < 2:
            out[series] = "needs at least 2 points that send bytes"
        else:
            try:
                out[series] = bd_rate(*zip(*curves[ANCHOR]), *zip(*curves[series]), method=method)
            except ValueError as e:
                out[series] = str(e)
    return out


def format_summary(result):
    """pareto.json as a table (:func:`eccentric_det.reports.table.points_table`, the recipe's report.md renders the
    same) with the fronts' legend, plus the BD-rates."""
    acc = result.get("accuracy", "AP")
    table = "\n".join(points_table(result["points"], acc))
    bd = "\n".join(f"  {s}: " + (f"{v:+.1f}%" if isinstance(v, float) else v) for s, v in result["bd_rate"].items())
    out = (f"{table}\n{front_legend(acc)}\n"
           f"BD-rate vs {result['anchor']} ({result['bd_method']}):\n{bd or '  (no other series)'}")
    paired = [(p, p["metrics"][f"{acc}_minus_reference"]) for p in result["points"]
              if f"{acc}_minus_reference" in p["metrics"]]
    if paired:
        out += f"\n{acc} minus {result['reference']}'s, paired over the same images [95% interval]:\n" + "\n".join(
            f"  {p['series']}, {p['label']}: {m:+.2f} [{lo:+.2f}, {hi:+.2f}]" for p, (m, lo, hi) in paired)
    return out


def plot_pareto(result, path):
    """Accuracy against bytes/image, edge GFLOPs, cloud GFLOPs and offload rate; non-dominated points ringed in red."""
    from matplotlib.figure import Figure

    acc = result.get("accuracy", "AP")
    fig = Figure(figsize=(21, 4.8))
    axes = fig.subplots(1, len(AXES))
    series = list(dict.fromkeys(p["series"] for p in result["points"]))
    for ax, (axis, (key, xlabel)) in zip(axes, AXES.items()):
        for k, name in enumerate(series):
            pts = [p for p in result["points"] if p["series"] == name and _values(p["metrics"], acc, (key,))]
            pts.sort(key=lambda p: p["metrics"][key])
            xs, ys = [p["metrics"][key] for p in pts], [p["metrics"][acc] for p in pts]
            ax.plot(xs, ys, marker="os^vD<>ph*"[k % 10], label=name)
            front = [(x, y) for x, y, p in zip(xs, ys, pts) if p["front"][axis]]
            if front:
                ax.scatter(*zip(*front), s=160, facecolors="none", edgecolors="red", linewidths=1.5)
        if axis == "bytes":
            ax.set_xscale("symlog", linthresh=1.0)
        elif axis == "offload":
            ax.set_xlim(-0.05, 1.05)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(acc)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{result['dataset']}: {result['images']} images (red rings: non-dominated)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
