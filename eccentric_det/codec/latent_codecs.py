"""Latent codecs, composed as :mod:`compressai.latent_codecs` composes them: ``forward(y) -> {"likelihoods", "y_hat"}``
(training), ``compress(y) -> {"strings", "shape", ...}`` and ``decompress(strings, shape) -> {"y_hat"}`` (real bit
strings; ``strings``: one list per latent, one string per image). A learned feature codec is ``g_a``, one of these,
``g_s``.

Unlike CompressAI's, strings are written by the module-free coder of :mod:`.coding` (the exported edge's, byte for
byte) and read by the bounds-checked decoder of :mod:`.guarded_ans`; the scales that select CDFs are computed on the
CPU in float32 (:mod:`.scale_indexes`); a region payload codes only its tiles' cells (:mod:`.tiles`), and ``fields``
(one dict per image) holds the payload fields the decoder reads. The entropy models, ``h_a``/``h_s`` and gains they
hold are their feature codec's submodules, under its checkpoint names; a latent codec is no submodule of it.
"""
import copy
import logging
import math

import torch
from compressai import latent_codecs as cai
from compressai.entropy_models.entropy_models import EntropyModel
from compressai.models.base import get_scale_table
from compressai.ops import quantize_ste
from torch import nn

from .coding import (SYMBOL_PRIOR, CoderTables, encode_bottleneck, encode_conditional, encode_positional, fit,
                     hyper_params, rate_field, rate_gains, scale_indexes, split_regions)
from .payload import FIELD_RATE, FIELD_SCALE_INDEXES, FIELD_TILES
from .scale_indexes import decode_exceptions
from .shapes import hyper_shape, read_rate
from .tiles import decode_tiles, region_cells

logger = logging.getLogger(__name__)

# Scale table of the Gaussian conditional (CompressAI's default: 64 log-spaced scales in [0.11, 256]).
SCALES = get_scale_table().tolist()


class EntropyBottleneckLatentCodec(cai.EntropyBottleneckLatentCodec):
    """y under a factorized prior (an EntropyBottleneck; CDF index = channel). ``cells``: per image None (all of
    it) or the [h, w] bool cells a region codes, the medians elsewhere."""

    @property
    def entropy_models(self):
        return {"entropy_bottleneck": self.entropy_bottleneck}

    def update(self, force=True):
        """The CDF tables (and the quantiles they start from), built on the CPU in float64: an edge and a cloud on
        different machines build identical ones. In float32 they follow the last bit of the machine's kernels (the
        BLAS's summation order in the density's matrix products): of the 8 x 433 entries of a seeded bottleneck, some
        moved between two x86 machines, and every payload would then fail the other side's fingerprint check."""
        def build(m):
            m.quantiles.data.copy_(_search_quantiles(m))
            m.update(force=force)
        _on_cpu(self.entropy_bottleneck, build, torch.float64)

    def compress(self, y, cells=None):
        strings, y_hat = encode_bottleneck(y, coder_tables(self.entropy_bottleneck), cells)
        return {"strings": [strings], "shape": tuple(y.shape[-2:]), "y_hat": y_hat}

    def decompress(self, strings, shape, cells=None, **kwargs):
        (strings,) = strings
        eb = self.entropy_bottleneck
        medians = eb._get_medians().detach().cpu().reshape(-1, 1, 1)
        y_hat = medians.expand(len(strings), -1, *shape).clone()
        cells = cells or [None] * len(strings)
        whole = [i for i, c in enumerate(cells) if c is None]
        if whole:
            y_hat[whole] = guarded_decompress(eb, [strings[i] for i in whole],
                                              eb._build_indexes((len(whole), eb.channels, *shape)), y_hat[whole])
        for i, c in enumerate(cells):
            if c is not None:
                idx = torch.arange(eb.channels, dtype=torch.int32)[:, None].expand(-1, int(c.sum()))[None]
                y_hat[i][:, c] = guarded_decompress(eb, [strings[i]], idx, medians[:, :, 0].expand_as(idx[0])[None])[0]
        return {"y_hat": y_hat}


