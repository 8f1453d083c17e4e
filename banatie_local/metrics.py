"""What ``GET /metrics`` reports (Prometheus text format, ``prometheus_client``).

One registry per process. The HTTP layer counts requests by route template and
status, with a latency histogram, and live-URL answers by ``X-Cache-Status``; the
generation run counts provider calls, failures and the estimated spend; the rest is
read when scraped: ``DATABASE_BUSY``/``DATABASE_UNAVAILABLE`` events from the database
boundary, and the generations running in this process. With ``server.workers > 1``
each worker keeps its own figures and a scrape reads the worker that answers it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _Read(Collector):
    """Counters read from elsewhere when scraped."""

    def __init__(self, busy: Callable[[], int]) -> None:
        self.busy = busy

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "banatie_database_busy_events",
            "Units of work refused because the database stayed locked or was unreachable",
            value=self.busy(),
        )


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
        self.in_flight = Gauge(
            "banatie_generations_in_flight", "Generations running in this process", registry=r
        )

    def watch(self, busy_events: Callable[[], int], running: Callable[[], int]) -> None:
        """Figures read when scraped."""
        self.registry.register(_Read(busy_events))
        self.in_flight.set_function(lambda: float(running()))

    def provider_call(self, provider: str, model: str, ok: bool) -> None:
        self.provider_calls.labels(provider, model, "success" if ok else "failure").inc()
        if ok:
            self.spend.labels(provider, model).inc(self.prices.get(provider, 0.0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
