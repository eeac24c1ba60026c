"""Feature codecs, one class per codec, registered by name in :data:`CODEC_REGISTRY` (:func:`build_codec`):
analysis ``g_a`` -> quantise -> CompressAI entropy coder -> synthesis ``g_s`` (a hyperprior's ``h_a``/``h_s`` beside
them), CompressAI's names.

Other modules reach the transforms through :attr:`FeatureCodec.analysis` and the like, and the parameters of each side
through :meth:`FeatureCodec.param_prefixes`, never by submodule name. Checkpoints written before the CompressAI names
(``encoder.``/``decoder.``) load through :func:`rename_legacy_keys`.

Knows nothing of Detectron2, so the detection and classification sides share it as is.
Training (``forward``) returns likelihoods so the rate joins the loss; inference (``compress`` /
``decompress``) produces and consumes real bit strings.
"""
import copy
import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from compressai.models.base import get_scale_table
from compressai.ops import quantize_ste
from fvcore.common.registry import Registry
from torch import nn

from .coding import (CodedFeature, CoderTables, check_rate, code_latents, fit, hyper_params, rate_field, rate_gains,
                     scale_indexes)
from .shapes import hyper_shape, latent_shape, read_rate
from .payload import FIELD_RATE, FIELD_SCALE_INDEXES, FIELD_TILES, FINGERPRINT_BYTES
from .scale_indexes import decode_exceptions
from .tiles import decode_tiles, region_cells

# Scale table of the Gaussian conditional (CompressAI's default: 64 log-spaced scales in [0.11, 256]).
_SCALES = get_scale_table().tolist()


@dataclass
class CodecOutput:
    """Training-path result: the reconstructed feature and the likelihoods of each coded latent."""

    x_hat: torch.Tensor
    likelihoods: Dict[str, torch.Tensor]  # [N, ...] each


@dataclass
class Latents:
    """A batch's latents, computed once (:meth:`FeatureCodec.latents`) and coded at any rate and in any tiles by
    :meth:`FeatureCodec.code` (only the gain, quantisation and entropy coding run again)."""

    y: torch.Tensor  # the latent the codec quantises, before any rate gain (a codec without one: the feature)
    z: Optional[torch.Tensor]  # a hyperprior's hyper-latent (else None)
    feature_hw: Tuple[int, int]  # (H, W) of the split feature


def _conv(cin, cout, k=3, stride=1):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def _deconv(cin, cout, k=3, stride=2):
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1)


CODEC_REGISTRY = Registry("CODEC")
CODEC_REGISTRY.__doc__ = """Feature codecs: subclasses of :class:`FeatureCodec` registered with
``@CODEC_REGISTRY.register()``, built by their ``name`` attribute (``MODEL.ECCENTRIC.CODEC.NAME``) with the
keyword arguments of :func:`build_codec`."""


# Submodule names of checkpoints written before the CompressAI names, and what they are now.
LEGACY_NAMES = {"encoder": "g_a", "decoder": "g_s"}
_LEGACY_KEY = re.compile(r"(^|\.)codec\.(" + "|".join(LEGACY_NAMES) + r")\.")


def rename_legacy_keys(state):
    """``state`` (a model's name -> tensor dict, its codec under ``codec.``) with the codec's pre-CompressAI names
    (:data:`LEGACY_NAMES`) renamed; the same dict when it holds none."""
    if not any(_LEGACY_KEY.search(k) for k in state):
        return state
    return {_LEGACY_KEY.sub(lambda m: f"{m.group(1)}codec.{LEGACY_NAMES[m.group(2)]}.", k, count=1): v
            for k, v in state.items()}


def build_codec(name, in_channels, out_channels, latent_channels=32, hidden_channels=96, downsample=2, half="both",
                rate_levels=1, rate=0.0):
    """The codec registered as ``name``, from ``in_channels`` (the edge's split feature) to ``out_channels``
    (what the cloud tail expects at the split). ``rate_levels`` > 1: a variable-rate codec's trained levels;
    ``rate``: the level it codes at (fractional values interpolate)."""
    classes = {cls.name: cls for _, cls in CODEC_REGISTRY}
    if name not in classes:
        raise ValueError(f"Unknown codec {name!r}; choose one of {sorted(classes)} (MODEL.ECCENTRIC.CODEC.NAME), or "
                         f"register one in CODEC_REGISTRY.")
    return classes[name](in_channels=in_channels, out_channels=out_channels, latent_channels=latent_channels,
                         hidden_channels=hidden_channels, downsample=downsample, half=half,
                         rate_levels=rate_levels, rate=rate)


