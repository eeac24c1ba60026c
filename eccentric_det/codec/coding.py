"""The edge's entropy encoder: rANS strings in CompressAI's format over tables exported from CompressAI's entropy models.

The strings are written by this package's own encoder (``_rans.c``, built at install), which takes the symbols, CDF
indexes and tables as int32 arrays: CompressAI's C++ encoder takes Python lists, and converting them cost two thirds
of its call. Symbols and CDF indexes are built exactly as ``EntropyBottleneck.compress`` and
``GaussianConditional.build_indexes`` build them, so the strings are CompressAI's, byte for byte
(``tests/test_codec.py``). Both the PyTorch edge (:class:`FeatureCodec`) and the exported edge
(:mod:`eccentric_det.edge`) code through this module.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.nn import functional as F

from . import _rans
from .payload import FIELD_SCALE_INDEXES, FIELD_TILES
from .shapes import RATE_STEPS
from .scale_indexes import encode_exceptions, near_boundary


@dataclass
class CodedFeature:
    """One image's coded feature: its bit strings and the shapes needed to decode them."""

    strings: List[bytes]
    latent_shape: Tuple[int, int]  # (h, w) of the first latent (y)
    output_shape: Tuple[int, int]  # (H, W) of the reconstructed feature
    fields: Dict[int, bytes] = field(default_factory=dict)  # payload fields the decoder needs (FIELD_*)


@dataclass
class CoderTables:
    """What the rANS encoder needs of one entropy model (CompressAI's ``_quantized_cdf``, ``_cdf_length``,
    ``_offset``), plus the medians of an EntropyBottleneck or the scale table and bound of a GaussianConditional."""

    cdf: torch.Tensor  # int32 [num_cdfs, max_length]
    cdf_length: torch.Tensor  # int32 [num_cdfs]
    offset: torch.Tensor  # int32 [num_cdfs]
    medians: Optional[torch.Tensor] = None  # float32 [C] (EntropyBottleneck)
    scale_table: Optional[torch.Tensor] = None  # float32 [num_cdfs] (GaussianConditional)
    scale_bound: float = 0.0
    _arrays: Optional[tuple] = field(default=None, init=False, repr=False, compare=False)
    _index_lut: Optional[np.ndarray] = field(default=None, init=False, repr=False, compare=False)

    def arrays(self):
        """(cdf, cdf_length, offset) as the contiguous int32 arrays the rANS encoder takes, converted once."""
        if self._arrays is None:
            self._arrays = tuple(np.ascontiguousarray(t.numpy(), dtype=np.int32)
                                 for t in (self.cdf, self.cdf_length, self.offset))
        return self._arrays

    def index_lut(self):
        """The lookup table of :func:`scale_indexes_near` (built once): for every float32 bit pattern's top
        32 - LUT_SHIFT bits (a bucket of 2 ** LUT_SHIFT consecutive floats), the CDF index that :func:`scale_indexes`
        gives every float in it, or -1 where that is not one index, or a float in it lies next to a boundary
        (:func:`~.scale_indexes.near_boundary`), or it holds NaNs. Both functions are monotone in the scale within a
        bucket (its floats have one sign), so the same index and the same count of boundaries below at both ends, and
        neither end next to a boundary, mean the same everywhere between; the table is made of the two functions' own
        results."""
        if self._index_lut is None:
            lo = torch.arange(0, 1 << 32, 1 << LUT_SHIFT, dtype=torch.int64).to(torch.int32)
            ends = [e.view(torch.float32) for e in (lo, lo | ((1 << LUT_SHIFT) - 1))]
            first, last = (scale_indexes(e, self) for e in ends)
            bounds = self.scale_table[:-1].float()  # and no boundary between the ends before the clamp either
            uniform = (first == last) & (torch.searchsorted(bounds, ends[0]) == torch.searchsorted(bounds, ends[1]))
            for e in ends:
                uniform &= ~near_boundary(e, self.scale_table) & ~torch.isnan(e)
            dtype = torch.int8 if len(self.scale_table) <= 127 else torch.int16
            self._index_lut = torch.where(uniform, first, -1).to(dtype).numpy()
        return self._index_lut

    @classmethod
    def of(cls, entropy_model):
        """The tables of an updated CompressAI EntropyBottleneck or GaussianConditional (on the CPU)."""
        t = {"cdf": entropy_model._quantized_cdf, "cdf_length": entropy_model._cdf_length,
             "offset": entropy_model._offset}
        t = {k: v.detach().cpu().int() for k, v in t.items()}
        if hasattr(entropy_model, "quantiles"):
            t["medians"] = entropy_model.quantiles[:, 0, 1].detach().cpu().float()
        else:
            t["scale_table"] = entropy_model.scale_table.detach().cpu().float()
            t["scale_bound"] = float(entropy_model.lower_bound_scale.bound)
        return cls(**t)

    def state(self):
        """Plain tensors and numbers (for ``torch.save`` with ``weights_only`` loading)."""
        return {k: v for k, v in self.__dict__.items() if v is not None and not k.startswith("_")}


