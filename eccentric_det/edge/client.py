"""EdgeClient: the edge half on a device. It runs the edge step (a PyTorch edge, or an exported one), sends
the payload of an image it offloads to the cloud server, and keeps going on its own detections (marked
``edge-fallback``) when the cloud cannot be reached. Plus the JSONL runner over a folder of images.

Detections travel as the JSON wire format of :mod:`eccentric_det.serving.detections` (``boxes``, ``scores``,
``classes``, ``image_size``), so this module needs neither Detectron2 nor the cloud half.
"""
import glob
import json
import logging
import os
from typing import Optional

import cv2

from .http import CloudClient
from .stream import SOURCES, EdgeResult, EdgeStream

logger = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
__all__ = ["EdgeClient", "EdgeResult", "SOURCES", "done_images", "list_images", "run_images"]


class EdgeClient:
    """``client(bgr_image) -> EdgeResult``: the stream loop (:class:`~eccentric_det.edge.stream.EdgeStream`) around
    ``edge`` (``edge.analyse(bgr) -> EdgeFrame`` or ``edge.step(bgr) -> EdgeDecision``; its answer: the edge's own
    detections in wire format, or None) and ``cloud``, a :class:`CloudClient`; payloads are signed with the fleet
    ``key`` when given. ``rate_control``, ``reuse``: a budget and temporal reuse
    (:func:`~eccentric_det.edge.stream.stream_controls`; images are frames of one stream, in order). An error answer
    other than 502/503/504 raises :class:`CloudRejected`; a cloud that stays unreachable gives the edge's own
    detections (``edge-fallback``), or raises :class:`CloudUnavailable` on an edge without a detector."""

    def __init__(self, edge, cloud: CloudClient, class_names=None, key: Optional[bytes] = None, rate_control=None,
                 reuse=None):
        self.edge, self.cloud, self.class_names, self.key = edge, cloud, class_names, key
        self.stream = EdgeStream(edge, lambda body, output_size: self.cloud.send(body), key, rate_control, reuse)

    def __call__(self, bgr) -> EdgeResult:
        return self.stream(bgr)

    def close(self):
        self.cloud.close()


def list_images(spec):
    """Image paths of a file, a folder (its images, sorted) or a glob pattern (sorted)."""
    if os.path.isdir(spec):
        paths = [os.path.join(spec, f) for f in sorted(os.listdir(spec)) if f.lower().endswith(IMAGE_EXTENSIONS)]
    elif os.path.isfile(spec):
        paths = [spec]
    else:
        paths = sorted(glob.glob(os.path.expanduser(spec)))
    if not paths:
        raise FileNotFoundError(f"no images found at {spec!r}: pass an image, a folder or a quoted glob")
    return paths


def done_images(output):
    """Images already recorded in a JSONL output. A last line cut short (a killed run) is removed."""
    with open(output, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            f.truncate(end)
    done = set()
    for i, line in enumerate(data[:end].splitlines(), 1):
        try:
            done.add(json.loads(line)["image"])
        except (ValueError, KeyError) as e:
            raise ValueError(f"{output} line {i} is not a result line ({e}): fix or remove it") from None
    return done


def run_images(client, paths, output, resume=False):
    """Detect every image of ``paths`` and append one JSON line per image to ``output`` as it goes
    (``{"image": absolute path, "source", "boxes", ...}``). With ``resume``, images already in
    ``output`` are skipped. Returns how many images each source answered (and "unreadable")."""
    if os.path.exists(output) and os.path.getsize(output) and not resume:
        raise FileExistsError(f"{output} exists: pass --resume to continue it, or remove it")
    done = done_images(output) if resume and os.path.exists(output) else set()
    counts = dict.fromkeys(SOURCES + ("skipped", "unreadable"), 0)
    with open(output, "a") as f:
        for path in paths:
            key = os.path.abspath(path)
            if key in done:
                counts["skipped"] += 1
                continue
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                logger.warning("%s is not a readable image: skipped", path)
                counts["unreadable"] += 1
                continue
            result = client(image)
            f.write(json.dumps({"image": key, **result.to_dict(client.class_names)}) + "\n")
            f.flush()
            os.fsync(f.fileno())
            done.add(key)
            counts[result.source] += 1
    return counts
