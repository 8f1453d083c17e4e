"""The response headers of a served image, made from its facts once per cache entry."""

from __future__ import annotations

from banatie_local.http.prepared import cached_response, image_headers, prepared
from banatie_local.services.imagecache import CachedImage


def test_headers_of_a_cdn_entry() -> None:
    entry = CachedImage("img-1", b"bytes", "image/png", "abc")
    ready = prepared(entry, 60)
    assert ready.etag == '"abc"'
    assert ready.headers == {
        "Cache-Control": "public, max-age=60",
        "ETag": '"abc"',
        "X-Image-Id": "img-1",
    }
    assert ready.wire == (
        (b"Cache-Control", b"public, max-age=60"),
        (b"ETag", b'"abc"'),
        (b"X-Image-Id", b"img-1"),
        (b"content-type", b"image/png"),
    )


def test_a_live_entry_names_its_scope() -> None:
    entry = CachedImage("img-2", b"bytes", "image/webp", "def", scope="hero")
    assert prepared(entry, 31536000).headers["X-Scope"] == "hero"
    assert prepared(entry, 31536000).headers == image_headers("img-2", "def", 31536000, "hero")


def test_headers_are_made_once_per_entry() -> None:
    entry = CachedImage("img-3", b"bytes", "image/png", "abc")
    first = prepared(entry, 60)
    assert entry.prepared is first
    assert prepared(entry, 60) is first


def test_no_value_can_split_the_response() -> None:
    entry = CachedImage("img\r\n-4", b"bytes", "image/png\n", "a\x00bc", scope="s\r\nX: y")
    for name, value in prepared(entry, 60).wire:
        assert not set(name + value) & {ord("\r"), ord("\n"), 0}


def test_cached_response_sends_the_prepared_headers_then_its_own() -> None:
    entry = CachedImage("img-5", b"bytes", "image/png", "abc")
    response = cached_response(entry, prepared(entry, 60), {"X-Cache-Status": "HIT"})
    sent = list(response.processed_headers)
    assert sent[:4] == list(prepared(entry, 60).wire)
    assert (b"X-Cache-Status", b"HIT") in sent
    assert response.body == b"bytes"
