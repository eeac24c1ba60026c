"""The edge-cloud runtime over a real network.

* ``config``: ``add_serving_config`` (``cfg.SERVING``), ``get_serving_cfg``, ``load_half``.
* ``runtime``: :class:`CloudRuntime`, the cloud half behind a dynamic batcher.
* ``http_app``: the FastAPI app (``POST /v1/detect``, ``/healthz``, ``/metrics``) and uvicorn ``serve``.
* ``ray_app``: the same app as a Ray Serve deployment (imports ray).
* ``edge_client``: :class:`EdgeClient` (edge half + HTTP) and the JSONL folder runner.

Only ``config``, ``runtime`` and ``edge_client`` are imported here: an edge device needs neither
FastAPI nor Ray.
"""
from .config import add_serving_config, get_serving_cfg, load_half
from .edge_client import CloudRejected, CloudUnavailable, EdgeClient, EdgeResult
from .runtime import CloudRuntime, Overloaded

__all__ = ["add_serving_config", "get_serving_cfg", "load_half", "CloudRejected", "CloudUnavailable", "EdgeClient",
           "EdgeResult", "CloudRuntime", "Overloaded"]
