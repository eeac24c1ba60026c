#!/usr/bin/env python
"""Serve the cloud half of an eccentric_det model over HTTP (FastAPI + uvicorn, or Ray Serve).

    python tools/cloud_server.py --config-file configs/FashionDet/adaptive_ecc.yaml --weights halves/cloud.pth
    python tools/cloud_server.py ... --host 0.0.0.0 --port 8000 SERVING.MAX_BATCH_SIZE 16
    ECCENTRIC_TOKEN=s3cret python tools/cloud_server.py ...          # clients must send the same token
    ECCENTRIC_PAYLOAD_KEY=$(cat fleet.key) python tools/cloud_server.py ...   # only payloads signed by the fleet
    python tools/cloud_server.py ... --ray SERVING.RAY.NUM_REPLICAS 2        # Ray Serve, local
    python tools/cloud_server.py ... --ray --ray-address auto        # on a running Ray cluster

``--weights`` is the ``cloud.pth`` written by ``eccentric_det.checkpoint.save_halves``; every other
setting is a config key (``cfg.SERVING``, see eccentric_det/serving/config.py) given as trailing KEY VALUE
pairs, after the options (Detectron2's convention).
"""
import argparse

import eccentric_det.cli  # noqa: F401  (first: quiets the libraries' torch.jit deprecation warnings)


from eccentric_det.serving.config import get_serving_cfg
from eccentric_det.cli.logs import setup_logging


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE", help="the model's config")
    p.add_argument("--weights", default="", help="cloud half checkpoint (default: the config's MODEL.WEIGHTS)")
    p.add_argument("--host", help="address to bind (default SERVING.HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to bind (default SERVING.PORT, 8000)")
    p.add_argument("--ray", action="store_true", help="serve with Ray Serve instead of uvicorn")
    p.add_argument("--ray-address", default=None, help="Ray cluster to join ('auto': the running one); "
                                                       "default: start a local Ray instance")
    p.add_argument("opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE pairs, last")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging(names=("eccentric_det",))
    opts = list(args.opts)
    if args.host:
        opts += ["SERVING.HOST", args.host]
    if args.port is not None:
        opts += ["SERVING.PORT", str(args.port)]
    cfg = get_serving_cfg(args.config_file, "cloud", args.weights, opts)
    if args.ray:
        from eccentric_det.serving.ray_app import serve_ray

        serve_ray(cfg, args.ray_address)
    else:
        from eccentric_det.serving.http_app import serve

        serve(cfg)


if __name__ == "__main__":
    main()