class FeatureCodec(nn.Module):
    """What every codec shares: its config (identifying it in the payload's fingerprint), CDF tables rebuilt
    from the weights after loading, the training path (``forward`` -> x_hat and likelihoods) and real bit
    strings (``compress``/``decompress``). ``half`` ("edge"/"cloud") leaves out what the other side holds.
    A subclass sets ``name`` (``hyper``: it codes a hyper-latent as a second string; ``variable_rate``: it
    takes ``rate_levels`` > 1) and implements :meth:`forward`, :meth:`compress` and :meth:`decompress`."""

    name = ""
    hyper = False
    variable_rate = False
    entropy_models = ()  # names of the CompressAI entropy models it holds
    # Its submodules by side: the edge's alone, the cloud's alone, and those both halves hold (the entropy models and
    # what selects their CDFs must agree bit for bit: the fingerprint hashes them, in this order).
    PARAM_GROUPS = {"edge": ("g_a", "h_a"), "cloud": ("g_s",),
                    "shared": ("entropy_bottleneck", "gaussian_conditional", "h_s", "gains")}

    def __init__(self, in_channels, out_channels, latent_channels=32, hidden_channels=96, downsample=2,
                 half="both", rate_levels=1, rate=0.0):
        super().__init__()
        if downsample not in (1, 2, 4):
            raise ValueError(f"CODEC.DOWNSAMPLE must be 1, 2 or 4, got {downsample}.")
        if rate_levels != 1 and not self.variable_rate:
            raise ValueError(f"codec {self.name!r} has one rate, got {rate_levels} rate levels (CODEC.RATE_WEIGHTS): "
                             f"use a variable-rate codec (CODEC.NAME 'mean_scale') or one RATE_WEIGHT")
        if not 1 <= rate_levels <= 8:
            raise ValueError(f"a variable-rate codec has 1..8 rate levels (CODEC.RATE_WEIGHTS), got {rate_levels}")
        self.config = dict(name=self.name, in_channels=in_channels, out_channels=out_channels,
                           latent_channels=latent_channels, hidden_channels=hidden_channels,
                           downsample=downsample, hyper=self.hyper, rate_levels=rate_levels)
        self.set_rate(rate)  # a run-time choice, not part of the model (the payload carries it)
        self._stale = True  # entropy tables must be (re)built before real coding
        self._cpu_h_s = ()  # a CPU copy of h_s when the model is elsewhere (a tuple: not a submodule)
        # The CDF tables are derived from the weights and have data-dependent shapes: they are not
        # saved, and are rebuilt (deterministically) after loading.
        self._register_state_dict_hook(_drop_tables)
        self._register_load_state_dict_pre_hook(self._fill_tables)

    def _sizes(self):
        """(latent channels, hidden channels, stride-2 steps) of its transforms."""
        c = self.config
        return c["latent_channels"], c["hidden_channels"], int(math.log2(c["downsample"]))

    @classmethod
    def param_prefixes(cls, side):
        """Prefixes (``"g_a."``, ...) of the parameter names that ``side`` holds: "edge" or "cloud" (with the shared
        ones), or "shared" alone."""
        groups = (side,) if side == "shared" else (side, "shared")
        return tuple(f"{name}." for g in groups for name in cls.PARAM_GROUPS[g])

    @property
    def analysis(self):
        """The edge's transform of the split feature to the latent y (``g_a``; None: the cloud half, or no learned
        transform)."""
        return self._modules.get("g_a")

    @property
    def synthesis(self):
        """The cloud's transform of the decoded latent y_hat to the feature the tail expects (``g_s``; None: the edge
        half, or no learned transform)."""
        return self._modules.get("g_s")

    @property
    def hyper_analysis(self):
        """A hyperprior's transform of y to the hyper-latent z (``h_a``, on the edge; else None)."""
        return self._modules.get("h_a")

    @property
    def hyper_synthesis(self):
        """A hyperprior's transform of z_hat to y's entropy parameters (``h_s``, on both sides; else None)."""
        return self._modules.get("h_s")

    def rate_log_gains(self):
        """A variable-rate codec's log-gains [levels, C] (what the edge scales y by), or None (one rate)."""
        return None

    @torch.no_grad()
    def latents(self, x) -> Latents:
        """The latents of a batch of features ``x``, to code with :meth:`code` (a codec that defines only
        :meth:`compress`: the feature itself, coded by :meth:`compress`)."""
        return Latents(x, None, tuple(x.shape[-2:]))

    @torch.no_grad()
    def code(self, latents: Latents, rate=None, regions=None) -> List[CodedFeature]:
        """One :class:`CodedFeature` per image of ``latents`` at ``rate`` (default :attr:`rate`), in ``regions``
        (see :func:`~eccentric_det.codec.coding.code_latents`): ``code(latents(x), ...)`` is ``compress(x, ...)``,
        byte for byte."""
        return self.compress(latents.y, rate, **({"regions": regions} if regions is not None else {}))

    def set_rate(self, rate):
        """Code at ``rate`` from now on (a variable-rate codec's level; :meth:`check_rate`)."""
        self.rate = self.check_rate(rate)

    def check_rate(self, rate):
        """``rate`` as a payload carries it (:func:`~eccentric_det.codec.coding.check_rate`)."""
        return check_rate(rate, self.config["rate_levels"])

    @staticmethod
    def rate_bits(likelihoods):
        """Estimated size in bits of all latents in the batch (from likelihoods)."""
        if not likelihoods:
            return torch.zeros(())
        return sum(-torch.log2(lik).sum() for lik in likelihoods.values())

    @torch.no_grad()
    def update(self, force=True):
        """Build the entropy coder's CDF tables from the current weights (CompressAI ``update``),
        on the CPU, so an edge on CPU and a cloud on GPU build identical tables."""
        for name in self.entropy_models:
            module = getattr(self, name)
            device = module._offset.device
            module.cpu()
            if name == "entropy_bottleneck":
                module.update(force=force, update_quantiles=True)
            else:
                module.update_scale_table(_SCALES, force=force)
            module.to(device)
        self._cpu_h_s = ()  # the scales that select CDFs are computed on the CPU (see _params)
        if self.hyper_synthesis is not None and self._device().type != "cpu":
            self._cpu_h_s = (copy.deepcopy(self.hyper_synthesis).cpu().float().eval(),)
        self._stale = False

    def update_if_stale(self):
        if self._stale or any(getattr(self, n)._offset.numel() == 0 for n in self.entropy_models):
            self.update(force=True)

    def coder_tables(self):
        """The :class:`~eccentric_det.codec.coding.CoderTables` of each entropy model (built if stale)."""
        self.update_if_stale()
        key = tuple((t.data_ptr(), t._version) for n in self.entropy_models for t in getattr(self, n).buffers())
        if getattr(self, "_tables_key", None) != key:  # converted once per table update or load
            self._tables = {name: CoderTables.of(getattr(self, name)) for name in self.entropy_models}
            self._tables_key = key
        return self._tables

    def payload_fields(self):
        """The optional payload fields this codec reads."""
        return ()

    def latent_shape(self, feature_hw):
        """(h, w) of the first latent for a split feature of ``feature_hw``."""
        return latent_shape(self.config, feature_hw)

    def fingerprint(self) -> bytes:
        """FINGERPRINT_BYTES that identify this codec: its config and the entropy model both halves hold."""
        self.update_if_stale()
        h = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode())
        for name in self.PARAM_GROUPS["shared"]:
            module = getattr(self, name, None)
            if module is None:
                continue
            for key, t in sorted(module.state_dict().items()):
                h.update(key.encode())
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.digest()[:FINGERPRINT_BYTES]

    def _fill_tables(self, state_dict, prefix, *args):
        """Before loading: rename a state of the pre-CompressAI names (:data:`LEGACY_NAMES`), and fill in the CDF
        tables (not saved) so that a strict load accepts the state; they are rebuilt before coding."""
        legacy = [k for k in state_dict if k.startswith(prefix) and k[len(prefix):].split(".", 1)[0] in LEGACY_NAMES]
        for key in legacy:
            old, rest = key[len(prefix):].split(".", 1)
            state_dict[f"{prefix}{LEGACY_NAMES[old]}.{rest}"] = state_dict.pop(key)
        for name, module in self.named_children():
            for buf in _TABLES:
                if hasattr(module, buf) and isinstance(getattr(module, buf), torch.Tensor):
                    state_dict.setdefault(f"{prefix}{name}.{buf}", getattr(module, buf))
        self._stale = True

    def _device(self):
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def _decode_factorized(self, strings, hw):
        eb = self.entropy_bottleneck
        indexes = eb._build_indexes((len(strings), eb.channels, *hw))
        medians = eb._get_medians().detach().cpu().reshape(1, -1, 1, 1).expand(len(strings), -1, *hw)
        return guarded_decompress(eb, strings, indexes, medians)

    def _params(self, z_hat, y_hw, gain=None):
        """(scales, means or None) of y (:func:`~eccentric_det.codec.coding.hyper_params`)."""
        h_s = self._cpu_h_s[0] if self._cpu_h_s else self.hyper_synthesis
        return hyper_params(h_s, z_hat, y_hw, self.config["latent_channels"], gain)

    def _decode_gaussian(self, coded, gain=None):
        """y_hat (x ``gain`` for a variable-rate codec) of a batch of same-shape hyperprior payloads (region payloads
        decode y and z in their tiles' cells, the means and medians elsewhere: :mod:`.tiles`)."""
        self.update_if_stale()
        y_hw = coded[0].latent_shape
        z_hw = hyper_shape(y_hw)
        cells = [region_cells(decode_tiles(c.fields[FIELD_TILES], y_hw, c.fields[FIELD_TILES][0]),
                              c.fields[FIELD_TILES][0], y_hw) if FIELD_TILES in c.fields else None for c in coded]
        whole = [i for i, c in enumerate(cells) if c is None]
        eb = self.entropy_bottleneck
        medians = eb._get_medians().detach().cpu().reshape(-1, 1, 1)
        z_hat = medians.expand(len(coded), -1, *z_hw).clone()
        if whole:
            z_hat[whole] = self._decode_factorized([coded[i].strings[1] for i in whole], z_hw)
        for i, c in enumerate(cells):
            if c is not None:
                idx = torch.arange(eb.channels, dtype=torch.int32)[:, None].expand(-1, int(c[1].sum()))
                z_hat[i][:, c[1]] = guarded_decompress(eb, [coded[i].strings[1]], idx[None],
                                                       medians[:, :, 0].expand_as(idx)[None])[0]
        gc = self.gaussian_conditional
        scales, means = self._params(z_hat, y_hw, gain)
        indexes = scale_indexes(scales, self.coder_tables()["gaussian_conditional"])
        y_hat = torch.zeros_like(scales) if means is None else means.clone()
        for i, c in enumerate(coded):
            y_cells = None if cells[i] is None else cells[i][0]
            idx = indexes[i] if y_cells is None else indexes[i][:, y_cells]
            if FIELD_SCALE_INDEXES in c.fields:
                pos, exc = decode_exceptions(c.fields[FIELD_SCALE_INDEXES], idx.numel(), len(gc.scale_table))
                idx = idx.clone()
                idx.view(-1)[torch.from_numpy(pos)] = torch.from_numpy(exc).to(idx.dtype)
            m = None if means is None else (means[i] if y_cells is None else means[i][:, y_cells])
            values = guarded_decompress(gc, [c.strings[0]], idx[None], None if m is None else m[None])[0]
            if y_cells is None:
                y_hat[i] = values
            else:
                y_hat[i][:, y_cells] = values
        return y_hat


