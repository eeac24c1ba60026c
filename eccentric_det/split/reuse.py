"""Temporal reuse with a stateless cloud (``MODEL.ECCENTRIC.OFFLOAD.REUSE``): the edge keeps the cloud's last answer
for each tile (region-level Dynamic ECC) or for the whole frame (image level), with the latent the cloud saw then.

A frame (tile) the edge would send is not sent when the cloud has answered for it within the last ``keyframe`` frames
and its content has changed less than ``threshold`` since: the change is the RMS difference between the latent the
edge codes now and the one it sent then, over the tile (or frame), relative to the RMS of the whole latent now (a
scale-free measure on the edge's own latent; an image-mode edge, which codes no latent, compares its input pooled to
1/16). Its detections then come from the cache.

Objects move, and a moving object changes every tile it crosses. With ``track_iou`` the edge also follows the
objects the cloud found (motion-compensated reuse): it tracks its own detections (one box per object) frame to frame
(greedy IoU >= ``track_iou`` with where each track's last motion puts it, any class) and attaches each of the cloud's
detections to the track it overlaps most. A tile (frame) whose tracks all carry a recent, confident cloud answer and
kept their size is answered with those answers, each moved as its track's centre moved (:meth:`Track.reusable`,
:meth:`Track.moved`); a tile holding a new track, or a confident cloud detection no track took, is sent.

The cloud keeps nothing: every payload is a whole, ordinary payload (a region payload of the tiles still sent),
validated as any other.
"""
import numpy as np
import torch

from .rate_control import check_stream_options
from .regions import centre_tiles, input_scale

TRACK_SCORE = 0.3  # the edge's detections below this score are not followed
SAME_OBJECT_IOU = 0.7  # the edge's boxes this close are one object (its classes disagree)
ATTACH_IOU = 0.3  # a cloud detection joins the track it overlaps most at this IoU or more
CONFIDENT_SCORE = 0.5  # a cloud answer is reused only if it holds a detection this sure; one that no track took
# keeps its tile from track reuse
SIZE_CHANGE = 1.25  # an object whose box area changed by more than this factor since the cloud saw it is sent again


def relative_change(now, then, scale):
    """RMS of ``now - then`` over ``scale`` (the RMS of the whole latent now)."""
    return float(torch.sqrt(torch.mean((now - then) ** 2))) / max(scale, 1e-12)


def _rms(t):
    return float(torch.sqrt(torch.mean(t ** 2)))


