"""Shrink a training checkpoint to a committable one: model weights only, floats as fp16
(``tools/export_checkpoint.py``, ``python -m eccentric_det.cli.export_checkpoint``).

    python tools/export_checkpoint.py output/fashion_det/cloud_teacher/model_final.pth checkpoints/fashion_det/cloud_teacher.pth
    python tools/export_checkpoint.py SRC DST --keep backbone.bottom_up.stem backbone.bottom_up.res2 edge_detector
"""
import argparse

import torch

from ..checkpoint import export_checkpoint


def main(argv=None):
    """Export ``SRC``'s model weights (those under ``--keep`` prefixes only, when given) to ``DST`` as fp16."""
    parser = argparse.ArgumentParser(description="Export model weights as fp16.")
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--keep", nargs="*", default=None, help="keep only parameters under these name prefixes")
    args = parser.parse_args(argv)
    state = torch.load(args.src, map_location="cpu", weights_only=True)["model"]
    if args.keep:
        state = {k: v for k, v in state.items() if k.startswith(tuple(p + "." for p in args.keep))}
        if not state:
            raise SystemExit(f"no parameter of {args.src} is under {args.keep}")
    export_checkpoint(state, args.dst)
    print(f"wrote {args.dst}: {len(state)} tensors, {sum(v.numel() for v in state.values()) / 1e6:.2f} M values")


if __name__ == "__main__":
    main()