class SymbolCounts(EntropyModel):
    """A static prior of integer symbols, one distribution per element of a latent of ``elements``: how often each
    symbol came on training latents (``counts`` [elements, WINDOW], saved with the model), symbol ``low[k] + j`` in
    column j of element k's window of ``length[k]``; a symbol outside its element's window is escaped (CompressAI's
    bypass coding). :meth:`update` builds CompressAI's CDF tables from them: the counts plus half a count each, one
    count for the escape. Not fitted (``length`` 0): the whole window, uniform."""

    WINDOW = 32

    def __init__(self, elements, channels):
        super().__init__()
        self.register_buffer("counts", torch.zeros(elements, self.WINDOW, dtype=torch.int32))
        self.register_buffer("low", torch.full((elements,), -(self.WINDOW // 2), dtype=torch.int32))
        self.register_buffer("length", torch.zeros(elements, dtype=torch.int32))
        # the channel medians the symbols were counted against (the factorized prior's): a prior counted for other
        # weights still codes losslessly, only in more bytes
        self.register_buffer("basis", torch.zeros(channels))

    @property
    def quantiles(self):
        """Medians 0 (:class:`~.coding.CoderTables` reads them): the symbols are coded as they are."""
        return torch.zeros(len(self.counts), 1, 3)

    @torch.no_grad()
    def fit(self, symbols, basis):
        """Count ``symbols`` [N, elements] (integers), taken against the channel medians ``basis``: each element's
        window starts at its smallest symbol and holds at most WINDOW of them."""
        self.basis.copy_(basis)
        symbols = symbols.round().to(torch.int64)
        low = symbols.min(0).values
        length = (symbols.max(0).values - low + 1).clamp(max=self.WINDOW)
        column = symbols - low
        inside = column < length
        counts = torch.zeros(self.counts.shape, dtype=torch.int64)
        rows = torch.arange(symbols.shape[1]).expand_as(symbols)
        counts.index_put_((rows[inside], column[inside]), torch.ones(int(inside.sum()), dtype=torch.int64),
                          accumulate=True)
        self.counts.copy_(counts.clamp(max=2 ** 31 - 1))
        self.low.copy_(low)
        self.length.copy_(length)
        self.update(force=True)

    def update(self, force=False):
        if self._offset.numel() > 0 and not force:
            return False
        fitted = self.length > 0
        length = torch.where(fitted, self.length, self.WINDOW).long()
        counts = torch.where(fitted[:, None], self.counts.double(), 1.0)
        counts = torch.where(torch.arange(self.WINDOW, device=counts.device)[None] < length[:, None], counts + 0.5, 0.0)
        total = counts.sum(1, keepdim=True) + 1
        self._offset = torch.where(fitted, self.low, -(self.WINDOW // 2)).int()
        self._quantized_cdf = self._pmf_to_cdf(counts / total, 1 / total, length, self.WINDOW)
        self._cdf_length = (length + 2).int()
        return True


class PositionalLatentCodec(EntropyBottleneckLatentCodec):
    """y of one fixed ``shape`` [C, h, w]: trained (``forward``) and quantised as under its factorized prior, but its
    symbols round(y - channel median) are coded under ``symbol_prior`` (:class:`SymbolCounts`: a distribution per
    element, CDF index = element), counted on training latents after training (:func:`fit_symbol_prior`). Where the
    statistics differ by position (a classifier's centred objects) the strings are shorter; y_hat is the factorized
    prior's, bit for bit."""

    def __init__(self, entropy_bottleneck, symbol_prior, shape):
        super().__init__(entropy_bottleneck)
        object.__setattr__(self, "symbol_prior", symbol_prior)  # not a submodule: its feature codec's
        self.shape = tuple(shape)

    @property
    def entropy_models(self):
        return {"entropy_bottleneck": self.entropy_bottleneck, SYMBOL_PRIOR: self.symbol_prior}

    def update(self, force=True):
        super().update(force)
        self.symbol_prior.update(force=force)
        prior, medians = self.symbol_prior, self.entropy_bottleneck._get_medians().detach().reshape(-1)
        if bool(prior.length.any()) and not torch.allclose(prior.basis.float().cpu(), medians.float().cpu(),
                                                            rtol=1e-3, atol=1e-3):
            logger.warning("the positional prior was counted against other weights (their channel medians differ): "
                           "payloads stay lossless but grow; count it again for these weights with "
                           "tools/fit_symbol_prior.py")

    def _check(self, shape):
        if tuple(shape) != self.shape[1:]:
            raise ValueError(f"this codec's positional prior codes {self.shape[1]}x{self.shape[2]} latents, got "
                             f"{shape[0]}x{shape[1]}: it codes inputs of the one size it was built for "
                             f"(CODEC.POSITIONAL_PRIOR)")

    def compress(self, y, cells=None):
        if cells is not None and any(c is not None for c in cells):
            raise ValueError("a positional prior codes whole latents, not regions")
        self._check(y.shape[-2:])
        strings, y_hat = encode_positional(y, coder_tables(self.entropy_bottleneck), coder_tables(self.symbol_prior))
        return {"strings": [strings], "shape": tuple(y.shape[-2:]), "y_hat": y_hat}

    def decompress(self, strings, shape, cells=None, **kwargs):
        (strings,) = strings
        self._check(shape)
        n = len(strings)
        medians = self.entropy_bottleneck._get_medians().detach().cpu().reshape(1, -1, 1, 1)
        indexes = torch.arange(math.prod(self.shape), dtype=torch.int32).view(1, -1, 1, 1).expand(n, -1, -1, -1)
        symbols = guarded_decompress(self.symbol_prior, strings, indexes)
        return {"y_hat": symbols.reshape(n, *self.shape) + medians}


@torch.no_grad()
def fit_symbol_prior(latent_codec: PositionalLatentCodec, y):
    """Count the symbols of latents ``y`` [N, C, h, w] of training images into ``latent_codec``'s positional prior
    (:meth:`SymbolCounts.fit`), relative to the medians the coder uses (rebuilt first)."""
    latent_codec.update(force=True)
    medians = latent_codec.entropy_bottleneck._get_medians().detach().cpu().reshape(1, -1, 1, 1)
    latent_codec.symbol_prior.fit(torch.round(y.detach().cpu().float() - medians).reshape(len(y), -1),
                                  medians.reshape(-1))


class GaussianConditionalLatentCodec(cai.GaussianConditionalLatentCodec):
    """y under a GaussianConditional of ``params`` = (scales, means or None). ``quantizer`` "ste": in training, what
    the decoder sees is y rounded straight-through (the likelihoods see noise). Elements whose scale lies next to a CDF
    boundary travel with their index (FIELD_SCALE_INDEXES); ``cells`` as in :class:`EntropyBottleneckLatentCodec`."""

    def __init__(self, gaussian_conditional, quantizer="noise"):
        super().__init__(gaussian_conditional=gaussian_conditional, quantizer=quantizer)

    @property
    def entropy_models(self):
        return {"gaussian_conditional": self.gaussian_conditional}

    def update(self, force=True):
        _on_cpu(self.gaussian_conditional, lambda m: m.update_scale_table(SCALES, force=force))

    def forward(self, y, params):
        scales, means = params
        y_hat, y_likelihoods = self.gaussian_conditional(y, scales, means)
        if self.quantizer == "ste" and self.gaussian_conditional.training:
            y_hat = quantize_ste(y - means) + means
        return {"likelihoods": {"y": y_likelihoods}, "y_hat": y_hat}

    def compress(self, y, params, cells=None):
        strings, fields = encode_conditional(y, *params, coder_tables(self.gaussian_conditional), cells)
        return {"strings": [strings], "shape": tuple(y.shape[-2:]), "fields": fields}

    def decompress(self, strings, shape, params, cells=None, fields=None):
        (strings,) = strings
        gc = self.gaussian_conditional
        scales, means = params
        indexes = scale_indexes(scales, coder_tables(gc))
        y_hat = torch.zeros_like(scales) if means is None else means.clone()
        for i, s in enumerate(strings):
            c = None if cells is None else cells[i]
            idx = indexes[i] if c is None else indexes[i][:, c]
            if fields is not None and FIELD_SCALE_INDEXES in fields[i]:
                pos, exc = decode_exceptions(fields[i][FIELD_SCALE_INDEXES], idx.numel(), len(gc.scale_table))
                idx = idx.clone()
                idx.view(-1)[torch.from_numpy(pos)] = torch.from_numpy(exc).to(idx.dtype)
            m = None if means is None else (means[i] if c is None else means[i][:, c])
            values = guarded_decompress(gc, [s], idx[None], None if m is None else m[None])[0]
            if c is None:
                y_hat[i] = values
            else:
                y_hat[i][:, c] = values
        return {"y_hat": y_hat}


class HyperLatentCodec(cai.HyperLatentCodec):
    """The hyper branch: z = ``h_a``(y) under an EntropyBottleneck, ``h_s``(z_hat) -> params = (scales, means or
    None) of y's ``channels`` (``h_s`` gives scales, or scales then means). ``h_a`` None: a cloud's half. Coding
    takes ``z`` when it is already computed, and ``gain`` (a variable-rate codec's) scales the params."""

    def __init__(self, entropy_bottleneck, h_a, h_s, channels):
        super().__init__(entropy_bottleneck, h_a, h_s)
        self.z = EntropyBottleneckLatentCodec(entropy_bottleneck)
        self.channels = channels
        self._cpu_h_s = ()  # a CPU copy of h_s when it is elsewhere (a tuple: not a submodule)

    @property
    def entropy_models(self):
        return self.z.entropy_models

    def update(self, force=True):
        self.z.update(force)
        self._cpu_h_s = ()  # the scales that select CDFs are computed on the CPU (see params)
        if next(self.h_s.parameters()).device.type != "cpu":
            self._cpu_h_s = (copy.deepcopy(self.h_s).cpu().float().eval(),)

    def forward(self, y):
        z_hat, z_likelihoods = self.entropy_bottleneck(self.h_a(y))
        p = fit(self.h_s(z_hat), y.shape[-2:])
        return {"likelihoods": {"z": z_likelihoods},
                "params": p.split(self.channels, 1) if p.shape[1] == 2 * self.channels else (p, None)}

    def compress(self, y, z=None, cells=None, gain=None):
        z = self.h_a(y) if z is None else z
        out = self.z.compress(z, cells)
        return {"strings": out["strings"], "shape": out["shape"],
                "params": self.params(out["y_hat"], y.shape[-2:], gain)}

    def decompress(self, strings, shape, y_shape, cells=None, gain=None):
        return {"params": self.params(self.z.decompress(strings, shape, cells)["y_hat"], y_shape, gain)}

    def params(self, z_hat, y_shape, gain=None):
        """(scales, means or None) of y from z_hat, on the CPU in float32 (:func:`~.coding.hyper_params`)."""
        return hyper_params(self._cpu_h_s[0] if self._cpu_h_s else self.h_s, z_hat, tuple(y_shape), self.channels,
                            gain)


class HyperpriorLatentCodec(cai.HyperpriorLatentCodec):
    """y under a GaussianConditional whose params the ``hyper`` branch codes (Balle et al. 2018; Minnen et al. 2018
    with means). ``regions``: per image None or (y cells, z cells, FIELD_TILES bytes), a region payload; the decoder
    reads them from each image's ``fields``. ``shape``: y's (h, w), z's follows."""

    def __init__(self, hyper: HyperLatentCodec, y: GaussianConditionalLatentCodec):
        super().__init__({"y": y, "hyper": hyper})

    @property
    def entropy_models(self):
        return {**self.hyper.entropy_models, **self.y.entropy_models}

    def update(self, force=True):
        self.hyper.update(force)
        self.y.update(force)

    def compress(self, y, z=None, regions=None, gain=None):
        y_cells, z_cells, tiles = split_regions(regions, len(y))
        hyper = self.hyper.compress(y, z, z_cells, gain)
        out = self.y.compress(y, hyper["params"], y_cells)
        return {"strings": [*out["strings"], *hyper["strings"]], "shape": {"y": out["shape"], "hyper": hyper["shape"]},
                "fields": [{**t, **f} for t, f in zip(tiles, out["fields"])]}

    def decompress(self, strings, shape, fields, gain=None):
        y_strings, z_strings = strings
        cells = [None if FIELD_TILES not in f else
                 region_cells(decode_tiles(f[FIELD_TILES], shape, f[FIELD_TILES][0]), f[FIELD_TILES][0], shape)
                 for f in fields]
        y_cells, z_cells = ([None if c is None else c[i] for c in cells] for i in (0, 1))
        params = self.hyper.decompress([z_strings], hyper_shape(shape), shape, z_cells, gain)["params"]
        return self.y.decompress([y_strings], shape, params, y_cells, fields)


class GainHyperpriorLatentCodec(HyperpriorLatentCodec):
    """Variable rate (Cui et al. 2021, "Asymmetric gained deep image compression"): y x the ``gains`` of a rate
    before quantisation, x their inverse after decoding, the params with it, so z is coded once for all rates. A
    ``rate`` is a number or one per image (fractional: interpolated log-gains); it travels as FIELD_RATE."""

    def __init__(self, hyper, y, gains):
        super().__init__(hyper, y)
        self.gains = gains

    def forward(self, y, rate):
        rates = torch.as_tensor(rate, dtype=torch.float32).reshape(-1).expand(len(y))
        gain, gain_inv = (rate_gains(t, rates) for t in (self.gains.log_gain, self.gains.log_gain_inv))
        hyper = self.hyper(y)
        scales, means = hyper["params"]
        out = self.y(y * gain, (scales * gain, means * gain))
        return {"likelihoods": {"y": out["likelihoods"]["y"], "z": hyper["likelihoods"]["z"]},
                "y_hat": out["y_hat"] * gain_inv}

    def compress(self, y, z=None, regions=None, rate=0.0):
        gain = self.gains.cpu_gains([rate] * len(y))[0]  # on the CPU, as the cloud computes it
        z = self.hyper.h_a(y) if z is None else z  # of y before its gain
        out = super().compress(y.cpu().float() * gain, z, regions, gain)
        out["fields"] = [{FIELD_RATE: rate_field(rate), **f} for f in out["fields"]]
        return out

    def decompress(self, strings, shape, fields, gain=None):
        gain, gain_inv = self.gains.cpu_gains([read_rate(f, len(self.gains.log_gain)) for f in fields])
        return {"y_hat": super().decompress(strings, shape, fields, gain)["y_hat"] * gain_inv}


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


def coder_tables(entropy_model) -> CoderTables:
    """The :class:`CoderTables` of an updated entropy model, converted once per table update or load."""
    key = tuple((t.data_ptr(), t._version) for t in entropy_model.buffers())
    cached = entropy_model.__dict__.get("_coder_tables")
    if cached is None or cached[0] != key:
        cached = entropy_model.__dict__["_coder_tables"] = (key, CoderTables.of(entropy_model))
    return cached[1]


def guarded_decompress(entropy_model, strings, indexes, means=None):
    """:func:`eccentric_det.codec.guarded_ans.decompress` (imported here, on the decoding side only: the
    edge never loads numba)."""
    from .guarded_ans import decompress

    return decompress(entropy_model, strings, indexes, means)


def _search_quantiles(eb, steps=80):
    """The quantiles of EntropyBottleneck ``eb`` (in its dtype): per channel, the y at which its cumulative logits
    reach each of ``eb.target``, by bisection over +-1e5 in a fixed number of steps (a float64 interval is then
    below one ulp: the result depends on the density only, not on a stopping tolerance)."""
    lo = torch.full((eb.channels, 1, len(eb.target)), -1e5, dtype=eb.quantiles.dtype)
    hi, target = -lo, eb.target.to(lo.dtype).view(1, 1, -1)
    for _ in range(steps):
        mid = (lo + hi) / 2
        above = eb._logits_cumulative(mid, stop_gradient=True) >= target
        lo, hi = torch.where(above, lo, mid), torch.where(above, mid, hi)
    return (lo + hi) / 2


def _on_cpu(module, update, dtype=None):
    """``update(module)`` on the CPU (in ``dtype`` when given), then the module back on its device and dtype."""
    device = module._offset.device
    own = next(t.dtype for t in (*module.parameters(), *module.buffers()) if t.is_floating_point())
    update(module.to(device="cpu", dtype=dtype or own))
    module.to(device=device, dtype=own)
