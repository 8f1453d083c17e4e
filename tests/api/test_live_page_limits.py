"""Limits that fit how pages load (API.md §5.1): the workstation's own browser is not a
stranger to the per-IP live limit, a forwarded request always is, and a refused
``<img>`` gets a picture that says why instead of a broken-image icon."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from urllib.parse import quote

import pytest
from PIL import Image as PILImage

from banatie_local.http import clientip
from tests.api.test_errors import assert_error
from tests.conftest import Running

LIVE = "/cdn/default/default/live"
IMG_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
PAGE_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
)


def live(scope: str, prompt: str, extra: str = "") -> str:
    return f"{LIVE}/{scope}?prompt={quote(prompt)}{extra}"


def test_the_workstation_loads_a_page_of_more_prompts_than_the_ip_limit(
    start_server: Callable[..., Running],
) -> None:
    app = start_server(live__new_generations_per_ip_per_hour=3)
    statuses = [app.client.get(live("page", f"tile number {i}")).status_code for i in range(8)]
    assert statuses == [200] * 8


def test_a_forwarded_request_is_never_exempt_and_is_warned_about_once(
    start_server: Callable[..., Running], caplog: pytest.LogCaptureFixture
) -> None:
    app = start_server(live__new_generations_per_ip_per_hour=3)
    clientip._warned.clear()  # the warning is once per process: start this one afresh
    caplog.set_level(logging.WARNING, logger="banatie_local.http")
    forwarded = [
        {"X-Forwarded-For": "203.0.113.9"},
        {"Forwarded": "for=203.0.113.9"},
        {"X-Real-IP": "203.0.113.9"},
    ]
    for i, headers in enumerate(forwarded):
        assert app.client.get(live("fwd", f"forwarded {i}"), headers=headers).status_code == 200
    # loopback is not a trusted proxy here: all three counted as the peer, the limit met
    refused = app.client.get(live("fwd", "one more"), headers=forwarded[0])
    assert_error(refused, 429, "RATE_LIMIT_EXCEEDED")
    warnings = [r for r in caplog.records if "trusted_proxies" in r.getMessage()]
    assert len(warnings) == 1
    assert "127.0.0.1" in warnings[0].getMessage()


def test_an_empty_exempt_list_limits_the_workstation_too(
    start_server: Callable[..., Running],
) -> None:
    app = start_server(live__new_generations_per_ip_per_hour=2, live__ip_limit_exempt=[])
    statuses = [app.client.get(live("strict", f"tile {i}")).status_code for i in range(3)]
    assert statuses == [200, 200, 429]


def test_a_refused_img_gets_a_picture_and_other_clients_json(
    start_server: Callable[..., Running],
) -> None:
    app = start_server(live__new_generations_per_ip_per_hour=1, live__ip_limit_exempt=[])
    assert app.client.get(live("pics", "the first")).status_code == 200
    url = live("pics", "the second", "&w=320&h=180")
    picture = app.client.get(url, headers={"Accept": IMG_ACCEPT})
    assert picture.status_code == 429
    assert picture.headers["content-type"] == "image/png"
    assert picture.headers["x-error-code"] == "RATE_LIMIT_EXCEEDED"
    assert int(picture.headers["retry-after"]) > 0
    assert picture.headers["cache-control"] == "no-store"
    drawn = PILImage.open(io.BytesIO(picture.content))
    assert drawn.format == "PNG"
    assert drawn.size == (320, 180)  # the page's layout holds
    colours = drawn.convert("RGB").getcolors(maxcolors=100_000)
    assert colours is not None
    assert len(colours) > 2
    for accept in (None, "application/json", "*/*", PAGE_ACCEPT):
        headers = {"Accept": accept} if accept else {}
        answer = app.client.get(url, headers=headers)
        assert_error(answer, 429, "RATE_LIMIT_EXCEEDED")


def test_a_refused_signature_is_a_picture_for_an_img(app: Running) -> None:
    changed = app.project("PUT", "/api/v1/project", json={"signedUrls": "live"})
    assert changed.status_code == 200, changed.text
    url = live("signed", "an unsigned prompt")
    picture = app.client.get(url, headers={"Accept": IMG_ACCEPT})
    assert picture.status_code == 403
    assert picture.headers["content-type"] == "image/png"
    assert picture.headers["x-error-code"] == "INVALID_SIGNATURE"
    assert PILImage.open(io.BytesIO(picture.content)).size == (480, 270)
    assert_error(app.client.get(url), 403, "INVALID_SIGNATURE")
    # the image routes are not live URLs: their errors stay JSON
    other = app.client.get("/cdn/default/default/img/@nobody", headers={"Accept": IMG_ACCEPT})
    assert_error(other, 404, "IMAGE_NOT_FOUND")
