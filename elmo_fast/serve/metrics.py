"""Prometheus text-format metrics of the embedding server, kept in plain Python (no client library).

Counters, one gauge and fixed-bucket histograms are all the server needs; rendering them by hand
keeps ``[serve]`` to FastAPI and uvicorn. Everything is updated from the event loop's thread only.
"""
from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Sequence

LATENCY_BUCKETS_S: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_SENTENCE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
BATCH_TOKEN_BUCKETS: tuple[float, ...] = (16, 64, 256, 1024, 2048, 4096, 8192, 16384)


class Histogram:
    """A cumulative-bucket histogram as Prometheus exposes it (``_bucket``, ``_sum``, ``_count``)."""

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        self.name, self.help_text, self.buckets = name, help_text, tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def render(self) -> list[str]:
        """The histogram's exposition lines."""
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, count in zip(self.buckets, self.counts):
            running += count
            lines.append(f'{self.name}_bucket{{le="{bound:g}"}} {running}')
        running += self.counts[-1]
        lines += [f'{self.name}_bucket{{le="+Inf"}} {running}', f"{self.name}_sum {self.total:.6f}", f"{self.name}_count {running}"]
        return lines


class ServeMetrics:
    """What ``GET /metrics`` reports: requests by route and status, latency, batch sizes, queue depth.

    Args:
        queue_depth: returns the sentences admitted and not yet answered (read at render time).
    """

    def __init__(self, queue_depth: Callable[[], int]) -> None:
        self.queue_depth = queue_depth
        self.requests: Counter[tuple[str, int]] = Counter()
        self.sentences = 0
        self.rejected_full = 0
        self.latency = Histogram("elmo_serve_request_seconds", "Wall time of POST /embed requests.", LATENCY_BUCKETS_S)
        self.batch_sentences = Histogram(
            "elmo_serve_batch_sentences", "Sentences per model forward.", BATCH_SENTENCE_BUCKETS
        )
        self.batch_tokens = Histogram(
            "elmo_serve_batch_tokens", "Padded tokens per model forward (rows x longest sentence).", BATCH_TOKEN_BUCKETS
        )

    def count_request(self, route: str, status: int, seconds: float) -> None:
        """Record one finished HTTP request; ``/embed`` ones also go into the latency histogram."""
        self.requests[(route, status)] += 1
        if route == "/embed":
            self.latency.observe(seconds)

    def count_batch(self, lengths: Sequence[int]) -> None:
        """Record one model forward over sentences of ``lengths`` tokens."""
        self.batch_sentences.observe(len(lengths))
        self.batch_tokens.observe(len(lengths) * max(lengths, default=0))
        self.sentences += len(lengths)

    def render(self) -> str:
        """All metrics in the Prometheus text exposition format (version 0.0.4)."""
        lines = ["# HELP elmo_serve_requests_total HTTP requests by route and status.", "# TYPE elmo_serve_requests_total counter"]
        lines += [
            f'elmo_serve_requests_total{{route="{route}",status="{status}"}} {n}'
            for (route, status), n in sorted(self.requests.items())
        ]
        lines += [
            "# HELP elmo_serve_sentences_total Sentences embedded.",
            "# TYPE elmo_serve_sentences_total counter",
            f"elmo_serve_sentences_total {self.sentences}",
            "# HELP elmo_serve_rejected_queue_full_total Requests answered 503 because the queue was full.",
            "# TYPE elmo_serve_rejected_queue_full_total counter",
            f"elmo_serve_rejected_queue_full_total {self.rejected_full}",
            "# HELP elmo_serve_queue_sentences Sentences admitted and not yet answered.",
            "# TYPE elmo_serve_queue_sentences gauge",
            f"elmo_serve_queue_sentences {self.queue_depth()}",
        ]
        for histogram in (self.latency, self.batch_sentences, self.batch_tokens):
            lines += histogram.render()
        return "\n".join(lines) + "\n"
