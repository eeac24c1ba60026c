"""Region payloads: the mask of latent tiles a payload codes (``FIELD_TILES``), and the regions a cloud runs on.

The latent y of an (h, w) grid of cells is cut into square tiles of ``tile`` cells (the last row and column may
be partial). A region payload codes y, and the hyper-latent z (a quarter of y's resolution, so ``tile`` is a
multiple of 4), only in the tiles its mask sets; the cloud fills the others with the hyperprior's means (y) and
the entropy bottleneck's medians (z), as the edge did before it coded y. The field is one byte holding the tile size, then the mask, row-major, eight tiles per
byte (most significant bit first). Its length follows from the image size, so the cloud derives it and
never trusts a claimed size.
"""
import math

import numpy as np
import torch

from .payload import PayloadError
from .shapes import hyper_shape

MAX_TILE = 252
HYPER_STRIDE = 4  # y cells per z cell a side


def check_tile(tile):
    """Raise ValueError unless ``tile`` is a tile side a region payload can carry."""
    if not (0 < tile <= MAX_TILE and tile % HYPER_STRIDE == 0):
        raise ValueError(f"a tile holds a multiple of {HYPER_STRIDE} latent cells a side, at most {MAX_TILE} "
                         f"(MODEL.ECCENTRIC.OFFLOAD.REGION.TILE), got {tile}")


def tile_grid(latent_hw, tile):
    """(rows, cols) of tiles of ``tile`` cells over a latent of ``latent_hw``."""
    return tuple(-(-s // tile) for s in latent_hw)


def encode_tiles(mask, tile):
    """FIELD_TILES' value for a [rows, cols] bool ``mask`` of tiles of ``tile`` cells."""
    check_tile(tile)
    return bytes([tile]) + np.packbits(np.asarray(mask, bool).reshape(-1)).tobytes()


def decode_tiles(data, latent_hw, tile):
    """The [rows, cols] bool tile mask of FIELD_TILES ``data`` for a latent of ``latent_hw`` (derived from the image
    size), checked against this model's ``tile``: its length, tile size, zero padding bits and at least one tile
    set; raises :class:`PayloadError` for anything else."""
    check_tile(tile)
    rows, cols = tile_grid(latent_hw, tile)
    n = rows * cols
    expected = 1 + math.ceil(n / 8)
    if len(data) != expected:
        raise PayloadError(f"payload's tile mask holds {len(data)} bytes; for a {rows}x{cols} grid of tiles it "
                           f"holds {expected}")
    if data[0] != tile:
        raise PayloadError(f"payload's tiles are {data[0]} latent cells a side, this model's are {tile} "
                           f"(MODEL.ECCENTRIC.OFFLOAD.REGION.TILE): edge and cloud must run the same config")
    bits = np.unpackbits(np.frombuffer(data, np.uint8, offset=1))
    if bits[n:].any():
        raise PayloadError("payload's tile mask sets bits beyond its grid of tiles")
    if not bits[:n].any():
        raise PayloadError("payload's tile mask selects no tile: an image with nothing to send sends no payload")
    return bits[:n].astype(bool).reshape(rows, cols)


def cell_mask(tiles, tile, latent_hw):
    """The [h, w] bool tensor of the latent cells that ``tiles`` (a [rows, cols] mask) cover."""
    t = torch.from_numpy(np.ascontiguousarray(tiles, bool))
    return t.repeat_interleave(tile, 0).repeat_interleave(tile, 1)[:latent_hw[0], :latent_hw[1]]


def dilate_tiles(tiles, steps):
    """``tiles`` ([rows, cols] bool) grown by ``steps`` tiles in every direction (diagonals included)."""
    out = np.asarray(tiles, bool)
    for _ in range(steps):
        p = np.pad(out, 1)
        out = np.logical_or.reduce([p[1 + dr:p.shape[0] - 1 + dr, 1 + dc:p.shape[1] - 1 + dc]
                                    for dr in (-1, 0, 1) for dc in (-1, 0, 1)])
    return out


def region_cells(tiles, tile, latent_hw):
    """(y cells [h, w], z cells [h / 4, w / 4]) bool tensors that a region payload of ``tiles`` codes."""
    return cell_mask(tiles, tile, latent_hw), cell_mask(tiles, tile // HYPER_STRIDE, hyper_shape(latent_hw))


def region_boxes(tiles):
    """[(r0, c0, r1, c1)] tile boxes (end exclusive) a cloud runs on for a [rows, cols] mask: the bounding boxes of
    its 8-connected groups of tiles, merged while any two overlap, so every set tile lies in exactly one. (Cutting a
    box that its tiles fill sparsely saves cloud work but costs far more accuracy: the cloud needs the context.)"""
    tiles = np.asarray(tiles, bool)
    label = -np.ones(tiles.shape, int)
    boxes = []
    for start in zip(*np.nonzero(tiles)):
        if label[start] >= 0:
            continue
        stack, box = [start], [start[0], start[1], start[0] + 1, start[1] + 1]
        label[start] = len(boxes)
        while stack:
            r, c = stack.pop()
            box = [min(box[0], r), min(box[1], c), max(box[2], r + 1), max(box[3], c + 1)]
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    q = (r + dr, c + dc)
                    if 0 <= q[0] < tiles.shape[0] and 0 <= q[1] < tiles.shape[1] and tiles[q] and label[q] < 0:
                        label[q] = len(boxes)
                        stack.append(q)
        boxes.append(box)
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(tuple(b) for b in boxes)
