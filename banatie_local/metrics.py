"""What ``GET /metrics`` reports (Prometheus text format, ``prometheus_client``).

One registry per process. The HTTP layer counts requests by route template and
status, with a latency histogram, and live-URL answers by ``X-Cache-Status``; the
generation run counts provider calls, failures and the estimated spend; the rest is
counted as they happen: ``DATABASE_BUSY``/``DATABASE_UNAVAILABLE`` events from the
database boundary, and the generations running.

With ``server.workers > 1`` the supervisor points ``PROMETHEUS_MULTIPROC_DIR`` at a
fresh directory before it spawns the workers, so every worker writes its figures to
memory-mapped files there (``prometheus_client``'s multiprocess mode) and a scrape,
whichever worker answers it, reads the sum over all of them.
"""

from __future__ import annotations

import os
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self, prices: dict[str, float]) -> None:
        self.prices = prices  # estimated USD per image, by provider
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "banatie_http_requests", "Requests answered, by route template and status",
            ["method", "route", "status"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "banatie_http_request_duration_seconds", "Time to answer, by route template",
            ["route"], buckets=_BUCKETS, registry=r,
        )  # fmt: skip
        self.live = Counter(
            "banatie_live_answers", "Live-URL answers: HIT, MISS (generated here) or JOINED",
            ["result"], registry=r,
        )  # fmt: skip
        self.provider_calls = Counter(
            "banatie_provider_calls", "Image provider calls, by outcome",
            ["provider", "model", "outcome"], registry=r,
        )  # fmt: skip
        self.spend = Counter(
            "banatie_provider_spend_usd", "Estimated provider spend (images made x price)",
            ["provider", "model"], registry=r,
        )  # fmt: skip
        self.storage_errors = Counter(
            "banatie_storage_errors", "Requests answered 503 because storage failed", registry=r
        )
        self.busy = Counter(
            "banatie_database_busy_events",
            "Units of work refused because the database stayed locked or was unreachable",
            registry=r,
        )
        self.in_flight = Gauge(
            "banatie_generations_in_flight", "Generations running (over all live workers)",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        # Read once: the value class of every metric above was chosen by the same
        # variable when prometheus_client was imported in this process.
        self.shared_dir = os.environ.get(MULTIPROC_ENV) or None

    def provider_call(self, provider: str, model: str, ok: bool) -> None:
        self.provider_calls.labels(provider, model, "success" if ok else "failure").inc()
        if ok:
            self.spend.labels(provider, model).inc(self.prices.get(provider, 0.0))

    def render(self) -> bytes:
        """The text format (reads files in multiprocess mode: call off the loop)."""
        if self.shared_dir is None:
            return generate_latest(self.registry)
        summed = CollectorRegistry()
        multiprocess.MultiProcessCollector(summed, path=self.shared_dir)  # type: ignore[no-untyped-call]
        return generate_latest(summed)

    def close(self) -> None:
        """This process stops: its live gauges no longer count (counters stay)."""
        if self.shared_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.shared_dir)  # type: ignore[no-untyped-call]
