"""Request metrics of a cloud server, exposed with prometheus_client (one registry per server, thread-safe)."""
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "eccentric"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """Counters of requests, errors (by reason), worker restarts and payload bytes; histograms of the
    request latency and of the batch sizes the model ran (one bucket per size up to ``max_batch_size``)."""

    def __init__(self, max_batch_size):
        self.registry = CollectorRegistry()
        r = self.registry
        self._requests = Counter(f"{PREFIX}_requests", "Detection requests received.", registry=r)
        self._errors = Counter(f"{PREFIX}_errors", "Requests answered with an error, by reason.", ["reason"],
                               registry=r)
        self._restarts = Counter(f"{PREFIX}_worker_restarts", "Cloud worker processes restarted (crash or "
                                 "deadline).", registry=r)
        self._bytes = Counter(f"{PREFIX}_request_bytes", "Payload bytes received.", registry=r)
        self._latency = Histogram(f"{PREFIX}_request_latency_seconds", "Time from request to answer.",
                                  buckets=LATENCY_BUCKETS, registry=r)
        self._batches = Histogram(f"{PREFIX}_batch_size", "Payloads per model batch.",
                                  buckets=tuple(range(1, max_batch_size + 1)), registry=r)

    def request(self):
        self._requests.inc()

    def received(self, nbytes):
        self._bytes.inc(nbytes)

    def error(self, reason):
        self._errors.labels(reason).inc()

    def restart(self):
        self._restarts.inc()

    def latency(self, seconds):
        self._latency.observe(seconds)

    def batch(self, size):
        self._batches.observe(size)

    def render(self):
        """The Prometheus text exposition of this server's metrics."""
        return generate_latest(self.registry).decode()
