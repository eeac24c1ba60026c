"""Feature codecs, one class per codec, registered by name in :data:`CODEC_REGISTRY` (:func:`build_codec`):
analysis ``g_a`` -> a latent codec (:mod:`.latent_codecs`: quantise and entropy-code, a hyperprior's ``h_a``/``h_s``
inside) -> synthesis ``g_s``, CompressAI's names and composition.

Other modules reach the transforms through :attr:`FeatureCodec.analysis` and the like, and the parameters of each side
through :meth:`FeatureCodec.param_prefixes`, never by submodule name. Checkpoints written before the CompressAI names
(``encoder.``/``decoder.``) load through :func:`rename_legacy_keys`.

Knows nothing of Detectron2, so the detection and classification sides share it as is.
Training (``forward``) returns likelihoods so the rate joins the loss; inference (``compress`` /
``decompress``) produces and consumes real bit strings.
"""
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
from fvcore.common.registry import Registry
from torch import nn

from .coding import CodedFeature, check_no_regions, check_rate, fit
from .latent_codecs import (SCALES, EntropyBottleneckLatentCodec, GainHyperpriorLatentCodec,
                            GaussianConditionalLatentCodec, HyperLatentCodec, HyperpriorLatentCodec,
                            PositionalLatentCodec, RateGains, SymbolCounts, coder_tables)
from .shapes import latent_shape
from .payload import FIELD_RATE, FIELD_SCALE_INDEXES, FINGERPRINT_BYTES


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
                rate_levels=1, rate=0.0, positional=None):
    """The codec registered as ``name``, from ``in_channels`` (the edge's split feature) to ``out_channels``
    (what the cloud tail expects at the split). ``rate_levels`` > 1: a variable-rate codec's trained levels;
    ``rate``: the level it codes at (fractional values interpolate); ``positional``: the (h, w) of the one split
    feature size it codes, to code its latent under a positional prior (``CODEC.POSITIONAL_PRIOR``)."""
    classes = {cls.name: cls for _, cls in CODEC_REGISTRY}
    if name not in classes:
        raise ValueError(f"Unknown codec {name!r}; choose one of {sorted(classes)} (MODEL.ECCENTRIC.CODEC.NAME), or "
                         f"register one in CODEC_REGISTRY.")
    extra = {} if positional is None else {"positional": tuple(positional)}
    if extra and not classes[name].positional:
        raise ValueError(f"codec {name!r} has no positional prior (CODEC.POSITIONAL_PRIOR): use CODEC.NAME "
                         f"'factorized'")
    return classes[name](in_channels=in_channels, out_channels=out_channels, latent_channels=latent_channels,
                         hidden_channels=hidden_channels, downsample=downsample, half=half,
                         rate_levels=rate_levels, rate=rate, **extra)


