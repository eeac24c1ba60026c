"""Request metrics of a cloud server, rendered in the Prometheus text format (thread-safe)."""
import threading
from collections import Counter, deque

import numpy as np

PREFIX = "eccentric"
QUANTILES = (0.5, 0.95, 0.99)
LATENCY_WINDOW = 10000  # latency quantiles are over the most recent requests


class Metrics:
    """Counters of requests, errors (by reason) and bytes in; request latency (quantiles over the
    last ``LATENCY_WINDOW`` requests); a histogram of the batch sizes the model ran."""

    def __init__(self, max_batch_size):
        self.max_batch_size = max_batch_size
        self._lock = threading.Lock()
        self.requests = 0
        self.bytes_in = 0
        self.errors = Counter()
        self.batches = Counter()
        self._latency = deque(maxlen=LATENCY_WINDOW)
        self._latency_sum = 0.0
        self._latency_count = 0

    def request(self):
        with self._lock:
            self.requests += 1

    def received(self, nbytes):
        with self._lock:
            self.bytes_in += nbytes

    def error(self, reason):
        with self._lock:
            self.errors[reason] += 1

    def latency(self, seconds):
        with self._lock:
            self._latency.append(seconds)
            self._latency_sum += seconds
            self._latency_count += 1

    def batch(self, size):
        with self._lock:
            self.batches[size] += 1

    def latency_quantiles(self):
        """``{q: seconds}`` over the recent window (empty before the first request)."""
        with self._lock:
            window = np.array(self._latency)
        return {q: float(np.quantile(window, q)) for q in QUANTILES} if len(window) else {}

    def render(self):
        """The Prometheus text exposition (format 0.0.4)."""
        quantiles = self.latency_quantiles()
        with self._lock:
            lines = _head("requests_total", "counter", "Detection requests received.")
            lines.append(f"{PREFIX}_requests_total {self.requests}")
            lines += _head("errors_total", "counter", "Requests answered with an error, by reason.")
            lines += [f'{PREFIX}_errors_total{{reason="{r}"}} {n}' for r, n in sorted(self.errors.items())]
            lines += _head("request_bytes_total", "counter", "Payload bytes received.")
            lines.append(f"{PREFIX}_request_bytes_total {self.bytes_in}")
            lines += _head("request_latency_seconds", "summary", "Time from request to answer.")
            lines += [f'{PREFIX}_request_latency_seconds{{quantile="{q}"}} {v:.6f}' for q, v in quantiles.items()]
            lines.append(f"{PREFIX}_request_latency_seconds_sum {self._latency_sum:.6f}")
            lines.append(f"{PREFIX}_request_latency_seconds_count {self._latency_count}")
            lines += _head("batch_size", "histogram", "Payloads per model batch.")
            cumulative = 0
            for size in range(1, self.max_batch_size + 1):
                cumulative += self.batches[size]
                lines.append(f'{PREFIX}_batch_size_bucket{{le="{size}"}} {cumulative}')
            total = sum(self.batches.values())
            lines.append(f'{PREFIX}_batch_size_bucket{{le="+Inf"}} {total}')
            lines.append(f"{PREFIX}_batch_size_sum {sum(s * n for s, n in self.batches.items())}")
            lines.append(f"{PREFIX}_batch_size_count {total}")
        return "\n".join(lines) + "\n"


def _head(name, kind, help_text):
    return [f"# HELP {PREFIX}_{name} {help_text}", f"# TYPE {PREFIX}_{name} {kind}"]
