"""``cfg.SERVING``: the edge-cloud runtime's knobs, and building one half of a model for serving."""
import os

from detectron2.config import CfgNode as CN

from ..codec import fleet_key
from ..tasks import get_eccentric_cfg

HALVES = ("edge", "cloud")


def add_serving_config(cfg):
    """Add ``cfg.SERVING`` (cloud server, edge client, Ray Serve) to a config, in place."""
    _C = cfg
    _C.SERVING = CN()
    S = _C.SERVING
    # Address the cloud server binds to: loopback unless told otherwise (0.0.0.0 exposes it to the network).
    S.HOST = "127.0.0.1"
    # TCP port of the cloud server.
    S.PORT = 8000
    # Most payloads the cloud runs as one batch (1 turns dynamic batching off).
    S.MAX_BATCH_SIZE = 8
    # Longest time (ms) a batch that is not full waits for more requests, once the model is free for it.
    S.MAX_WAIT_MS = 10
    # Requests waiting for the model beyond this many are refused with 503 (the client retries later).
    S.MAX_QUEUE = 256
    # Largest request body (bytes) the server reads; larger ones get 413.
    S.MAX_BODY_BYTES = 4 * 1024 * 1024
    # Shared secret sent as "Authorization: Bearer <token>"; "" turns the check off. The environment
    # variable ECCENTRIC_TOKEN is used when this is "" (keeps the secret out of command lines).
    S.TOKEN = ""
    # Fleet authentication: a key (at least 16 bytes of text) shared by a fleet's edges and its cloud. Edges sign
    # every payload with a truncated HMAC; the cloud refuses any payload without a valid one, before reading it.
    # "" turns it off; the environment variable ECCENTRIC_PAYLOAD_KEY is used when this is "".
    S.PAYLOAD_KEY = ""
    # Cloud: a request not answered within this many seconds gets 504; a model batch running longer than this
    # has its worker process killed and restarted. Keep it above the time of a full batch (MAX_BATCH_SIZE) of
    # the largest input the model accepts on this hardware.
    S.REQUEST_TIMEOUT_S = 30.0
    # Cloud: run the model in a supervised worker process (a native crash answers 503 and restarts the
    # worker instead of killing the server). False runs it in the server process.
    S.WORKER_PROCESS = True
    # Edge client: seconds to wait for one cloud answer (connect, send, receive).
    S.TIMEOUT_S = 10.0
    # Edge client: extra attempts after a failed one (unreachable, timeout, 502/503/504).
    S.RETRIES = 3
    # Edge client: wait before retry k is BACKOFF_S * 2**k seconds.
    S.BACKOFF_S = 0.2

    S.RAY = CN()
    # Fixed number of replicas (used when MAX_REPLICAS is 0).
    S.RAY.NUM_REPLICAS = 1
    # Autoscaling: fewest replicas (used when MAX_REPLICAS > 0).
    S.RAY.MIN_REPLICAS = 1
    # Autoscaling: most replicas; 0 turns autoscaling off.
    S.RAY.MAX_REPLICAS = 0
    # Autoscaling: requests in flight per replica that the autoscaler aims for.
    S.RAY.TARGET_ONGOING_REQUESTS = 8
    # Requests a replica accepts at once (Ray queues the rest); keep >= MAX_BATCH_SIZE so batches can fill.
    S.RAY.MAX_ONGOING_REQUESTS = 32
    # CPUs reserved per replica.
    S.RAY.NUM_CPUS = 1.0
    # GPUs reserved per replica (set MODEL.DEVICE cuda too).
    S.RAY.NUM_GPUS = 0.0


def get_serving_cfg(config_file, half, weights="", opts=()):
    """A config for one serving process (:func:`~eccentric_det.config.get_eccentric_cfg` with ``cfg.SERVING``),
    building only ``half`` ("edge" or "cloud") with ``weights``: that half's checkpoint from
    :func:`eccentric_det.checkpoint.save_halves`, or a whole trained model ("" keeps MODEL.WEIGHTS)."""
    if half not in HALVES:
        raise ValueError(f"half must be one of {HALVES}, got {half!r}")
    cfg = get_eccentric_cfg(config_file, opts, extensions=(add_serving_config,))
    cfg.MODEL.ECCENTRIC.HALF = half
    cfg.MODEL.ECCENTRIC.DISTILL.MODE = "task"  # a serving process never trains
    if weights or half == "cloud":
        # a half checkpoint holds the trained edge already; the cloud half has no edge to load them into
        cfg.MODEL.ECCENTRIC.EDGE.WEIGHTS = ""
    if weights:
        cfg.MODEL.WEIGHTS = weights
    if not cfg.SERVING.TOKEN:
        cfg.SERVING.TOKEN = os.environ.get("ECCENTRIC_TOKEN", "")
    if not cfg.SERVING.PAYLOAD_KEY:
        cfg.SERVING.PAYLOAD_KEY = os.environ.get("ECCENTRIC_PAYLOAD_KEY", "")
    fleet_key(cfg.SERVING.PAYLOAD_KEY)  # a key too short to be one is refused here, with how to make one
    cfg.freeze()
    return cfg


def cfg_from_dump(text):
    """The frozen serving config that ``cfg.dump()`` wrote (e.g. handed to a worker process)."""
    cfg = get_eccentric_cfg(extensions=(add_serving_config,))
    cfg.merge_from_other_cfg(CN.load_cfg(text))
    cfg.freeze()
    return cfg