@CODEC_REGISTRY.register()
class PassthroughCodec(FeatureCodec):
    """Lossless: sends the float32 feature (the split-equivalence tests' codec)."""

    name = "passthrough"

    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__(in_channels, out_channels, **kwargs)
        if in_channels != out_channels:
            raise ValueError(
                f"A passthrough codec needs the edge and cloud to agree on channels at the split "
                f"(edge {in_channels}, cloud {out_channels}): use a learned codec (factorized/hyperprior)."
            )

    def forward(self, x, rate=None):
        return CodecOutput(x, {})

    @torch.no_grad()
    def compress(self, x, rate=None) -> List[CodedFeature]:
        out_hw = tuple(x.shape[-2:])
        return [CodedFeature([_tensor_bytes(xi)], out_hw, out_hw) for xi in x]

    @torch.no_grad()
    def decompress(self, coded: List[CodedFeature]):
        return torch.stack([_bytes_tensor(c.strings[0], self.config["in_channels"], c.output_shape)
                            for c in coded]).to(self._device())


class LearnedCodec(FeatureCodec):
    """What the learned codecs share: ``compress`` is ``code(latents(x))``, ``decompress`` is ``g_s`` of
    ``decompress_latent``. A subclass builds ``g_a``/``g_s`` (and a hyperprior's ``h_a``/``h_s``) and implements
    :meth:`code` and :meth:`decompress_latent`."""

    @torch.no_grad()
    def compress(self, x, rate=None, regions=None) -> List[CodedFeature]:
        """One :class:`CodedFeature` per image of the batch of features ``x`` at ``rate`` (default :attr:`rate`;
        ``regions``: see :func:`~eccentric_det.codec.coding.code_latents`)."""
        return self.code(self.latents(x), rate, regions)

    @torch.no_grad()
    def latents(self, x) -> Latents:
        y = self.g_a(x)
        return Latents(y, self.h_a(y) if self.hyper else None, tuple(x.shape[-2:]))

    @torch.no_grad()
    def decompress(self, coded: List[CodedFeature]):
        """Decode a batch of same-shape coded features to the cloud-side feature tensor."""
        return fit(self.g_s(self.decompress_latent(coded)), coded[0].output_shape)


