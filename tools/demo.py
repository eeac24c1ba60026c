#!/usr/bin/env python
"""Edge-cloud split detection on a video, a webcam or images (Detectron2's demo/demo.py conventions).

    python tools/demo.py --config-file configs/FashionDet/dynamic_ecc_vr_joint.yaml --video-input default --output output/demo
    python tools/demo.py --config-file ... --input 'photos/*.jpg' --output output/demo_images
    python tools/demo.py --config-file ... --video-input my.mp4 --cloud-url http://cloud:8000 --offload-threshold 0.3
    python tools/demo.py --config-file ... --video-input default --output out MODEL.DEVICE cpu  # overrides last
    python tools/demo.py --video-input default --output output/demo_128k --budget-kbps 128 --reuse-threshold 0.1
    python tools/demo.py --config-file C.yaml --edge export/my_edge --video-input default --output out  # device's edge

Each frame shows its boxes and classes, EDGE or CLOUD (who answered), the bytes sent and running
totals; a JSONL log holds one record per frame and the summary is printed at the end (its json: the mean kbit/s, and
with --budget-kbps the bucket's peak fill). --budget-kbps holds the uplink to a budget (per frame the edge picks the
codec's rate level and what it sends so that a leaky bucket of that rate never overflows); --reuse-threshold answers
frames (tiles) whose content has not changed since the cloud saw them from the edge's cache. With --cloud-url, set
ECCENTRIC_TOKEN if the server wants a token and ECCENTRIC_PAYLOAD_KEY (the fleet key) if it only takes signed
payloads. --edge runs the edge a device runs (tools/export_edge.py's folder of the same config and weights) in
place of the model's PyTorch edge half.
"""
import argparse
import sys

import eccentric_det.cli  # noqa: F401  (first: quiets the libraries' torch.jit deprecation warnings)

from eccentric_det.cli.logs import setup_logging
from eccentric_det.demo import (DemoError, EccentricPredictor, HttpCloud, ensure_default_video, format_summary,
                                run_on_images, run_on_video, setup_cfg)
from eccentric_det.edge import ExportedEdge
from eccentric_det.edge.stream import add_stream_arguments, stream_overrides


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default="configs/FashionDet/dynamic_ecc_vr_joint.yaml", metavar="FILE")
    p.add_argument("--webcam", action="store_true", help="take frames from webcam 0")
    p.add_argument("--video-input", help="a video file, or 'default' for the embedded demo video (built on first use)")
    p.add_argument("--input", nargs="+", help="images: paths or globs, e.g. 'directory/*.jpg'")
    p.add_argument("--output", help="a folder (or a file name) for the annotated video/images, the log and the "
                                    "summary; without it the frames are shown in a window")
    p.add_argument("--confidence-threshold", type=float, default=0.5, help="lowest score shown and logged")
    p.add_argument("--agnostic-iou", type=float, default=0.0,
                   help="one label per object: of boxes of any classes overlapping at this IoU, show the best "
                        "(class-agnostic NMS; 0: off, Detectron2's per-class NMS only)")
    p.add_argument("--label-decay", type=float, default=0.0,
                   help="one label per object over time: each box shows the score-weighted vote of its track over "
                        "past frames, the past weighed by this factor per frame (0: off; 1: the whole track)")
    p.add_argument("--offload-threshold", type=float,
                   help="offload a frame when the edge's 'needs the cloud' score is at least this "
                        "(0: every frame, above 1: none); default: the config's MODEL.ECCENTRIC.OFFLOAD")
    p.add_argument("--edge", metavar="DIR", help="an exported edge of the same model (tools/export_edge.py) to run "
                                                 "instead of the PyTorch edge half")
    p.add_argument("--backend", choices=("onnx", "torchscript"), default="onnx", help="runtime of --edge")
    p.add_argument("--cloud-url", help="a running cloud server (tools/cloud_server.py; POST {url}/v1/detect); "
                                       "default: the model's cloud half in this process")
    add_stream_arguments(p)
    p.add_argument("opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE pairs, last")
    return p


def run(args):
    if sum(bool(x) for x in (args.input, args.video_input, args.webcam)) != 1:
        raise DemoError("give exactly one of --input, --video-input, --webcam")
    video = ensure_default_video() if args.video_input == "default" else args.video_input
    opts = list(args.opts)
    if opts[:1] == ["--"]:
        opts = opts[1:]
    cfg = setup_cfg(args.config_file, stream_overrides(args) + opts)
    cloud = HttpCloud.from_environment(args.cloud_url) if args.cloud_url else None
    try:
        edge = ExportedEdge(args.edge, args.backend) if args.edge else None
    except (FileNotFoundError, ValueError) as e:  # no export there, or not in this backend
        raise DemoError(str(e)) from e
    predictor = EccentricPredictor(cfg, cloud, args.offload_threshold, args.confidence_threshold, args.agnostic_iou,
                                   edge=edge, label_decay=args.label_decay)
    if args.input:
        return run_on_images(predictor, args.input, args.output)
    return run_on_video(predictor, 0 if args.webcam else video, args.output)


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging(names=("eccentric_det",))
    try:
        summary = run(args)
    except DemoError as e:
        sys.exit(f"demo.py: error: {e}")
    print(format_summary(summary))


if __name__ == "__main__":
    main()
