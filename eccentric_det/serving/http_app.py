"""The cloud's HTTP API (FastAPI), served by uvicorn (:func:`serve`) or Ray Serve (``ray_app``).

* ``POST /v1/detect``: body = one Payload (``application/octet-stream``) -> JSON detections
  ``{"boxes": [[x0, y0, x1, y1]], "scores", "classes", ["class_names"], "image_size": [h, w],
  "cloud_ms", "batch_size"}``. Errors answer ``{"detail": "<what is wrong>"}``: 400 bad payload (names
  the field and the limit), 401 missing/wrong token, 413 body over SERVING.MAX_BODY_BYTES, 415 wrong
  content type, 503 overloaded or the worker restarting after a crash (with Retry-After), 504 not
  answered within SERVING.REQUEST_TIMEOUT_S.
* ``GET /healthz``: model fingerprint and batching settings. ``GET /metrics``: Prometheus text.

The body is authenticated (fleet key), parsed by :meth:`Payload.from_bytes` and checked against the
model's :class:`~eccentric_det.codec.PayloadSpec` before it is queued: nothing a client sends is
unpickled or evaluated, and nothing it claims sizes an allocation.
"""
import asyncio
import hmac
import logging
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from ..codec import PayloadError
from .detections import CONTENT_TYPE, DETECT_PATH
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .runtime import CloudRuntime, Overloaded
from .worker import WorkerDied, WorkerTimeout

logger = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class Refused(Exception):
    """A request answered with ``status`` and ``detail``; counted under ``reason``."""

    def __init__(self, status, reason, detail, headers=None):
        super().__init__(detail)
        self.status, self.reason, self.detail, self.headers = status, reason, detail, headers


def create_app(backend, max_body_bytes, token=""):
    """The FastAPI app over ``backend``: anything with ``metrics``
    (:class:`~eccentric_det.serving.metrics.Metrics`), ``request_timeout_s``, ``health() -> dict``,
    ``validate(body)`` (raises PayloadError) and ``async detect(body) -> dict``
    (:class:`~eccentric_det.serving.runtime.CloudRuntime`, the Ray deployment)."""
    app = FastAPI(title="eccentric_det cloud", docs_url=None, redoc_url=None, openapi_url=None)
    expected = f"Bearer {token}".encode() if token else None

    @app.post(DETECT_PATH)
    async def detect(request: Request):
        t0 = time.perf_counter()
        backend.metrics.request()
        try:
            _authorize(request, expected)
            body = await _read_body(request, max_body_bytes)
            backend.metrics.received(len(body))
            backend.validate(body)
            result = await asyncio.wait_for(backend.detect(body), backend.request_timeout_s)
        except Refused as e:
            backend.metrics.error(e.reason)
            return JSONResponse({"detail": e.detail}, status_code=e.status, headers=e.headers)
        except ClientDisconnect:
            backend.metrics.error("disconnected")
            return Response(status_code=499)  # "client closed request": nobody reads it
        except PayloadError as e:
            backend.metrics.error("bad_payload")
            return JSONResponse({"detail": str(e)}, status_code=400)
        except Overloaded as e:
            backend.metrics.error("overloaded")
            return JSONResponse({"detail": f"server overloaded: {e}"}, status_code=503, headers={"Retry-After": "1"})
        except WorkerDied as e:
            backend.metrics.error("worker_died")
            return JSONResponse({"detail": str(e)}, status_code=503, headers={"Retry-After": "1"})
        except (asyncio.TimeoutError, WorkerTimeout):
            backend.metrics.error("timeout")
            return JSONResponse({"detail": f"not answered within {backend.request_timeout_s:g} s "
                                           f"(SERVING.REQUEST_TIMEOUT_S)"}, status_code=504)
        except Exception as e:  # noqa: BLE001  (an answer, not a dropped connection)
            logger.exception("detect failed")
            backend.metrics.error("internal")
            return JSONResponse({"detail": f"internal error ({type(e).__name__}); see the server log"},
                                status_code=500)
        backend.metrics.latency(time.perf_counter() - t0)
        return JSONResponse(result)

    @app.get("/healthz")
    async def healthz():
        return backend.health()

    @app.get("/metrics")
    async def metrics():
        return Response(backend.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    return app


def _authorize(request, expected):
    if expected is None:
        return
    given = request.headers.get("authorization", "").encode()
    if not hmac.compare_digest(given, expected):
        raise Refused(401, "unauthorized", "missing or wrong token: send 'Authorization: Bearer <SERVING.TOKEN>'",
                      {"WWW-Authenticate": "Bearer"})


async def _read_body(request, limit):
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != CONTENT_TYPE:
        raise Refused(415, "content_type", f"send the payload as {CONTENT_TYPE}, not {kind or 'no content type'}")
    length = request.headers.get("content-length")
    if length is not None and int(length) > limit:
        raise Refused(413, "too_large", f"body of {length} bytes is over the limit of {limit} (SERVING.MAX_BODY_BYTES)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, "too_large", f"body is over the limit of {limit} bytes (SERVING.MAX_BODY_BYTES)")
        chunks.append(chunk)
    return b"".join(chunks)


def serve(cfg):
    """Serve the cloud half of ``cfg`` with uvicorn on SERVING.HOST:SERVING.PORT until interrupted."""
    import uvicorn

    S = cfg.SERVING
    if S.HOST not in LOOPBACK and not S.TOKEN:
        logger.warning("Serving on %s without SERVING.TOKEN: anyone who reaches port %d can use the model.",
                       S.HOST, S.PORT)
    runtime = CloudRuntime.from_config(cfg)
    try:
        uvicorn.run(create_app(runtime, S.MAX_BODY_BYTES, S.TOKEN), host=S.HOST, port=S.PORT, access_log=False)
    finally:
        runtime.close()
