#!/usr/bin/env python
"""Edge and cloud cost of each split point of Faster R-CNN R-50-FPN (random init; codec v2 ``mean_scale``
by default, ``--codec factorized`` for v1).

For every input size and split point: edge ms (layers + the codec's whole edge side: encoder, hyperprior and
entropy coding; the layers, the encoder alone and the codec's edge side each timed on their own), cloud ms (entropy decoding + decoder + the rest; the bounds-checked
entropy decoding also on its own), payload bytes, edge and cloud GFLOPs
(fvcore), the cloud network's GFLOPs on the whole image (cloud-only, on the split model's
proposals), and the stock GeneralizedRCNN with the same FPN levels beside them. Printed as a table
and written as JSON. The models are untrained: the codec's bytes show the payload format at work,
not the rate a trained codec reaches, and the box head's FLOPs follow the number of proposals that
survive NMS, which differs between random models.

    python benchmarks/bench_split.py --output output/bench_split.json
    python benchmarks/bench_split.py --sizes 480x640 --splits res2 --repeats 5 --device cuda
    python benchmarks/bench_split.py --clock cpu     # one thread, CPU time: on a machine shared with other jobs
    python benchmarks/bench_split.py --clock cpu --codec factorized --output output/bench_split_v1.json

``--config-file`` times a trained model instead (its own split point and codec, ``MODEL.WEIGHTS``), on the first
image of its ``DATASETS.TEST[0]`` resized to each size: a trained entropy model codes far fewer bytes than a
random one, and its coding time follows. The stock columns stay empty then.

    python benchmarks/bench_split.py --clock cpu --config-file configs/FashionDet/adaptive_ecc_vr.yaml \
        --sizes 256x256 480x640 --output output/bench_split_trained.json
"""
import argparse
import platform
import time

import cv2
import torch
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import read_image
from detectron2.modeling import build_model
from report import write_json
from tabulate import tabulate

import eccentric_det.data  # noqa: F401  (registers the datasets)
import eccentric_det.modeling  # noqa: F401  (registers the backbones, ROI heads, EccentricRCNN)
from eccentric_det.checkpoint import load_model
from eccentric_det.tasks import get_eccentric_cfg
from eccentric_det.evaluation.flops import edge_cloud_gflops
from eccentric_det.modeling.backbone.resnet_stages import STAGES

SPLITS = ("stem", "res2", "res3", "res4")
GOAL = 0.10  # the codec's edge side (encoder, hyperprior, entropy coding), as a share of the edge half's time


def bench_cfg(split, device, stock=False, codec="mean_scale"):
    """R-50-FPN with Detectron2's test defaults; FPN levels before the split are dropped (both models)."""
    first = max(STAGES.index(split), 1)
    feats = list(STAGES[first:])
    cfg = get_eccentric_cfg("Base-RCNN-FPN.yaml", [
        "MODEL.DEVICE", device, "MODEL.WEIGHTS", "", "MODEL.RESNETS.OUT_FEATURES", feats,
        "MODEL.FPN.IN_FEATURES", feats, "MODEL.ANCHOR_GENERATOR.SIZES", [[32 * 2 ** (first - 1 + i)]
                                                                         for i in range(len(feats) + 1)],
        "MODEL.RPN.IN_FEATURES", ["p" + f[-1] for f in feats] + ["p6"],
        "MODEL.ROI_HEADS.IN_FEATURES", ["p" + f[-1] for f in feats]])
    if not stock:
        cfg.merge_from_list([
            "MODEL.META_ARCHITECTURE", "EccentricRCNN", "MODEL.BACKBONE.NAME", "build_split_resnet_fpn_backbone",
            "MODEL.ROI_HEADS.NAME", "KnowledgeAdaptedROIHeads", "MODEL.ECCENTRIC.SPLIT_AT", split,
            "MODEL.ECCENTRIC.CODEC.NAME", codec])
    return cfg


def synthetic_input(h, w, device, seed=0):
    """A smooth random image (JPEG-like statistics matter little for a random-init model)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.randint(0, 256, (1, 3, h // 16 + 1, w // 16 + 1), generator=g).float()
    img = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear")[0].round()
    return {"image": img.to(device), "height": h, "width": w}


def timed(fn, repeats, device, clock=time.perf_counter):
    """Best ms of ``fn()`` over ``repeats`` runs after one warm-up (the least disturbed run on a shared
    machine), by ``clock``; returns (ms, last result)."""
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = clock()
        out = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, (clock() - t0) * 1e3)
    return best, out


def dataset_input(cfg, h, w, device):
    """The first image of the config's first test set, resized to HxW (BGR, as Detectron2 reads it)."""
    img = read_image(DatasetCatalog.get(cfg.DATASETS.TEST[0])[0]["file_name"], format="BGR")
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    return {"image": torch.as_tensor(img.transpose(2, 0, 1).copy()).float().to(device), "height": h, "width": w}


