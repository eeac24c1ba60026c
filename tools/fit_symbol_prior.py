#!/usr/bin/env python
"""Count a classification split's latent symbols on its training images into a positional prior and write it alone
(``eccentric_det.cli.fit_symbol_prior``, where the options are described).

    python tools/fit_symbol_prior.py \
        --config-file configs/Classification/fashion_mnist_adaptive_ecc_joint_stem_56_nofm.yaml \
        --output checkpoints/classification/fashion_mnist_adaptive_ecc_joint_stem_56_nofm_prior.pth
"""
import sys

from eccentric_det.cli.fit_symbol_prior import main

if __name__ == "__main__":
    sys.exit(main())