@CODEC_REGISTRY.register()
class FactorizedCodec(LearnedCodec):
    """Encoder -> quantised latent of ``latent_channels`` at 1/``downsample`` of the feature's resolution under
    CompressAI's EntropyBottleneck (factorized prior) -> decoder."""

    name = "factorized"
    entropy_models = ("entropy_bottleneck",)

    def __init__(self, in_channels, out_channels, half="both", **kwargs):
        super().__init__(in_channels, out_channels, half=half, **kwargs)
        n, h, steps = self._sizes()
        enc = [_conv(in_channels, h), nn.LeakyReLU(inplace=True)]
        for _ in range(steps):
            enc += [_conv(h, h, stride=2), nn.LeakyReLU(inplace=True)]
        dec = [_conv(n, h), nn.LeakyReLU(inplace=True)]
        for _ in range(steps):
            dec += [_deconv(h, h), nn.LeakyReLU(inplace=True)]
        if half != "cloud":
            self.g_a = nn.Sequential(*enc, _conv(h, n))
        if half != "edge":
            self.g_s = nn.Sequential(*dec, _conv(h, out_channels))
        self.entropy_bottleneck = EntropyBottleneck(n)
        # The coder's range (CompressAI's "quantiles") is found by bisection on the learned density at
        # update(), more precisely than by training it with an auxiliary loss, so it takes no gradient.
        self.entropy_bottleneck.quantiles.requires_grad_(False)

    def forward(self, x, rate=None):
        """Noisy quantisation in training, hard quantisation in eval; returns x_hat and likelihoods."""
        if self.training:
            self._stale = True
        y_hat, likelihoods = self._latent(self.g_a(x))
        return CodecOutput(fit(self.g_s(y_hat), x.shape[-2:]), likelihoods)

    def _latent(self, y):
        y_hat, lik = self.entropy_bottleneck(y)
        return y_hat, {"y": lik}

    @torch.no_grad()
    def code(self, latents: Latents, rate=None, regions=None) -> List[CodedFeature]:
        """(One rate: ``rate`` is not used.)"""
        return code_latents(latents.y, latents.z, self.coder_tables(), self._params, latents.feature_hw,
                            regions=regions)

    @torch.no_grad()
    def decompress_latent(self, coded: List[CodedFeature]):
        """Decode a batch of same-shape coded features to the quantised latent y_hat, with the
        bounds-checked decoder (:mod:`~eccentric_det.codec.guarded_ans`): any bytes give a result or a
        :class:`~eccentric_det.codec.guarded_ans.EntropyDecodeError`, never a read out of bounds."""
        self.update_if_stale()
        return self._decode_factorized([c.strings[0] for c in coded], coded[0].latent_shape).to(self._device())


