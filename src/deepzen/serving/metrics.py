"""``GET /metrics`` in Prometheus' text format: requests by path and status, a latency histogram, batch sizes.

Written by hand (a few counters) rather than with a client library: the server has one process
and the event loop is its only writer, except for the batch histogram, which the worker updates
under a lock.
"""

from __future__ import annotations

import threading
from collections import Counter

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # seconds
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # samples per model call
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Histogram:
    """Cumulative-bucket histogram, as Prometheus exposes it."""

    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.count, self.sum = 0, 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    self.counts[i] += 1
                    break
            self.count += 1
            self.sum += value

    def lines(self, name: str, labels: str = "") -> list[str]:
        with self._lock:
            counts, count, total = list(self.counts), self.count, self.sum
        lines, cumulative = [], 0
        prefix = f"{labels}," if labels else ""
        for bound, bucket in zip(self.buckets, counts):
            cumulative += bucket
            lines.append(f'{name}_bucket{{{prefix}le="{bound:g}"}} {cumulative}')
        lines.append(f'{name}_bucket{{{prefix}le="+Inf"}} {count}')
        suffix = f"{{{labels}}}" if labels else ""
        lines += [f"{name}_sum{suffix} {total:.6f}", f"{name}_count{suffix} {count}"]
        return lines


class Metrics:
    """The server's counters; :meth:`render` writes them as Prometheus text."""

    def __init__(self):
        self.requests: Counter = Counter()  # (path, status) -> count
        self.latency = Histogram(LATENCY_BUCKETS)
        self.batch_size = Histogram(BATCH_BUCKETS)

    def record(self, path: str, status: int, seconds: float) -> None:
        self.requests[(path, status)] += 1
        self.latency.observe(seconds)

    def render(self, in_flight: int = 0) -> str:
        """The metrics as Prometheus text; ``in_flight``: the requests being handled now (this one included)."""
        lines = ["# HELP deepzen_requests_in_flight Requests being handled now, this one included.",
                 "# TYPE deepzen_requests_in_flight gauge", f"deepzen_requests_in_flight {in_flight}",
                 "# HELP deepzen_requests_total HTTP requests answered, by path and status.",
                 "# TYPE deepzen_requests_total counter"]
        for (path, status), count in sorted(self.requests.items()):
            lines.append(f'deepzen_requests_total{{path="{_escape(path)}",status="{status}"}} {count}')
        lines += ["# HELP deepzen_request_seconds Time from a request's arrival to its answer.",
                  "# TYPE deepzen_request_seconds histogram", *self.latency.lines("deepzen_request_seconds"),
                  "# HELP deepzen_batch_samples Samples per model call.",
                  "# TYPE deepzen_batch_samples histogram", *self.batch_size.lines("deepzen_batch_samples")]
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
