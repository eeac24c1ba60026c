"""EdgeStream: the one per-frame loop of an edge device (the HTTP client :class:`~eccentric_det.edge.EdgeClient`, the
demo's predictor and the benchmarks all run it): the edge's analysis -> what to send (rate control under a budget,
temporal reuse) -> the payload to the cloud -> the merge of the cloud's answer with the edge's own.

Without a budget or reuse it is the edge step as it always was (the configured rate and threshold: the same payload
bytes). With a :class:`~eccentric_det.split.rate_control.RateControl` each frame's rate level and tiles are chosen
so that its leaky bucket never overflows; with a :class:`~eccentric_det.split.reuse.ReuseCache` frames or tiles
whose content has not changed since the cloud last saw them are answered from the cache. Both live here, on the
edge: the cloud stays stateless and receives ordinary payloads. Detections travel in the JSON wire format
(``boxes``, ``scores``, ``classes``, ``image_size``); no Detectron2.
"""
import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from ..split.rate_control import RateControl, check_stream_options, tile_masks
from ..split.regions import in_tiles, input_scale, merge_region_detections
from ..split.reuse import ReuseCache
from .http import CloudUnavailable

logger = logging.getLogger(__name__)
# who answered: the cloud; the edge (its gate kept the frame); the edge because the cloud was unreachable; the edge
# because the budget had no room for the frame; the cache (nothing sent: the content had not changed); the cloud's
# last answer, held because the budget had no room and the edge has no detector of its own
SOURCES = ("cloud", "edge", "edge-fallback", "edge-budget", "reused", "held")
BUDGET_KEPT = ("edge-budget", "held")  # the sources of a frame the budget kept back


@dataclass
class EdgeResult:
    """One image's detections (wire format) and where they came from (one of ``SOURCES``)."""

    detections: Any
    source: str
    bytes_sent: int  # payload bytes the cloud received (0 when the edge kept the image or fell back)
    score: float  # the gate's "needs the cloud" probability
    edge_ms: float
    cloud_ms: float  # the cloud model's time per image (0 unless source is "cloud")
    rate: Optional[float] = None  # the rate level rate control coded the payload at (None: the configured one)
    tiles: Any = None  # region-level: the [rows, cols] mask of the tiles sent
    tile_px: int = 0  # ... a tile's side in network-input pixels
    input_size: Optional[tuple] = None  # (h, w) of the network input, where tiles are laid
    reused: int = 0  # tiles (or 1: the whole frame) answered from the reuse cache

    def to_dict(self, class_names=None):
        d = {k: self.detections[k] for k in ("boxes", "scores", "classes", "image_size", "class_names")
             if k in self.detections}
        if class_names:
            d["class_names"] = [class_names[c] for c in d["classes"]]
        out = {"source": self.source, **d, "bytes": self.bytes_sent, "score": self.score, "edge_ms": self.edge_ms,
               "cloud_ms": self.cloud_ms}
        if self.rate is not None:
            out["rate"] = self.rate
        if self.reused:
            out["reused"] = self.reused
        return out


# a stream option (the command line's --budget-kbps ...) -> (its config key, its value without a config, its help)
STREAM_OPTIONS = {
    "budget_kbps": ("MODEL.ECCENTRIC.OFFLOAD.BUDGET_KBPS", 0.0, "the uplink's budget in kbit/s (0: none)"),
    "fps": ("MODEL.ECCENTRIC.OFFLOAD.FPS", 0.0, "the stream's frames per second (a budget needs one; the demo takes a video's own)"),
    "buffer_s": ("MODEL.ECCENTRIC.OFFLOAD.BUFFER_S", 1.0, "the leaky bucket's size in seconds of the budget"),
    "reuse_threshold": ("MODEL.ECCENTRIC.OFFLOAD.REUSE.THRESHOLD", 0.0,
                        "temporal reuse: reuse the cloud's last answer while the edge's latent changed less than "
                        "this (0: off)"),
    "keyframe_interval": ("MODEL.ECCENTRIC.OFFLOAD.REUSE.KEYFRAME", 25,
                          "reuse a cached answer, or hold the cloud's last one under a budget, for at most this many "
                          "frames"),
    "track_iou": ("MODEL.ECCENTRIC.OFFLOAD.REUSE.TRACK_IOU", 0.0,
                  "motion-compensated reuse: follow the edge's detections at this IoU and reuse the cloud's answers "
                  "for them, moved (0: off)")}


def add_stream_arguments(parser):
    """Add ``--budget-kbps``, ``--fps``, ``--buffer-s``, ``--reuse-threshold``, ``--keyframe-interval`` and
    ``--track-iou`` to an argparse ``parser`` (each, when given, overrides its config key)."""
    for arg, (key, default, text) in STREAM_OPTIONS.items():
        parser.add_argument("--" + arg.replace("_", "-"), type=type(default),
                            help=f"{text} ({key}; default: the config's, else {default:g})")


def stream_overrides(args):
    """The config overrides (KEY VALUE ...) of the stream options given on the command line (``args`` parsed by a
    parser of :func:`add_stream_arguments`)."""
    return [v for arg, (key, _, _) in STREAM_OPTIONS.items() if getattr(args, arg) is not None
            for v in (key, getattr(args, arg))]


