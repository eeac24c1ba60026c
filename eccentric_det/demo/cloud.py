"""The demo's cloud step: a callable ``(payload_bytes, (h, w)) -> {"instances", "cloud_ms"}``.

:class:`InProcessCloud` runs the model's own cloud half on the bytes; :class:`HttpCloud` sends them to a cloud
server (``tools/cloud_server.py``) with the edge's :class:`~eccentric_det.edge.http.CloudClient` (token,
timeout, retries), answered by the JSON detections of :mod:`eccentric_det.serving.detections`.
"""
import time

from ..edge.http import CloudClient, CloudRejected, CloudUnavailable, environment_credentials
from ..serving.detections import dict_to_instances
from .video import DemoError


class InProcessCloud:
    """The cloud half of ``model``, in this process (the bytes still go through the payload format)."""

    name, key = "in-process", None

    def __init__(self, model):
        self.model = model

    def __call__(self, data, image_size):
        return self.model.cloud([data])[0]


class HttpCloud:
    """A cloud server at ``url`` (``CloudClient`` keyword arguments: ``timeout_s``, ``retries``, ``backoff_s``,
    ``token``); payloads are signed with the fleet ``key`` when given. ``cloud_ms`` is the server's own time
    when it reports one, else the round trip."""

    def __init__(self, url, key=None, **client_kwargs):
        self.name, self.key = url.rstrip("/"), key
        self.client = CloudClient(self.name, **client_kwargs)

    @classmethod
    def from_environment(cls, url):
        """A client with the token and fleet key of the environment (``ECCENTRIC_TOKEN``, ``ECCENTRIC_PAYLOAD_KEY``)."""
        token, key = environment_credentials()
        return cls(url, key, token=token)

    def __call__(self, data, image_size):
        t0 = time.perf_counter()
        try:
            answer = self.client.send(data)
        except (CloudUnavailable, CloudRejected) as e:
            raise DemoError(str(e)) from e
        try:
            instances = dict_to_instances({"image_size": list(image_size), **answer})
        except (ValueError, KeyError, TypeError, AssertionError) as e:  # Instances asserts equal lengths
            raise DemoError(f"cloud server {self.name} sent an answer that is not detections JSON: {e}") from e
        return {"instances": instances, "cloud_ms": answer.get("cloud_ms", (time.perf_counter() - t0) * 1e3)}
