#!/usr/bin/env python
"""Run the edge half over images, offload to a cloud server, and write one JSON line per image.

    python tools/edge_client.py --config-file configs/FashionDet/adaptive_ecc.yaml --weights halves/edge.pth \
        --cloud-url http://127.0.0.1:8000 --input datasets/fashion_det/val --output results.jsonl
    python tools/edge_client.py ... --input "photos/*.jpg" --output results.jsonl --resume

Each line: ``{"image", "source": "cloud"|"edge"|"edge-fallback", "boxes", "scores", "classes", ...}``,
written (and flushed) as each image finishes: ``--resume`` skips the images already in the file, so
a restarted run loses nothing and duplicates nothing. Set ECCENTRIC_TOKEN if the server wants a token,
and ECCENTRIC_PAYLOAD_KEY (the fleet key) if it only takes signed payloads.
"""
import argparse

from detectron2.utils.logger import setup_logger

from eccentric_det.serving.config import get_serving_cfg
from eccentric_det.serving.edge_client import EdgeClient, list_images, run_images


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE", help="the model's config")
    p.add_argument("--weights", default="", help="edge half checkpoint (default: the config's MODEL.WEIGHTS)")
    p.add_argument("--cloud-url", help="the cloud server (default http://SERVING.HOST:SERVING.PORT)")
    p.add_argument("--input", nargs="+", required=True, help="images, folders or quoted glob patterns")
    p.add_argument("--output", required=True, help="JSONL file of results")
    p.add_argument("--resume", action="store_true", help="continue an existing --output, skipping its images")
    p.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    logger = setup_logger(name="eccentric_det")
    paths = [p for spec in args.input for p in list_images(spec)]
    client = EdgeClient.from_config(get_serving_cfg(args.config_file, "edge", args.weights, args.opts), args.cloud_url)
    try:
        counts = run_images(client, paths, args.output, args.resume)
    finally:
        client.close()
    logger.info("%s -> %s", ", ".join(f"{k}: {v}" for k, v in counts.items()), args.output)
    return counts


if __name__ == "__main__":
    main()
