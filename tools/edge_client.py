#!/usr/bin/env python
"""Run the edge half over images, offload to a cloud server, and write one JSON line per image.

    python tools/edge_client.py --edge export/fashion_det_edge --cloud-url http://127.0.0.1:8000 \
        --input datasets/fashion_det/val --output results.jsonl          # exported edge (tools/export_edge.py)
    python tools/edge_client.py --config-file configs/FashionDet/dynamic_ecc_vr.yaml --weights halves/edge.pth \
        --cloud-url http://127.0.0.1:8000 --input "photos/*.jpg" --output results.jsonl --resume   # PyTorch edge

``--edge`` runs an exported edge: it imports neither Detectron2 nor anything of the cloud (a device's
install). ``--config-file`` runs the PyTorch edge half (Detectron2), which also runs Dynamic ECC's edge
detector and falls back on it when the cloud is unreachable; its config overrides come last, as KEY VALUE
pairs. ``--budget-kbps`` holds the uplink to a budget at ``--fps`` (the images are the frames of one stream, in
order: per frame the edge picks the codec's rate level and what it sends so that a leaky bucket of that rate never
overflows, ``MODEL.ECCENTRIC.OFFLOAD.BUDGET_KBPS``); ``--reuse-threshold`` answers frames whose content has not
changed since the cloud saw them from the edge's cache (``MODEL.ECCENTRIC.OFFLOAD.REUSE``); both work with an
exported edge too. Each line: ``{"image", "source": "cloud"|"edge"|"edge-fallback"|"edge-budget"|"reused"|"held",
"boxes", "scores", "classes", ...}`` ("held": a frame the budget kept back on an edge without a detector, answered
with the cloud's last answer, at most ``REUSE.KEYFRAME`` frames old),
written (and flushed) as each image finishes: ``--resume`` skips the images already in the file, so a
restarted run loses nothing and duplicates nothing. Set ECCENTRIC_TOKEN if the server wants a token, and
ECCENTRIC_PAYLOAD_KEY (the fleet key) if it only takes signed payloads.
"""
import argparse
import logging

import eccentric_det.cli  # noqa: F401  (first: quiets the libraries' torch.jit deprecation warnings)

from eccentric_det.edge import CloudClient, EdgeClient, ExportedEdge, list_images, run_images
from eccentric_det.edge.http import environment_credentials
from eccentric_det.edge.stream import add_stream_arguments, stream_controls, stream_defaults, stream_overrides


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    edge = p.add_mutually_exclusive_group(required=True)
    edge.add_argument("--edge", metavar="DIR", help="an exported edge (tools/export_edge.py)")
    edge.add_argument("--config-file", metavar="FILE", help="the model's config (PyTorch edge)")
    p.add_argument("--backend", choices=("onnx", "torchscript"), default="onnx", help="runtime of --edge")
    p.add_argument("--weights", default="", help="edge half checkpoint of --config-file (default: MODEL.WEIGHTS)")
    p.add_argument("--cloud-url", help="the cloud server (default with --config-file: http://SERVING.HOST:SERVING.PORT)")
    p.add_argument("--input", nargs="+", required=True, help="images, folders or quoted glob patterns")
    p.add_argument("--output", required=True, help="JSONL file of results")
    p.add_argument("--resume", action="store_true", help="continue an existing --output, skipping its images")
    add_stream_arguments(p)
    p.add_argument("opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE pairs, last")
    return p


def build_client(args):
    if args.config_file:
        from eccentric_det.deploy.torch_edge import edge_client
        from eccentric_det.serving.config import get_serving_cfg

        opts = list(args.opts)
        opts = stream_overrides(args) + (opts[1:] if opts[:1] == ["--"] else opts)
        return edge_client(get_serving_cfg(args.config_file, "edge", args.weights, opts), args.cloud_url)
    if not args.cloud_url or args.opts or args.weights:
        raise SystemExit("edge_client.py: error: --edge takes --cloud-url, and neither --weights nor config overrides")
    rate_control, reuse = stream_controls(**stream_defaults(args))
    token, key = environment_credentials()
    return EdgeClient(ExportedEdge(args.edge, args.backend), CloudClient(args.cloud_url, token=token), key=key,
                      rate_control=rate_control, reuse=reuse)


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s]: %(message)s")
    paths = [p for spec in args.input for p in list_images(spec)]
    try:
        client = build_client(args)
    except ValueError as e:  # a bad budget or reuse option (the message names its key)
        raise SystemExit(f"edge_client.py: error: {e}") from None
    try:
        counts = run_images(client, paths, args.output, args.resume)
    finally:
        client.close()
    logging.getLogger("eccentric_det").info("%s -> %s", ", ".join(f"{k}: {v}" for k, v in counts.items()),
                                            args.output)
    return counts


if __name__ == "__main__":
    main()
