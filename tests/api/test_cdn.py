"""The public image route GET/HEAD /cdn/{org}/{project}/img/{idOrAlias} (API.md §6)."""

from __future__ import annotations

import http.client
import io
import itertools
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage

from tests.api.test_errors import assert_error
from tests.conftest import Running
from tests.helpers import sqlite

pytestmark = pytest.mark.both_databases

CDN = "/cdn/default/default/img"
YEAR = "public, max-age=31536000"

_colors = itertools.count(1)


def png_bytes(color: tuple[int, int, int] | None = None) -> bytes:
    """A small PNG; every call without a color gives different bytes."""
    if color is None:
        n = next(_colors)
        color = (n % 256, n // 256 % 256, 77)
    buffer = io.BytesIO()
    PILImage.new("RGB", (8, 6), color).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (10, 10), (10, 200, 30)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def upload(
    app: Running,
    data: bytes,
    key: str | None = None,
    filename: str = "a.png",
    mime: str = "image/png",
    **fields: str,
) -> dict[str, Any]:
    """Upload ``data`` with form ``fields``; ``key`` picks another project's key."""
    headers = {"X-API-Key": key} if key else {}
    response = app.project(
        "POST",
        "/api/v1/images/upload",
        files={"file": (filename, data, mime)},
        data=fields,
        headers=headers,
    )
    assert response.status_code == 201, response.text
    image: dict[str, Any] = response.json()["data"]
    return image


def other_project_key(app: Running) -> str:
    """A project key for organization ``other``, project ``site``."""
    return app.new_project_key("other", "site")


def raw_request(
    app: Running, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> httpx.Response:
    """Send ``path`` byte for byte (no normalisation, no decoding) and wrap the answer."""
    conn = http.client.HTTPConnection("127.0.0.1", app.server.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        answer = conn.getresponse()
        return httpx.Response(answer.status, headers=answer.getheaders(), content=answer.read())
    finally:
        conn.close()


def stored_file(app: Running, image: dict[str, Any]) -> Path:
    return app.settings.storage_root / image["storageKey"]


def etag_of(image: dict[str, Any]) -> str:
    return f'"{image["fileHash"]}"'


# ---------------------------------------------------------------- serving


def test_serves_exact_bytes_by_id_and_alias_without_a_key(app: Running) -> None:
    data = png_bytes()
    image = upload(app, data, alias="@hero")
    for ref in (image["id"], "@hero"):
        response = app.client.get(f"{CDN}/{ref}")
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["content-type"] == "image/png"
        assert response.headers["content-length"] == str(len(data))
        assert response.headers["cache-control"] == YEAR
        assert response.headers["etag"] == etag_of(image)
        assert response.headers["x-image-id"] == image["id"]


def test_storage_url_of_the_image_is_the_cdn_route(app: Running) -> None:
    data = png_bytes()
    image = upload(app, data)
    path = httpx.URL(image["storageUrl"]).path
    assert path == f"{CDN}/{image['id']}"
    assert app.client.get(path).content == data


def test_jpeg_is_served_with_its_mime_type(app: Running) -> None:
    data = jpeg_bytes()
    image = upload(app, data, filename="photo.png", mime="image/png")
    response = app.client.get(f"{CDN}/{image['id']}")
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["content-length"] == str(len(data))


def test_uppercase_id_serves_the_image(app: Running) -> None:
    data = png_bytes()
    image = upload(app, data)
    response = app.client.get(f"{CDN}/{image['id'].upper()}")
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["x-image-id"] == image["id"]


def test_max_age_follows_settings(start_server: Callable[..., Running]) -> None:
    app = start_server(cdn__max_age=60)
    image = upload(app, png_bytes(), alias="@hero")
    url = f"{CDN}/{image['id']}"
    assert app.client.get(url).headers["cache-control"] == "public, max-age=60"
    assert app.client.head(url).headers["cache-control"] == "public, max-age=60"
    not_modified = app.client.get(url, headers={"If-None-Match": etag_of(image)})
    assert not_modified.status_code == 304
    assert not_modified.headers["cache-control"] == "public, max-age=60"


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_head_answers_headers_without_body(app: Running, warm: bool) -> None:
    data = png_bytes()
    image = upload(app, data, alias="@hero")
    if warm:
        assert app.client.get(f"{CDN}/@hero").status_code == 200
    for ref in (image["id"], "@hero"):
        response = app.client.head(f"{CDN}/{ref}")
        assert response.status_code == 200
        assert response.content == b""
        assert response.headers["content-length"] == str(len(data))
        assert response.headers["content-type"] == "image/png"
        assert response.headers["cache-control"] == YEAR
        assert response.headers["etag"] == etag_of(image)
        assert response.headers["x-image-id"] == image["id"]


def test_head_of_unknown_image_is_404(app: Running) -> None:
    response = app.client.head(f"{CDN}/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.content == b""


# ------------------------------------------------------------ conditional


@pytest.mark.parametrize(
    "header",
    [
        "{etag}",
        "W/{etag}",
        '"something-else", {etag}',
        "*",
    ],
    ids=["strong", "weak", "list", "star"],
)
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_if_none_match_gives_304(app: Running, header: str, warm: bool) -> None:
    image = upload(app, png_bytes(), alias="@hero")
    if warm:
        assert app.client.get(f"{CDN}/{image['id']}").status_code == 200
        assert app.client.get(f"{CDN}/@hero").status_code == 200
    for ref in (image["id"], "@hero"):
        response = app.client.get(
            f"{CDN}/{ref}", headers={"If-None-Match": header.format(etag=etag_of(image))}
        )
        assert response.status_code == 304
        assert response.content == b""
        assert response.headers["etag"] == etag_of(image)
        assert response.headers["x-image-id"] == image["id"]


@pytest.mark.parametrize(
    "header",
    ['"0000"', "{hash}", 'W/"0000"', '"{hash}x"'],
    ids=["other", "unquoted", "weak-other", "prefix"],
)
def test_non_matching_if_none_match_gives_200(app: Running, header: str) -> None:
    data = png_bytes()
    image = upload(app, data)
    url = f"{CDN}/{image['id']}"
    tag = header.format(hash=image["fileHash"])
    for _ in range(2):  # cold, then from the memory cache
        response = app.client.get(url, headers={"If-None-Match": tag})
        assert response.status_code == 200
        assert response.content == data


def test_304_is_answered_before_any_storage_read(start_server: Callable[..., Running]) -> None:
    app = start_server(live__memory_cache_mb=0)
    image = upload(app, png_bytes(), alias="@hero")
    stored_file(app, image).unlink()
    for ref in (image["id"], "@hero"):
        response = app.client.get(f"{CDN}/{ref}", headers={"If-None-Match": etag_of(image)})
        assert response.status_code == 304
        assert response.headers["etag"] == etag_of(image)
        assert response.headers["x-image-id"] == image["id"]
    # without the header the missing file shows: the row exists, its bytes do not
    assert_error(app.client.get(f"{CDN}/{image['id']}"), 404, "IMAGE_NOT_FOUND")
    assert_error(app.client.get(f"{CDN}/@hero"), 404, "IMAGE_NOT_FOUND")


# ----------------------------------------------------------- memory cache


def test_memory_cache_serves_after_the_file_vanishes(app: Running) -> None:
    data = png_bytes()
    image = upload(app, data, alias="@hero")
    assert len(app.services.image_cache) == 0
    assert app.client.get(f"{CDN}/{image['id']}").content == data
    assert app.client.get(f"{CDN}/@hero").content == data
    assert len(app.services.image_cache) == 2
    stored_file(app, image).unlink()
    for ref in (image["id"], "@hero"):
        response = app.client.get(f"{CDN}/{ref}")
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["etag"] == etag_of(image)


def test_without_memory_cache_every_get_reads_storage(
    start_server: Callable[..., Running],
) -> None:
    app = start_server(live__memory_cache_mb=0)
    data = png_bytes()
    image = upload(app, data)
    assert app.client.get(f"{CDN}/{image['id']}").content == data
    assert len(app.services.image_cache) == 0
    stored_file(app, image).unlink()
    assert_error(app.client.get(f"{CDN}/{image['id']}"), 404, "IMAGE_NOT_FOUND")


def test_deleting_the_image_evicts_it(app: Running) -> None:
    image = upload(app, png_bytes(), alias="@hero")
    keep = upload(app, png_bytes())
    for ref in (image["id"], "@hero", keep["id"]):
        assert app.client.get(f"{CDN}/{ref}").status_code == 200
    assert app.project("DELETE", f"/api/v1/images/{image['id']}").status_code == 200
    assert_error(app.client.get(f"{CDN}/{image['id']}"), 404, "IMAGE_NOT_FOUND")
    assert_error(app.client.get(f"{CDN}/@hero"), 404, "IMAGE_NOT_FOUND")
    assert app.client.head(f"{CDN}/{image['id']}").status_code == 404
    # a cached 304 must not survive the delete either
    revalidate = app.client.get(f"{CDN}/{image['id']}", headers={"If-None-Match": "*"})
    assert_error(revalidate, 404, "IMAGE_NOT_FOUND")
    assert app.client.get(f"{CDN}/{keep['id']}").status_code == 200


def test_moving_the_alias_serves_the_new_image_at_once(app: Running) -> None:
    first_data, second_data = png_bytes(), png_bytes()
    first = upload(app, first_data, alias="@hero")
    second = upload(app, second_data)
    assert app.client.get(f"{CDN}/@hero").content == first_data
    moved = app.project("PUT", f"/api/v1/images/{second['id']}/alias", json={"alias": "@hero"})
    assert moved.status_code == 200, moved.text
    response = app.client.get(f"{CDN}/@hero")
    assert response.content == second_data
    assert response.headers["x-image-id"] == second["id"]
    assert response.headers["etag"] == etag_of(second)
    # the old ETag no longer revalidates the alias
    stale = app.client.get(f"{CDN}/@hero", headers={"If-None-Match": etag_of(first)})
    assert stale.status_code == 200
    assert stale.content == second_data
    # the old image is still served by id
    assert app.client.get(f"{CDN}/{first['id']}").content == first_data


def test_upload_taking_an_alias_serves_the_new_image_at_once(app: Running) -> None:
    first_data, second_data = png_bytes(), png_bytes()
    upload(app, first_data, alias="@hero")
    assert app.client.get(f"{CDN}/@hero").content == first_data
    second = upload(app, second_data, alias="@hero")
    response = app.client.get(f"{CDN}/@hero")
    assert response.content == second_data
    assert response.headers["x-image-id"] == second["id"]


def test_removing_the_alias_makes_it_404(app: Running) -> None:
    data = png_bytes()
    image = upload(app, data, alias="@hero")
    assert app.client.get(f"{CDN}/@hero").status_code == 200
    removed = app.project("PUT", f"/api/v1/images/{image['id']}/alias", json={"alias": None})
    assert removed.status_code == 200, removed.text
    assert_error(app.client.get(f"{CDN}/@hero"), 404, "IMAGE_NOT_FOUND")
    assert app.client.get(f"{CDN}/{image['id']}").content == data


def test_renaming_the_alias_drops_the_old_name(app: Running) -> None:
    data = png_bytes()
    image = upload(app, data, alias="@hero")
    assert app.client.get(f"{CDN}/@hero").status_code == 200
    renamed = app.project("PUT", f"/api/v1/images/{image['id']}/alias", json={"alias": "@star"})
    assert renamed.status_code == 200, renamed.text
    assert_error(app.client.get(f"{CDN}/@hero"), 404, "IMAGE_NOT_FOUND")
    assert app.client.get(f"{CDN}/@star").content == data


# -------------------------------------------------------------- not found


@pytest.mark.parametrize(
    "path",
    [
        "/cdn/nobody/default/img/{id}",
        "/cdn/default/nothing/img/{id}",
        "/cdn/default/default/img/{unknown}",
        "/cdn/default/default/img/@missing",
        "/cdn/nobody/default/img/@hero",
        "/cdn/default/nothing/img/@hero",
    ],
    ids=["org", "project", "id", "alias", "org-alias", "project-alias"],
)
def test_unknown_parts_are_image_not_found(app: Running, path: str) -> None:
    image = upload(app, png_bytes(), alias="@hero")
    url = path.format(id=image["id"], unknown=uuid.uuid4())
    assert_error(app.client.get(url), 404, "IMAGE_NOT_FOUND")


def test_technical_aliases_are_not_resolved(app: Running) -> None:
    flow_id = str(uuid.uuid4())
    generated = upload(app, png_bytes(), flowId=flow_id)
    uploaded = upload(app, png_bytes(), flowId=flow_id)
    with sqlite(app.settings.database_path) as db:
        db.execute("UPDATE images SET source = 'generated' WHERE id = ?", (generated["id"],))
        db.commit()
    # the flow does have these images through the API
    for alias, expected in (("@last", generated), ("@first", generated), ("@upload", uploaded)):
        found = app.project("GET", f"/api/v1/images/{alias}", params={"flowId": flow_id})
        assert found.status_code == 200, found.text
        assert found.json()["data"]["id"] == expected["id"]
    for alias in ("@last", "@first", "@upload"):
        assert_error(app.client.get(f"{CDN}/{alias}"), 404, "IMAGE_NOT_FOUND")
        assert_error(app.client.get(f"{CDN}/{alias}?flowId={flow_id}"), 404, "IMAGE_NOT_FOUND")


def test_flow_aliases_are_not_resolved(app: Running) -> None:
    flow_id = str(uuid.uuid4())
    upload(app, png_bytes(), flowId=flow_id, flowAlias="@scene")
    found = app.project("GET", "/api/v1/images/@scene", params={"flowId": flow_id})
    assert found.status_code == 200, found.text
    assert_error(app.client.get(f"{CDN}/@scene"), 404, "IMAGE_NOT_FOUND")
    assert_error(app.client.get(f"{CDN}/@scene?flowId={flow_id}"), 404, "IMAGE_NOT_FOUND")


@pytest.mark.parametrize(
    "ref",
    [
        "..%2F..%2Fetc%2Fpasswd",
        "..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "..%2Fbanatie.db",
        "%2e%2e",
        "%2e%2e%2f%2e%2e%2fbanatie.db",
        "..",
        "....//",
        "@..%2F..%2Fx",
        "default%2Fdefault%2Fimg%2F{id}",
        "x" * 300,
        "@" + "a" * 300,
        "%00",
        "{id}%00",
        "%00{id}",
        "{id}.png",
        "{id}%20",
        "%7B{id}%7D",
        "{nohyphens}",
        "urn:uuid:{id}",
        "@hero%00",
        "@hero%0A",
        "%40hero%2F..",
        "%25%32%65%25%32%65",
        "'%20OR%20'1'%3D'1",
        "@'%20OR%20'1'%3D'1",
    ],
)
def test_garbage_and_traversal_are_image_not_found(app: Running, ref: str) -> None:
    image = upload(app, png_bytes(), alias="@hero")
    path = f"{CDN}/" + ref.format(id=image["id"], nohyphens=image["id"].replace("-", ""))
    for method in ("GET", "HEAD"):
        response = raw_request(app, path, method)
        assert response.status_code == 404, (method, response.text)
    response = raw_request(app, path)
    assert_error(response, 404, "IMAGE_NOT_FOUND")
    assert b"root:" not in response.content
    assert b"SQLite" not in response.content


@pytest.mark.parametrize(
    "path",
    [
        f"{CDN}/@../../x",
        f"{CDN}/../../../etc/passwd",
        f"{CDN}/a/b",
        "/cdn/default/default/img/",
        "/cdn/../default/img/x",
    ],
)
def test_unencoded_slashes_never_reach_storage(app: Running, path: str) -> None:
    upload(app, png_bytes(), alias="@hero")
    response = raw_request(app, path)
    assert response.status_code == 404, response.text
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] in {"IMAGE_NOT_FOUND", "NOT_FOUND"}
    assert b"root:" not in response.content


# -------------------------------------------------------------- tenancy


def test_other_projects_image_is_served_only_under_its_own_path(app: Running) -> None:
    key = other_project_key(app)
    data = png_bytes()
    foreign = upload(app, data, key=key, alias="@logo")
    own = app.client.get(f"/cdn/other/site/img/{foreign['id']}")
    assert own.status_code == 200
    assert own.content == data
    assert app.client.get("/cdn/other/site/img/@logo").content == data
    for ref in (foreign["id"], foreign["id"].upper(), "@logo"):
        assert_error(app.client.get(f"{CDN}/{ref}"), 404, "IMAGE_NOT_FOUND")
        response = raw_request(app, f"{CDN}/{ref}", headers={"If-None-Match": etag_of(foreign)})
        assert_error(response, 404, "IMAGE_NOT_FOUND")


def test_same_alias_in_two_projects_serves_each_projects_image(app: Running) -> None:
    key = other_project_key(app)
    mine_data, theirs_data = png_bytes(), png_bytes()
    mine = upload(app, mine_data, alias="@hero")
    theirs = upload(app, theirs_data, key=key, alias="@hero")
    for _ in range(2):  # cold, then warm
        response = app.client.get(f"{CDN}/@hero")
        assert response.content == mine_data
        assert response.headers["x-image-id"] == mine["id"]
        response = app.client.get("/cdn/other/site/img/@hero")
        assert response.content == theirs_data
        assert response.headers["x-image-id"] == theirs["id"]
    # deleting one project's image leaves the other's alias alone
    assert app.project("DELETE", f"/api/v1/images/{mine['id']}").status_code == 200
    assert_error(app.client.get(f"{CDN}/@hero"), 404, "IMAGE_NOT_FOUND")
    assert app.client.get("/cdn/other/site/img/@hero").content == theirs_data


# ---------------------------------------------------------------- methods


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_writing_methods_are_not_allowed(app: Running, method: str) -> None:
    image = upload(app, png_bytes())
    response = app.client.request(method, f"{CDN}/{image['id']}")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert app.client.get(f"{CDN}/{image['id']}").status_code == 200


def test_method_not_allowed_names_the_allowed_methods(app: Running) -> None:
    image = upload(app, png_bytes())
    response = app.client.post(f"{CDN}/{image['id']}")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "HEAD"}
