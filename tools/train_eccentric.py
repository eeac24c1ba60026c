#!/usr/bin/env python
"""Your own dataset, the whole ECC recipe in one command: cloud teacher, edge detector (KD), codec pre-training,
Adaptive ECC (variable rate), the Dynamic ECC gate on held-out images, the Pareto sweep and report.md.

    python tools/train_eccentric.py --register my_train coco train.json train/ --register my_val coco val.json val/ \\
        --train my_train --test my_val --num-classes 3 --output output/mine
    python tools/train_eccentric.py ... --output output/mine --dry-run          # the stages and their commands
    python tools/train_eccentric.py ... --output output/mine --dry-run --estimate   # + each training's time
    python tools/train_eccentric.py ... --output output/mine --budget-bytes 2000 -- MODEL.DEVICE cuda

Each stage is skipped when its outputs and stamp match, resumed when it was interrupted; the logic is in
eccentric_det/recipe/ (``python -m eccentric_det.recipe`` is this command).
"""
import sys

from eccentric_det.recipe.cli import build_parser, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