@CODEC_REGISTRY.register()
class HyperpriorCodec(FactorizedCodec):
    """The factorized codec's encoder and decoder with a scale hyperprior (Balle et al. 2018): ``h_a`` codes
    the latent's scales as a hyper-latent z (EntropyBottleneck), ``h_s`` decodes them, and y is coded under
    CompressAI's GaussianConditional. Elements whose scale lies next to a CDF boundary travel with their index
    (``FIELD_SCALE_INDEXES``, see :mod:`.scale_indexes`)."""

    name = "hyperprior"
    hyper = True
    entropy_models = ("entropy_bottleneck", "gaussian_conditional")

    def __init__(self, in_channels, out_channels, half="both", **kwargs):
        super().__init__(in_channels, out_channels, half=half, **kwargs)
        n = self.config["latent_channels"]
        if half != "cloud":
            self.h_a = nn.Sequential(_conv(n, n), nn.LeakyReLU(inplace=True), _conv(n, n, 5, 2),
                                     nn.LeakyReLU(inplace=True), _conv(n, n, 5, 2))
        self.h_s = nn.Sequential(_deconv(n, n, 5), nn.LeakyReLU(inplace=True), _deconv(n, n, 5),
                                 nn.LeakyReLU(inplace=True), _conv(n, n), nn.Softplus())
        self.gaussian_conditional = GaussianConditional(_SCALES)

    def _latent(self, y):
        z_hat, z_lik = self.entropy_bottleneck(self.h_a(y))
        y_hat, y_lik = self.gaussian_conditional(y, fit(self.h_s(z_hat), y.shape[-2:]))
        return y_hat, {"y": y_lik, "z": z_lik}

    @torch.no_grad()
    def decompress_latent(self, coded: List[CodedFeature]):
        return self._decode_gaussian(coded).to(self._device())

    def payload_fields(self):
        return (FIELD_SCALE_INDEXES,)


