"""Learned feature bottleneck: encoder -> quantise -> CompressAI entropy coder -> decoder.

Knows nothing of Detectron2, so the detection and classification sides share it as is.
Training (``forward``) returns likelihoods so the rate joins the loss; inference (``compress`` /
``decompress``) produces and consumes real bit strings.
"""
import copy
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Dict, List

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import nn

from .coding import CodedFeature, CoderTables, code_latents, fit, hyper_scales, scale_indexes
from .shapes import hyper_shape, latent_shape
from .payload import FIELD_SCALE_INDEXES, FINGERPRINT_BYTES, PayloadError
from .scale_indexes import decode_exceptions

CODECS = ("factorized", "hyperprior", "passthrough")
# Scale table of the Gaussian conditional (CompressAI's default: 64 log-spaced scales in [0.11, 256]).
_SCALES = torch.exp(torch.linspace(math.log(0.11), math.log(256), 64)).tolist()


@dataclass
class CodecOutput:
    """Training-path result: the reconstructed feature and the likelihoods of each coded latent."""

    x_hat: torch.Tensor
    likelihoods: Dict[str, torch.Tensor]


def _conv(cin, cout, k=3, stride=1):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def _deconv(cin, cout, k=3, stride=2):
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1)


class FeatureCodec(nn.Module):
    """Bottleneck from ``in_channels`` (the edge's split feature) to ``out_channels`` (what the cloud
    tail expects at the split), through a quantised latent of ``latent_channels`` at 1/``downsample``
    of the feature's resolution. ``name="passthrough"`` is lossless: it sends the float32 feature.
    ``half`` ("edge"/"cloud") leaves out the decoder/encoder that the other side holds."""

    def __init__(self, in_channels, out_channels, latent_channels=32, hidden_channels=96,
                 downsample=2, name="factorized", half="both"):
        super().__init__()
        if name not in CODECS:
            raise ValueError(f"Unknown codec {name!r}; choose one of {CODECS} (MODEL.ECCENTRIC.CODEC.NAME).")
        if downsample not in (1, 2, 4):
            raise ValueError(f"CODEC.DOWNSAMPLE must be 1, 2 or 4, got {downsample}.")
        if name == "passthrough" and in_channels != out_channels:
            raise ValueError(
                f"A passthrough codec needs the edge and cloud to agree on channels at the split "
                f"(edge {in_channels}, cloud {out_channels}): use a learned codec (factorized/hyperprior)."
            )
        self.name = name
        self.config = dict(name=name, in_channels=in_channels, out_channels=out_channels,
                           latent_channels=latent_channels, hidden_channels=hidden_channels,
                           downsample=downsample)
        self._stale = True  # entropy tables must be (re)built before real coding
        self._cpu_h_s = ()  # a CPU copy of h_s when the model is elsewhere (a tuple: not a submodule)
        # The CDF tables are derived from the weights and have data-dependent shapes: they are not
        # saved, and are rebuilt (deterministically) after loading.
        self._register_state_dict_hook(_drop_tables)
        self._register_load_state_dict_pre_hook(self._fill_tables)
        if name == "passthrough":
            return
        n, h, steps = latent_channels, hidden_channels, int(math.log2(downsample))
        enc = [_conv(in_channels, h), nn.LeakyReLU(inplace=True)]
        for _ in range(steps):
            enc += [_conv(h, h, stride=2), nn.LeakyReLU(inplace=True)]
        dec = [_conv(n, h), nn.LeakyReLU(inplace=True)]
        for _ in range(steps):
            dec += [_deconv(h, h), nn.LeakyReLU(inplace=True)]
        if half != "cloud":
            self.encoder = nn.Sequential(*enc, _conv(h, n))
        if half != "edge":
            self.decoder = nn.Sequential(*dec, _conv(h, out_channels))
        if name == "factorized":
            self.entropy_bottleneck = EntropyBottleneck(n)
        else:
            if half != "cloud":
                self.h_a = nn.Sequential(_conv(n, n), nn.LeakyReLU(inplace=True), _conv(n, n, 5, 2),
                                         nn.LeakyReLU(inplace=True), _conv(n, n, 5, 2))
            self.h_s = nn.Sequential(_deconv(n, n, 5), nn.LeakyReLU(inplace=True), _deconv(n, n, 5),
                                     nn.LeakyReLU(inplace=True), _conv(n, n), nn.Softplus())
            self.entropy_bottleneck = EntropyBottleneck(n)
            self.gaussian_conditional = GaussianConditional(_SCALES)
        # The coder's range (CompressAI's "quantiles") is found by bisection on the learned density at
        # update(), more precisely than by training it with an auxiliary loss, so it takes no gradient.
        self.entropy_bottleneck.quantiles.requires_grad_(False)

    # ------------------------------------------------------------------ training path
    def forward(self, x):
        """Noisy quantisation in training, hard quantisation in eval; returns x_hat and likelihoods."""
        if self.name == "passthrough":
            return CodecOutput(x, {})
        if self.training:
            self._stale = True
        y = self.encoder(x)
        if self.name == "factorized":
            y_hat, lik = self.entropy_bottleneck(y)
            likelihoods = {"y": lik}
        else:
            z = self.h_a(y)
            z_hat, z_lik = self.entropy_bottleneck(z)
            scales = fit(self.h_s(z_hat), y.shape[-2:])
            y_hat, y_lik = self.gaussian_conditional(y, scales)
            likelihoods = {"y": y_lik, "z": z_lik}
        return CodecOutput(fit(self.decoder(y_hat), x.shape[-2:]), likelihoods)

    @staticmethod
    def rate_bits(likelihoods):
        """Estimated size in bits of all latents in the batch (from likelihoods)."""
        if not likelihoods:
            return torch.zeros(())
        return sum(-torch.log2(lik).sum() for lik in likelihoods.values())

    # ------------------------------------------------------------------ real coding
    @torch.no_grad()
    def update(self, force=True):
        """Build the entropy coder's CDF tables from the current weights (CompressAI ``update``),
        on the CPU, so an edge on CPU and a cloud on GPU build identical tables."""
        for name in ("entropy_bottleneck", "gaussian_conditional"):
            module = getattr(self, name, None)
            if module is None:
                continue
            device = module._offset.device
            module.cpu()
            if name == "entropy_bottleneck":
                module.update(force=force, update_quantiles=True)
            else:
                module.update_scale_table(_SCALES, force=force)
            module.to(device)
        self._cpu_h_s = ()  # the scales that select CDFs are computed on the CPU (see _scales)
        if hasattr(self, "h_s") and self._device().type != "cpu":
            self._cpu_h_s = (copy.deepcopy(self.h_s).cpu().float().eval(),)
        self._stale = False

    def update_if_stale(self):
        if self._stale or (self.name != "passthrough" and self.entropy_bottleneck._offset.numel() == 0):
            self.update(force=True)

    @torch.no_grad()
    def compress(self, x) -> List[CodedFeature]:
        """Encode a batch of features into one :class:`CodedFeature` per image."""
        if self.name == "passthrough":
            out_hw = tuple(x.shape[-2:])
            return [CodedFeature([_tensor_bytes(xi)], out_hw, out_hw) for xi in x]
        y = self.encoder(x)
        return code_latents(y, self.h_a(y) if self.name == "hyperprior" else None, self.coder_tables(), self._scales,
                            tuple(x.shape[-2:]))

    def coder_tables(self):
        """The :class:`~eccentric_det.codec.coding.CoderTables` of each entropy model (built if stale)."""
        self.update_if_stale()
        return {name: CoderTables.of(getattr(self, name)) for name in ("entropy_bottleneck", "gaussian_conditional")
                if hasattr(self, name)}

    @torch.no_grad()
    def decompress_latent(self, coded: List[CodedFeature]):
        """Decode a batch of same-shape coded features to the quantised latent y_hat, with the
        bounds-checked decoder (:mod:`~eccentric_det.codec.guarded_ans`): any bytes give a result or a
        :class:`~eccentric_det.codec.guarded_ans.EntropyDecodeError`, never a read out of bounds."""
        self.update_if_stale()
        y_hw = coded[0].latent_shape
        device = self._device()
        if self.name == "factorized":
            return self._decode_factorized([c.strings[0] for c in coded], y_hw).to(device)
        z_hat = self._decode_factorized([c.strings[1] for c in coded], hyper_shape(y_hw))
        gc = self.gaussian_conditional
        indexes = scale_indexes(self._scales(z_hat, y_hw), CoderTables.of(gc))
        for i, c in enumerate(coded):
            if FIELD_SCALE_INDEXES in c.fields:
                pos, idx = decode_exceptions(c.fields[FIELD_SCALE_INDEXES], indexes[i].numel(), len(gc.scale_table))
                indexes[i].view(-1)[torch.from_numpy(pos)] = torch.from_numpy(idx).to(indexes.dtype)
        return guarded_decompress(gc, [c.strings[0] for c in coded], indexes).to(device)

    @torch.no_grad()
    def decompress(self, coded: List[CodedFeature]):
        """Decode a batch of same-shape coded features to the cloud-side feature tensor."""
        if self.name == "passthrough":
            return torch.stack([_bytes_tensor(c.strings[0], self.config["in_channels"], c.output_shape)
                                for c in coded]).to(self._device())
        y_hat = self.decompress_latent(coded)
        return fit(self.decoder(y_hat), coded[0].output_shape)

    def payload_fields(self):
        """The optional payload fields this codec reads."""
        return (FIELD_SCALE_INDEXES,) if self.name == "hyperprior" else ()

    def latent_shape(self, feature_hw):
        """(h, w) of the first latent for a split feature of ``feature_hw``."""
        return latent_shape(self.config, feature_hw)

    def fingerprint(self) -> bytes:
        """FINGERPRINT_BYTES that identify this codec: its config and the entropy model both halves hold."""
        self.update_if_stale()
        h = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode())
        for name in ("entropy_bottleneck", "gaussian_conditional", "h_s"):
            module = getattr(self, name, None)
            if module is None:
                continue
            for key, t in sorted(module.state_dict().items()):
                h.update(key.encode())
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.digest()[:FINGERPRINT_BYTES]

    # ------------------------------------------------------------------ helpers
    def _fill_tables(self, state_dict, prefix, *args):
        for name, module in self.named_children():
            for buf in _TABLES:
                if hasattr(module, buf) and isinstance(getattr(module, buf), torch.Tensor):
                    state_dict.setdefault(f"{prefix}{name}.{buf}", getattr(module, buf))
        self._stale = True

    def _decode_factorized(self, strings, hw):
        eb = self.entropy_bottleneck
        indexes = eb._build_indexes((len(strings), eb.channels, *hw))
        medians = eb._get_medians().detach().cpu().reshape(1, -1, 1, 1).expand(len(strings), -1, *hw)
        return guarded_decompress(eb, strings, indexes, medians)

    def _scales(self, z_hat, y_hw):
        return hyper_scales(self._cpu_h_s[0] if self._cpu_h_s else self.h_s, z_hat, y_hw)

    def _device(self):
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")


def guarded_decompress(entropy_model, strings, indexes, means=None):
    """:func:`eccentric_det.codec.guarded_ans.decompress` (imported here, on the decoding side only: the
    edge never loads numba)."""
    from .guarded_ans import decompress

    return decompress(entropy_model, strings, indexes, means)


_TABLES = ("_offset", "_quantized_cdf", "_cdf_length")


def _drop_tables(module, state_dict, prefix, local_metadata):
    for key in [k for k in state_dict if k.startswith(prefix) and k.rsplit(".", 1)[-1] in _TABLES]:
        del state_dict[key]


def _tensor_bytes(t):
    return t.detach().float().cpu().contiguous().numpy().tobytes()


def _bytes_tensor(data, channels, hw):
    expected = channels * hw[0] * hw[1] * 4
    if len(data) != expected:
        raise ValueError(f"passthrough feature holds {len(data)} bytes, expected {expected}")
    return torch.from_numpy(np.frombuffer(data, dtype=np.float32).copy()).reshape(channels, *hw)
