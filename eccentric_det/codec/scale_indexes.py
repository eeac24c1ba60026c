"""Hyperprior CDF indexes that edge and cloud agree on, although their scales differ in the last bits.

Each latent element's CDF is picked by comparing its predicted scale with the scale table. The cloud
recomputes the scales, maybe on other hardware, and they may differ by rounding (CompressAI issue 279):
a scale next to a table entry then picks another CDF and the rest of the string decodes to garbage.
Both sides compute the scales on the CPU in float32, and the edge lists the elements whose scale lies
within a relative ``MARGIN`` of a table entry, with the index it coded them with
(``FIELD_SCALE_INDEXES``); the cloud takes those from the list and computes the others, which no
perturbation smaller than ``MARGIN`` can move to another CDF.
"""
import numpy as np
import torch

from .payload import PayloadError

MARGIN = 2.0 ** -14  # relative; float32 rounding differences are ~1e-7 per operation


def near_boundary(scales, table):
    """Mask of the ``scales`` (before the lower bound) within ``MARGIN`` of a boundary of ``table``."""
    bounds = table[:-1].double().cpu()
    s = scales.detach().double().cpu().reshape(-1)
    i = torch.searchsorted(bounds, s).clamp(1, len(bounds) - 1)
    near = torch.minimum((s - bounds[i - 1]).abs() / bounds[i - 1], (s - bounds[i]).abs() / bounds[i])
    return (near <= MARGIN).reshape(scales.shape)


def encode_exceptions(indexes, mask):
    """Bytes listing (position, index) of the elements of one image's ``indexes`` selected by ``mask``:
    varint count, then per element a varint gap to the previous position and one index byte."""
    pos = torch.nonzero(mask.reshape(-1)).reshape(-1).tolist()
    flat = indexes.reshape(-1)
    out, prev = bytearray(), -1
    _varint(out, len(pos))
    for p in pos:
        _varint(out, p - prev - 1)
        out.append(int(flat[p]))
        prev = p
    return bytes(out)


def decode_exceptions(data, num_elements, num_indexes):
    """(positions, indexes) int64 arrays from :func:`encode_exceptions` bytes, checked against the
    element count and the table size; raises :class:`PayloadError` for anything else."""
    r = iter(data)
    count = _read_varint(r)
    if count > num_elements:
        raise PayloadError(f"payload lists {count} scale indexes, the latent has {num_elements} elements")
    positions, values, prev = np.empty(count, np.int64), np.empty(count, np.int64), -1
    for k in range(count):
        prev += _read_varint(r) + 1
        value = next(r, None)
        if prev >= num_elements or value is None or value >= num_indexes:
            raise PayloadError(f"payload's scale-index list is corrupt (entry {k}: position {prev}, index {value}; "
                               f"{num_elements} elements, {num_indexes} indexes)")
        positions[k], values[k] = prev, value
    if next(r, None) is not None:
        raise PayloadError("payload's scale-index list has trailing bytes")
    return positions, values


def _varint(out, v):
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _read_varint(it, max_bytes=4):
    value = 0
    for i in range(max_bytes):
        b = next(it, None)
        if b is None:
            raise PayloadError("payload's scale-index list is truncated")
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return value
    raise PayloadError("payload's scale-index list has an overlong varint")
