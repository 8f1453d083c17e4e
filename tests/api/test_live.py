"""The live URL GET /cdn/{org}/{project}/live/{scope} and GET /api/v1/live/generate
(API.md §5.1): cache keys, HIT and MISS, limits, scope rules, single flight."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage

from banatie_local.http.clientip import client_ip
from banatie_local.providers import GeneratedImage, ProviderError, ReferenceImage
from banatie_local.services.live import LiveParams, cache_key
from tests.api.test_errors import assert_error
from tests.conftest import Running
from tests.helpers import make_settings, sqlite

pytestmark = pytest.mark.both_databases

LIVE = "/cdn/default/default/live"
YEAR = "public, max-age=31536000"
SHA256_HEX = 64

Start = Callable[..., Running]


# --------------------------------------------------------------------------- helpers


class FakeProvider:
    """A fast image provider that counts its calls; it can be slowed down, made to
    fail, or made to draw different bytes on every call (``vary``)."""

    name = "fake"

    def __init__(self, delay: float = 0.0, fail: bool = False, vary: bool = False) -> None:
        self.delay = delay
        self.fail = fail
        self.vary = vary
        self.calls: list[tuple[str, str]] = []

    async def generate(
        self, prompt: str, aspect_ratio: str, references: list[ReferenceImage]
    ) -> GeneratedImage:
        self.calls.append((prompt, aspect_ratio))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise ProviderError("boom")
        salt = str(len(self.calls)) if self.vary else ""
        width, height = (int(n) * 4 for n in aspect_ratio.split(":"))
        data = tiny_png(f"{prompt}|{aspect_ratio}|{salt}", width, height)
        return GeneratedImage(data, "image/png", width, height, "fake-1")

    async def enhance(self, prompt: str, template: str) -> str:
        return f"{prompt}, in the {template} style"


def tiny_png(seed: str, width: int, height: int) -> bytes:
    """A small PNG whose colour depends on ``seed``."""
    digest = hashlib.sha256(seed.encode()).digest()
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), (digest[0], digest[1], digest[2])).save(buffer, "PNG")
    return buffer.getvalue()


def live(
    app: Running,
    prompt: str | None,
    scope: str = "main",
    headers: dict[str, str] | None = None,
    **params: str,
) -> httpx.Response:
    """GET the default project's live URL (no key)."""
    query = dict(params)
    if prompt is not None:
        query["prompt"] = prompt
    return app.client.get(f"{LIVE}/{scope}", params=query, headers=headers or {})


def live_generate(app: Running, prompt: str, **params: str) -> httpx.Response:
    """GET /api/v1/live/generate with the project key."""
    return app.project("GET", "/api/v1/live/generate", params={"prompt": prompt, **params})


def rows(app: Running, sql: str, *params: Any) -> list[dict[str, Any]]:
    with sqlite(app.settings.database_path) as conn:
        return [dict(row) for row in conn.execute(sql, params)]


def count(app: Running, table: str) -> int:
    with sqlite(app.settings.database_path) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def entry_for_image(app: Running, image_id: str) -> dict[str, Any]:
    (entry,) = rows(app, "SELECT * FROM live_cache_entries WHERE image_id = ?", image_id)
    return entry


def storage_path(app: Running, image_id: str) -> Path:
    (row,) = rows(app, "SELECT storage_key FROM images WHERE id = ?", image_id)
    return app.settings.storage_root / str(row["storage_key"])


def concurrent_gets(
    app: Running, path: str, params: dict[str, str], n: int
) -> list[httpx.Response]:
    """``n`` identical GETs sent at once over separate connections."""

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=app.url, timeout=30) as client:
            return list(await asyncio.gather(*(client.get(path, params=params) for _ in range(n))))

    return asyncio.run(main())


