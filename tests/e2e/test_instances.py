"""Two instances on one PostgreSQL and one S3 bucket behave as one appliance (SCALE.md
§2–3): what one makes the other serves, limits and single flight hold across both,
deletes and revocations reach both, and a PostgreSQL restart is a stretch of 503s
followed by full service, with no instance restarted.

Two real ``banatie-local serve`` processes, a real PostgreSQL server (started as the
``postgres`` user) and SeaweedFS; the real google-genai SDK talks to the fake Gemini
server, which counts the provider calls of both instances.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import postgres
from tests.fakes.gemini import Answer
from tests.fakes.s3 import S3Server
from tests.helpers import (
    assert_exact_budget,
    assert_one_generation,
    eventually,
    parallel,
)
from tests.imagedata import png_bytes
from tests.instances import Pair, new_key, running_pair

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not postgres.available(), reason="PostgreSQL is not installed"),
]

KEY_LIMIT = 10


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[Pair]:
    with running_pair(tmp_path_factory.mktemp("instances"), s3_server, KEY_LIMIT) as found:
        yield found


def test_both_instances_report_healthy_on_postgres(pair: Pair) -> None:
    for n in range(2):
        body = pair.call(n, "GET", "/health").json()
        assert body["status"] == "healthy", body
        assert body["storage"] == "minio"


def test_what_one_instance_makes_the_other_serves(pair: Pair) -> None:
    headers = {"X-API-Key": new_key(pair)[1]}
    made = pair.call(0, "POST", "/api/v1/generations", headers=headers,
                     json={"prompt": "a red lighthouse", "alias": "@pair"})  # fmt: skip
    assert made.status_code == 201, made.text
    output = made.json()["data"]["outputImage"]
    on_a = pair.call(0, "GET", f"/cdn/default/default/img/{output['id']}")
    on_b = pair.call(1, "GET", "/cdn/default/default/img/@pair")
    assert on_a.status_code == on_b.status_code == 200
    assert on_a.content == on_b.content
    listed = pair.call(1, "GET", "/api/v1/images", headers=headers).json()["data"]
    assert output["id"] in [image["id"] for image in listed]
    uploaded = pair.call(1, "POST", "/api/v1/images/upload", headers=headers,
                         files={"file": ("a.png", png_bytes(), "image/png")})  # fmt: skip
    assert uploaded.status_code == 201, uploaded.text
    image_id = uploaded.json()["data"]["id"]
    assert pair.call(0, "GET", f"/api/v1/images/{image_id}", headers=headers).status_code == 200


def test_a_key_limit_is_exact_across_instances(pair: Pair) -> None:
    _, key = new_key(pair)
    responses = parallel(24, lambda i: pair.call(i % 2, "GET", "/api/v1/project",
                                                  headers={"X-API-Key": key}))  # fmt: skip
    assert_exact_budget(responses, KEY_LIMIT)


def test_identical_misses_on_both_instances_make_one_generation(pair: Pair) -> None:
    before = len(pair.gemini.image_requests())
    pair.gemini.queue(Answer("image", delay=1.5))
    url = "/cdn/default/default/live/pairflight?prompt=one%20flight&autoEnhance=false"
    responses = parallel(20, lambda i: pair.call(i % 2, "GET", url))
    assert_one_generation(responses, len(pair.gemini.image_requests()) - before)


def test_a_delete_on_one_instance_reaches_the_other(pair: Pair) -> None:
    headers = {"X-API-Key": new_key(pair)[1]}
    uploaded = pair.call(
        0,
        "POST",
        "/api/v1/images/upload",
        headers=headers,
        files={"file": ("d.png", png_bytes(color=(9, 1, 1)), "image/png")},
    )
    image_id = uploaded.json()["data"]["id"]
    path = f"/cdn/default/default/img/{image_id}"
    assert pair.call(1, "GET", path).status_code == 200  # now in B's memory
    assert pair.call(0, "DELETE", f"/api/v1/images/{image_id}", headers=headers).status_code == 200
    assert eventually(lambda: pair.call(1, "GET", path).status_code == 404, timeout=1.5)


def test_a_revoked_key_is_refused_by_both_within_a_second(pair: Pair) -> None:
    key_id, key = new_key(pair)
    for n in range(2):
        assert pair.call(n, "GET", "/api/v1/project", headers={"X-API-Key": key}).status_code == 200
    revoked = pair.call(0, "DELETE", f"/api/admin/keys/{key_id}",
                        headers={"X-API-Key": pair.master})  # fmt: skip
    assert revoked.status_code == 200
    assert eventually(
        lambda: (
            pair.call(1, "GET", "/api/v1/project", headers={"X-API-Key": key}).status_code == 401
        ),
        timeout=1.0,
    )


def test_a_postgres_restart_is_503s_then_full_service(pair: Pair) -> None:
    headers = {"X-API-Key": new_key(pair)[1]}
    made = pair.call(
        0,
        "POST",
        "/api/v1/images/upload",
        headers=headers,
        files={"file": ("r.png", png_bytes(color=(3, 9, 3)), "image/png")},
    )
    image_path = f"/cdn/default/default/img/{made.json()['data']['id']}"
    assert pair.call(0, "GET", image_path).status_code == 200  # held in A's memory
    pair.pg.stop()
    try:
        for n in range(2):
            down = pair.call(n, "GET", "/api/v1/images", headers=headers)
            assert down.status_code == 503, down.text
            assert down.json()["error"]["code"] in ("DATABASE_UNAVAILABLE", "DATABASE_BUSY")
            assert int(down.headers["retry-after"]) >= 1
        assert pair.call(0, "GET", image_path).status_code == 200  # memory hits still served
    finally:
        pair.pg.start_again()
    for n in range(2):
        assert eventually(
            lambda n=n: pair.call(n, "GET", "/api/v1/images", headers=headers).status_code == 200,
            timeout=10,
        )
        assert pair.call(n, "GET", "/health").json()["status"] == "healthy"
    again = pair.call(1, "POST", "/api/v1/generations", headers=headers,
                      json={"prompt": "after the restart"})  # fmt: skip
    assert again.status_code == 201, again.text
    assert again.json()["data"]["status"] == "success"
