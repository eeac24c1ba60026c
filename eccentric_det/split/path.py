"""Edge -> codec -> cloud tail: the one data path of every split model.

A task adapter names its three parts (:meth:`SplitModel.split_parts`): ``edge(x) -> (feature, extra)``
(the split feature and whatever else the edge computed, e.g. its trunk or its own logits), the
:class:`~eccentric_det.codec.FeatureCodec`, and ``tail(x_hat)`` (the cloud from the decoded feature
on). Training, in-process evaluation, the cloud's decoding of real payloads and FLOP counting all
run these same three parts.
"""
from dataclasses import dataclass
from typing import Any, Dict

import torch


@dataclass
class SplitOutput:
    """What one pass down the split path computed."""

    feature: torch.Tensor  # the edge's split feature
    extra: Any  # the edge's other outputs (see the module docstring)
    x_hat: torch.Tensor  # the decoded feature the tail consumed
    likelihoods: Dict[str, torch.Tensor]  # of each coded latent (empty for real bytes)
    out: Any  # tail(x_hat)


def run_split(edge, codec, tail, x, real_bytes=False, rate=None):
    """``tail(codec(edge(x)))``. ``real_bytes`` codes the feature into bit strings and decodes them (what
    crosses the network); otherwise the codec's training path runs (noisy or hard quantisation, likelihoods).
    ``rate``: a variable-rate codec's level (a number, or one per image in training; default: the codec's)."""
    feature, extra = edge(x)
    if real_bytes:
        x_hat, likelihoods = codec.decompress(codec.compress(feature, rate)), {}
    else:
        coded = codec(feature, rate)
        x_hat, likelihoods = coded.x_hat, coded.likelihoods
    return SplitOutput(feature, extra, x_hat, likelihoods, tail(x_hat))