def assert_miss(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["x-cache-status"] == "MISS"


def assert_hit(response: httpx.Response, hits: int | None = None) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["x-cache-status"] == "HIT"
    if hits is not None:
        assert response.headers["x-cache-hit-count"] == str(hits)


# ----------------------------------------------------------------- MISS, then HIT


def test_miss_then_hit_with_the_offline_provider(start_server: Start) -> None:
    """The first request generates (MISS) at 16:9; the next ones answer the same bytes."""
    app = start_server(live__ip_limit_exempt=[])  # counted, so the limit headers show
    before = time.time()
    first = live(app, "a red fox in the snow", scope="hero")
    assert_miss(first)
    headers = first.headers
    assert headers["content-type"] == "image/png"
    assert headers["content-length"] == str(len(first.content))
    assert headers["cache-control"] == YEAR
    assert headers["x-scope"] == "hero"
    assert headers["x-ratelimit-limit"] == "10"
    assert headers["x-ratelimit-remaining"] == "9"
    assert int(headers["x-ratelimit-reset"]) >= int(before) + 3600 - 1
    assert "x-cache-hit-count" not in headers
    image_id = headers["x-image-id"]
    generation_id = headers["x-generation-id"]
    with PILImage.open(io.BytesIO(first.content)) as picture:
        assert picture.size == (1792, 1008)

    image = app.project("GET", f"/api/v1/images/{image_id}").json()["data"]
    assert headers["etag"] == f'"{image["fileHash"]}"'
    assert image["fileHash"] == hashlib.sha256(first.content).hexdigest()
    assert (image["width"], image["height"]) == (1792, 1008)
    assert image["source"] == "generated"
    assert image["generationId"] == generation_id
    assert image["flowId"] is None
    assert image["meta"]["scope"] == "hero"
    assert image["meta"]["isLiveUrl"] is True
    key = image["meta"]["cacheKey"]
    assert len(key) == SHA256_HEX

    generation = app.project("GET", f"/api/v1/generations/{generation_id}").json()["data"]
    assert generation["status"] == "success"
    assert generation["flowId"] is None
    assert generation["aspectRatio"] == "16:9"
    assert generation["outputImageId"] == image_id
    assert generation["autoEnhance"] is True
    assert generation["meta"]["provider"] == "offline"

    entry = entry_for_image(app, image_id)
    assert entry["cache_key"] == key
    assert entry["generation_id"] == generation_id
    assert entry["prompt"] == "a red fox in the snow"
    assert (entry["aspect_ratio"], entry["auto_enhance"], entry["template"]) == (
        "16:9",
        1,
        "general",
    )
    (scope,) = rows(app, "SELECT * FROM live_scopes WHERE id = ?", entry["scope_id"])
    assert scope["slug"] == "hero"
    assert entry["project_id"] == scope["project_id"] == image["projectId"]
    expected = cache_key(
        image["projectId"], "hero", LiveParams("a red fox in the snow", "16:9", True, "general")
    )
    assert key == expected

    for hits in (1, 2):
        again = live(app, "a red fox in the snow", scope="hero")
        assert_hit(again, hits)
        assert again.content == first.content
        assert again.headers["content-type"] == "image/png"
        assert again.headers["content-length"] == str(len(first.content))
        assert again.headers["cache-control"] == YEAR
        # a memory hit's headers are encoded once per entry: each still appears once
        names = [name.lower() for name, _ in again.headers.multi_items()]
        assert sorted(names) == sorted(set(names))
        assert {"etag", "x-image-id", "x-scope", "content-type", "connection"} <= set(names)
        assert again.headers["etag"] == headers["etag"]
        assert again.headers["x-image-id"] == image_id
        assert again.headers["x-scope"] == "hero"
        assert "x-generation-id" not in again.headers
        assert "x-ratelimit-remaining" not in again.headers
    assert count(app, "generations") == 1
    assert count(app, "images") == 1
    assert count(app, "live_cache_entries") == 1


def test_prompt_whitespace_is_normalised_and_parameters_split_entries(start_server: Start) -> None:
    """Whitespace-only differences share an entry; ratio, template, autoEnhance and
    scope each make a separate one; explicit defaults equal omitted ones."""
    provider = FakeProvider()
    app = start_server(provider=provider)
    assert_miss(live(app, "a  red fox"))
    same = [
        live(app, "a red fox"),
        live(app, "  a red fox  "),
        live(app, "a \t red\n\n fox"),
        live(app, "a red fox", aspectRatio="16:9"),
        live(app, "a red fox", template="general"),
        live(app, "a red fox", autoEnhance="true"),
        live(app, "a red fox", autoEnhance="TRUE"),
        live(app, "a red fox", autoEnhance="1"),
    ]
    for hits, response in enumerate(same, start=1):
        assert_hit(response, hits)
    assert len(provider.calls) == 1
    (entry,) = rows(app, "SELECT prompt FROM live_cache_entries")
    assert entry["prompt"] == "a red fox"

    different = [
        live(app, "a red fox", aspectRatio="1:1"),
        live(app, "a red fox", template="comic"),
        live(app, "a red fox", autoEnhance="false"),
        live(app, "a red fox", scope="other"),
        live(app, "A red fox"),
    ]
    image_ids = set()
    for response in different:
        assert_miss(response)
        image_ids.add(response.headers["x-image-id"])
    assert len(image_ids) == len(different)
    assert len(provider.calls) == 1 + len(different)
    assert count(app, "live_cache_entries") == 1 + len(different)
    assert_hit(live(app, "a red fox", autoEnhance="no"), 1)
    assert_hit(live(app, "a red fox", autoEnhance="0"), 2)
    ratios = {r["aspect_ratio"] for r in rows(app, "SELECT aspect_ratio FROM live_cache_entries")}
    assert ratios == {"16:9", "1:1"}


def test_unenhanced_prompt_goes_to_the_provider_as_written(start_server: Start) -> None:
    """autoEnhance=false sends the normalised prompt; true sends the enhanced one."""
    provider = FakeProvider()
    app = start_server(provider=provider)
    assert_miss(live(app, " plain   cat ", autoEnhance="false", aspectRatio="1:1"))
    assert_miss(live(app, "plain cat", template="sticker"))
    assert provider.calls == [
        ("plain cat", "1:1"),
        ("plain cat, in the sticker style", "16:9"),
    ]


def test_if_none_match_on_a_hit_is_304_without_body(start_server: Start) -> None:
    app = start_server(provider=FakeProvider())
    first = live(app, "a lighthouse")
    etag = first.headers["etag"]
    for header in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        response = live(app, "a lighthouse", headers={"If-None-Match": header})
        assert response.status_code == 304, header
        assert response.content == b""
        assert response.headers["etag"] == etag
        assert response.headers["x-cache-status"] == "HIT"
    other = live(app, "a lighthouse", headers={"If-None-Match": '"something-else"'})
    assert_hit(other)
    assert other.content == first.content


# --------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("scope", "params", "status", "code", "field"),
    [
        ("main", {}, 400, "VALIDATION_ERROR", "prompt"),
        ("main", {"prompt": ""}, 400, "VALIDATION_ERROR", "prompt"),
        ("main", {"prompt": "   \t "}, 400, "VALIDATION_ERROR", "prompt"),
        ("main", {"prompt": "x" * 2001}, 400, "VALIDATION_ERROR", "prompt"),
        ("bad.scope", {"prompt": "a cat"}, 400, "SCOPE_INVALID_FORMAT", "scope"),
        ("s" * 65, {"prompt": "a cat"}, 400, "SCOPE_INVALID_FORMAT", "scope"),
        ("bad%20scope", {"prompt": "a cat"}, 400, "SCOPE_INVALID_FORMAT", "scope"),
        ("main", {"prompt": "a cat", "aspectRatio": "5:4"}, 400, "INVALID_ASPECT_RATIO", None),
        ("main", {"prompt": "a cat", "aspectRatio": "16x9"}, 400, "INVALID_ASPECT_RATIO", None),
        ("main", {"prompt": "a cat", "template": "fancy"}, 400, "VALIDATION_ERROR", "template"),
        ("main", {"prompt": "a cat", "autoEnhance": "maybe"}, 400, "VALIDATION_ERROR", None),
    ],
)
def test_invalid_live_requests_are_rejected_without_rows(
    app: Running,
    scope: str,
    params: dict[str, str],
    status: int,
    code: str,
    field: str | None,
) -> None:
    error = assert_error(app.client.get(f"{LIVE}/{scope}", params=params), status, code)
    if field is not None:
        assert error["details"] == {"field": field}
    for table in ("generations", "images", "live_scopes", "live_cache_entries"):
        assert count(app, table) == 0, table


