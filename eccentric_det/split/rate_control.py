"""Rate control under a link budget (``MODEL.ECCENTRIC.OFFLOAD.BUDGET_KBPS``): a leaky bucket of B kbit/s drained
at the stream's frame rate, and, per frame, the choice of the codec's rate level (fractional levels included) and of
what the frame sends, so that the bucket never overflows.

The bucket holds at most ``BUFFER_S`` seconds of the budget. Each frame drains B / fps bits from it; a payload is
admitted only if it fits in what is left (:meth:`LeakyBucket.add` refuses anything else), so the bucket never
overflows, whatever the content. Within that hard limit, :class:`RateControl` aims each frame's bits at an
allowance: the budget per frame divided by the share of frames that want to send, weighted by the frame's "needs
the cloud" score against the recent mean (the frames the edge is least sure of get more), and corrected by the
bucket's distance from a target fill (a quarter of its size), so that the bits sent follow the budget when the
content needs more than it.

Per frame, the latents are computed once and coded at the finest rate whose payload fits the allowance. When even
the coarsest rate does not fit, a region frame leaves out first the tiles the region gate scores lowest. A frame
whose least payload (its likeliest tiles, at the coarsest rate) is still over the allowance is sent if the bucket
holds it and is no fuller than a limit that grows with the frame's score (the target fill at the mean score, half
of it at half the mean, the whole bucket at twice the mean); otherwise it stays on the edge. Once the bucket is more
than half full, the offload threshold rises with its fill (to 1 when full), so the frames and tiles with the highest
scores keep their place and the others stay on the edge.

A frame kept back gets the edge detector's answer; an edge without one holds the cloud's last answer, if it is at
most ``hold_frames`` old (``REUSE.KEYFRAME``, the staleness bound reuse has too; its scores fading with its age),
else it answers nothing.

Over a clip of T seconds the mean bitrate can exceed the budget by at most what the bucket holds at the end
(``BUFFER_S`` / T of the budget; about a quarter of that when the content keeps the bucket near its target).
"""
import numpy as np

from ..codec.tiles import dilate_tiles

RATE_GRID = 8  # candidate rates are multiples of 1/RATE_GRID of a level (the payload carries 1/32)
TARGET_FILL = 0.25  # the fill (share of the bucket) the allowance steers toward
PRESSURE = 0.5  # above this fill the offload threshold rises, reaching 1 when the bucket is full
FEEDBACK = 0.25  # share of the distance to the target fill corrected per frame
EMA = 0.1  # weight of a frame in the running share of frames that send and in their mean score
_MIN_SHARE = 0.05


def check_stream_options(budget_kbps=0.0, fps=0.0, buffer_s=1.0, reuse_threshold=0.0, keyframe=25, track_iou=0.0):
    """Raise ValueError naming the config key of the first bad value (``MODEL.ECCENTRIC.OFFLOAD.*``; ``fps`` None:
    not known yet, not checked)."""
    key = "MODEL.ECCENTRIC.OFFLOAD."
    if not budget_kbps >= 0:  # also refuses NaN
        raise ValueError(f"{key}BUDGET_KBPS (--budget-kbps) must be at least 0 (0: no budget), got {budget_kbps}")
    if budget_kbps and fps is not None:  # fps None: not known yet (a video's own rate, read later)
        if not fps > 0:
            raise ValueError(f"{key}BUDGET_KBPS {budget_kbps:g} needs the stream's frame rate: {key}FPS (--fps) "
                             f"must be above 0, got {fps} (tools that read a video take its own rate when FPS is 0)")
        if not buffer_s * fps >= 1:
            raise ValueError(f"{key}BUFFER_S must hold at least one frame of the budget (1 / FPS = {1 / fps:.3g} s), "
                             f"got {buffer_s}")
    if not reuse_threshold >= 0:
        raise ValueError(f"{key}REUSE.THRESHOLD must be at least 0 (0: no reuse), got {reuse_threshold}")
    if not 0 <= track_iou < 1:
        raise ValueError(f"{key}REUSE.TRACK_IOU must lie in [0, 1) (0: no motion-compensated reuse), got {track_iou}")
    if (reuse_threshold or track_iou or budget_kbps) and not (int(keyframe) == keyframe and keyframe >= 1):
        raise ValueError(f"{key}REUSE.KEYFRAME must be a whole number of frames, at least 1, got {keyframe}")


class LeakyBucket:
    """A leaky bucket of ``kbps`` kbit/s at ``fps`` frames per second holding ``buffer_s`` seconds of the budget:
    :meth:`tick` drains one frame's share, :meth:`add` admits a payload's bits only if they fit."""

    def __init__(self, kbps, fps, buffer_s=1.0):
        check_stream_options(kbps, fps, buffer_s)
        self.kbps, self.fps, self.buffer_s = float(kbps), float(fps), float(buffer_s)
        self.capacity = self.kbps * 1000 * self.buffer_s  # bits
        self.drain = self.kbps * 1000 / self.fps  # bits per frame
        self.fill = self.peak = self.sent_bits = 0.0
        self.frames = 0

    def tick(self):
        """A new frame: the link carried one frame's share of the budget away."""
        self.fill = max(0.0, self.fill - self.drain)
        self.frames += 1

    def room(self):
        """Bits a payload may hold now."""
        return self.capacity - self.fill

    def add(self, bits):
        """Admit ``bits``; ValueError if they do not fit (the bucket never overflows)."""
        if bits > self.room() + 1e-6:
            raise ValueError(f"a payload of {bits:.0f} bits does not fit the bucket's {self.room():.0f} free bits")
        self.fill += bits
        self.sent_bits += bits
        self.peak = max(self.peak, self.fill)

    def summary(self):
        """The budget, the mean bitrate over the frames seen, and the bucket's size and peak fill."""
        seconds = self.frames / self.fps
        return {"budget_kbps": self.kbps, "fps": self.fps, "buffer_s": self.buffer_s,
                "mean_kbps": self.sent_bits / 1000 / seconds if seconds else 0.0,
                "bucket_bits": self.capacity, "bucket_peak_bits": self.peak,
                "bucket_peak_fill": self.peak / self.capacity}