def rans_encode(symbols, indexes, tables: CoderTables) -> List[bytes]:
    """One string per image of int ``symbols`` [N, ...] with CDF ``indexes`` of the same shape (``_rans.encode``:
    a ValueError names an index or a table out of range)."""
    cdf, lengths, offsets = tables.arrays()
    return [_rans.encode(np.ascontiguousarray(s.reshape(-1)), np.ascontiguousarray(i.reshape(-1)), cdf, lengths,
                         offsets, cdf.shape[1]) for s, i in zip(symbols.int().numpy(), indexes.int().numpy())]


def encode_factorized(x, tables: CoderTables) -> List[bytes]:
    """``EntropyBottleneck.compress(x)`` for ``x`` [N, C, h, w]: symbols round(x - median), index = channel."""
    x = x.detach().cpu().float()
    medians = tables.medians.view(1, -1, 1, 1)
    symbols = torch.round(x - medians)
    indexes = torch.arange(x.shape[1], dtype=torch.int32).view(1, -1, 1, 1).expand_as(x)
    return rans_encode(symbols, indexes, tables)


def encode_positional(y, tables: CoderTables, prior: CoderTables):
    """(one string per image, y_hat) of ``y`` [N, C, h, w] under a positional symbol prior: the symbols are those of
    the factorized prior ``tables`` (round(y - channel median)), each coded under its own element's CDF of
    ``prior`` (an EntropyBottleneck of C * h * w channels whose medians are 0), so y_hat is the factorized prior's."""
    y = y.detach().cpu().float()
    n = y[0].numel()
    if len(prior.cdf_length) != n:
        raise ValueError(f"the positional prior codes latents of {len(prior.cdf_length)} elements, this one has {n} "
                         f"({tuple(y.shape[1:])}): it codes inputs of the one size it was fitted on")
    medians = tables.medians.view(1, -1, 1, 1)
    symbols = torch.round(y - medians)
    return encode_factorized(symbols.reshape(len(y), n, 1, 1), prior), symbols + medians


def scale_indexes(scales, tables: CoderTables):
    """``GaussianConditional.build_indexes``: the CDF index of each scale (after the scale bound)."""
    scales = torch.clamp_min(scales, tables.scale_bound).contiguous()
    # the number of table entries (but the last) below each scale, compared in the scales' precision as
    # CompressAI's loop over the table compares them: one search instead of a pass per entry
    bounds = tables.scale_table[:-1].to(scales.dtype).contiguous()
    return torch.searchsorted(bounds, scales, right=False).int()


SYMBOL_PRIOR = "symbol_prior"  # the entropy model name of a positional prior (CODEC.POSITIONAL_PRIOR)
LUT_SHIFT = 13  # scale_indexes_near's buckets: 2 ** 13 floats, 1/1024 of a power of two (a 512 kB table)