class FeatureCodec(nn.Module):
    """What every codec shares: its config (identifying it in the payload's fingerprint), CDF tables rebuilt
    from the weights after loading, the training path (``forward`` -> x_hat and likelihoods) and real bit
    strings (``compress``/``decompress``). ``half`` ("edge"/"cloud") leaves out what the other side holds.
    A subclass sets ``name`` (``hyper``: it codes a hyper-latent as a second string; ``variable_rate``: it
    takes ``rate_levels`` > 1) and implements :meth:`forward`, :meth:`compress` and :meth:`decompress`."""

    name = ""
    hyper = False
    variable_rate = False
    positional = False  # it can code one latent size under a positional prior (``positional`` = its feature's h, w)
    latent_codec = None  # a learned codec's (:mod:`.latent_codecs`; not a submodule: it holds the codec's own)
    # Its submodules by side: the edge's alone, the cloud's alone, and those both halves hold (the entropy models and
    # what selects their CDFs must agree bit for bit: the fingerprint hashes them, in this order).
    PARAM_GROUPS = {"edge": ("g_a", "h_a"), "cloud": ("g_s",),
                    "shared": ("entropy_bottleneck", "gaussian_conditional", "h_s", "gains", "symbol_prior")}

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

    def _set_latent_codec(self, latent_codec):
        object.__setattr__(self, "latent_codec", latent_codec)  # not registered: its modules are the codec's

    def entropy_models(self):
        """The CompressAI entropy models it holds, by name."""
        return self.latent_codec.entropy_models if self.latent_codec is not None else {}

    @torch.no_grad()
    def update(self, force=True):
        """Build the entropy coder's CDF tables from the current weights (CompressAI ``update``),
        on the CPU, so an edge on CPU and a cloud on GPU build identical tables."""
        if self.latent_codec is not None:
            self.latent_codec.update(force)
        self._stale = False

    def update_if_stale(self):
        if self._stale or any(m._offset.numel() == 0 for m in self.entropy_models().values()):
            self.update(force=True)

    def coder_tables(self):
        """The :class:`~eccentric_det.codec.coding.CoderTables` of each entropy model (built if stale)."""
        self.update_if_stale()
        return {name: coder_tables(m) for name, m in self.entropy_models().items()}

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
    """``g_a`` -> :attr:`latent_codec` -> ``g_s``: ``compress`` is ``code(latents(x))``, ``decompress`` is ``g_s`` of
    ``decompress_latent``. A subclass builds ``g_a``/``g_s`` and the modules of its latent codec under their
    checkpoint names (``entropy_bottleneck``, ``gaussian_conditional``, ``h_a``, ``h_s``, ``gains``), then the
    latent codec of them (:meth:`_set_latent_codec`)."""

    def forward(self, x, rate=None):
        """Noisy quantisation in training (a mean-scale codec's decoder sees y rounded straight-through), hard
        quantisation in eval; returns x_hat and likelihoods. ``rate``: a variable-rate codec's, a number or one per
        image (default: :attr:`rate`)."""
        if self.training:
            self._stale = True
        rated = (self.rate if rate is None else rate,) if hasattr(self, "gains") else ()
        out = self.latent_codec(self.g_a(x), *rated)
        return CodecOutput(fit(self.g_s(out["y_hat"]), x.shape[-2:]), out["likelihoods"])

    @torch.no_grad()
    def code(self, latents: Latents, rate=None, regions=None) -> List[CodedFeature]:
        """Code ``latents`` at ``rate`` (a variable-rate codec's: z's string is the same at every rate, y is scaled by
        the rate's gain; ``regions``: see :func:`~eccentric_det.codec.coding.code_latents`)."""
        self.update_if_stale()
        if not self.hyper:
            check_no_regions(regions)
            out = self.latent_codec.compress(latents.y)
        else:
            rated = {"rate": self.rate if rate is None else self.check_rate(rate)} if hasattr(self, "gains") else {}
            out = self.latent_codec.compress(latents.y, latents.z, regions, **rated)
        y_hw, fields = tuple(latents.y.shape[-2:]), out.get("fields") or [{} for _ in latents.y]
        return [CodedFeature(list(s), y_hw, latents.feature_hw, f) for s, f in zip(zip(*out["strings"]), fields)]

    @torch.no_grad()
    def decompress_latent(self, coded: List[CodedFeature]):
        """Decode a batch of same-shape coded features (each at the rate its payload names) to the quantised latent
        y_hat, with the bounds-checked decoder (:mod:`~eccentric_det.codec.guarded_ans`): any bytes give a result or
        an :class:`~eccentric_det.codec.guarded_ans.EntropyDecodeError`, never a read out of bounds."""
        self.update_if_stale()
        strings = [[c.strings[i] for c in coded] for i in range(2 if self.hyper else 1)]
        out = self.latent_codec.decompress(strings, coded[0].latent_shape, fields=[c.fields for c in coded])
        return out["y_hat"].to(self._device())

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
    positional = True

    def __init__(self, in_channels, out_channels, half="both", positional=None, **kwargs):
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
        if positional is None:
            self._set_latent_codec(EntropyBottleneckLatentCodec(self.entropy_bottleneck))
            return
        shape = (n, *self.latent_shape(positional))
        self.config["positional"] = list(shape)  # only then: the fingerprints of other codecs stay as they were
        self.symbol_prior = SymbolCounts(math.prod(shape), n)
        self._set_latent_codec(PositionalLatentCodec(self.entropy_bottleneck, self.symbol_prior, shape))


@CODEC_REGISTRY.register()
class HyperpriorCodec(FactorizedCodec):
    """The factorized codec's encoder and decoder with a scale hyperprior (Balle et al. 2018): ``h_a`` codes
    the latent's scales as a hyper-latent z (EntropyBottleneck), ``h_s`` decodes them, and y is coded under
    CompressAI's GaussianConditional. Elements whose scale lies next to a CDF boundary travel with their index
    (``FIELD_SCALE_INDEXES``, see :mod:`.scale_indexes`)."""

    name = "hyperprior"
    hyper = True
    positional = False

    def __init__(self, in_channels, out_channels, half="both", **kwargs):
        super().__init__(in_channels, out_channels, half=half, **kwargs)
        n = self.config["latent_channels"]
        if half != "cloud":
            self.h_a = nn.Sequential(_conv(n, n), nn.LeakyReLU(inplace=True), _conv(n, n, 5, 2),
                                     nn.LeakyReLU(inplace=True), _conv(n, n, 5, 2))
        self.h_s = nn.Sequential(_deconv(n, n, 5), nn.LeakyReLU(inplace=True), _deconv(n, n, 5),
                                 nn.LeakyReLU(inplace=True), _conv(n, n), nn.Softplus())
        self.gaussian_conditional = GaussianConditional(SCALES)
        self._set_latent_codec(HyperpriorLatentCodec(
            HyperLatentCodec(self.entropy_bottleneck, self.hyper_analysis, self.h_s, n),
            GaussianConditionalLatentCodec(self.gaussian_conditional)))

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
        self.gaussian_conditional = GaussianConditional(SCALES)
        hyper = HyperLatentCodec(self.entropy_bottleneck, self.hyper_analysis, self.h_s, n)
        y = GaussianConditionalLatentCodec(self.gaussian_conditional, quantizer="ste")
        if self.config["rate_levels"] > 1:
            self.gains = RateGains(self.config["rate_levels"], n)
            self._set_latent_codec(GainHyperpriorLatentCodec(hyper, y, self.gains))
        else:
            self._set_latent_codec(HyperpriorLatentCodec(hyper, y))

    def rate_log_gains(self):
        return self.gains.log_gain if hasattr(self, "gains") else None

    def payload_fields(self):
        return (FIELD_SCALE_INDEXES,) + ((FIELD_RATE,) if hasattr(self, "gains") else ())


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