@CODEC_REGISTRY.register()
class MeanScaleCodec(LearnedCodec):
    """Codec v2: a mean-scale hyperprior (Minnen et al. 2018) of CompressAI's GDN, EntropyBottleneck and
    GaussianConditional, sized for a split: the encoder downsamples in its first layer (then GDN), the decoder
    is one conv, inverse GDN and one transposed conv per step, far cheaper than the cloud stages it replaces.

    Variable rate (``rate_levels`` > 1; Cui et al. 2021, "Asymmetric gained deep image compression"): a
    learned gain and inverse gain per level and channel scale y before quantisation and after decoding, and the
    hyperprior's scales and means with it, so z is coded once for all rates; a fractional rate interpolates the
    log-gains of its two levels. The rate travels in the payload (``FIELD_RATE``)."""

    name = "mean_scale"
    hyper = True
    variable_rate = True
    entropy_models = ("entropy_bottleneck", "gaussian_conditional")

    def __init__(self, in_channels, out_channels, half="both", **kwargs):
        super().__init__(in_channels, out_channels, half=half, **kwargs)
        n, h, steps = self._sizes()
        if half != "cloud":
            enc, cin = [], in_channels
            for _ in range(max(steps, 1)):
                enc += [_conv(cin, h, stride=2 if steps else 1), GDN(h)]
                cin = h
            self.g_a = nn.Sequential(*enc, _conv(h, n))
            self.h_a = nn.Sequential(_conv(n, n, 5, 2), nn.LeakyReLU(inplace=True), _conv(n, n, 5, 2))
        if half != "edge":
            dec = [_conv(n, h), GDN(h, inverse=True)]
            for i in range(steps):
                last = i == steps - 1
                dec += [_deconv(h, out_channels if last else h)] + ([] if last else [GDN(h, inverse=True)])
            self.g_s = nn.Sequential(*dec) if steps else nn.Sequential(*dec, _conv(h, out_channels))
        m = n * 3 // 2
        self.h_s = nn.Sequential(_deconv(n, n, 5), nn.LeakyReLU(inplace=True), _deconv(n, m, 5),
                                 nn.LeakyReLU(inplace=True), _conv(m, 2 * n, 1))
        self.entropy_bottleneck = EntropyBottleneck(n)
        self.entropy_bottleneck.quantiles.requires_grad_(False)  # found by bisection at update(), as above
        self.gaussian_conditional = GaussianConditional(_SCALES)
        if self.config["rate_levels"] > 1:
            self.gains = RateGains(self.config["rate_levels"], n)

    def _gains(self, rate, n):
        """(gain, inverse gain) [n, C, 1, 1] at ``rate`` (a number or one per image), or (None, None)."""
        if not hasattr(self, "gains"):
            return None, None
        rates = torch.as_tensor(self.rate if rate is None else rate, dtype=torch.float32).reshape(-1).expand(n)
        return rate_gains(self.gains.log_gain, rates), rate_gains(self.gains.log_gain_inv, rates)

    def forward(self, x, rate=None):
        """Training: noisy quantisation for the likelihoods, straight-through rounding for what the decoder
        sees; eval: hard quantisation. ``rate``: a number or one per image (default: :attr:`rate`)."""
        if self.training:
            self._stale = True
        y = self.g_a(x)
        z_hat, z_lik = self.entropy_bottleneck(self.h_a(y))
        scales, means = fit(self.h_s(z_hat), y.shape[-2:]).chunk(2, 1)
        gain, gain_inv = self._gains(rate, len(x))
        if gain is not None:
            y, scales, means = y * gain, scales * gain, means * gain
        y_noisy, y_lik = self.gaussian_conditional(y, scales, means)
        y_hat = quantize_ste(y - means) + means if self.training else y_noisy
        if gain_inv is not None:
            y_hat = y_hat * gain_inv
        return CodecOutput(fit(self.g_s(y_hat), x.shape[-2:]), {"y": y_lik, "z": z_lik})

    @torch.no_grad()
    def code(self, latents: Latents, rate=None, regions=None) -> List[CodedFeature]:
        """Code ``latents`` at ``rate``: z's string is the same at every rate, y is scaled by the rate's gain."""
        rate = self.rate if rate is None else self.check_rate(rate)
        y, gain, fields = latents.y, None, {}
        if hasattr(self, "gains"):  # on the CPU, as the cloud computes it (see :mod:`.scale_indexes`)
            gain = self.gains.cpu_gains([rate] * len(y))[0]
            y, fields = y.cpu().float() * gain, {FIELD_RATE: rate_field(rate)}
        return code_latents(y, latents.z, self.coder_tables(), lambda z_hat, y_hw: self._params(z_hat, y_hw, gain),
                            latents.feature_hw, fields, regions)

    @torch.no_grad()
    def decompress_latent(self, coded: List[CodedFeature]):
        """y_hat of a batch of same-shape coded features, each at the rate its payload names."""
        if not hasattr(self, "gains"):
            return self._decode_gaussian(coded).to(self._device())
        rates = [read_rate(c.fields, self.config["rate_levels"]) for c in coded]
        gains = self.gains.cpu_gains(rates)
        return (self._decode_gaussian(coded, gains[0]) * gains[1]).to(self._device())

    def rate_log_gains(self):
        return self.gains.log_gain if hasattr(self, "gains") else None

    def payload_fields(self):
        return (FIELD_SCALE_INDEXES,) + ((FIELD_RATE,) if hasattr(self, "gains") else ())


class RateGains(nn.Module):
    """The learned per-level, per-channel log-gains of a variable-rate codec (gain before quantisation, inverse
    gain after decoding), initialised a factor of 1.4 apart (a rate weight doubling per level)."""

    def __init__(self, levels, channels):
        super().__init__()
        step = torch.arange(levels, dtype=torch.float32).mul(-math.log(2) / 2)[:, None].expand(-1, channels)
        self.log_gain = nn.Parameter(step.clone())
        self.log_gain_inv = nn.Parameter(-step.clone())

    def cpu_gains(self, rates):
        """(gain, inverse gain) [N, C, 1, 1] on the CPU in float32, as the edge computes them."""
        return tuple(rate_gains(t.detach().cpu().float(), rates) for t in (self.log_gain, self.log_gain_inv))


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
