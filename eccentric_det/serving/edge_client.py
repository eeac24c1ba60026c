"""EdgeClient: the edge half on a device. It runs the edge network and the Dynamic ECC decision,
sends the payload of an image it offloads to the cloud server, and keeps going on its own
detections (marked ``edge-fallback``) when the cloud cannot be reached.
"""
import glob
import json
import logging
import os
import time
from dataclasses import dataclass

import cv2
import httpx
from detectron2.structures import Instances

from ..codec import fleet_key
from ..inputs import InputBuilder
from .config import load_half
from .detections import CONTENT_TYPE, DETECT_PATH, dict_to_instances, instances_to_dict
from .runtime import class_names_of

logger = logging.getLogger(__name__)
SOURCES = ("cloud", "edge", "edge-fallback")
RETRY_STATUS = (502, 503, 504)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class CloudUnavailable(ConnectionError):
    """The cloud did not answer (unreachable, timeouts, 502/503/504) within the retries."""


class CloudRejected(RuntimeError):
    """The cloud answered with an error that retrying cannot fix (its message says why)."""


@dataclass
class EdgeResult:
    """One image's detections and where they came from (one of ``SOURCES``)."""

    instances: Instances
    source: str
    bytes_sent: int  # payload bytes the cloud received (0 when the edge kept the image or fell back)
    score: float  # the gate's "needs the cloud" probability
    edge_ms: float
    cloud_ms: float  # the cloud model's time per image (0 unless source is "cloud")

    def to_dict(self, class_names=None):
        return {"source": self.source, **instances_to_dict(self.instances, class_names), "bytes": self.bytes_sent,
                "score": self.score, "edge_ms": self.edge_ms, "cloud_ms": self.cloud_ms}


class EdgeClient:
    """``client(bgr_image) -> EdgeResult``. POSTs with a timeout and ``retries`` extra attempts,
    ``backoff_s * 2**k`` apart. An error answer other than 502/503/504 raises :class:`CloudRejected`;
    a cloud that stays unreachable gives the edge's own detections (``edge-fallback``), or raises
    :class:`CloudUnavailable` on an edge without a detector."""

    def __init__(self, model, cloud_url, input_builder, timeout_s=10.0, retries=3, backoff_s=0.2, token="",
                 class_names=None, key=None):
        self.model, self.inputs, self.class_names, self.key = model, input_builder, class_names, key
        self.url = cloud_url.rstrip("/") + DETECT_PATH
        self.retries, self.backoff_s = retries, backoff_s
        headers = {"content-type": CONTENT_TYPE}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._http = httpx.Client(timeout=timeout_s, headers=headers)

    @classmethod
    def from_config(cls, cfg, cloud_url=None):
        """Load the edge half of ``cfg`` (see :func:`~eccentric_det.serving.config.get_serving_cfg`);
        the cloud is at ``cloud_url`` (default ``http://SERVING.HOST:SERVING.PORT``)."""
        S = cfg.SERVING
        return cls(load_half(cfg), cloud_url or f"http://{S.HOST}:{S.PORT}", InputBuilder(cfg), S.TIMEOUT_S,
                   S.RETRIES, S.BACKOFF_S, S.TOKEN, class_names_of(cfg), fleet_key(S.PAYLOAD_KEY))

    def __call__(self, bgr) -> EdgeResult:
        return self.detect(self.inputs(bgr))

    def detect(self, inp) -> EdgeResult:
        """Detections for one Detectron2 input dict (``{"image", "height", "width"}``)."""
        d = self.model.edge_step([inp])[0]
        if not d.offload:
            return EdgeResult(d.instances, "edge", 0, d.score, d.edge_ms, 0.0)
        body = d.payload.to_bytes(self.key)
        try:
            answer = self.send(body)
        except CloudUnavailable as e:
            if d.instances is None:
                raise CloudUnavailable(f"{e}; this edge has no detector of its own to fall back on "
                                       f"(MODEL.ECCENTRIC.EDGE.DETECTOR False)") from e
            logger.warning("%s: answering with the edge's own detections", e)
            return EdgeResult(d.instances, "edge-fallback", 0, d.score, d.edge_ms, 0.0)
        return EdgeResult(dict_to_instances(answer), "cloud", len(body), d.score, d.edge_ms, answer["cloud_ms"])

    def send(self, body) -> dict:
        """POST one payload's bytes; the decoded JSON answer."""
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                r = self._http.post(self.url, content=body)
            except httpx.TransportError as e:
                problem = f"{type(e).__name__}: {e}"
                continue
            if r.status_code == 200:
                return r.json()
            problem = f"HTTP {r.status_code}: {_detail(r)}"
            if r.status_code not in RETRY_STATUS:
                raise CloudRejected(f"cloud at {self.url} refused the payload ({problem})")
        raise CloudUnavailable(f"cloud at {self.url} did not answer in {self.retries + 1} attempts ({problem})")

    def close(self):
        self._http.close()


def _detail(response):
    try:
        return response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


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
