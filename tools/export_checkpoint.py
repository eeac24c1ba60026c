#!/usr/bin/env python
"""Shrink a training checkpoint to a committable one: model weights only, floats as fp16
(``eccentric_det.cli.export_checkpoint``).

    python tools/export_checkpoint.py output/fashion_det/cloud_teacher/model_final.pth checkpoints/fashion_det/cloud_teacher.pth
    python tools/export_checkpoint.py SRC DST --keep backbone.bottom_up.stem backbone.bottom_up.res2 edge_detector
"""
from eccentric_det.cli.export_checkpoint import main

if __name__ == "__main__":
    main()
