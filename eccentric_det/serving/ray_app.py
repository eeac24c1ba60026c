"""The cloud half as a Ray Serve deployment: the HTTP API of ``http_app``, batched by ``@serve.batch``,
with a fixed replica count or autoscaling from ``cfg.SERVING.RAY``.

Payloads are validated exactly as by the uvicorn server, before they reach a batch. A replica runs its
model in its own process: a replica that dies (a native crash) is replaced by Ray Serve's controller,
and the edge client's retries (502/503/504) reach another replica meanwhile.

``/metrics`` of a Ray deployment reports the replica that answers it; Ray's own metrics cover the whole.
"""
import asyncio
import time

import ray
from ray import serve

from ..codec import fleet_key
from ..checkpoint import load_model
from .http_app import create_app
from .metrics import Metrics
from ..data.datasets import class_names_of
from .worker import run_batch

APP_NAME = "eccentric"


@serve.deployment
@serve.ingress()
class CloudDeployment:
    """One replica: the cloud-half model of ``cfg`` behind the FastAPI app of :func:`create_app`."""

    def __init__(self, cfg):
        import eccentric_det.modeling  # noqa: F401  (Serve ships this class by value: register EccentricRCNN here)

        S = cfg.SERVING
        self.model, self.class_names = load_model(cfg), class_names_of(cfg)
        self.spec, self.key = self.model.payload_spec(), fleet_key(S.PAYLOAD_KEY)
        self.fingerprint, self.request_timeout_s = self.spec.fingerprint, S.REQUEST_TIMEOUT_S
        self.metrics = Metrics(S.MAX_BATCH_SIZE)
        self.max_body_bytes, self.token = S.MAX_BODY_BYTES, S.TOKEN
        self.max_batch_size = S.MAX_BATCH_SIZE
        self._batch.set_max_batch_size(S.MAX_BATCH_SIZE)
        self._batch.set_batch_wait_timeout_s(S.MAX_WAIT_MS / 1e3)

    def __serve_build_asgi_app__(self):
        return create_app(self, self.max_body_bytes, self.token)

    def validate(self, body):
        return self.spec.parse(body, self.key)[0]

    async def detect(self, payload):
        result = await self._batch(payload)
        if isinstance(result, Exception):
            raise result
        return result

    def health(self):
        return {"status": "ok", "half": "cloud", "fingerprint": self.fingerprint.hex(),
                "offload_mode": self.model.offload_mode, "max_batch_size": self.max_batch_size,
                "replica": serve.get_replica_context().replica_id.unique_id}

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)  # set from cfg.SERVING in __init__
    async def _batch(self, payloads):
        self.metrics.batch(len(payloads))
        return await asyncio.to_thread(run_batch, self.model, payloads, self.class_names, self.key)


def build_app(cfg):
    """The Serve application of ``cfg``: replicas (or autoscaling) and resources from SERVING.RAY."""
    R = cfg.SERVING.RAY
    options = {"ray_actor_options": {"num_cpus": R.NUM_CPUS, "num_gpus": R.NUM_GPUS},
               "max_ongoing_requests": R.MAX_ONGOING_REQUESTS}
    if R.MAX_REPLICAS:
        options["autoscaling_config"] = {"min_replicas": R.MIN_REPLICAS, "max_replicas": R.MAX_REPLICAS,
                                         "target_ongoing_requests": R.TARGET_ONGOING_REQUESTS}
    else:
        options["num_replicas"] = R.NUM_REPLICAS
    return CloudDeployment.options(**options).bind(cfg)


def serve_ray(cfg, address=None, blocking=True):
    """Deploy on the Ray cluster at ``address`` ("auto": the running one; None: start a local one),
    with Serve's HTTP proxy on SERVING.HOST:SERVING.PORT. ``blocking``: serve until Ctrl-C, which
    deletes the deployment (on a cluster too); otherwise return its handle."""
    S = cfg.SERVING
    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False)
    serve.start(http_options={"host": S.HOST, "port": S.PORT})
    handle = serve.run(build_app(cfg), name=APP_NAME, route_prefix="/")
    if not blocking:
        return handle
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.delete(APP_NAME)