def test_unknown_org_or_project_is_404(app: Running) -> None:
    for path in ("/cdn/nope/default/live/main", "/cdn/default/nope/live/main"):
        assert_error(app.client.get(path, params={"prompt": "a cat"}), 404, "PROJECT_NOT_FOUND")
    for table in ("generations", "images", "live_scopes", "live_cache_entries"):
        assert count(app, table) == 0, table


def test_longest_prompt_and_scope_are_accepted(start_server: Start) -> None:
    """2000 characters of prompt (after normalisation) and a 64-character scope work."""
    app = start_server(provider=FakeProvider())
    assert_miss(live(app, "y" * 2000, scope="s" * 64))
    # runs of whitespace collapse before the length check
    assert_miss(live(app, "a" + " " * 3000 + "b"))


def test_projects_have_separate_caches_and_scopes(start_server: Start) -> None:
    """The same scope and prompt under two projects are two entries in two scopes."""
    provider = FakeProvider()
    app = start_server(provider=provider)
    other_key = app.new_project_key("other", "site")
    mine = live(app, "shared words", scope="hero")
    assert_miss(mine)
    theirs = app.client.get("/cdn/other/site/live/hero", params={"prompt": "shared words"})
    assert_miss(theirs)
    assert theirs.headers["x-image-id"] != mine.headers["x-image-id"]
    assert len(provider.calls) == 2
    listed = app.project("GET", "/api/v1/live/scopes", headers={"X-API-Key": other_key}).json()
    assert [(s["slug"], s["currentGenerations"]) for s in listed["data"]] == [("hero", 1)]
    image = app.project(
        "GET", f"/api/v1/images/{theirs.headers['x-image-id']}", headers={"X-API-Key": other_key}
    )
    assert image.json()["data"]["meta"]["scope"] == "hero"
    assert_error(
        app.project("GET", f"/api/v1/images/{theirs.headers['x-image-id']}"),
        404,
        "IMAGE_NOT_FOUND",
    )
    assert count(app, "live_scopes") == 2


