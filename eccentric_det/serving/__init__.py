"""The cloud side of the edge-cloud runtime over a real network (the edge side is :mod:`eccentric_det.edge`).

* ``config``: ``add_serving_config`` (``cfg.SERVING``), ``get_serving_cfg``.
* ``runtime``: :class:`CloudRuntime`, the cloud half behind a dynamic batcher (``worker``: its process).
* ``http_app``: the FastAPI app (``POST /v1/detect``, ``/healthz``, ``/metrics``) and uvicorn ``serve``.
* ``ray_app``: the same app as a Ray Serve deployment (imports ray).
* ``detections``: the JSON detections both sides exchange.

Names are loaded on first use (``eccentric_det.serving.detections`` alone stays light).
"""
import importlib

_EXPORTS = {**dict.fromkeys(("add_serving_config", "get_serving_cfg"), ".config"),
            **dict.fromkeys(("CloudRuntime", "Overloaded"), ".runtime")}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'eccentric_det.serving' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