def scale_indexes_near(scales, tables: CoderTables):
    """(:func:`scale_indexes`, :func:`~.scale_indexes.near_boundary`) of float32 ``scales``, equal to the two element
    for element (a table lookup per element instead of two binary searches and the distance to both neighbours): the
    index of most scales is read from :meth:`CoderTables.index_lut`; the few in a bucket it leaves open (next to a
    boundary, ~0.5%) get both functions' own results."""
    if scales.dtype != torch.float32:
        return scale_indexes(scales, tables), near_boundary(scales, tables.scale_table)
    s = scales.detach().cpu().contiguous().reshape(-1).numpy()
    found = tables.index_lut()[(s.view(np.int32) >> LUT_SHIFT) & ((1 << (32 - LUT_SHIFT)) - 1)]
    indexes = torch.from_numpy(found.astype(np.int32))
    near = torch.zeros(len(s), dtype=torch.bool)
    open_ = np.flatnonzero(found < 0)
    if len(open_):
        few, at = torch.from_numpy(s[open_]), torch.from_numpy(open_)
        indexes[at] = scale_indexes(few, tables)
        near[at] = near_boundary(few, tables.scale_table)
    return indexes.reshape(scales.shape), near.reshape(scales.shape)


def encode_gaussian(y, indexes, tables: CoderTables, means=None) -> List[bytes]:
    """``GaussianConditional.compress(y, indexes, means)``: symbols round(y - means)."""
    y = y.detach().cpu().float()
    return rans_encode(torch.round(y if means is None else y - means), indexes, tables)


@torch.no_grad()
def code_latents(y, z, tables, params, feature_hw, fields=None, regions=None) -> List[CodedFeature]:
    """The edge's coding of a batch's latent ``y`` (factorized prior; ``z`` None) or ``y`` and its hyper-latent ``z``
    (hyperprior: ``params(z_hat, y_hw)`` gives the scales of ``y`` and its means or None, e.g. :func:`hyper_params`);
    what :mod:`.latent_codecs` write, byte for byte. ``tables``: the :class:`CoderTables` by entropy model name
    ("entropy_bottleneck", "gaussian_conditional", and :data:`SYMBOL_PRIOR` for a positional prior); ``fields``:
    payload fields every image carries (e.g. the rate, :func:`rate_field`); ``regions`` (hyperprior only): per image
    None or (y cells [h, w], z cells, FIELD_TILES bytes) to code only those cells (:mod:`.tiles`)."""
    y_hw, fields = tuple(y.shape[-2:]), dict(fields or {})
    if z is None:
        check_no_regions(regions)
        strings = (encode_positional(y, tables["entropy_bottleneck"], tables[SYMBOL_PRIOR])[0]
                   if SYMBOL_PRIOR in tables else encode_factorized(y, tables["entropy_bottleneck"]))
        return [CodedFeature([s], y_hw, feature_hw, dict(fields)) for s in strings]
    y_cells, z_cells, own = split_regions(regions, len(y))
    z_strings, z_hat = encode_bottleneck(z, tables["entropy_bottleneck"], z_cells)
    y_strings, y_fields = encode_conditional(y, *params(z_hat, y_hw), tables["gaussian_conditional"], y_cells)
    return [CodedFeature([ys, zs], y_hw, feature_hw, {**fields, **o, **f})
            for ys, zs, o, f in zip(y_strings, z_strings, own, y_fields)]


def check_no_regions(regions):
    """Raise ValueError when ``regions`` asks a codec without a hyperprior for a region payload."""
    if regions is not None and any(r is not None for r in regions):
        raise ValueError("region payloads need a hyperprior codec (CODEC.NAME 'mean_scale' or 'hyperprior')")


def split_regions(regions, n):
    """(y cells, z cells, {FIELD_TILES: bytes} or {}) per image of ``n`` from ``regions`` (see :func:`code_latents`;
    None: whole images)."""
    regions = regions or [None] * n
    return ([None if r is None else r[0] for r in regions], [None if r is None else r[1] for r in regions],
            [{} if r is None else {FIELD_TILES: r[2]} for r in regions])


def encode_bottleneck(x, tables: CoderTables, cells=None):
    """(one string per image, x_hat as the cloud decodes it) of ``x`` [N, C, h, w] under an EntropyBottleneck; where
    ``cells[i]`` (an [h, w] bool mask) is given, image i is coded in those cells only and x_hat holds the medians
    elsewhere."""
    x = x.detach().cpu().float()
    medians = tables.medians.view(1, -1, 1, 1)
    x_hat = torch.round(x - medians) + medians
    strings = []
    for i, c in enumerate(cells or [None] * len(x)):
        if c is None:
            strings += encode_factorized(x[i:i + 1], tables)
        else:
            strings.append(encode_cells(x[i] - medians[0], c, tables))
            x_hat[i] = torch.where(c, x_hat[i], medians[0])
    return strings, x_hat


