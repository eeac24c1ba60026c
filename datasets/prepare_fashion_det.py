#!/usr/bin/env python
"""Generate FashionDet (Fashion-MNIST items pasted onto backgrounds, COCO format); see datasets/README.md."""
import argparse
import os
import time

try:
    from eccentric_det.data.fashion_det import DEFAULT_BACKGROUNDS, DEFAULT_FASHION_ROOT, generate_fashion_det
except ImportError:  # run from a checkout without `pip install -e .`
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from eccentric_det.data.fashion_det import DEFAULT_BACKGROUNDS, DEFAULT_FASHION_ROOT, generate_fashion_det


def main():
    default_out = os.path.join(os.getenv("DETECTRON2_DATASETS", "datasets"), "fashion_det")
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--fashion-root", default=DEFAULT_FASHION_ROOT, help="folder of the Fashion-MNIST idx(.gz) files")
    p.add_argument("--backgrounds", default=DEFAULT_BACKGROUNDS, help="folder of *.jpg background photos")
    p.add_argument("--out", default=default_out, help="output folder (default: $DETECTRON2_DATASETS/fashion_det)")
    p.add_argument("--num-train", type=int, default=3000)
    p.add_argument("--num-val", type=int, default=500)
    p.add_argument("--size", type=int, default=256, help="canvas side, px")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    start = time.perf_counter()
    counts = generate_fashion_det(a.out, a.fashion_root, a.backgrounds, a.num_train, a.num_val, a.size, a.seed)
    for split, c in counts.items():
        print(f"{split}: {c['images']} images, {c['boxes']} boxes")
    print(f"wrote {a.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
