"""Temporal reuse with a stateless cloud (``MODEL.ECCENTRIC.OFFLOAD.REUSE``): the edge keeps the cloud's last answer
for each tile (region-level Dynamic ECC) or for the whole frame (image level), with the latent the cloud saw then.

A frame (tile) the edge would send is not sent when the cloud has answered for it within the last ``keyframe`` frames
and its content has changed less than ``threshold`` since: the change is the RMS difference between the latent the
edge codes now and the one it sent then, over the tile (or frame), relative to the RMS of the whole latent now (a
scale-free measure on the edge's own latent; an image-mode edge, which codes no latent, compares its input pooled to
1/16). Its detections then come from the cache. The cloud keeps nothing: every payload is a whole, ordinary payload
(a region payload of the tiles still sent), validated as any other.
"""
import numpy as np
import torch

from .rate_control import check_stream_options
from .regions import centre_tiles, input_scale


def relative_change(now, then, scale):
    """RMS of ``now - then`` over ``scale`` (the RMS of the whole latent now)."""
    return float(torch.sqrt(torch.mean((now - then) ** 2))) / max(scale, 1e-12)


def _rms(t):
    return float(torch.sqrt(torch.mean(t ** 2)))


class ReuseCache:
    """The cloud's last answers, per tile or per frame, and the latents it saw (see the module docstring)."""

    def __init__(self, threshold, keyframe=25):
        check_stream_options(reuse_threshold=threshold, keyframe=keyframe)
        if not threshold > 0:
            raise ValueError("a ReuseCache needs MODEL.ECCENTRIC.OFFLOAD.REUSE.THRESHOLD above 0 (0: no reuse)")
        self.threshold, self.keyframe = float(threshold), int(keyframe)
        self.frame = None  # image level: (index, latent, output size, answer)
        self.tiles = {}  # (row, col) -> (index, latent in the tile, output size, [(box, score, class)])

    def _fresh(self, index, then):
        return index - then < self.keyframe

    # ------------------------------------------------------------------ image level
    def reusable_answer(self, frame, index):
        """The cached answer for ``frame`` (the ``index``-th of the stream) if it may be reused, else None."""
        if self.frame is None:
            return None
        then, latent, output_size, answer = self.frame
        now = frame.signature()
        if (not self._fresh(index, then) or now is None or now.shape != latent.shape
                or tuple(output_size) != tuple(frame.output_size)):
            return None
        return answer if relative_change(now, latent, _rms(now)) < self.threshold else None

    def store_answer(self, frame, index, answer):
        """The cloud answered ``frame``: remember its answer and the latent it saw."""
        if frame.signature() is not None:
            self.frame = (index, frame.signature().clone(), tuple(frame.output_size), answer)

    # ------------------------------------------------------------------ tiles
    def _cells(self, frame, r, c):
        t = frame.tile_cells
        return slice(r * t, (r + 1) * t), slice(c * t, (c + 1) * t)

    def reusable_tiles(self, frame, index, candidates):
        """The [rows, cols] mask of ``candidates`` (tiles the edge would send) whose cached answer may be reused."""
        out = np.zeros(np.shape(candidates), bool)
        now = frame.signature()
        if now is None or not self.tiles:
            return out
        scale = _rms(now)
        for r, c in zip(*(i.tolist() for i in np.nonzero(candidates))):
            entry = self.tiles.get((r, c))
            if entry is None or not self._fresh(index, entry[0]) or tuple(entry[2]) != tuple(frame.output_size):
                continue
            tile = now[(slice(None),) + self._cells(frame, r, c)]
            if tile.shape == entry[1].shape and relative_change(tile, entry[1], scale) < self.threshold:
                out[r, c] = True
        return out

    def store_tiles(self, frame, index, sent, answer):
        """The cloud answered the tiles ``sent`` of ``frame`` with ``answer`` (wire format: its detections there):
        remember, per tile, the detections whose box centre lies in it and the latent the cloud saw."""
        now = frame.signature()
        if now is None:
            return
        scale = input_scale(frame.image_size, frame.output_size)
        tiles = zip(*(i.tolist() for i in centre_tiles(answer["boxes"], frame.tile_px, np.shape(sent), scale)))
        found = {}
        for b, s, c, t in zip(answer["boxes"], answer["scores"], answer["classes"], tiles):
            found.setdefault(t, []).append((list(b), s, c))
        for r, c in zip(*(i.tolist() for i in np.nonzero(sent))):
            tile = now[(slice(None),) + self._cells(frame, r, c)].clone()
            self.tiles[r, c] = (index, tile, tuple(frame.output_size), found.get((r, c), []))

    def cached_detections(self, tiles):
        """The cached detections of the set tiles of ``tiles``, as (box, score, class) rows."""
        return [d for r, c in zip(*(i.tolist() for i in np.nonzero(tiles))) for d in self.tiles[r, c][3]]

