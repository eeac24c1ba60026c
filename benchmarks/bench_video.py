#!/usr/bin/env python
"""Video under a link budget, against each video's own boxes: COCO AP over all frames and the mean bitrate of

* ECC (``--ecc-config``, e.g. Dynamic ECC: the edge step, the real payloads, the cloud in process), as configured
  and under each ``--budget-kbps`` (rate control: a leaky bucket of that rate at the video's frame rate,
  ``--buffer-s`` seconds of it), each without and/or with temporal reuse (``--reuse off|on|both``: the cloud's last
  answer reused while the edge's latent changed less than ``--reuse-threshold``, at most ``--keyframe`` frames;
  ``--track-iou``: also the answers for the objects the edge follows, moved as they moved);
* the edge alone (0 bytes);
* the cloud detector (``--cloud-config`` and ``--cloud-weights``; default: the ECC config's distillation teacher,
  the cloud its split is held against; a cloud without weights is refused) on an H.264 stream at each
  ``--h264-kbps`` (libx264 through PyAV: no B-frames, zero-latency tuning, a keyframe every ``--gop`` frames,
  VBV-capped at the bitrate), on JPEG frames at each ``--jpeg`` quality, and on the lossless frames (its ceiling).

The videos are composed (Fashion-MNIST *test* items over real footage, boxes known: ``datasets/prepare_demo_video.py``);
``--compose SEED`` builds one per seed over ``--source``, else ``--videos`` lists composed videos (each with its .json).

Temporal reuse's threshold is fitted on videos of *training* items, never on the test-item videos it is measured on:
``--compose-items train --reuse-sweep T ...`` adds a reuse row per threshold and writes OUTPUT/reuse_threshold.json,
the cheapest threshold (fewest kbit/s, mean over the videos) whose AP is at most ``--max-ap-loss`` under no reuse;
``--reuse-threshold`` takes that file (or a number) for the measurement.

    python benchmarks/bench_video.py --compose 1 2 3 --output output/bench_video
    python benchmarks/bench_video.py --videos output/demo_input/demo.mp4 --h264-kbps 64 128 256 --jpeg 10 30 \\
        --output output/bench_video
    python benchmarks/bench_video.py --compose 1 2 3 --budget-kbps 64 128 256 --reuse both --output output/bench_budget
    python benchmarks/bench_video.py --compose 11 12 --compose-items train --reuse-sweep 0.1 0.2 0.3 --h264-kbps \
        --jpeg --output output/reuse_fit   # then: --reuse-threshold output/reuse_fit/reuse_threshold.json

Writes OUTPUT/bench_video.json (every video's rows and the means over the videos) and OUTPUT/bench_video.png
(AP against kbit/s, one line per method). Each ECC row is compared with each H.264 row, paired frame by frame: the
mean AP difference over the videos with a 95% block bootstrap interval (``differences``; blocks of
``--block-frames`` consecutive frames, ``--bootstrap`` resamples, 0: none). ECC rows under a budget also give the
bucket's peak fill, the frames the budget kept on the edge and the frames (partly) answered from the reuse cache.
"""
import argparse
import json
import os
import sys

import torch
from report import write_json

from eccentric_det.checkpoint import load_model
from eccentric_det.data.datasets import class_names_of
from eccentric_det.demo import EccentricPredictor, compose_demo_video, ensure_default_video
from eccentric_det.demo.accuracy import ground_truth_of
from eccentric_det.edge.stream import BUDGET_KEPT
from eccentric_det.evaluation.bootstrap import BLOCK_FRAMES
from eccentric_det.evaluation.video import (h264_round_trip, image_round_trip, kbps, read_frames, video_ap,
                                            video_ap_difference)
