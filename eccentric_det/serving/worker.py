"""The cloud model behind a narrow interface: in this process (:class:`InProcessModel`), or in a
supervised child process (:class:`CloudWorker`) so that neither a native crash nor a runaway request
can take the server down.

A :class:`CloudWorker` is a ``spawn``-ed process that loads the cloud half and answers batches of
payload bytes over a pipe (length-prefixed bytes in, JSON out: nothing is unpickled on either side).
When it dies while holding a batch, that batch fails with :class:`WorkerDied` (the server answers 503,
and the edge client retries) and a new worker is started; when a batch outlives its deadline, the
worker is killed (:class:`WorkerTimeout`, 504) and restarted.
"""
import json
import logging
import multiprocessing as mp
import struct
import time

from ..codec import PayloadError, PayloadSpec, fleet_key

logger = logging.getLogger(__name__)
_LEN = struct.Struct("<I")


class WorkerDied(RuntimeError):
    """The worker process died while it held this batch (a native crash, or it was killed): retry."""


class WorkerTimeout(TimeoutError):
    """A batch ran past its deadline: its worker was killed and is being restarted."""


def run_batch(model, payloads, class_names=None, key=None):
    """JSON-ready detections of each payload, or the :class:`PayloadError` that the model raised for it."""
    from .detections import instances_to_dict

    try:
        outputs = model.cloud(payloads, key=key)
    except PayloadError as e:
        if len(payloads) == 1:
            return [e]
        return [run_batch(model, [p], class_names, key)[0] for p in payloads]
    return [{**instances_to_dict(o["instances"], class_names), "cloud_ms": o["cloud_ms"],
             "batch_size": len(payloads)} for o in outputs]


class InProcessModel:
    """A cloud-half ``model`` run in this process (tests, benchmarks, a Ray Serve replica)."""

    def __init__(self, model, class_names=None, key=None):
        self.model, self.class_names, self.key = model, class_names, key
        self.spec, self.offload_mode = model.payload_spec(), model.offload_mode

    def run(self, blobs, timeout_s=None):
        return run_batch(self.model, blobs, self.class_names, self.key)

    def health(self):
        return {}

    def close(self):
        pass


def _result(answer):
    """A worker's JSON answer for one payload as run_batch gives it: detections or the exception."""
    if "payload_error" in answer:
        return PayloadError(answer["payload_error"])
    if "internal_error" in answer:
        return RuntimeError(f"internal error ({answer['internal_error']}); see the server log")
    return answer


def _pack(blobs):
    return b"".join(_LEN.pack(len(b)) + bytes(b) for b in blobs)


def _unpack(data):
    blobs, pos = [], 0
    while pos < len(data):
        (n,) = _LEN.unpack_from(data, pos)
        blobs.append(data[pos + _LEN.size:pos + _LEN.size + n])
        pos += _LEN.size + n
    return blobs


def _worker_main(cfg_yaml, conn):
    """The child: load the cloud half of the config, say hello, answer batches until the pipe closes."""
    from detectron2.utils.logger import setup_logger

    from ..checkpoint import load_model
    from .config import cfg_from_dump
    from ..data.datasets import class_names_of

    setup_logger(name="eccentric_det")
    cfg = cfg_from_dump(cfg_yaml)
    model, class_names, key = load_model(cfg), class_names_of(cfg), fleet_key(cfg.SERVING.PAYLOAD_KEY)
    if model.offload_mode == "features":
        from ..codec.guarded_ans import warm_up

        warm_up()
    conn.send_bytes(json.dumps({"spec": model.payload_spec().to_dict(), "offload_mode": model.offload_mode}).encode())
    while True:
        try:
            blobs = _unpack(conn.recv_bytes())
        except EOFError:
            return
        try:
            results = [r if isinstance(r, dict) else {"payload_error": str(r)}
                       for r in run_batch(model, blobs, class_names, key)]
        except Exception as e:  # noqa: BLE001  (a failing model fails this batch, not the worker)
            logger.exception("cloud batch of %d failed", len(blobs))
            results = [{"internal_error": type(e).__name__}] * len(blobs)
        conn.send_bytes(json.dumps(results).encode())


class CloudWorker:
    """The cloud half of ``cfg`` in a supervised child process. ``run(blobs, timeout_s)`` answers one
    batch of payload bytes (dicts, or :class:`PayloadError` for payloads the model refused); the
    worker is restarted after it dies or is killed for running past ``timeout_s``."""

    def __init__(self, cfg, start_timeout_s=600.0):
        self.cfg_yaml, self.start_timeout_s = cfg.dump(), start_timeout_s
        self._ctx = mp.get_context("spawn")  # a fresh interpreter: no threads or CUDA state inherited
        self.proc = self.conn = None
        self.restarts = 0
        self.start()

    def start(self):
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker_main, args=(self.cfg_yaml, child), name="eccentric-cloud-worker",
                                 daemon=True)
        proc.start()
        child.close()
        try:
            if not parent.poll(self.start_timeout_s):
                raise EOFError
            hello = json.loads(parent.recv_bytes())
        except EOFError:
            proc.kill()
            proc.join()
            raise RuntimeError(f"the cloud worker did not start (exit code {proc.exitcode}): see the log "
                               f"above") from None
        self.proc, self.conn = proc, parent
        self.spec, self.offload_mode = PayloadSpec.from_dict(hello["spec"]), hello["offload_mode"]
        logger.info("cloud worker %d ready", proc.pid)

    def restart(self):
        self.kill()
        self.restarts += 1
        self.start()

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()
            self.conn.close()
        self.proc = self.conn = None

    def run(self, blobs, timeout_s=None):
        if self.proc is None or not self.proc.is_alive():
            self.restart()
        t0 = time.monotonic()
        try:
            self.conn.send_bytes(_pack(blobs))
            answered = self.conn.poll(timeout_s)
            answer = json.loads(self.conn.recv_bytes()) if answered else None
        except (EOFError, OSError) as e:
            pid, code = self.proc.pid, self.proc.exitcode
            logger.error("cloud worker %d died holding a batch of %d after %.1f s (exit code %s, %s): restarting",
                         pid, len(blobs), time.monotonic() - t0, code, type(e).__name__)
            self.restart()
            raise WorkerDied(f"the cloud worker died while decoding (exit code {code}); it was restarted: "
                             f"retry") from None
        if not answered:
            pid = self.proc.pid
            self.restart()
            raise WorkerTimeout(f"the batch ran past its deadline of {timeout_s:g} s (SERVING.REQUEST_TIMEOUT_S); "
                                f"worker {pid} was killed and restarted")
        return [_result(a) for a in answer]

    def health(self):
        return {"worker_pid": self.proc.pid if self.proc else None, "worker_restarts": self.restarts}

    def close(self):
        self.kill()
