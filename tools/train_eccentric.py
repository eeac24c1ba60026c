#!/usr/bin/env python
"""Your own dataset, the whole ECC recipe in one command: cloud teacher, edge detector (KD), codec pre-training,
Adaptive ECC (variable rate), the Dynamic ECC gate on held-out images, the Pareto sweep and report.md.

    python tools/train_eccentric.py --register my_train coco train.json train/ --register my_val coco val.json val/ \\
        --train my_train --test my_val --num-classes 3 --output output/mine
    python tools/train_eccentric.py ... --output output/mine --dry-run          # the stages and their commands
    python tools/train_eccentric.py ... --output output/mine --budget-bytes 2000 -- MODEL.DEVICE cuda

Each stage is skipped when its outputs and stamp match, resumed when it was interrupted; the logic is in
eccentric_det/recipe.py.
"""
import sys
import warnings

# torch deprecates torch.jit.script, which Detectron2 and fvcore call on import: a warning for their authors, not
# for a user of this command (before the imports that trigger it)
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

from eccentric_det.recipe import build_parser, run_recipe  # noqa: E402


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_recipe(build_parser().parse_args(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