def encode_conditional(y, scales, means, tables: CoderTables, cells=None):
    """(one string per image, payload fields per image) of ``y`` [N, C, h, w] under a GaussianConditional of
    ``scales`` and ``means`` (or None), in ``cells[i]`` only where given. Elements whose scale lies next to a CDF
    boundary travel with their index (FIELD_SCALE_INDEXES, :mod:`.scale_indexes`)."""
    indexes, near = scale_indexes_near(scales, tables)
    y = y.detach().cpu().float()
    strings, fields = [], []
    for i, c in enumerate(cells or [None] * len(y)):
        yi, idx, nr, mi = y[i], indexes[i], near[i], None if means is None else means[i]
        if c is not None:
            yi, idx, nr, mi = yi[:, c], idx[:, c], nr[:, c], None if mi is None else mi[:, c]
        fields.append({FIELD_SCALE_INDEXES: encode_exceptions(idx, nr)} if nr.any() else {})
        strings += encode_gaussian(yi[None], idx[None], tables, None if mi is None else mi[None])
    return strings, fields


def encode_cells(centred, cells, tables: CoderTables) -> bytes:
    """One EntropyBottleneck string of ``centred`` [C, h, w] (the latent minus its medians) in the ``cells`` [h, w]
    only, channel by channel (index = channel)."""
    symbols = torch.round(centred[:, cells])
    indexes = torch.arange(centred.shape[0], dtype=torch.int32)[:, None].expand_as(symbols)
    return rans_encode(symbols[None], indexes[None], tables)[0]


def hyper_params(h_s, z_hat, y_hw, channels, gain=None):
    """(scales, means or None) of y from the quantised hyper-latent, on the CPU in float32 (both sides; see
    :mod:`.scale_indexes`): ``h_s`` gives ``channels`` scales, or as many scales then means (mean-scale). A
    variable-rate codec codes y x ``gain``, so its scales and means are scaled by it."""
    p = fit(h_s(z_hat.detach().float().cpu()), y_hw)
    scales, means = p.split(channels, 1) if p.shape[1] == 2 * channels else (p, None)
    if gain is not None:
        gain = gain.detach().float().cpu()
        scales, means = scales * gain, None if means is None else means * gain
    return scales, means



def check_rate(rate, levels):
    """``rate`` as a payload carries it (a multiple of 1/RATE_STEPS, what both sides compute gains from); a
    ValueError naming CODEC.RATE unless it lies in 0..``levels`` - 1."""
    if not 0 <= float(rate) <= levels - 1:
        raise ValueError(f"MODEL.ECCENTRIC.CODEC.RATE must lie in 0..{levels - 1}, the codec's rate levels (an "
                         f"exported edge's rate must lie in 0..{levels - 1} too), got {rate}")
    return round(float(rate) * RATE_STEPS) / RATE_STEPS


def rate_field(rate):
    """FIELD_RATE's value for ``rate`` (at most 255 / RATE_STEPS)."""
    return bytes([round(float(rate) * RATE_STEPS)])


def rate_gains(log_gains, rates):
    """Per-channel gains [N, C, 1, 1] at ``rates`` [N] (levels; fractional ones interpolate the log-gains of the
    two levels around them) from the levels' ``log_gains`` [L, C]."""
    rates = torch.as_tensor(rates, dtype=torch.float32, device=log_gains.device).reshape(-1)
    lo = rates.floor().long().clamp(0, len(log_gains) - 1)
    hi = (lo + 1).clamp(max=len(log_gains) - 1)
    t = (rates - lo).unsqueeze(1)
    return torch.exp(log_gains[lo] * (1 - t) + log_gains[hi] * t)[:, :, None, None]


def fit(t, hw):
    """Crop (or zero-pad) the spatial size of ``t`` to ``hw``: transposed convs round up."""
    dh, dw = hw[0] - t.shape[-2], hw[1] - t.shape[-1]
    if dh == 0 and dw == 0:
        return t
    return F.pad(t, (0, dw, 0, dh))
