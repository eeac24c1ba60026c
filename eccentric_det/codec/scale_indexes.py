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

from .payload import PayloadError, put_varints

MARGIN = 2.0 ** -14  # relative; float32 rounding differences are ~1e-7 per operation


def near_boundary(scales, table):
    """Mask of the ``scales`` (before the lower bound) within ``MARGIN`` of a boundary of ``table``."""
    # float32 is enough: its relative rounding (6e-8) is far below MARGIN, and the list need only cover the elements
    # at risk, which lie within ~1e-6 of a boundary
    bounds = table[:-1].float().cpu()
    s = scales.detach().float().cpu().reshape(-1)
    i = torch.searchsorted(bounds, s).clamp(1, len(bounds) - 1)
    near = torch.minimum((s - bounds[i - 1]).abs() / bounds[i - 1], (s - bounds[i]).abs() / bounds[i])
    return (near <= MARGIN).reshape(scales.shape)


def encode_exceptions(indexes, mask):
    """Bytes listing (position, index) of the elements of one image's ``indexes`` selected by ``mask``:
    a varint count, the gaps between successive positions as varints, then one byte per index."""
    pos = torch.nonzero(mask.reshape(-1)).reshape(-1)
    gaps = torch.diff(pos, prepend=torch.tensor([-1])) - 1
    out = bytearray()
    put_varints(out, len(pos), *gaps.tolist())
    return bytes(out) + bytes(indexes.reshape(-1)[pos].to(torch.uint8).tolist())


def decode_exceptions(data, num_elements, num_indexes):
    """(positions, indexes) int64 arrays from :func:`encode_exceptions` bytes, checked against the
    element count and the table size (vectorised: linear in the field's length); raises
    :class:`PayloadError` for anything else."""
    b = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(b < 0x80)  # the last byte of each varint (and every index byte)
    if not len(ends) or ends[0] > 3:
        raise PayloadError("payload's scale-index list has no valid count")
    count = _varints(b, np.array([0]), ends[:1])[0]
    if count > num_elements:
        raise PayloadError(f"payload lists {count} scale indexes, the latent has {num_elements} elements")
    gap_ends = ends[1:1 + count]
    stop = (int(gap_ends[-1]) if count else int(ends[0])) + 1 if len(gap_ends) == count else len(b) + 1
    if len(b) - stop != count:
        raise PayloadError("payload's scale-index list is truncated or has trailing bytes")
    starts = np.concatenate([[ends[0] + 1], gap_ends[:-1] + 1])[:count]
    if count and (gap_ends - starts).max() > 3:
        raise PayloadError("payload's scale-index list has an overlong varint")
    positions = np.cumsum(_varints(b, starts, gap_ends) + 1) - 1
    values = b[stop:].astype(np.int64)
    if count and (positions[-1] >= num_elements or values.max() >= num_indexes):
        raise PayloadError(f"payload's scale-index list is corrupt (last position {positions[-1]} of "
                           f"{num_elements} elements, largest index {values.max()} of {num_indexes})")
    return positions, values


def _varints(b, starts, ends):
    """LEB128 values of the byte runs b[starts[i]..ends[i]] (each at most 4 bytes)."""
    value = np.zeros(len(starts), np.int64)
    for k in range(4):
        at = starts + k
        inside = at <= ends
        value[inside] |= (b[at[inside]].astype(np.int64) & 0x7F) << (7 * k)
    return value
