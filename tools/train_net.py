#!/usr/bin/env python
"""Train and evaluate eccentric_det models (Detectron2's standard CLI): ``eccentric_det.cli.train_net``.

    python tools/train_net.py --config-file configs/FashionDet/adaptive_ecc.yaml
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS checkpoints/fashion_det/adaptive_ecc_vr.pth
    python tools/train_net.py --num-gpus 8 --config-file ...        # DDP through detectron2's launch
"""
from eccentric_det.cli.train_net import Trainer, main, run, setup  # noqa: F401

if __name__ == "__main__":
    main()