# ----------------------------------------------------------------- per-IP limit


def test_ip_limit_counts_only_misses(start_server: Start) -> None:
    """The third distinct prompt from one address is refused; cached prompts are not."""
    provider = FakeProvider()
    app = start_server(
        live__ip_limit_exempt=[], provider=provider, live__new_generations_per_ip_per_hour=2
    )
    first = live(app, "prompt one")
    assert_miss(first)
    assert first.headers["x-ratelimit-limit"] == "2"
    assert first.headers["x-ratelimit-remaining"] == "1"
    second = live(app, "prompt two")
    assert_miss(second)
    assert second.headers["x-ratelimit-remaining"] == "0"

    refused = live(app, "prompt three")
    assert_error(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    assert refused.headers["x-ratelimit-limit"] == "2"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) > time.time()

    for _ in range(3):
        assert_hit(live(app, "prompt one"))
        assert_hit(live(app, "prompt two"))
    spoofed = live(app, "prompt three", headers={"X-Forwarded-For": "1.2.3.4"})
    assert_error(spoofed, 429, "RATE_LIMIT_EXCEEDED")
    assert len(provider.calls) == 2
    assert count(app, "generations") == 2
    assert count(app, "live_cache_entries") == 2


def test_ip_limit_holds_under_concurrent_misses(start_server: Start) -> None:
    """Five distinct prompts at once against a limit of 2: two generate, three get 429."""
    provider = FakeProvider(delay=0.3)
    app = start_server(
        live__ip_limit_exempt=[], provider=provider, live__new_generations_per_ip_per_hour=2
    )

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=app.url, timeout=30) as client:
            return list(
                await asyncio.gather(
                    *(client.get(f"{LIVE}/main", params={"prompt": f"p{i}"}) for i in range(5))
                )
            )

    statuses = sorted(r.status_code for r in asyncio.run(main()))
    assert statuses == [200, 200, 429, 429, 429]
    assert len(provider.calls) == 2


def test_forwarded_for_is_believed_only_from_trusted_proxies(start_server: Start) -> None:
    """Behind a trusted proxy the rightmost untrusted X-Forwarded-For address is limited."""
    app = start_server(
        live__ip_limit_exempt=[],
        provider=FakeProvider(),
        live__new_generations_per_ip_per_hour=1,
        server__trusted_proxies=["127.0.0.1"],
    )

    def get(prompt: str, forwarded: str | None = None) -> httpx.Response:
        return live(app, prompt, headers={"X-Forwarded-For": forwarded} if forwarded else {})

    assert_miss(get("p1"))  # the proxy itself, no header
    assert_error(get("p2"), 429, "RATE_LIMIT_EXCEEDED")

    client = get("p2", "203.0.113.7")
    assert_miss(client)
    assert client.headers["x-ratelimit-remaining"] == "0"
    assert_error(get("p3", "203.0.113.7"), 429, "RATE_LIMIT_EXCEEDED")

    assert_miss(get("p3", "198.51.100.1, 203.0.113.9"))
    # 203.0.113.9 was the client above, whatever the left part says now
    assert_error(get("p4", "192.0.2.200, 203.0.113.9"), 429, "RATE_LIMIT_EXCEEDED")
    # the rightmost untrusted address, not the leftmost
    assert_miss(get("p4", "203.0.113.9, 198.51.100.1"))
    # a trusted hop on the right is skipped
    assert_miss(get("p5", "198.51.100.2, 127.0.0.1"))
    # nothing believable: the peer, which is exhausted
    assert_error(get("p6", "garbage"), 429, "RATE_LIMIT_EXCEEDED")


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("127.0.0.1", None, "127.0.0.1"),
        ("127.0.0.1", "", "127.0.0.1"),
        ("127.0.0.1", "garbage", "127.0.0.1"),
        ("127.0.0.1", "unknown", "127.0.0.1"),
        ("127.0.0.1", " , ,, ", "127.0.0.1"),
        ("127.0.0.1", "203.0.113.7:8080", "127.0.0.1"),
        ("127.0.0.1", "[2001:db8::1]", "127.0.0.1"),
        ("127.0.0.1", "x" * 10_000, "127.0.0.1"),
        ("127.0.0.1", "203.0.113.7, garbage", "127.0.0.1"),
        ("127.0.0.1", "203.0.113.7", "203.0.113.7"),
        ("127.0.0.1", "  203.0.113.7  ", "203.0.113.7"),
        ("127.0.0.1", "garbage, 203.0.113.7", "203.0.113.7"),
        ("127.0.0.1", "203.0.113.7,, ", "203.0.113.7"),
        ("127.0.0.1", "198.51.100.1, 203.0.113.9", "203.0.113.9"),
        ("127.0.0.1", "203.0.113.7, 10.1.2.3", "203.0.113.7"),
        ("127.0.0.1", "203.0.113.7, 10.1.2.3, 127.0.0.1", "203.0.113.7"),
        ("127.0.0.1", "10.1.2.3, 127.0.0.1", "127.0.0.1"),
        ("127.0.0.1", "2001:db8::1", "2001:db8::1"),
        ("10.9.9.9", "198.51.100.1", "198.51.100.1"),
        ("203.0.113.50", "198.51.100.1", "203.0.113.50"),
        ("not-an-ip", "198.51.100.1", "not-an-ip"),
    ],
)
def test_client_ip(tmp_path: Path, peer: str, forwarded: str | None, expected: str) -> None:
    """``client_ip`` with trusted proxies 127.0.0.1 and 10.0.0.0/8."""
    settings = make_settings(tmp_path / "data", server__trusted_proxies=["127.0.0.1", "10.0.0.0/8"])
    assert client_ip(peer, forwarded, settings.server.trusted_networks) == expected