@torch.no_grad()
def bench(split, h, w, repeats, device, clock, codec_name, trained=None):
    """One row; ``trained``: a (cfg, loaded model) to time instead of the random R-50-FPN of ``split``."""
    torch.manual_seed(0)
    if trained is None:
        cfg = bench_cfg(split, device, codec=codec_name)
        model, stock = build_model(cfg).eval(), build_model(bench_cfg(split, device, stock=True)).eval()
        inp = synthetic_input(h, w, device)
    else:
        (cfg, model), stock = trained, None
        split, codec_name = cfg.MODEL.ECCENTRIC.SPLIT_AT, cfg.MODEL.ECCENTRIC.CODEC.NAME
        inp = dataset_input(cfg, h, w, device)
    sb, codec = model.split_backbone, model.codec
    x = model.preprocess_image([inp]).tensor
    layers_ms, trunk = timed(lambda: sb.edge_forward(x), repeats, device, clock)
    feature = trunk[split]
    encoder_ms, y = timed(lambda: codec.analysis(feature), repeats, device, clock)
    codec.update_if_stale()
    codec_ms, _ = timed(lambda: codec.compress(feature), repeats, device, clock)  # encoder + hyperprior + coding
    edge_ms, payloads = timed(lambda: model.edge([inp]), repeats, device, clock)
    data = payloads[0].to_bytes()
    coded = codec.compress(feature)
    decode_ms, _ = timed(lambda: codec.decompress_latent(coded), repeats, device, clock)  # the guarded decoder
    cloud_ms, _ = timed(lambda: model.cloud([data]), repeats, device, clock)
    stock_ms = None if stock is None else timed(lambda: stock([inp]), repeats, device, clock)[0]
    g = edge_cloud_gflops(model, inp, cfg.MODEL.RESNETS)
    return {"input": f"{h}x{w}", "split": split, "edge_ms": edge_ms, "layers_ms": layers_ms,
            "codec": codec_name, "encoder_ms": encoder_ms, "codec_ms": codec_ms, "codec_share": codec_ms / edge_ms,
            "decode_ms": decode_ms, "cloud_ms": cloud_ms, "stock_ms": stock_ms, "payload_bytes": len(data),
            "edge_gflops": g["edge"], "cloud_gflops": g["cloud"], "cloud_only_gflops": g["cloud_only"],
            "stock_gflops": None if stock is None else edge_cloud_gflops(stock, inp)["cloud"]}


def _num(value, spec):
    return "-" if value is None else format(value, spec)


def table(rows):
    return tabulate([[r["input"], r["split"], f"{r['edge_ms']:.0f}", f"{r['layers_ms']:.0f}",
                      f"{r['encoder_ms']:.0f}", f"{r['codec_ms']:.0f}", f"{r['codec_share']:.1%}",
                      f"{r['decode_ms']:.0f}", f"{r['cloud_ms']:.0f}", _num(r["stock_ms"], ".0f"), r["payload_bytes"],
                      f"{r['edge_gflops']:.1f}",
                      f"{r['cloud_gflops']:.2f}", f"{r['cloud_only_gflops']:.2f}", _num(r["stock_gflops"], ".1f")]
                     for r in rows],
                    headers=["input", "split", "edge ms", "layers", "encoder", "codec (edge side)", "codec share",
                             "entropy decoding", "cloud ms", "stock ms", "payload B", "edge GFLOPs", "cloud GFLOPs",
                             "cloud-only GFLOPs", "stock GFLOPs"],
                    tablefmt="pipe")


def parse_size(text):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 480x640, got {text!r}") from None
    return h, w


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", type=parse_size, default=[(480, 640), (800, 1333)], help="HxW inputs")
    p.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (best; one warm-up)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: this process's CPU time on one thread, stable on a machine shared with other jobs")
    p.add_argument("--codec", default="mean_scale", help="CODEC.NAME of the split model (v1: factorized)")
    p.add_argument("--config-file", default="", help="time this trained model (its split, codec and MODEL.WEIGHTS) "
                                                     "instead; --splits and --codec do not apply")
    p.add_argument("--output", default="output/bench_split.json")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides of --config-file, last")
    args = p.parse_args()
    if args.clock == "cpu":
        if args.device != "cpu":
            p.error("--clock cpu measures CPU work: use it with --device cpu")
        torch.set_num_threads(1)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    trained = None
    if args.config_file:
        cfg = get_eccentric_cfg(args.config_file, list(args.opts) + ["MODEL.DEVICE", args.device])
        trained = cfg, load_model(cfg)
    rows = []
    for h, w in args.sizes:
        for split in ([None] if trained else args.splits):
            rows.append(bench(split, h, w, args.repeats, args.device, clock, args.codec, trained))
            print(table(rows[-1:]), flush=True)
            write_json(args.output, {  # after every row, so an interrupted run keeps what it measured
                "device": args.device, "clock": args.clock, "torch": torch.__version__,
                "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
                "repeats": args.repeats, "config_file": args.config_file, "opts": list(args.opts), "rows": rows})
    print(table(rows))
    worst = max(r["codec_share"] for r in rows)
    print(f"codec share of the edge time (encoder, hyperprior, entropy coding): at most {worst:.1%} (goal <= "
          f"{GOAL:.0%}: {'met' if worst <= GOAL else 'not met'})")
    over = [f"{r['input']} {r['split']}" for r in rows if r["cloud_gflops"] > r["cloud_only_gflops"]]
    print(f"cloud half above the cloud-only model's GFLOPs at: {', '.join(over) or 'no split'}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