def stream_defaults(args):
    """The stream options of ``args`` with the defaults of a stream without a config, as :func:`stream_controls`
    takes them."""
    options = {arg: default if getattr(args, arg) is None else getattr(args, arg)
               for arg, (_, default, _) in STREAM_OPTIONS.items()}
    options["keyframe"] = options.pop("keyframe_interval")
    return options


def stream_controls(budget_kbps=0.0, fps=0.0, buffer_s=1.0, reuse_threshold=0.0, keyframe=25, track_iou=0.0):
    """(:class:`RateControl` or None, :class:`ReuseCache` or None) of a stream's options (0: off); ValueError naming
    the ``MODEL.ECCENTRIC.OFFLOAD`` key of a bad one."""
    check_stream_options(budget_kbps, fps, buffer_s, reuse_threshold, keyframe, track_iou)
    return (RateControl(budget_kbps, fps, buffer_s, hold_frames=int(keyframe)) if budget_kbps else None,
            ReuseCache(reuse_threshold, keyframe, track_iou) if reuse_threshold or track_iou else None)


@dataclass
class _Plan:
    payload: Any = None  # what to send (None: nothing)
    source: str = "edge"  # who answers when nothing is sent
    rate: Optional[float] = None
    tiles: Any = None  # region-level: the tiles sent
    reused: Any = None  # region-level: the tiles answered from the cache
    cached: Any = None  # image level: the cached answer