def test_client_ip_without_trusted_proxies_is_the_peer(tmp_path: Path) -> None:
    trusted = make_settings(tmp_path / "data").server.trusted_networks
    assert client_ip("127.0.0.1", "203.0.113.7", trusted) == "127.0.0.1"
    assert client_ip("10.0.0.1", "203.0.113.7, 10.0.0.2", trusted) == "10.0.0.1"


# -------------------------------------------------------------------- scope rules


def scope_row(app: Running, slug: str) -> dict[str, Any] | None:
    found = rows(app, "SELECT * FROM live_scopes WHERE slug = ?", slug)
    return found[0] if found else None


def test_unknown_scope_is_created_with_the_project_limit(start_server: Start) -> None:
    app = start_server(provider=FakeProvider())
    settings = app.project("PUT", "/api/v1/project", json={"newLiveScopesGenerationLimit": 2})
    assert settings.status_code == 200
    assert scope_row(app, "fresh") is None
    assert_miss(live(app, "one", scope="fresh"))
    created = app.project("GET", "/api/v1/live/scopes/fresh").json()["data"]
    assert created["newGenerationsLimit"] == 2
    assert created["allowNewGenerations"] is True
    assert created["currentGenerations"] == 1
    assert_miss(live(app, "two", scope="fresh"))
    assert_error(live(app, "three", scope="fresh"), 429, "SCOPE_GENERATION_LIMIT_EXCEEDED")
    assert_hit(live(app, "one", scope="fresh"))
    assert count(app, "generations") == 2


def test_new_scopes_disabled_refuses_unknown_scopes_only(start_server: Start) -> None:
    app = start_server(provider=FakeProvider())
    made = app.project("POST", "/api/v1/live/scopes", json={"slug": "made"})
    assert made.status_code == 201
    assert_miss(live(app, "cached", scope="made"))
    app.project("PUT", "/api/v1/project", json={"allowNewLiveScopes": False})

    assert_error(live(app, "a cat", scope="another"), 403, "SCOPE_CREATION_DISABLED")
    assert scope_row(app, "another") is None
    # existing scopes keep generating and serving
    assert_miss(live(app, "new prompt", scope="made"))
    assert_hit(live(app, "cached", scope="made"))
    assert count(app, "generations") == 2
    assert count(app, "live_scopes") == 1


def test_scope_without_new_generations_still_serves_hits(start_server: Start) -> None:
    app = start_server(provider=FakeProvider())
    assert_miss(live(app, "kept", scope="frozen"))
    update = app.project("PUT", "/api/v1/live/scopes/frozen", json={"allowNewGenerations": False})
    assert update.status_code == 200
    assert_error(live(app, "new one", scope="frozen"), 403, "SCOPE_GENERATIONS_DISABLED")
    assert_hit(live(app, "kept", scope="frozen"), 1)
    assert count(app, "generations") == 1


