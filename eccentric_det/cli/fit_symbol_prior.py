"""Count a classification split's latent symbols on its training images into a positional prior
(``MODEL.ECCENTRIC.CODEC.POSITIONAL_PRIOR``: one distribution per latent element, for inputs of one size) and write it
alone (``codec.symbol_prior.*``, loaded over the model's weights with ``MODEL.ECCENTRIC.CODEC.PRIOR_WEIGHTS``).
``tools/fit_symbol_prior.py`` and ``python -m eccentric_det.cli.fit_symbol_prior`` run :func:`main`.

    python tools/fit_symbol_prior.py \\
        --config-file configs/Classification/fashion_mnist_adaptive_ecc_joint_stem_56_nofm.yaml \\
        --output checkpoints/classification/fashion_mnist_adaptive_ecc_joint_stem_56_nofm_prior.pth

The symbols are counted on the training images less the held-out ones (``DATA_CLS.HOLDOUT``); the JSON written beside
the output (same name, ``.json``) gives the mean payload bytes on the held-out images under the factorized prior and
under the positional one. No test image is read. The decoded latent, and so every answer, is the same under both.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

from ..classification.data import train_and_holdout
from ..classification.split_model import SplitTimmClassifier
from ..codec.latent_codecs import fit_symbol_prior
from ..tasks import get_eccentric_cfg
from ..training.classification import load_initial_weights

PREFIX = "codec.symbol_prior."


def _model(config_file, opts, positional):
    cfg = get_eccentric_cfg(config_file, ["MODEL.DEVICE", "cpu", "MODEL.ECCENTRIC.OFFLOAD.POLICY", "always",
                                          "MODEL.ECCENTRIC.CODEC.POSITIONAL_PRIOR", str(positional),
                                          "MODEL.ECCENTRIC.CODEC.PRIOR_WEIGHTS", ""] + list(opts))
    model = SplitTimmClassifier(cfg).eval()
    load_initial_weights(cfg, model, complete=True)
    return cfg, model


@torch.no_grad()
def latents(model, data, batch_size):
    """The codec's latent y of every image of ``data``, [N, C, h, w]."""
    edge, codec, _ = model.split_parts()
    return torch.cat([codec.latents(edge(model.edge_normalizer(data.images[i:i + batch_size]))[0]).y
                      for i in range(0, len(data), batch_size)])


def payload_bytes(model, data):
    """Mean bytes of the payloads ``model``'s edge sends for ``data``'s images."""
    return float(np.mean([len(p.to_bytes()) for p in model.edge(list(data.images))]))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fit_symbol_prior.py", description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, help="a classification split's config (CODEC.NAME "
                        "'factorized'); MODEL.WEIGHTS its trained weights")
    parser.add_argument("--output", required=True, help="the prior's checkpoint (.pth); its report goes beside it")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides: KEY VALUE pairs")
    args = parser.parse_args(argv)
    cfg, model = _model(args.config_file, args.opts, True)
    if model.codec is None or getattr(model.codec, "symbol_prior", None) is None:
        parser.error(f"{args.config_file} has no codec that takes a positional prior: it needs a split "
                     f"(OFFLOAD_MODE 'features') with CODEC.NAME 'factorized'")
    train, holdout = train_and_holdout(cfg)
    fit_symbol_prior(model.codec.latent_codec, latents(model, train, args.batch_size))
    state = {k: v for k, v in model.state_dict().items() if k.startswith(PREFIX)}
    os.makedirs(os.path.dirname(os.path.abspath(args.output)) or ".", exist_ok=True)
    torch.save({"model": state}, args.output)
    plain = _model(args.config_file, args.opts, False)[1]
    report = {"config": args.config_file, "weights": cfg.MODEL.WEIGHTS, "prior": args.output,
              "images_counted": len(train), "latent_shape": list(model.codec.latent_codec.shape),
              "holdout_images": len(holdout), "payload_bytes_factorized": payload_bytes(plain, holdout),
              "payload_bytes_positional": payload_bytes(model, holdout)}
    with open(os.path.splitext(args.output)[0] + ".json", "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {args.output}: {report['payload_bytes_positional']:.2f} B per held-out image under the positional "
          f"prior, {report['payload_bytes_factorized']:.2f} B under the factorized one")
    return 0


if __name__ == "__main__":
    sys.exit(main())
