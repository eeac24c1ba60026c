"""CloudRuntime: the cloud half of a model behind a dynamic batcher, with bounded work per request.

Requests from any thread or event loop queue up; one worker thread takes up to ``max_batch_size``
of them and runs them through ``model.cloud`` as one batch. A batch that is not full waits at most
``max_wait_ms`` for more, counted from when the model is free: counting from the first arrival
instead lets closed-loop clients settle into half-full batches that alternate (those queued during
the last batch start at once, without the ones whose answers are still on the way).
A payload the model rejects fails alone, never its batch-mates.

Every request body is authenticated (fleet key), parsed and checked against what the model could have
produced (:meth:`CloudRuntime.validate`) in the caller's thread, before it is queued: a bad payload is
refused in milliseconds and never reaches the model. The model runs in a supervised worker process
(:class:`~eccentric_det.serving.worker.CloudWorker`) unless ``SERVING.WORKER_PROCESS`` is off.
"""
import asyncio
import logging
import queue
import threading
import time
from concurrent.futures import Future

from ..codec import Payload, fleet_key
from ..data.datasets import class_names_of
from ..checkpoint import load_model
from .metrics import Metrics
from .worker import CloudWorker, InProcessModel, WorkerDied, WorkerTimeout

logger = logging.getLogger(__name__)
_STOP = object()


class Overloaded(RuntimeError):
    """The request queue is full (or the runtime is closed): try again later."""


class CloudRuntime:
    """Thread-safe batched access to a cloud-half model. ``validate(body) -> Payload`` (raises
    PayloadError), ``submit(body) -> Future`` of the detections dict, ``await detect(body)`` from async
    code; ``close()`` when done. ``backend``: :class:`~eccentric_det.serving.worker.CloudWorker` or
    :class:`~eccentric_det.serving.worker.InProcessModel`; ``key``: the fleet key (bytes) or None."""

    def __init__(self, backend, max_batch_size=8, max_wait_ms=10.0, max_queue=256, key=None, request_timeout_s=30.0):
        if max_batch_size < 1:
            raise ValueError(f"SERVING.MAX_BATCH_SIZE must be >= 1, got {max_batch_size}")
        self.backend, self.key, self.request_timeout_s = backend, key, request_timeout_s
        self.spec = backend.spec
        self.fingerprint = self.spec.fingerprint
        self.max_batch_size, self.max_wait_s = max_batch_size, max_wait_ms / 1e3
        self.metrics = Metrics(max_batch_size)
        self._queue = queue.Queue(maxsize=max_queue)
        self._closed, self._lock = False, threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="eccentric-batcher", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, cfg):
        """Load the cloud half of ``cfg`` (see :func:`~eccentric_det.serving.config.get_serving_cfg`), in a
        worker process when ``SERVING.WORKER_PROCESS``."""
        S = cfg.SERVING
        key = fleet_key(S.PAYLOAD_KEY)
        backend = CloudWorker(cfg) if S.WORKER_PROCESS else InProcessModel(load_model(cfg), class_names_of(cfg), key)
        return cls(backend, S.MAX_BATCH_SIZE, S.MAX_WAIT_MS, S.MAX_QUEUE, key, S.REQUEST_TIMEOUT_S)

    def validate(self, body) -> Payload:
        """The payload of a request ``body``, authenticated, parsed and checked against the model's
        :class:`~eccentric_det.codec.PayloadSpec`; raises PayloadError (nothing is decoded)."""
        return self.spec.parse(body, self.key)[0]

    def submit(self, payload) -> Future:
        """Queue a payload's bytes (checked with :meth:`validate`); raises :class:`Overloaded` when the queue
        is full."""
        future = Future()
        with self._lock:
            if self._closed:
                raise Overloaded("the cloud runtime is shutting down")
            try:
                self._queue.put_nowait((payload, future))
            except queue.Full:
                raise Overloaded(f"{self._queue.maxsize} requests are already waiting (SERVING.MAX_QUEUE)") from None
        return future

    async def detect(self, payload):
        return await asyncio.wrap_future(self.submit(payload))

    def health(self):
        return {"status": "ok", "half": "cloud", "fingerprint": self.fingerprint.hex(),
                "offload_mode": self.backend.offload_mode, "max_batch_size": self.max_batch_size,
                "queued": self._queue.qsize(), "authenticated": self.key is not None, **self.backend.health()}

    def close(self):
        """Finish the queued requests, then stop the batcher and the backend."""
        with self._lock:
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()
        self.backend.close()

    def _next_batch(self):
        """Up to max_batch_size queued requests, and whether the runtime was told to stop."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch, deadline = [first], time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _loop(self):
        stop = False
        while not stop:
            batch, stop = self._next_batch()
            batch = [item for item in batch if item[1].set_running_or_notify_cancel()]  # drop cancelled ones
            if not batch:
                continue
            self.metrics.batch(len(batch))
            try:
                results = self.backend.run([payload for payload, _ in batch], self.request_timeout_s)
            except (WorkerDied, WorkerTimeout) as e:
                self.metrics.restart()
                results = [e] * len(batch)
            except Exception as e:  # a failing model fails this batch, not the server
                logger.exception("cloud batch of %d failed", len(batch))
                results = [e] * len(batch)
            for (_, future), result in zip(batch, results):
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