class EdgeStream:
    """``stream(image) -> EdgeResult`` for one camera's frames in order. ``edge.analyse(image) -> EdgeFrame``
    (:class:`~eccentric_det.edge.ExportedEdge`, :class:`~eccentric_det.deploy.torch_edge.TorchEdge`; an edge with
    only ``step`` runs without budget or reuse), its ``answer`` in the wire format or None;
    ``send(body, output_size) -> dict``: the cloud's answer (wire format, ``cloud_ms``) to a payload's bytes, raising
    :class:`CloudUnavailable` when it cannot be reached (the edge then answers, ``edge-fallback``); payloads are signed
    with the fleet ``key`` when given."""

    def __init__(self, edge, send: Callable, key: Optional[bytes] = None, rate_control: Optional[RateControl] = None,
                 reuse: Optional[ReuseCache] = None):
        if (rate_control or reuse) and not hasattr(edge, "analyse"):
            raise TypeError(f"{type(edge).__name__} has no analyse(): rate control and reuse need it")
        self.edge, self.send, self.key = edge, send, key
        self.rate_control, self.reuse = rate_control, reuse
        self.frames = 0
        self._held = None  # (frame index, the cloud's answer) to hold while the budget keeps frames back

    def summary(self):
        """The rate control's budget, mean kbit/s and bucket fill (empty without a budget)."""
        return self.rate_control.bucket.summary() if self.rate_control else {}

    def __call__(self, image) -> EdgeResult:
        index = self.frames
        self.frames += 1
        if not hasattr(self.edge, "analyse"):
            d = self.edge.step(image)
            return self._answer(_FrameOfDecision(d), index, _Plan(d.payload, tiles=d.tiles))
        frame = self.edge.analyse(image)
        return self._answer(frame, index, self._plan(frame, index))

    # ------------------------------------------------------------------ what to send
    def _plan(self, frame, index):
        rc, reuse = self.rate_control, self.reuse
        if rc is None and reuse is None:  # the edge step as configured: the same bytes as ever
            d = frame.decision()
            return _Plan(d.payload, tiles=d.tiles)
        if rc is not None:
            rc.start_frame()
        if reuse is not None:
            reuse.observe(frame, index)
        threshold = rc.threshold(frame.threshold) if rc is not None and frame.policy == "dynamic" else None
        size = lambda payload: len(payload.to_bytes(self.key))  # noqa: E731
        if frame.regions:
            base = frame.tiles_at()
            reused = reuse.reusable_tiles(frame, index, base) if reuse else np.zeros_like(base)
            tracked = reuse.tracked_tiles(reused.shape) if reuse else reused
            masks = tile_masks(frame.tile_probs, frame.threshold if threshold is None else threshold, frame.dilate,
                               tracked, reused & ~tracked)
            if rc is not None:
                rc.note(bool((base & ~reused).any()), frame.score)
            plan = _Plan(source="reused" if reused.any() else "edge", reused=reused)
            if not masks:
                if (base & ~reused).any():  # the gate wanted tiles the raised threshold keeps back
                    plan.source = "edge-budget"
                return plan
            choice = rc.choose(frame, masks, size) if rc is not None else (None, masks[0], frame.code(None, masks[0]))
            if choice is None:
                plan.source = "edge-budget"
                return plan
            plan.rate, plan.tiles, plan.payload = choice
            return plan
        wants_base = frame.wants()
        cached = reuse.reusable_answer(frame, index) if reuse and wants_base else None
        if rc is not None:
            rc.note(wants_base and cached is None, frame.score)
        if cached is not None:
            return _Plan(source="reused", cached=cached)
        if not frame.wants(threshold):  # kept by the gate, or by the threshold the budget raised
            return _Plan(source="edge-budget" if wants_base else "edge")
        choice = rc.choose(frame, [None], size) if rc is not None else (None, None, frame.code())
        if choice is None:
            return _Plan(source="edge-budget")
        return _Plan(choice[2], rate=choice[0])

    # ------------------------------------------------------------------ send, merge, remember
    def _answer(self, frame, index, plan):
        reused_tiles = plan.reused if plan.reused is not None and plan.reused.any() else None
        common = dict(tile_px=frame.tile_px, input_size=tuple(frame.image_size),
                      reused=int(reused_tiles.sum()) if reused_tiles is not None else int(plan.cached is not None))
        if plan.payload is None:
            if plan.cached is not None:
                return EdgeResult(plan.cached, "reused", 0, frame.score, frame.ms, 0.0, **common)
            detections = frame.answer
            if reused_tiles is not None:
                detections = self._merge(frame, detections, _empty(frame), np.zeros_like(reused_tiles), reused_tiles)
            elif detections is None:  # no detector of its own (policy "always") and no room in the budget
                held = self._held_answer(index)
                if held is not None:
                    return EdgeResult(held, "held", 0, frame.score, frame.ms, 0.0, **common)
                detections = _empty(frame)
            return EdgeResult(detections, plan.source, 0, frame.score, frame.ms, 0.0, **common)
        body = plan.payload.to_bytes(self.key)
        if self.rate_control is not None:
            self.rate_control.admit(len(body))
        try:
            answer = self.send(body, tuple(frame.output_size))
        except CloudUnavailable as e:
            if frame.answer is None:
                raise CloudUnavailable(f"{e}; this edge has no detector of its own to fall back on "
                                       f"(MODEL.ECCENTRIC.EDGE.DETECTOR False)") from e
            logger.warning("%s: answering with the edge's own detections", e)
            return EdgeResult(frame.answer, "edge-fallback", 0, frame.score, frame.ms, 0.0, **common)
        answer = dict(answer)
        answer.setdefault("image_size", list(frame.output_size))
        if plan.tiles is not None:  # region-level: the cloud's detections there, the cache's, the edge's elsewhere
            if self.reuse is not None:  # a reused tile sent as another's context keeps its cached answer
                self.reuse.store_tiles(frame, index, plan.tiles & ~reused_tiles if reused_tiles is not None
                                       else plan.tiles, answer)
            reused = reused_tiles if reused_tiles is not None else np.zeros_like(plan.tiles)
            answer = {**answer, **self._merge(frame, frame.answer, answer, plan.tiles, reused)}
        else:
            kept = {k: answer[k] for k in ("boxes", "scores", "classes", "image_size") if k in answer}
            if self.reuse is not None:
                self.reuse.store_answer(frame, index, kept)
            if self.rate_control is not None and frame.answer is None:
                self._held = (index, kept)
        return EdgeResult(answer, "cloud", len(body), frame.score, frame.ms, answer.get("cloud_ms", 0.0), plan.rate,
                          plan.tiles, **common)

    def _held_answer(self, index):
        """The cloud's last answer if it is at most the rate control's ``hold_frames`` frames old, else None; its
        scores fade with its age (``1 - age / (hold_frames + 1)``), so that a stale box ranks below a fresh one."""
        hold = self.rate_control.hold_frames
        if self._held is None or index - self._held[0] > hold:
            return None
        at, answer = self._held
        fade = 1.0 - (index - at) / (hold + 1)
        return {**answer, "scores": [float(s) * fade for s in answer["scores"]]}

    def _merge(self, frame, edge, cloud, sent, reused):
        """The cached detections in the tiles ``reused``, the cloud's in the other tiles ``sent`` (a reused tile the
        cloud saw only as another tile's context keeps the cache's answer: the cloud saw it cut off), the edge's
        elsewhere."""
        rows = list(zip(cloud["boxes"], cloud["scores"], cloud["classes"]))
        if reused.any():
            if rows and (reused & sent).any():
                inside = in_tiles([r[0] for r in rows], reused & sent, frame.tile_px,
                                  input_scale(frame.image_size, frame.output_size))
                rows = [r for r, i in zip(rows, inside) if not i]
            rows += self.reuse.cached_detections(frame, reused)
        other = {"boxes": [r[0] for r in rows], "scores": [r[1] for r in rows], "classes": [r[2] for r in rows]}
        return merge_region_detections(edge, other, sent | reused, frame.tile_px, frame.image_size)


def _empty(frame):
    return {"boxes": [], "scores": [], "classes": [], "image_size": list(frame.output_size)}


class _FrameOfDecision:
    """What :meth:`EdgeStream._answer` reads of a frame, from an edge step's decision (an edge without analyse)."""

    def __init__(self, d):
        self.answer, self.score, self.ms, self.tile_px = d.answer, d.score, d.edge_ms, d.tile_px
        size = d.payload.image_size if d.payload is not None else (0, 0)
        self.image_size, self.output_size = size, d.payload.output_size if d.payload is not None else size
