"""Video benchmarks against the video's own boxes: what a camera user would stream instead of eccentric_det
(H.264 at a set bitrate with low-latency settings, or JPEG frame by frame, decoded in the cloud and run through the
cloud detector), and COCO AP over all frames of a video (pycocotools).

A composed video (``datasets/prepare_demo_video.py``) has its boxes beside it as COCO json, one image per frame
(``frame``: its index); :func:`video_ap` scores a list of per-frame detections against them, and
:func:`video_ap_difference` two methods' against each other, paired frame by frame, with a block-bootstrap interval.
"""
import contextlib
import io
import json
from fractions import Fraction

import cv2
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..split.image_codecs import decode_image, encode_image
from .bootstrap import CONFIDENCE, PerImageMatches, block_counts, percentile_interval

H264_OPTIONS = {"tune": "zerolatency", "bf": "0"}  # no B-frames: each frame decodes on arrival


def read_frames(path):
    """Every frame of a video file as HxWx3 uint8 BGR arrays, and its frame rate."""
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video {path!r}")
    fps, frames = cap.get(cv2.CAP_PROP_FPS) or 25.0, []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise ValueError(f"video {path!r} has no frames")
    return frames, float(fps)


def h264_round_trip(frames, fps, kbps, gop=25, preset="veryfast"):
    """``frames`` streamed with libx264 at ``kbps`` kbit/s (VBV-capped: maxrate = bitrate, a one-second buffer),
    a keyframe every ``gop`` frames, no B-frames, zero-latency tuning; returns (the decoded frames, the bytes of
    each frame's packets)."""
    import av  # optional: PyAV bundles FFmpeg with libx264

    h, w = frames[0].shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"H.264 (yuv420p) needs even frame sizes, got {w}x{h}")
    encoder = _x264(w, h, fps, int(kbps * 1000), gop, preset)
    decoder = av.CodecContext.create("h264", "r")
    decoded, sizes = [], []
    for i, frame in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(frame, format="bgr24").reformat(format="yuv420p")
        vf.pts = i
        packets = encoder.encode(vf)
        sizes.append(sum(p.size for p in packets))
        for p in packets:
            decoded += [d.to_ndarray(format="bgr24") for d in decoder.decode(p)]
    for p in encoder.encode(None):  # zero latency: nothing should be left, but flush to be exact
        sizes[-1] += p.size
        decoded += [d.to_ndarray(format="bgr24") for d in decoder.decode(p)]
    decoded += [d.to_ndarray(format="bgr24") for d in decoder.decode(None)]
    if len(decoded) != len(frames):
        raise RuntimeError(f"H.264 round trip gave {len(decoded)} frames for {len(frames)}")
    return decoded, sizes


def _x264(w, h, fps, bits, gop, preset, threads=0):
    """An open libx264 encoder context (see :func:`h264_round_trip`); ``threads`` > 0 holds it to that many threads
    (0: libx264's own choice, which under zero-latency tuning slices each frame over every core)."""
    import av  # optional: PyAV

    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = w, h, "yuv420p"
    encoder.time_base = Fraction(1, int(round(fps)))
    encoder.framerate = Fraction(int(round(fps)), 1)
    encoder.bit_rate, encoder.gop_size = bits, gop
    encoder.options = {**H264_OPTIONS, "preset": preset, "maxrate": str(bits), "bufsize": str(bits),
                       "keyint_min": str(gop), "sc_threshold": "0", **({"threads": str(threads)} if threads else {})}
    encoder.open()
    return encoder


def image_round_trip(frames, codec, quality):
    """Each frame coded on its own (``codec``: jpeg, webp, avif, png); returns (decoded frames, bytes per frame)."""
    decoded, sizes = [], []
    for frame in frames:
        data = encode_image(frame, codec, quality)
        decoded.append(decode_image(data, frame.shape[:2], codec))
        sizes.append(len(data))
    return decoded, sizes


def _evaluated(gt_json, detections, class_names):
    """pycocotools' COCOeval of a video's per-frame ``detections`` (evaluated, not accumulated), or None when none of
    them is scored (no detections of the json's classes)."""
    with open(gt_json) as f:
        coco = json.load(f)
    image_of = {im["frame"]: im["id"] for im in coco["images"]}
    category = {c["name"]: c["id"] for c in coco["categories"]}
    results = []
    for frame, (boxes, scores, classes) in enumerate(detections):
        for b, s, c in zip(np.asarray(boxes, float).reshape(-1, 4), scores, classes):
            name = class_names[int(c)]
            if frame in image_of and name in category:
                results.append({"image_id": image_of[frame], "category_id": category[name], "score": float(s),
                                "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    if not results:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": coco["images"], "annotations": coco["annotations"], "categories": coco["categories"]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.params.imgIds = [image_of[f] for f in range(len(detections)) if f in image_of]
        ev.evaluate()
    return ev


def video_ap(gt_json, detections, class_names):
    """COCO AP and AP50 (0-100) over all frames of a video. ``detections``: per frame, (xyxy boxes, scores, class
    indices into ``class_names``), matched to the json's categories by name."""
    ev = _evaluated(gt_json, detections, class_names)
    if ev is None:
        return {"AP": 0.0, "AP50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        ev.accumulate()
        ev.summarize()
    return {"AP": 100 * float(ev.stats[0]), "AP50": 100 * float(ev.stats[1])}


def video_ap_difference(videos, block=25, n=1000, seed=0, confidence=CONFIDENCE):
    """Video AP of method a minus method b, averaged over ``videos`` [(gt_json, (detections_a, class_names_a),
    (detections_b, class_names_b))], with a paired block bootstrap interval: each resample draws, in every video,
    runs of ``block`` consecutive frames with replacement (:func:`.bootstrap.block_counts`: neighbouring frames show
    the same objects, so a frame alone is not an independent draw) and scores both methods on the same draw.
    {"mean", "ci95", "says": "ahead" (the interval above 0), "behind" (below) or "level"}."""
    rng = np.random.default_rng(seed)
    per_video = []  # ([matches of a, of b] (None: nothing scored), the frame-order position of each matched image)
    for gt_json, a, b in videos:
        evs = [_evaluated(gt_json, *m) for m in (a, b)]
        matches = [PerImageMatches(ev) if ev is not None else None for ev in evs]
        ev = next((e for e in evs if e is not None), None)
        frames = [ev.cocoGt.imgs[i]["frame"] for i in ev.params.imgIds] if ev is not None else []
        per_video.append((matches, np.argsort(np.argsort(frames))))  # COCOeval sorts the ids; blocks follow frames

    def difference(counts_of):
        d = []
        for (matches, position), counts in zip(per_video, counts_of):
            d.append(np.subtract(*[m.ap(counts[position]) if m is not None else 0.0 for m in matches]))
        return float(np.mean(d))

    mean = difference([np.ones(len(position), int) for _, position in per_video])
    low, high = percentile_interval([difference([block_counts(len(position), block, rng)
                                                 for _, position in per_video]) for _ in range(n)], confidence)
    return {"mean": mean, "ci95": [low, high], "says": "ahead" if low > 0 else "behind" if high < 0 else "level"}


def kbps(sizes, fps):
    """Mean bitrate (kbit/s) of per-frame byte counts at ``fps``."""
    return 8 * float(np.sum(sizes)) * fps / max(len(sizes), 1) / 1000