def test_scope_limit_zero_blocks_the_first_miss(start_server: Start) -> None:
    app = start_server(provider=FakeProvider())
    created = app.project(
        "POST", "/api/v1/live/scopes", json={"slug": "zero", "newGenerationsLimit": 0}
    )
    assert created.status_code == 201
    assert_error(live(app, "a cat", scope="zero"), 429, "SCOPE_GENERATION_LIMIT_EXCEEDED")
    # a project limit of 0 gives new scopes the same answer, and creates no scope row
    app.project("PUT", "/api/v1/project", json={"newLiveScopesGenerationLimit": 0})
    assert_error(live(app, "a cat", scope="auto"), 429, "SCOPE_GENERATION_LIMIT_EXCEEDED")
    assert scope_row(app, "auto") is None
    assert count(app, "generations") == 0


def test_scope_refusals_do_not_use_the_ip_budget(start_server: Start) -> None:
    app = start_server(
        live__ip_limit_exempt=[], provider=FakeProvider(), live__new_generations_per_ip_per_hour=1
    )
    app.project("POST", "/api/v1/live/scopes", json={"slug": "zero", "newGenerationsLimit": 0})
    for _ in range(3):
        assert_error(live(app, "a cat", scope="zero"), 429, "SCOPE_GENERATION_LIMIT_EXCEEDED")
    first = live(app, "a cat")
    assert_miss(first)
    assert first.headers["x-ratelimit-remaining"] == "0"


def test_scope_limit_holds_under_concurrent_misses(start_server: Start) -> None:
    """Three distinct prompts at once in a scope with room for one: one generates."""
    provider = FakeProvider(delay=0.3)
    app = start_server(provider=provider)
    app.project("POST", "/api/v1/live/scopes", json={"slug": "one", "newGenerationsLimit": 1})

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=app.url, timeout=30) as client:
            return list(
                await asyncio.gather(
                    *(client.get(f"{LIVE}/one", params={"prompt": f"p{i}"}) for i in range(3))
                )
            )

    responses = asyncio.run(main())
    current = app.project("GET", "/api/v1/live/scopes/one").json()["data"]["currentGenerations"]
    assert current <= 1
    assert sorted(r.status_code for r in responses) == [200, 429, 429]


# ------------------------------------------------------------------- single flight


def test_concurrent_identical_requests_generate_once(start_server: Start) -> None:
    """Twenty requests for one key: one generation, one MISS, nineteen HITs."""
    provider = FakeProvider(delay=0.5)
    app = start_server(live__ip_limit_exempt=[], provider=provider)
    responses = concurrent_gets(app, f"{LIVE}/main", {"prompt": "a crowded square"}, 20)
    assert [r.status_code for r in responses] == [200] * 20
    assert len({r.content for r in responses}) == 1
    assert len({r.headers["x-image-id"] for r in responses}) == 1
    statuses = sorted(r.headers["x-cache-status"] for r in responses)
    assert statuses == ["HIT"] * 19 + ["MISS"]
    hit_counts = sorted(
        int(r.headers["x-cache-hit-count"])
        for r in responses
        if r.headers["x-cache-status"] == "HIT"
    )
    assert hit_counts == list(range(1, 20))
    assert len(provider.calls) == 1
    assert count(app, "generations") == 1
    assert count(app, "live_cache_entries") == 1

    provider.delay = 0
    following = live(app, "another prompt")
    assert_miss(following)
    assert following.headers["x-ratelimit-remaining"] == "8"


def test_failed_generation_answers_every_waiter_502_and_caches_nothing(
    start_server: Start,
) -> None:
    provider = FakeProvider(delay=0.5, fail=True)
    app = start_server(provider=provider)
    responses = concurrent_gets(app, f"{LIVE}/main", {"prompt": "doomed"}, 5)
    for response in responses:
        error = assert_error(response, 502, "GENERATION_FAILED")
        assert "boom" in str(error["message"])
        assert "x-cache-status" not in response.headers
    assert len(provider.calls) == 1
    assert count(app, "live_cache_entries") == 0
    assert count(app, "images") == 0
    (generation,) = rows(app, "SELECT * FROM generations")
    assert generation["status"] == "failed"
    assert generation["error_message"] == "boom"
    assert generation["flow_id"] is None

    provider.fail = False
    provider.delay = 0
    retried = live(app, "doomed")
    assert_miss(retried)
    assert len(provider.calls) == 2
    assert count(app, "live_cache_entries") == 1
    assert_hit(live(app, "doomed"), 1)


