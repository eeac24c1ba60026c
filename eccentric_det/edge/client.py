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
from dataclasses import dataclass
from typing import Optional

import cv2

from .http import CloudClient, CloudUnavailable
from ..split.region_gate import merge_region_detections

logger = logging.getLogger(__name__)
SOURCES = ("cloud", "edge", "edge-fallback")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class EdgeResult:
    """One image's detections (wire format) and where they came from (one of ``SOURCES``)."""

    detections: dict
    source: str
    bytes_sent: int  # payload bytes the cloud received (0 when the edge kept the image or fell back)
    score: float  # the gate's "needs the cloud" probability
    edge_ms: float
    cloud_ms: float  # the cloud model's time per image (0 unless source is "cloud")

    def to_dict(self, class_names=None):
        d = {k: self.detections[k] for k in ("boxes", "scores", "classes", "image_size", "class_names")
             if k in self.detections}
        if class_names:
            d["class_names"] = [class_names[c] for c in d["classes"]]
        return {"source": self.source, **d, "bytes": self.bytes_sent, "score": self.score, "edge_ms": self.edge_ms,
                "cloud_ms": self.cloud_ms}


class EdgeClient:
    """``client(bgr_image) -> EdgeResult``. ``edge.step(bgr) -> EdgeDecision`` (its ``answer``: the edge's own
    detections in wire format, or None); ``cloud``: a :class:`CloudClient`; payloads are signed with the fleet
    ``key`` when given. An error answer other than 502/503/504 raises :class:`CloudRejected`; a cloud that
    stays unreachable gives the edge's own detections (``edge-fallback``), or raises :class:`CloudUnavailable`
    on an edge without a detector."""

    def __init__(self, edge, cloud: CloudClient, class_names=None, key: Optional[bytes] = None):
        self.edge, self.cloud, self.class_names, self.key = edge, cloud, class_names, key

    def __call__(self, bgr) -> EdgeResult:
        d = self.edge.step(bgr)
        if not d.offload:
            return EdgeResult(d.answer, "edge", 0, d.score, d.edge_ms, 0.0)
        body = d.payload.to_bytes(self.key)
        try:
            answer = self.cloud.send(body)
        except CloudUnavailable as e:
            if d.answer is None:
                raise CloudUnavailable(f"{e}; this edge has no detector of its own to fall back on "
                                       f"(MODEL.ECCENTRIC.EDGE.DETECTOR False)") from e
            logger.warning("%s: answering with the edge's own detections", e)
            return EdgeResult(d.answer, "edge-fallback", 0, d.score, d.edge_ms, 0.0)
        answer.setdefault("image_size", list(d.payload.output_size))
        if d.tiles is not None:  # region-level Dynamic ECC: the cloud's detections there, the edge's elsewhere
            answer = {**answer, **merge_region_detections(d.answer, answer, d.tiles, d.tile_px, d.payload.image_size)}
        return EdgeResult(answer, "cloud", len(body), d.score, d.edge_ms, answer.get("cloud_ms", 0.0))

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
