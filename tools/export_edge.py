#!/usr/bin/env python
"""Export the edge half of a trained model for a device (ONNX + TorchScript + the entropy coder's tables).

    python tools/export_edge.py --config-file configs/FashionDet/adaptive_ecc.yaml --output export/fashion_det_edge
    python tools/export_edge.py --config-file configs/Classification/fashion_mnist_adaptive_ecc.yaml \\
        --output export/fashion_mnist_edge
    python tools/edge_client.py --edge export/fashion_det_edge --cloud-url http://cloud:8000 --input photos/ \\
        --output results.jsonl

The device then needs torch, onnxruntime (or only torch, with --backend torchscript), CompressAI's compiled
coder and httpx: ``eccentric_det.edge`` imports neither Detectron2 nor anything of the cloud. Config overrides
come last, as KEY VALUE pairs (e.g. MODEL.WEIGHTS path/to/model.pth).
"""
import argparse
import json
import sys

import eccentric_det.cli  # noqa: F401  (first: quiets the libraries' torch.jit deprecation warnings)

import cv2

from eccentric_det.deploy.export import export_from_config


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE", help="the model's config")
    p.add_argument("--output", required=True, help="folder to write the exported edge to")
    p.add_argument("--image", help="an image to trace with (default: a synthetic frame)")
    p.add_argument("opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE pairs, last")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    image = None
    if args.image:
        image = cv2.imread(args.image, cv2.IMREAD_COLOR)
        if image is None:
            sys.exit(f"export_edge.py: error: {args.image} is not a readable image")
    try:
        manifest = export_from_config(args.config_file, args.output, args.opts, image)
    except (ValueError, KeyError, FileNotFoundError) as e:
        sys.exit(f"export_edge.py: error: {e.args[0] if e.args else e}")
    print(json.dumps({k: manifest[k] for k in ("task", "policy", "fingerprint", "outputs")}))
    print(f"wrote {args.output}")
    return manifest


if __name__ == "__main__":
    main()