# ------------------------------------------------------------ /api/v1/live/generate


def test_keyed_live_generate_uses_the_key_limit(start_server: Start) -> None:
    """The keyed route runs the same pipeline but is counted by the key, not the IP."""
    provider = FakeProvider()
    app = start_server(
        live__ip_limit_exempt=[], provider=provider, live__new_generations_per_ip_per_hour=1
    )
    assert_miss(live(app, "public one", scope="default"))
    assert_error(live(app, "keyed", scope="default"), 429, "RATE_LIMIT_EXCEEDED")

    first = live_generate(app, "keyed")
    assert_miss(first)
    assert first.headers["x-scope"] == "default"
    assert first.headers["x-ratelimit-limit"] == "1000"
    assert first.headers["x-ratelimit-remaining"] == "999"
    generation_id = first.headers["x-generation-id"]
    generation = app.project("GET", f"/api/v1/generations/{generation_id}").json()["data"]
    assert generation["flowId"] is None
    assert generation["aspectRatio"] == "16:9"

    second = live_generate(app, "  keyed ")
    assert_hit(second, 1)
    assert second.content == first.content
    assert second.headers["x-ratelimit-remaining"] == "997"  # the GET above counted too

    # the public URL of the same scope shares the entry
    shared = live(app, "keyed", scope="default")
    assert_hit(shared, 2)
    assert shared.content == first.content

    other = live_generate(app, "keyed", scope="elsewhere", aspectRatio="1:1")
    assert_miss(other)
    assert other.headers["x-scope"] == "elsewhere"
    assert len(provider.calls) == 3

    assert_error(
        app.client.get("/api/v1/live/generate", params={"prompt": "keyed"}),
        401,
        "MISSING_API_KEY",
    )
    assert_error(live_generate(app, "keyed", scope="bad.scope"), 400, "SCOPE_INVALID_FORMAT")
    assert_error(live_generate(app, ""), 400, "VALIDATION_ERROR")
    assert_error(live_generate(app, "x", template="fancy"), 400, "VALIDATION_ERROR")


