"""``GET /metrics`` (Prometheus text format): off by default; with ``server.metrics``
the requests by route template and status, their latency, live HIT/MISS/JOINED,
provider calls, failures and estimated spend, and the same spend in ``stats``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from click.testing import Result
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Running, on_fake_gemini
from tests.fakes.gemini import Answer, FakeGemini

pytestmark = pytest.mark.both_databases


def scrape(app: Running) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = app.client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_are_off_unless_switched_on(app: Running) -> None:
    response = app.client.get("/metrics")
    assert response.status_code == 404
    assert "server.metrics" in response.json()["error"]["message"]


def test_requests_live_answers_and_provider_spend(
    start_server: Callable[..., Running], fake_gemini: FakeGemini,
    run_cli: Callable[..., Result], monkeypatch: Any,
) -> None:  # fmt: skip
    app = start_server(server__metrics=True, **on_fake_gemini(fake_gemini))
    made = app.project(
        "POST", "/api/v1/generations", json={"prompt": "a fox", "autoEnhance": False}
    )
    assert made.status_code == 201, made.text
    fake_gemini.queue(Answer("error", 500))
    failed = app.project(
        "POST", "/api/v1/generations", json={"prompt": "a b", "autoEnhance": False}
    )
    assert failed.json()["data"]["status"] == "failed"
    live = "/cdn/default/default/live/m"
    assert (
        app.client.get(live, params={"prompt": "a cat", "autoEnhance": "false"}).status_code == 200
    )
    assert (
        app.client.get(live, params={"prompt": "a cat", "autoEnhance": "false"}).status_code == 200
    )
    assert app.client.get("/no/such/route").status_code == 404

    samples = scrape(app)
    route = "/api/v1/generations"
    assert value(samples, "banatie_http_requests_total", method="POST", route=route,
                 status="201") == 2  # fmt: skip
    assert value(samples, "banatie_http_requests_total", method="GET", route="unmatched",
                 status="404") == 1  # fmt: skip
    assert value(samples, "banatie_http_request_duration_seconds_count", route=route) == 2
    live_route = "/cdn/<org:str>/<project:str>/live/<scope:str>"
    assert value(samples, "banatie_http_requests_total", method="GET", route=live_route,
                 status="200") == 2  # fmt: skip
    assert value(samples, "banatie_live_answers_total", result="MISS") == 1
    assert value(samples, "banatie_live_answers_total", result="HIT") == 1
    model = "gemini-2.5-flash-image"
    assert value(samples, "banatie_provider_calls_total", provider="gemini", model=model,
                 outcome="success") == 2  # the generation and the live MISS  # fmt: skip
    assert value(samples, "banatie_provider_calls_total", provider="gemini", model=model,
                 outcome="failure") == 1  # fmt: skip
    spend = value(samples, "banatie_provider_spend_usd_total", provider="gemini", model=model)
    assert abs(spend - 2 * 0.039) < 1e-9
    assert ("banatie_database_busy_events_total", ()) in samples
    assert value(samples, "banatie_generations_in_flight") == 0

    # stats counts the same spend from the records
    app.client.close()
    app.server.stop()  # the CLI opens the database on its own
    monkeypatch.setenv("BANATIE_DATABASE_URL", app.settings.database.url)
    result = run_cli("stats", "--json", "--data-dir", str(app.settings.data_dir))
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["estimatedSpendUsd"] == {"byProvider": {"gemini": 0.078}, "total": 0.078}


def test_joined_answers_are_counted(
    start_server: Callable[..., Running], fake_gemini: FakeGemini
) -> None:
    app = start_server(server__metrics=True, **on_fake_gemini(fake_gemini))
    fake_gemini.queue(Answer("image", delay=1.0))
    url = f"{app.url}/cdn/default/default/live/j?prompt=together&autoEnhance=false"

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: httpx.get(url, timeout=30), range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    samples = scrape(app)
    assert value(samples, "banatie_live_answers_total", result="MISS") == 1
    assert value(samples, "banatie_live_answers_total", result="JOINED") == 3