def box_iou(a, b):
    """[N, M] IoU of xyxy boxes ``a`` [N, 4] and ``b`` [M, 4]."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def greedy_match(iou, minimum):
    """(i, j) pairs of ``iou`` [N, M], highest IoU first, each row and column once, IoU >= ``minimum``."""
    pairs, rows, cols = [], set(), set()
    for i, j in zip(*np.unravel_index(np.argsort(-iou, axis=None, kind="stable"), iou.shape)):
        if iou[i, j] < minimum:
            break
        if i not in rows and j not in cols:
            pairs.append((int(i), int(j)))
            rows.add(i)
            cols.add(j)
    return pairs


def one_box_per_object(boxes, scores):
    """The edge's boxes at score >= ``TRACK_SCORE``, one per object: a box overlapping a higher-scored one at IoU >=
    ``SAME_OBJECT_IOU`` (the same object read as another class) is left out."""
    keep = [k for k in np.argsort(-np.asarray(scores, np.float64), kind="stable") if scores[k] >= TRACK_SCORE]
    iou = box_iou([boxes[k] for k in keep], [boxes[k] for k in keep])
    out = []
    for i in range(len(keep)):
        if not any(iou[i, j] >= SAME_OBJECT_IOU for j in out):
            out.append(i)
    return [list(boxes[keep[i]]) for i in out]


def box_tiles(frame, boxes, grid):
    """(row, col) of the tile of ``grid`` holding each box's centre (boxes at ``frame``'s output size); image level,
    ``grid`` None: all (0, 0)."""
    if grid is None:
        return [(0, 0)] * len(boxes)
    rows, cols = centre_tiles(boxes, frame.tile_px, grid, input_scale(frame.image_size, frame.output_size))
    return list(zip(rows.tolist(), cols.tolist()))


def _centre(box):
    return (np.asarray(box[:2], np.float64) + np.asarray(box[2:], np.float64)) / 2


class Track:
    """One object the edge follows: its box now and its motion over the last frame, and the cloud's detections of it
    with the box it had then."""

    __slots__ = ("box", "velocity", "then", "index", "cloud")

    def __init__(self, box):
        self.box, self.velocity = np.asarray(box, np.float64), np.zeros(4)
        self.then, self.index, self.cloud = None, None, []

    def reusable(self, index, keyframe):
        """May its cloud answer stand for it at frame ``index``? The cloud answered within ``keyframe`` frames and
        was sure of it (a detection at >= ``CONFIDENT_SCORE``), and it has kept its size (area within
        ``SIZE_CHANGE``x of then: an object entering the frame or turning looks different)."""
        if self.index is None or not index - self.index < keyframe:
            return False
        if not any(s >= CONFIDENT_SCORE for _, s, _ in self.cloud):
            return False
        area = lambda b: max(b[2] - b[0], 1e-6) * max(b[3] - b[1], 1e-6)  # noqa: E731
        return 1 / SIZE_CHANGE <= area(self.box) / area(self.then) <= SIZE_CHANGE

    def predicted(self):
        """Where it should be in the next frame (constant velocity)."""
        return self.box + self.velocity

    def follow(self, box):
        box = np.asarray(box, np.float64)
        self.velocity, self.box = box - self.box, box

    def moved(self):
        """The cloud's detections of it, each box moved as the track's centre moved since the cloud saw it (its size
        the cloud's: the edge's box is less sure of that)."""
        dx, dy = _centre(self.box) - _centre(self.then)
        shift = np.array([dx, dy, dx, dy])
        return [((np.asarray(b, np.float64) + shift).tolist(), s, c) for b, s, c in self.cloud]


class ReuseCache:
    """The cloud's last answers, per tile or per frame, and the latents it saw (see the module docstring)."""

    def __init__(self, threshold, keyframe=25, track_iou=0.0):
        check_stream_options(reuse_threshold=threshold, keyframe=keyframe, track_iou=track_iou)
        if not (threshold > 0 or track_iou > 0):
            raise ValueError("a ReuseCache needs MODEL.ECCENTRIC.OFFLOAD.REUSE.THRESHOLD or REUSE.TRACK_IOU above 0 "
                             "(both 0: no reuse)")
        self.threshold, self.keyframe, self.track_iou = float(threshold), int(keyframe), float(track_iou)
        self.frame = None  # image level: (index, latent, output size, answer)
        self.tiles = {}  # (row, col) -> (index, latent in the tile, output size, [(box, score, class)])
        self.tracks = []  # the objects the edge follows (track_iou > 0)
        # (row, col) (image level: (0, 0)) -> (index, [(box, score, class)]): the cloud's detections there no track took
        self.loose = {}
        self._by_tracks = set()  # the tiles (image level: (0, 0)) the last query answers from the tracks
        self.now = 0  # the index of the frame last observed

    def _fresh(self, index, then):
        return index - then < self.keyframe

    # ------------------------------------------------------------------ the objects the edge follows
    def observe(self, frame, index):
        """Follow the edge's own detections of ``frame``, the ``index``-th of the stream (once per frame, before any
        query; nothing to follow without ``track_iou`` or without an edge detector)."""
        self.now = index
        if not self.track_iou:
            return
        edge = frame.answer or {}
        boxes = one_box_per_object(edge.get("boxes", []), edge.get("scores", []))
        pairs = greedy_match(box_iou([t.predicted() for t in self.tracks], boxes), self.track_iou)
        tracks = []
        for i, j in pairs:
            self.tracks[i].follow(boxes[j])
            tracks.append(self.tracks[i])
        taken = {j for _, j in pairs}
        self.tracks = tracks + [Track(b) for j, b in enumerate(boxes) if j not in taken]  # the lost ones are dropped

    def _track_tiles(self, frame, grid):
        """(row, col) of each track's box centre."""
        return box_tiles(frame, [t.box for t in self.tracks], grid)

    def _followed(self, index, tiles_of):
        """The tiles whose tracks may all reuse their cloud answer (:meth:`Track.reusable`; at least one track) and
        where no confident cloud detection went to no track."""
        ok = {}
        for t, tile in zip(self.tracks, tiles_of):
            ok[tile] = ok.get(tile, True) and t.reusable(index, self.keyframe)
        return {tile for tile, good in ok.items() if good and not any(s >= CONFIDENT_SCORE for _, s, _ in
                                                                       self._loose(index, tile))}

    def _loose(self, index, tile):
        """The cloud's fresh detections in ``tile`` that no track took."""
        then, rows = self.loose.get(tile, (None, []))
        return rows if then is not None and self._fresh(index, then) else []

    def _attach(self, frame, index, answer, sent, grid):
        """The cloud answered the tiles ``sent`` (image level: the frame): each of its detections joins the track it
        overlaps most; the tracks there now carry the cloud's answer of ``index``."""
        tiles_of = self._track_tiles(frame, grid)
        here = [k for k, tile in enumerate(tiles_of) if tile in sent]
        for k in here:
            t = self.tracks[k]
            t.then, t.index, t.cloud = t.box.copy(), index, []
        for tile in sent:
            self.loose[tile] = (index, [])
        boxes, scores, classes = answer["boxes"], answer["scores"], answer["classes"]
        iou = box_iou(boxes, [self.tracks[k].box for k in here])
        cells = box_tiles(frame, boxes, grid)
        for d in range(len(boxes)):
            best = int(np.argmax(iou[d])) if len(here) else -1
            if best >= 0 and iou[d, best] >= ATTACH_IOU:
                self.tracks[here[best]].cloud.append((list(boxes[d]), scores[d], classes[d]))
            elif cells[d] in sent:
                self.loose[cells[d]][1].append((list(boxes[d]), scores[d], classes[d]))

    def _moved(self, frame, tiles, grid):
        """The followed objects' cloud detections in ``tiles``, moved, and the edge's own detections there that none
        of them overlaps (IoU >= ``ATTACH_IOU``: what the edge sees that the cloud's answers do not hold)."""
        tiles_of = self._track_tiles(frame, grid)
        rows = [d for t, tile in zip(self.tracks, tiles_of) if tile in tiles for d in t.moved()]
        rows += [d for tile in sorted(tiles) for d in self._loose(self.now, tile)]
        edge = frame.answer or {}
        boxes = edge.get("boxes", [])
        if not len(boxes):
            return rows
        here = np.array([cell in tiles for cell in box_tiles(frame, boxes, grid)])
        covered = (box_iou(boxes, [d[0] for d in rows]) >= ATTACH_IOU).any(axis=1)
        return rows + [(list(boxes[k]), edge["scores"][k], edge["classes"][k]) for k in np.nonzero(here & ~covered)[0]]

    # ------------------------------------------------------------------ image level
    def reusable_answer(self, frame, index):
        """The cached answer for ``frame`` (the ``index``-th of the stream) if it may be reused, else None."""
        self._by_tracks = self._followed(index, self._track_tiles(frame, None)) if self.track_iou else set()
        if self._by_tracks:
            rows = self._moved(frame, self._by_tracks, None)
            return {"boxes": [r[0] for r in rows], "scores": [r[1] for r in rows], "classes": [r[2] for r in rows],
                    "image_size": list(frame.output_size)}
        if self.frame is None or not self.threshold:
            return None
        then, latent, output_size, answer = self.frame
        now = frame.signature()
        if (not self._fresh(index, then) or now is None or now.shape != latent.shape
                or tuple(output_size) != tuple(frame.output_size)):
            return None
        return answer if relative_change(now, latent, _rms(now)) < self.threshold else None

    def store_answer(self, frame, index, answer):
        """The cloud answered ``frame``: remember its answer and the latent it saw."""
        if self.track_iou:
            self._attach(frame, index, answer, {(0, 0)}, None)
        if frame.signature() is not None:
            self.frame = (index, frame.signature().clone(), tuple(frame.output_size), answer)

    # ------------------------------------------------------------------ tiles
    def _cells(self, frame, r, c):
        t = frame.tile_cells
        return slice(r * t, (r + 1) * t), slice(c * t, (c + 1) * t)

    def reusable_tiles(self, frame, index, candidates):
        """The [rows, cols] mask of ``candidates`` (tiles the edge would send) whose cached answer may be reused."""
        out = np.zeros(np.shape(candidates), bool)
        grid = np.shape(candidates)
        followed = self._followed(index, self._track_tiles(frame, grid)) if self.track_iou else set()
        self._by_tracks = {(r, c) for r, c in followed if candidates[r][c]}
        for r, c in self._by_tracks:
            out[r, c] = True
        now = frame.signature() if self.threshold else None
        if now is None or not self.tiles:
            return out
        scale = _rms(now)
        for r, c in zip(*(i.tolist() for i in np.nonzero(candidates & ~out))):
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
        if self.track_iou:
            self._attach(frame, index, answer, set(zip(*(i.tolist() for i in np.nonzero(sent)))), np.shape(sent))
        now = frame.signature() if self.threshold else None
        if now is None:
            return
        tiles = box_tiles(frame, answer["boxes"], np.shape(sent))
        found = {}
        for b, s, c, t in zip(answer["boxes"], answer["scores"], answer["classes"], tiles):
            found.setdefault(t, []).append((list(b), s, c))
        for r, c in zip(*(i.tolist() for i in np.nonzero(sent))):
            tile = now[(slice(None),) + self._cells(frame, r, c)].clone()
            self.tiles[r, c] = (index, tile, tuple(frame.output_size), found.get((r, c), []))

    def tracked_tiles(self, shape):
        """The [rows, cols] mask of the tiles the last :meth:`reusable_tiles` answers from the objects followed."""
        out = np.zeros(shape, bool)
        for r, c in self._by_tracks:
            out[r, c] = True
        return out

    def cached_detections(self, frame, tiles):
        """The cached detections of the set tiles of ``tiles`` (from the last :meth:`reusable_tiles`), as (box,
        score, class) rows: the followed objects' moved by their motion, the others' as the cloud gave them."""
        cells = set(zip(*(i.tolist() for i in np.nonzero(tiles))))
        rows = self._moved(frame, cells & self._by_tracks, np.shape(tiles)) if self._by_tracks else []
        return rows + [d for cell in sorted(cells - self._by_tracks) for d in self.tiles[cell][3]]