from eccentric_det.inputs import InputBuilder
from eccentric_det.tasks import get_eccentric_cfg


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", nargs="+", default=[], help="composed videos (each with its boxes' .json beside it)")
    p.add_argument("--compose", nargs="+", type=int, default=[], metavar="SEED", help="compose one video per seed")
    p.add_argument("--source", default=None, help="background footage of --compose (default: the demo's)")
    p.add_argument("--compose-items", choices=("t10k", "train"), default="t10k",
                   help="Fashion-MNIST split of --compose's items: t10k (to measure on) or train (to fit on)")
    p.add_argument("--ecc-config", default="configs/FashionDet/dynamic_ecc_vr.yaml")
    p.add_argument("--cloud-config", default="",
                   help="the cloud detector (default: the ECC config's MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG)")
    p.add_argument("--cloud-weights", default="", help="its weights (default: the cloud config's MODEL.WEIGHTS; "
                   "without --cloud-config, the ECC config's DISTILL.TEACHER_WEIGHTS)")
    p.add_argument("--h264-kbps", nargs="*", type=float, default=[32, 64, 128, 256, 512])
    p.add_argument("--gop", type=int, default=25, help="H.264 keyframe interval (frames)")
    p.add_argument("--jpeg", nargs="*", type=int, default=[10, 30, 50, 90])
    p.add_argument("--budget-kbps", nargs="*", type=float, default=[], help="ECC under these budgets (kbit/s)")
    p.add_argument("--buffer-s", type=float, default=1.0, help="the leaky bucket's size, in seconds of the budget")
    p.add_argument("--reuse", choices=("off", "on", "both"), default="off",
                   help="ECC rows without temporal reuse, with it, or both")
    p.add_argument("--reuse-threshold", type=reuse_threshold, default=0.1,
                   help="temporal reuse's change threshold: a number, or a reuse_threshold.json of --reuse-sweep")
    p.add_argument("--reuse-sweep", nargs="*", type=float, default=[], metavar="T",
                   help="also run ECC (as configured) with reuse at each threshold, and fit one (reuse_threshold.json)")
    p.add_argument("--max-ap-loss", type=float, default=0.5,
                   help="the fitted reuse threshold's largest AP loss against no reuse (default: %(default)s)")
    p.add_argument("--keyframe", type=int, default=25,
                   help="temporal reuse's keyframe interval, and how long a budget holds the cloud's last answer "
                        "(frames)")
    p.add_argument("--track-iou", type=float, default=0.0,
                   help="the reuse rows' motion-compensated reuse: objects followed at this IoU (0: off; with "
                        "--reuse-threshold 0, the only reuse)")
    p.add_argument("--bootstrap", type=int, default=1000,
                   help="resamples of the paired ECC - H.264 AP intervals (0: no intervals)")
    p.add_argument("--block-frames", type=int, default=BLOCK_FRAMES,
                   help="the bootstrap's block of consecutive frames (neighbouring frames are not independent draws)")
    p.add_argument("--output", default="output/bench_video")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides of both models, last")
    return p.parse_args(argv)


def reuse_threshold(value):
    """--reuse-threshold: a number, or the path of a reuse_threshold.json (its "threshold")."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        with open(value) as f:
            return float(json.load(f)["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise argparse.ArgumentTypeError(f"{value!r} is neither a number nor a reuse_threshold.json with a "
                                         f"'threshold' ({e}); fit one with --reuse-sweep on training videos") from e


def cloud_of(ecc_cfg, config, weights):
    """The cloud detector's config and weights: as given, else the ECC config's distillation teacher (the cloud its
    split is held against, as tools/pareto.py takes it)."""
    if not config:
        D = ecc_cfg.MODEL.ECCENTRIC.DISTILL
        config, weights = D.TEACHER_CONFIG, weights or D.TEACHER_WEIGHTS
    if not config:
        raise ValueError("the ECC config names no cloud (MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG is empty): give "
                         "--cloud-config and --cloud-weights")
    return config, weights


class Cloud:
    """The cloud detector on whole frames (BGR), as a server would run it on decoded images."""

    def __init__(self, config, weights, opts):
        cfg = get_eccentric_cfg(config, list(opts) + (["MODEL.WEIGHTS", weights] if weights else []))
        if not cfg.MODEL.WEIGHTS:
            raise ValueError(f"the cloud {config} has no weights (MODEL.WEIGHTS is empty): its rows would measure a "
                             f"random detector; give --cloud-weights, e.g. checkpoints/fashion_det/cloud_teacher.pth")
        self.model, self.inputs = load_model(cfg).eval(), InputBuilder.from_config(cfg)
        self.class_names, self.weights = class_names_of(cfg), cfg.MODEL.WEIGHTS

    @torch.no_grad()
    def __call__(self, frames):
        out = []
        for frame in frames:
            inst = self.model([self.inputs(frame)])[0]["instances"].to("cpu")
            out.append((inst.pred_boxes.tensor.numpy(), inst.scores.numpy(), inst.pred_classes.numpy()))
        return out


def run_ecc(predictor, frames, fps, **options):
    """Per-frame detections and payload bytes of the ECC predictor on a new stream at ``fps`` with ``options``
    (:meth:`EccentricPredictor.start_stream`: budget, reuse; every detection: AP needs the low scores), and what the
    stream did: the share of frames offloaded, kept on the edge by the budget (and of those, answered with the cloud's
    last answer held), (partly) answered from the cache, and
    the bucket's budget and peak fill."""
    stream = predictor.start_stream(fps, **options)
    detections, sizes, offloaded, kept, held, reused = [], [], 0, 0, 0, 0
    for frame in frames:
        r = predictor(frame)
        inst = r.instances
        detections.append((inst.pred_boxes.tensor.numpy(), inst.scores.numpy(), inst.pred_classes.numpy()))
        sizes.append(r.bytes)
        offloaded += r.offloaded
        kept += r.source in BUDGET_KEPT
        held += r.source == "held"
        reused += bool(r.reused)
    info = {"offload_rate": offloaded / len(frames), "budget_kept_frames": kept, "held_frames": held,
            "reused_frames": reused}
    summary = stream.summary()
    if summary:
        info.update(budget_kbps=summary["budget_kbps"], bucket_peak_fill=summary["bucket_peak_fill"])
    return detections, sizes, info


def ecc_runs(budgets, reuse, threshold, keyframe, buffer_s, sweep=(), track_iou=0.0):
    """(row name, stream options) of each ECC run: as configured, then under each budget (the cloud's last answer held
    at most ``keyframe`` frames); without and/or with reuse (at ``threshold`` and ``track_iou``); then as configured
    with reuse at each threshold of ``sweep``."""
    variants = [("", {})] if reuse in ("off", "both") or sweep else []
    if reuse in ("on", "both"):
        variants.append((", reuse", {"reuse_threshold": threshold, "keyframe": keyframe, "track_iou": track_iou}))
    runs = [("ECC" + suffix, options) for suffix, options in variants]
    for b in budgets:
        runs += [(f"ECC at {b:g} kbit/s{suffix}", {"budget_kbps": b, "buffer_s": buffer_s, "keyframe": keyframe,
                                                   **options})
                 for suffix, options in variants]
    runs += [(f"ECC, reuse {t:g}", {"reuse_threshold": t, "keyframe": keyframe}) for t in sweep]
    return runs


def fit_reuse_threshold(mean, sweep, max_ap_loss):
    """The cheapest threshold of ``sweep`` (fewest kbit/s in ``mean``, the rows averaged over the videos) whose AP is at
    most ``max_ap_loss`` under ECC without reuse; 0 (no reuse) when none is."""
    rows = {r["method"]: r for r in mean}
    base = rows["ECC"]
    swept = [{"threshold": t, "AP": rows[f"ECC, reuse {t:g}"]["AP"], "kbps": rows[f"ECC, reuse {t:g}"]["kbps"]}
             for t in sweep]
    within = [s for s in swept if s["AP"] >= base["AP"] - max_ap_loss]
    chosen = min(within, key=lambda s: s["kbps"]) if within else {"threshold": 0.0, "AP": base["AP"],
                                                                   "kbps": base["kbps"]}
    return {**chosen, "max_ap_loss": max_ap_loss, "no_reuse": {"AP": base["AP"], "kbps": base["kbps"]},
            "sweep": swept}


def bench_video(path, ecc, edge, cloud, h264, jpeg, gop, runs=(("ECC", {}),)):
    """The rows of one video: method, AP, AP50, kbit/s, frames (no edge-only row when ``edge`` is None); and each
    method's per-frame detections with its class names."""
    truth = ground_truth_of(path)
    if truth is None:
        raise FileNotFoundError(f"{path} has no boxes (.json of a composed video) beside it")
    frames, fps = read_frames(path)
    rows, detections_of = [], {}

    def row(method, detections, sizes, names, **extra):
        detections_of[method] = (detections, names)
        rows.append({"method": method, **video_ap(truth, detections, names), "kbps": kbps(sizes, fps),
                     "bytes_per_frame": sum(sizes) / len(sizes), "frames": len(frames), **extra})

    for name, options in runs:
        detections, sizes, info = run_ecc(ecc, frames, fps, **options)
        row(name, detections, sizes, ecc.class_names, **info)
    if edge is not None:
        row("edge only", *run_ecc(edge, frames, fps)[:2], edge.class_names)
    row("cloud, lossless frames", cloud(frames), [0] * len(frames), cloud.class_names)
    for k in h264:
        decoded, sizes = h264_round_trip(frames, fps, k, gop)
        row(f"cloud on H.264 {k:g} kbit/s", cloud(decoded), sizes, cloud.class_names, codec="h264", target_kbps=k)
    for q in jpeg:
        decoded, sizes = image_round_trip(frames, "jpeg", q)
        row(f"cloud on JPEG q{q}", cloud(decoded), sizes, cloud.class_names, codec="jpeg", quality=q)
    return {"video": path, "fps": fps, "frames": len(frames), "ground_truth": truth, "rows": rows}, detections_of


def differences(videos, detections, n, block):
    """Each ECC row minus each H.264 row, video AP paired frame by frame over all ``videos`` (their results) with
    ``detections`` (per video, per method)."""
    methods = [r["method"] for r in videos[0]["rows"]]
    out = []
    for a in (m for m in methods if m.startswith("ECC")):
        for b in (m for m in methods if "H.264" in m):
            d = video_ap_difference([(v["ground_truth"], det[a], det[b]) for v, det in zip(videos, detections)],
                                    block=block, n=n)
            out.append({"a": a, "b": b, "AP_difference": d["mean"], "ci95": d["ci95"], "says": d["says"]})
    return out


def plot(result, path):
    import matplotlib  # optional: plotting only

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    mean = result["mean"]
    families = (("cloud on H.264", lambda m: "H.264" in m, "o-"), ("cloud on JPEG", lambda m: "JPEG" in m, "s-"),
                ("ECC under a budget", lambda m: m.startswith("ECC at") and "reuse" not in m, "^-"),
                ("ECC under a budget, reuse", lambda m: m.startswith("ECC at") and "reuse" in m, "v--"))
    for label, member, marker in families:
        pts = sorted((r["kbps"], r["AP"]) for r in mean if member(r["method"]))
        if pts:
            ax.plot(*zip(*pts), marker, label=label)
    for r in mean:
        if not any(member(r["method"]) for _, member, _ in families):
            ax.plot([max(r["kbps"], 1)], [r["AP"]], "*", ms=12, label=r["method"])
    ax.set_xscale("log")
    ax.set_xlabel("kbit/s (mean over frames)")
    ax.set_ylabel("video AP")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def mean_rows(videos):
    """Each method's AP, AP50 and kbit/s averaged over the videos."""
    methods = [r["method"] for r in videos[0]["rows"]]
    out = []
    for m in methods:
        rs = [r for v in videos for r in v["rows"] if r["method"] == m]
        out.append({"method": m, **{k: sum(r[k] for r in rs) / len(rs) for k in ("AP", "AP50", "kbps")}})
        if "bucket_peak_fill" in rs[0]:  # under a budget: its target, and the fullest the bucket got on any video
            out[-1].update(budget_kbps=rs[0]["budget_kbps"], bucket_peak_fill=max(r["bucket_peak_fill"] for r in rs))
    return out


def main(argv=None):
    args = parse_args(argv)
    ecc_cfg = get_eccentric_cfg(args.ecc_config, args.opts)
    cloud_config, cloud_weights = cloud_of(ecc_cfg, args.cloud_config, args.cloud_weights)
    cloud = Cloud(cloud_config, cloud_weights, args.opts)  # first: a cloud it refuses costs no video composed
    videos = list(args.videos)
    for seed in args.compose:
        prefix = "train_" if args.compose_items == "train" else ""
        path = os.path.join(args.output, "videos", f"{prefix}seed{seed}.mp4")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        compose_demo_video(path, source=args.source, seed=seed, items=args.compose_items)
        videos.append(path)
    videos = videos or [ensure_default_video()]
    ecc = EccentricPredictor(ecc_cfg, confidence_threshold=0.0)
    # the edge-only row needs an edge that detects on its own (a teacher-trunk split has none)
    edge = (EccentricPredictor(ecc_cfg, offload_threshold=1.01, confidence_threshold=0.0)
            if ecc_cfg.MODEL.ECCENTRIC.EDGE.DETECTOR else None)
    runs = ecc_runs(args.budget_kbps, args.reuse, args.reuse_threshold, args.keyframe, args.buffer_s, args.reuse_sweep,
                    args.track_iou)
    result = {"ecc_config": args.ecc_config, "cloud_config": cloud_config, "cloud_weights": cloud.weights,
              "gop": args.gop, "budget_kbps": args.budget_kbps, "buffer_s": args.buffer_s, "reuse": args.reuse,
              "reuse_threshold": args.reuse_threshold, "keyframe": args.keyframe, "track_iou": args.track_iou,
              "block_frames": args.block_frames, "bootstrap": args.bootstrap}
    measured = [bench_video(v, ecc, edge, cloud, args.h264_kbps, args.jpeg, args.gop, runs) for v in videos]
    result["videos"] = [v for v, _ in measured]
    result["mean"] = mean_rows(result["videos"])
    if args.bootstrap:
        result["differences"] = differences(result["videos"], [d for _, d in measured], args.bootstrap,
                                            args.block_frames)
    write_json(os.path.join(args.output, "bench_video.json"), result)
    if args.reuse_sweep:
        fit = fit_reuse_threshold(result["mean"], args.reuse_sweep, args.max_ap_loss)
        write_json(os.path.join(args.output, "reuse_threshold.json"),
                   {**fit, "videos": [v["video"] for v in result["videos"]], "keyframe": args.keyframe})
    plot(result, os.path.join(args.output, "bench_video.png"))
    for r in result["mean"]:
        print(f"{r['method']:<32} AP {r['AP']:6.2f}  AP50 {r['AP50']:6.2f}  {r['kbps']:9.1f} kbit/s")
    for d in result.get("differences", []):
        print(f"{d['a']} - {d['b']}: {d['AP_difference']:+.2f} AP [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}] "
              f"({d['says']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
