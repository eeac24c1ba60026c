"""The demo's cloud step: a callable ``(payload_bytes, (h, w)) -> {"instances", "cloud_ms"}``.

:class:`InProcessCloud` runs the model's own cloud half on the bytes; :class:`HttpCloud` POSTs them
to a cloud server (``tools/cloud_server.py``): ``POST {url}/v1/detect`` with the payload as
``application/octet-stream``, answered by JSON ``{"boxes": [[x0, y0, x1, y1], ...], "scores": [...],
"classes": [...]}`` in frame coordinates (the wire format of :mod:`eccentric_det.serving.detections`).
"""
import time

import httpx

from ..serving.detections import CONTENT_TYPE, DETECT_PATH, dict_to_instances
from .video import DemoError


class InProcessCloud:
    """The cloud half of ``model``, in this process (the bytes still go through the payload format)."""

    name = "in-process"

    def __init__(self, model):
        self.model = model

    def __call__(self, data, image_size):
        return self.model.cloud([data])[0]


class HttpCloud:
    """A cloud server at ``url``. ``cloud_ms`` is the server's own time when it reports one, else the round trip."""

    def __init__(self, url, timeout_s=30.0):
        self.name = url.rstrip("/")
        self.client = httpx.Client(base_url=self.name, timeout=timeout_s, headers={"content-type": CONTENT_TYPE})

    def __call__(self, data, image_size):
        t0 = time.perf_counter()
        try:
            r = self.client.post(DETECT_PATH, content=data)
        except httpx.HTTPError as e:
            raise DemoError(f"cloud server {self.name} unreachable: {e}") from e
        if r.status_code != 200:
            raise DemoError(f"cloud server {self.name} answered {r.status_code}: {r.text[:200]}")
        try:
            answer = r.json()
            instances = dict_to_instances({"image_size": list(image_size), **answer})
        except (ValueError, KeyError, TypeError, AssertionError) as e:  # Instances asserts equal lengths
            raise DemoError(f"cloud server {self.name} sent an answer that is not detections JSON: {e}") from e
        return {"instances": instances, "cloud_ms": answer.get("cloud_ms", (time.perf_counter() - t0) * 1e3)}