class RateControl:
    """What one frame sends under the budget (see the module docstring). ``size(payload) -> bytes`` counts a
    payload as it will cross the network (header and trailer included)."""

    def __init__(self, kbps, fps, buffer_s=1.0, hold_frames=0):
        self.bucket = LeakyBucket(kbps, fps, buffer_s)
        # a frame kept back on an edge without a detector of its own gets the cloud's answer from at most this many
        # frames before (0: an empty answer)
        self.hold_frames = hold_frames
        self.share, self.mean_score = 1.0, None

    def start_frame(self):
        self.bucket.tick()

    def threshold(self, base):
        """The offload threshold now: ``base`` until the bucket is half full, then rising to 1 with its fill."""
        b = self.bucket
        pressure = np.clip((b.fill / b.capacity - PRESSURE) / (1 - PRESSURE), 0.0, 1.0)
        return float(base + (1.0 - base) * pressure)

    def note(self, wants, score):
        """Count a frame that wants to send something (at the base threshold, after reuse), and its score."""
        self.share += EMA * (float(wants) - self.share)
        if wants:
            self.mean_score = score if self.mean_score is None else self.mean_score + EMA * (score - self.mean_score)

    def weight(self, score):
        """How much more than an average frame this one may take: its score over the recent mean, in [0.5, 2]."""
        return 1.0 if not self.mean_score else float(np.clip(score / self.mean_score, 0.5, 2.0))

    def allowance(self, score):
        """The bits this frame aims at (see the module docstring)."""
        b = self.bucket
        return max(0.0, b.drain / max(self.share, _MIN_SHARE) * self.weight(score)
                   + FEEDBACK * (TARGET_FILL * b.capacity - b.fill))

    def limit(self, score):
        """The fill under which a frame over its allowance may still be sent: the target fill for a frame of average
        score, half of it at half the mean score, the whole bucket at twice the mean score."""
        w = self.weight(score)
        return self.bucket.capacity * (TARGET_FILL * min(w, 1.0) + (1 - TARGET_FILL) * max(0.0, w - 1.0))

    def rates(self, frame):
        """The rates a frame may be coded at, finest (most bytes) first: a variable-rate codec's levels in steps of
        1/RATE_GRID, else its one rate (None)."""
        if frame.rate_levels <= 1:
            return [None]
        return [k / RATE_GRID for k in range((frame.rate_levels - 1) * RATE_GRID + 1)]

    def choose(self, frame, masks, size):
        """(rate, tiles, payload) of one frame, or None when nothing fits the bucket. ``masks``: the tile masks it
        may send, most tiles first (image level: ``[None]``)."""
        rates, room = self.rates(frame), self.bucket.room()
        target = min(self.allowance(frame.score), room)
        memo = {}

        def bits(r, m):
            if (r, m) not in memo:
                payload = frame.code(rates[r], masks[m])
                memo[r, m] = (8 * size(payload), payload)
            return memo[r, m][0]

        def pick(r, m):
            return rates[r], masks[m], memo[r, m][1]

        last = len(rates) - 1
        if bits(0, 0) <= target:
            return pick(0, 0)
        if bits(last, 0) <= target:  # the finest rate that fits: bits fall as the rate rises
            lo, hi = 0, last  # bits(lo) > target >= bits(hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if bits(mid, 0) > target else (lo, mid)
            return pick(hi, 0)
        # not even the coarsest rate fits the allowance: fewer tiles (the region gate's surest ones go first)
        n = len(masks) - 1
        if n and bits(last, n) <= target:
            lo, hi = 0, n  # bits(last, lo) > target >= bits(last, hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if bits(last, mid) > target else (lo, mid)
            return pick(last, hi)
        # over the allowance even so: the least it can send, if the bucket holds it and is under the frame's limit
        return pick(last, n) if bits(last, n) <= room and self.bucket.fill <= self.limit(frame.score) else None

    def admit(self, nbytes):
        self.bucket.add(8 * nbytes)


def tile_masks(probs, threshold, dilate, exclude=None, never=None):
    """The tile masks a region frame may send, most tiles first: the tiles of ``probs`` ([rows, cols]) at least
    ``threshold`` but those of ``exclude`` (answered from the objects the edge follows: they bring no context of their
    own), grown by ``dilate`` tiles of context, less the tiles of ``never`` (unchanged since the cloud saw them); then
    with its least likely selected tile (the gate's surest) left out, and so on down to its most likely one. Empty
    masks are left out."""
    probs = np.asarray(probs, np.float64)
    wanted = probs >= threshold
    if exclude is not None:
        wanted &= ~np.asarray(exclude, bool)
    seeds = np.argwhere(wanted)
    order = seeds[np.argsort(-probs[tuple(seeds.T)], kind="stable")] if len(seeds) else seeds
    out = []
    for k in range(len(order), 0, -1):
        seed = np.zeros(probs.shape, bool)
        seed[tuple(order[:k].T)] = True
        mask = dilate_tiles(seed, dilate)
        if never is not None:
            mask &= ~np.asarray(never, bool)
        if mask.any() and not (out and np.array_equal(out[-1], mask)):
            out.append(mask)
    return out
