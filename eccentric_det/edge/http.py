"""CloudClient: POST a payload's bytes to a cloud server (``tools/cloud_server.py``) with a timeout, retries
and backoff, the bearer token, and the JSON answer back. The one HTTP client of the edge side (the edge
client and the demo)."""
import os
import time

import httpx

from ..codec.payload import CONTENT_TYPE, DETECT_PATH, fleet_key

RETRY_STATUS = (502, 503, 504)


class CloudUnavailable(ConnectionError):
    """The cloud did not answer (unreachable, timeouts, 502/503/504) within the retries."""


class CloudRejected(RuntimeError):
    """The cloud answered with an error that retrying cannot fix (its message says why)."""


class CloudClient:
    """``client.send(body) -> dict``: ``retries`` extra attempts, ``backoff_s * 2**k`` apart, on a transport
    error or 502/503/504; another error answer raises :class:`CloudRejected`; no answer after the retries
    raises :class:`CloudUnavailable`."""

    def __init__(self, url, timeout_s=10.0, retries=3, backoff_s=0.2, token=""):
        self.url = url.rstrip("/") + DETECT_PATH
        self.retries, self.backoff_s = retries, backoff_s
        headers = {"content-type": CONTENT_TYPE}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._http = httpx.Client(timeout=timeout_s, headers=headers)

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
                try:
                    return r.json()
                except ValueError:
                    raise CloudRejected(f"cloud at {self.url} answered 200 with a body that is not JSON: "
                                        f"{r.text[:200]!r}") from None
            problem = f"HTTP {r.status_code}: {_detail(r)}"
            if r.status_code not in RETRY_STATUS:
                raise CloudRejected(f"cloud at {self.url} refused the payload ({problem})")
        raise CloudUnavailable(f"cloud at {self.url} did not answer in {self.retries + 1} attempts ({problem})")

    def close(self):
        self._http.close()


def environment_credentials():
    """(bearer token, fleet key or None) from ``ECCENTRIC_TOKEN`` and ``ECCENTRIC_PAYLOAD_KEY`` (the variables
    ``SERVING.TOKEN``/``SERVING.PAYLOAD_KEY`` fall back to), for clients without a config."""
    return os.environ.get("ECCENTRIC_TOKEN", ""), fleet_key(os.environ.get("ECCENTRIC_PAYLOAD_KEY", ""))


def _detail(response):
    try:
        return response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