def test_keyed_live_generate_is_refused_over_the_key_limit(start_server: Start) -> None:
    app = start_server(provider=FakeProvider(), limits__requests_per_hour=2)
    assert_miss(live_generate(app, "a cat"))
    assert_hit(live_generate(app, "a cat"))
    refused = live_generate(app, "a cat")
    assert_error(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert refused.headers["x-ratelimit-limit"] == "2"
    assert "retry-after" in refused.headers
    # the public URL is not counted by the key
    assert_hit(live(app, "a cat", scope="default"))


# ------------------------------------------------------------------- hit counters


def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_hit_counts_are_flushed_in_the_background(start_server: Start) -> None:
    app = start_server(provider=FakeProvider(), live__hit_flush_seconds=0.1)
    first = live(app, "counted")
    image_id = first.headers["x-image-id"]
    for hits in range(1, 6):
        assert_hit(live(app, "counted"), hits)
    assert wait_for(lambda: entry_for_image(app, image_id)["hit_count"] == 5, 1.0)
    entry = entry_for_image(app, image_id)
    assert entry["last_hit_at"] is not None
    assert entry["last_hit_at"] >= entry["created_at"]


def test_hits_do_not_write_to_the_database(start_server: Start) -> None:
    """With a long flush interval the counts stay in memory: no commit on the HIT path."""
    app = start_server(provider=FakeProvider(), live__hit_flush_seconds=5)
    if app.settings.database.url:
        pytest.skip("reads SQLite's data_version")
    image_id = live(app, "quiet").headers["x-image-id"]
    with sqlite(app.settings.database_path) as conn:
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        for hits in range(1, 4):
            assert_hit(live(app, "quiet"), hits)
        assert conn.execute("PRAGMA data_version").fetchone()[0] == version
    entry = entry_for_image(app, image_id)
    assert entry["hit_count"] == 0
    assert entry["last_hit_at"] is None


# -------------------------------------------------------------- memory and disk


def test_memory_hits_survive_a_missing_file(start_server: Start) -> None:
    app = start_server(provider=FakeProvider())
    first = live(app, "held in memory")
    assert_hit(live(app, "held in memory"), 1)
    storage_path(app, first.headers["x-image-id"]).unlink()
    again = live(app, "held in memory")
    assert_hit(again, 2)
    assert again.content == first.content


def test_without_memory_cache_hits_come_from_disk(start_server: Start) -> None:
    """``live.memory_cache_mb = 0``: each HIT reads the row and the file again."""
    app = start_server(provider=FakeProvider(), live__memory_cache_mb=0)
    first = live(app, "read from disk")
    assert_miss(first)
    image_id = first.headers["x-image-id"]
    hit = live(app, "read from disk")
    assert_hit(hit, 1)
    assert hit.content == first.content
    assert hit.headers["etag"] == first.headers["etag"]
    assert hit.headers["x-image-id"] == image_id
    assert hit.headers["cache-control"] == YEAR
    assert hit.headers["x-scope"] == "main"
    # the file is read on every hit: a changed file shows at once
    replacement = tiny_png("replacement", 16, 9)
    storage_path(app, image_id).write_bytes(replacement)
    changed = live(app, "read from disk")
    assert_hit(changed, 2)
    assert changed.content == replacement
    if app.settings.database.url:
        return  # the rest reads SQLite's data_version
    with sqlite(app.settings.database_path) as conn:
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        assert_hit(live(app, "read from disk"), 3)
        assert conn.execute("PRAGMA data_version").fetchone()[0] == version


def test_uncached_hits_read_into_reused_buffers_never_mix_bytes(start_server: Start) -> None:
    """With the memory cache off, HITs read into lent buffers that are reused: many at
    once, of images of different sizes, each answer carries exactly its own bytes."""
    app = start_server(provider=FakeProvider(vary=True), live__memory_cache_mb=0)
    prompts = [f"buffer {n}" for n in range(3)]
    files = {}
    for prompt in prompts:
        first = live(app, prompt)
        assert_miss(first)
        files[prompt] = tiny_png(prompt, 64 + 40 * len(files), 48)  # different sizes
        storage_path(app, first.headers["x-image-id"]).write_bytes(files[prompt])

    async def main() -> list[tuple[str, httpx.Response]]:
        async with httpx.AsyncClient(base_url=app.url, timeout=30) as client:
            asks = [prompts[n % 3] for n in range(60)]
            answers = await asyncio.gather(
                *(client.get(f"{LIVE}/main", params={"prompt": p}) for p in asks)
            )
            return list(zip(asks, answers, strict=True))

    for prompt, response in asyncio.run(main()):
        assert_hit(response)
        assert response.content == files[prompt]


def test_deleting_the_live_image_makes_the_next_request_a_miss(start_server: Start) -> None:
    provider = FakeProvider()
    app = start_server(provider=provider)
    first = live(app, "short lived")
    assert_hit(live(app, "short lived"), 1)
    image_id = first.headers["x-image-id"]
    deleted = app.project("DELETE", f"/api/v1/images/{image_id}")
    assert deleted.status_code == 200
    assert count(app, "live_cache_entries") == 0
    again = live(app, "short lived")
    assert_miss(again)
    assert again.headers["x-image-id"] != image_id
    assert again.headers["x-generation-id"] != first.headers["x-generation-id"]
    assert len(provider.calls) == 2
    assert count(app, "live_cache_entries") == 1


def test_deleting_the_live_generation_makes_the_next_request_a_miss(start_server: Start) -> None:
    app = start_server(provider=FakeProvider())
    first = live(app, "generation goes")
    deleted = app.project("DELETE", f"/api/v1/generations/{first.headers['x-generation-id']}")
    assert deleted.status_code == 200
    again = live(app, "generation goes")
    assert_miss(again)
    assert again.headers["x-image-id"] != first.headers["x-image-id"]


def test_a_new_entry_starts_counting_from_zero(start_server: Start) -> None:
    """After the live image is deleted, the regenerated entry's hits start at 1."""
    app = start_server(provider=FakeProvider(), live__hit_flush_seconds=0.1)
    first = live(app, "recounted")
    assert_hit(live(app, "recounted"), 1)
    assert_hit(live(app, "recounted"), 2)
    app.project("DELETE", f"/api/v1/images/{first.headers['x-image-id']}")
    again = live(app, "recounted")
    assert_miss(again)
    assert_hit(live(app, "recounted"), 1)


def test_a_client_that_gives_up_does_not_cancel_the_generation(start_server: Start) -> None:
    """The generation of a MISS runs to the end and is cached for the next request."""
    provider = FakeProvider(delay=0.5)
    app = start_server(provider=provider)
    with pytest.raises(httpx.TimeoutException):
        app.client.get(f"{LIVE}/main", params={"prompt": "patient"}, timeout=0.1)
    assert wait_for(lambda: count(app, "live_cache_entries") == 1, 3.0)
    assert_hit(live(app, "patient"), 1)
    assert len(provider.calls) == 1
    (generation,) = rows(app, "SELECT status FROM generations")
    assert generation["status"] == "success"
