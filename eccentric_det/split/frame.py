"""EdgeFrame: what the edge computed for one image before it decides what to send (shared by the PyTorch edge,
:meth:`SplitModel.edge_frames`, and the exported edge, :meth:`eccentric_det.edge.ExportedEdge.analyse`).

Its own answer and "needs the cloud" score (a tile grid of them for region-level Dynamic ECC), and a coder that
codes the image's latents (computed once, on first use) at any rate level and in any tiles. :meth:`EdgeFrame.decision`
is the edge step as it was without rate control or reuse (the configured rate and threshold); the stream loop
(:class:`eccentric_det.edge.stream.EdgeStream`) decides instead when a budget or reuse is set.
"""
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from ..codec.tiles import dilate_tiles
from .decision import EdgeDecision, should_offload


@dataclass
class EdgeFrame:
    answer: Any  # the edge's own result (detection: in the form its edge gives it), None without one
    score: float  # "needs the cloud" (region-level: the highest tile probability); 1.0 without an own answer
    image_size: tuple  # (h, w) of the network input
    output_size: tuple  # (h, w) results are given at
    policy: str  # the offload rule ("always", "never", "dynamic") and its threshold
    threshold: float
    coder: Callable  # coder(rate or None, tiles [rows, cols] bool or None) -> Payload
    signature_of: Optional[Callable] = None  # () -> [C, h, w] tensor: the latent the edge codes (reuse compares it)
    rate_levels: int = 1  # a variable-rate codec's levels (1: one rate)
    rate: Optional[float] = None  # the rate it codes at by default (None: the codec's only one)
    tile_probs: Optional[np.ndarray] = None  # region-level Dynamic ECC: [rows, cols] probability of each tile
    tile_px: int = 0  # ... a tile's side in network-input pixels
    tile_cells: int = 0  # ... and in latent cells (of the signature)
    dilate: int = 0  # ... tiles of context sent around each selected one
    ms: float = 0.0  # edge time so far (analysis, then every coding and the signature)
    _signature: Any = field(default=None, repr=False)

    @property
    def regions(self):
        """Does this frame offload tiles (region-level Dynamic ECC)?"""
        return self.tile_probs is not None

    def wants(self, threshold=None):
        """Image-level: does the offload rule send this frame at ``threshold`` (default its own)?"""
        return should_offload(self.policy, self.score, self.threshold if threshold is None else threshold)

    def tiles_at(self, threshold=None):
        """Region-level: the [rows, cols] mask of tiles sent at ``threshold`` (default its own), context included."""
        return dilate_tiles(np.asarray(self.tile_probs) >= (self.threshold if threshold is None else threshold),
                            self.dilate)

    def code(self, rate=None, tiles=None):
        """The payload of this frame at ``rate`` (None: the default) in ``tiles`` (None: the whole image)."""
        t0 = time.perf_counter()
        try:
            return self.coder(rate, tiles)
        finally:
            self.ms += (time.perf_counter() - t0) * 1e3

    def signature(self):
        """The latent the edge codes, [C, h, w] on the CPU (computed once); None where the edge has none."""
        if self._signature is None and self.signature_of is not None:
            t0 = time.perf_counter()
            self._signature = self.signature_of().detach().float().cpu()
            self.ms += (time.perf_counter() - t0) * 1e3
        return self._signature

    def decision(self, force_offload=False) -> EdgeDecision:
        """The edge step without rate control or reuse: the configured rule, rate and tiles."""
        tiles = None
        if self.regions and not force_offload:
            tiles = self.tiles_at()
            offload = bool(tiles.any())
        else:
            offload = should_offload(self.policy, self.score, self.threshold, force_offload)
        payload = self.code(None, tiles) if offload else None
        if not offload:
            tiles = None
        return EdgeDecision(payload, self.answer, offload, self.score, self.ms, tiles,
                            self.tile_px if tiles is not None else 0)
