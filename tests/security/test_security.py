"""Security properties of the appliance, checked over real HTTP (docs/security.md).

1. Cross-project isolation: every project-scoped route in ``ROUTES`` answers another
   project's ids, aliases, flow ids and scope slugs exactly like ids that do not
   exist, and changes nothing of the other project.
2. Keys are never logged, and appear in exactly one response: the one that made them.
3. Keys are looked up by their SHA-256; the secret itself is never compared.
4. Hostile uploads (bombs, polyglots, disguised files) are refused and store nothing;
   accepted images are served with the type their bytes show.
5. CR/LF in prompts, aliases, slugs, meta and query strings never becomes a header.
6. ``X-Forwarded-For`` decides the limited client only behind a trusted proxy.
7. A request without a key writes nothing the per-IP budget has not paid for.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import re
import socket
import struct
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from click.testing import CliRunner
from PIL import Image as PILImage

from banatie_local.cli import cli
from banatie_local.http.app import ROUTES
from banatie_local.providers import GeneratedImage, ReferenceImage
from banatie_local.services import keys as keys_module
from banatie_local.services.keys import hash_key
from tests.api.test_errors import assert_error
from tests.conftest import Running
from tests.helpers import sqlite
from tests.imagedata import (
    PNG_SIGNATURE,
    bilevel_png,
    corrupt_jpeg,
    declared_png,
    gif_bytes,
    jpeg_bytes,
    padded_png,
    png_bytes,
    truncated_png,
    webp_bytes,
)

Start = Callable[..., Running]

KEY_IN_TEXT = re.compile(r"bnt_[0-9a-f]{64}")
KEY_ANY_CASE = re.compile(r"bnt_[0-9a-f]{64}", re.IGNORECASE)  # what a leak may look like
UNKNOWN_ALIAS = "@nosuch"
UNKNOWN_SCOPE = "nosuchscope"
LIVE_PROMPT = "a lighthouse at dusk"


# --------------------------------------------------------------------------- helpers


class QuickProvider:
    """A fast deterministic provider: a tiny PNG whose colour depends on the prompt."""

    name = "quick"

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def generate(
        self, prompt: str, aspect_ratio: str, references: list[ReferenceImage]
    ) -> GeneratedImage:
        self.calls.append(prompt)
        width, height = (int(n) * 4 for n in aspect_ratio.split(":"))
        digest = hashlib.sha256(prompt.encode()).digest()
        buffer = io.BytesIO()
        PILImage.new("RGB", (width, height), (digest[0], digest[1], digest[2])).save(buffer, "PNG")
        return GeneratedImage(buffer.getvalue(), "image/png", width, height, "quick-1")

    async def enhance(self, prompt: str, template: str) -> str:
        return prompt


def rows(app: Running, sql: str, *params: Any) -> list[dict[str, Any]]:
    with sqlite(app.settings.database_path) as conn:
        return [dict(row) for row in conn.execute(sql, params)]


def count(app: Running, table: str) -> int:
    with sqlite(app.settings.database_path) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def stored_files(app: Running) -> dict[str, str]:
    """Every file under the storage root (temp files included) with its SHA-256."""
    root = app.settings.storage_root
    if not root.exists():
        return {}
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def upload(
    app: Running,
    data: bytes,
    filename: str = "image.png",
    content_type: str = "image/png",
    key: str | None = None,
    **fields: str,
) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    return app.project(
        "POST",
        "/api/v1/images/upload",
        headers=headers,
        files={"file": (filename, data, content_type)},
        data=fields,
    )


def data_of(response: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


# =========================================================================== 1
# Cross-project isolation


# What a project's data is made of, row by row (api_keys aside: lastUsedAt moves).
PROJECT_ROWS: dict[str, str] = {
    "projects": "SELECT * FROM projects WHERE id = ?",
    "images": "SELECT * FROM images WHERE project_id = ? ORDER BY id",
    "generations": "SELECT * FROM generations WHERE project_id = ? ORDER BY id",
    "generation_references": (
        "SELECT r.* FROM generation_references r JOIN generations g"
        " ON g.id = r.generation_id WHERE g.project_id = ? ORDER BY r.generation_id, r.position"
    ),
    "flows": "SELECT * FROM flows WHERE project_id = ? ORDER BY id",
    "flow_aliases": (
        "SELECT a.* FROM flow_aliases a JOIN flows f ON f.id = a.flow_id"
        " WHERE f.project_id = ? ORDER BY a.flow_id, a.alias"
    ),
    "live_scopes": "SELECT * FROM live_scopes WHERE project_id = ? ORDER BY id",
    "live_cache_entries": "SELECT * FROM live_cache_entries WHERE project_id = ? ORDER BY id",
}


def project_state(app: Running, project_id: str, prefix: str) -> dict[str, Any]:
    """Every row of one project, and every stored file under its storage prefix."""
    state: dict[str, Any] = {
        table: rows(app, sql, project_id) for table, sql in PROJECT_ROWS.items()
    }
    state["files"] = {k: v for k, v in stored_files(app).items() if k.startswith(prefix)}
    return state


def ids_in(state: dict[str, Any]) -> set[str]:
    """Every id and flow id that appears in a project's rows."""
    found: set[str] = set()
    for table, table_rows in state.items():
        if table == "files":
            continue
        for row in table_rows:
            for column in ("id", "flow_id", "image_id", "generation_id", "output_image_id"):
                value = row.get(column)
                if isinstance(value, str):
                    found.add(value)
    return found


@dataclass
class World:
    """Project A (default/default) with one of everything; project B (other/site)
    with a little of its own; B's key is the attacker."""

    app: Running
    provider: QuickProvider
    b_key: str
    a_project: str
    b_project: str
    a_upload: str  # uploaded, alias @hero, flow alias @shot in a_flow
    a_output: str  # generated in a_flow, alias @fox, flow alias @foxshot
    a_output2: str  # generated with an announced flow (no row)
    a_live: str  # live image of scope "secret"
    a_generation: str
    a_generation2: str
    a_flow: str
    a_flow_empty: str
    a_flow_announced: str
    b_image: str
    b_flow: str
    b_generation: str
    unknown: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def a_images(self) -> list[str]:
        return [self.a_upload, self.a_output, self.a_output2, self.a_live]

    def b(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request with project B's key."""
        return self.app.project(method, path, headers={"X-API-Key": self.b_key}, **kwargs)


def build_world(start_server: Start) -> World:
    provider = QuickProvider()
    app = start_server(provider=provider)
    a_flow = str(uuid.uuid4())
    a_upload = data_of(
        upload(app, png_bytes(color=(9, 8, 7)), alias="@hero", flowId=a_flow, flowAlias="@shot")
    )["id"]
    generation = data_of(
        app.project(
            "POST",
            "/api/v1/generations",
            json={
                "prompt": "a red fox next to @hero",
                "flowId": a_flow,
                "alias": "@fox",
                "flowAlias": "@foxshot",
            },
        )
    )
    assert generation["status"] == "success", generation
    assert [r["imageId"] for r in generation["referencedImages"]] == [a_upload]
    generation2 = data_of(
        app.project("POST", "/api/v1/generations", json={"prompt": "an announced flow"})
    )
    a_flow_empty = data_of(app.project("POST", "/api/v1/flows", json={"meta": {"n": 1}}))["id"]
    for slug in ("secret", "idle"):
        data_of(app.project("POST", "/api/v1/live/scopes", json={"slug": slug}))
    live = app.client.get("/cdn/default/default/live/secret", params={"prompt": LIVE_PROMPT})
    assert live.status_code == 200, live.text
    assert live.headers["x-cache-status"] == "MISS"

    b_key = app.new_project_key("other", "site")
    b_headers = {"X-API-Key": b_key}
    b_project = data_of(app.project("GET", "/api/v1/project", headers=b_headers), 200)["id"]
    b_image = data_of(upload(app, png_bytes(color=(1, 1, 1)), key=b_key, flowId="null"))["id"]
    b_flow = data_of(app.project("POST", "/api/v1/flows", headers=b_headers))["id"]
    b_generation = data_of(
        app.project("POST", "/api/v1/generations", headers=b_headers, json={"prompt": "b's own"})
    )["id"]
    data_of(app.project("POST", "/api/v1/live/scopes", headers=b_headers, json={"slug": "mine"}))
    a_project = data_of(app.project("GET", "/api/v1/project"), 200)["id"]
    with sqlite(app.settings.database_path) as db:  # A's upload, published by name
        db.execute(
            "INSERT INTO published_names (project_id, category, filename, image_id, created_at)"
            " VALUES (?, 'uploads', 'secret.png', ?, 0)",
            (a_project, a_upload),
        )
        db.commit()
    assert app.client.get("/api/images/default/default/uploads/secret.png").status_code == 200
    return World(
        app=app,
        provider=provider,
        b_key=b_key,
        a_project=a_project,
        b_project=b_project,
        a_upload=a_upload,
        a_output=generation["outputImageId"],
        a_output2=generation2["outputImageId"],
        a_live=live.headers["x-image-id"],
        a_generation=generation["id"],
        a_generation2=generation2["id"],
        a_flow=a_flow,
        a_flow_empty=a_flow_empty,
        a_flow_announced=generation2["flowId"],
        b_image=b_image,
        b_flow=b_flow,
        b_generation=b_generation,
    )


@dataclass(frozen=True)
class Probe:
    """One request made twice with B's key (or none): naming A's object, and naming
    an object that does not exist. The two answers must be the same."""

    method: str
    foreign_target: str
    unknown_target: str
    foreign_body: Any
    unknown_body: Any
    foreign_token: str
    unknown_token: str
    status: int
    code: str | None  # None: a success answer
    keyed: bool = True


@dataclass
class Checks:
    probes: list[Probe] = field(default_factory=list)
    now: list[Callable[[World], None]] = field(default_factory=list)  # read-only checks
    later: list[Callable[[World], None]] = field(default_factory=list)  # B creates things


def probes(
    method: str,
    template: str,
    pairs: list[tuple[str, str]],
    status: int,
    code: str | None,
    body: Callable[[str], Any] | None = None,
    keyed: bool = True,
) -> list[Probe]:
    """One probe per ``(foreign, unknown)`` pair; ``{t}`` in ``template`` and the body
    (a function of the token) take either token."""
    return [
        Probe(
            method,
            template.replace("{t}", foreign),
            template.replace("{t}", unknown),
            body(foreign) if body else None,
            body(unknown) if body else None,
            foreign,
            unknown,
            status,
            code,
            keyed,
        )
        for foreign, unknown in pairs
    ]


def answer(response: httpx.Response, token: str) -> tuple[int, str, list[str]]:
    """Status, body (with the probed token blanked out, as sent or decoded) and header
    names."""
    text = response.text.replace(token, "<t>").replace(unquote(token), "<t>")
    return response.status_code, text, sorted(response.headers)


def run_probe(world: World, probe: Probe) -> None:
    def send(target: str, body: Any) -> httpx.Response:
        if probe.keyed:
            return world.b(probe.method, target, json=body)
        return world.app.client.request(probe.method, target, json=body)

    foreign = send(probe.foreign_target, probe.foreign_body)
    unknown = send(probe.unknown_target, probe.unknown_body)
    where = f"{probe.method} {probe.foreign_target} vs {probe.unknown_target}"
    assert answer(foreign, probe.foreign_token) == answer(unknown, probe.unknown_token), where
    assert foreign.status_code == probe.status, f"{where}: {foreign.text}"
    if probe.code is not None and probe.method != "HEAD":
        assert_error(foreign, probe.status, probe.code)


def image_probes(
    w: World, method: str, suffix: str = "", body: Callable[[str], Any] | None = None
) -> list[Probe]:
    """A's image ids, project aliases, and flow/technical aliases in A's flow."""
    ids = [(image, w.unknown) for image in w.a_images] + [(w.a_upload.upper(), w.unknown.upper())]
    aliases = [("@hero", UNKNOWN_ALIAS), ("@fox", UNKNOWN_ALIAS)]
    found = probes(method, "/api/v1/images/{t}" + suffix, ids, 404, "IMAGE_NOT_FOUND", body)
    found += probes(method, "/api/v1/images/{t}" + suffix, aliases, 404, "ALIAS_NOT_FOUND", body)
    for alias in ("@shot", "@foxshot", "@last", "@first", "@upload"):
        found += probes(
            method,
            f"/api/v1/images/{alias}{suffix}?flowId={{t}}",
            [(w.a_flow, w.unknown)],
            404,
            "ALIAS_NOT_FOUND",
            body,
        )
    return found


def generation_probes(
    w: World, method: str, suffix: str = "", body: Callable[[str], Any] | None = None
) -> list[Probe]:
    pairs = [(w.a_generation, w.unknown), (w.a_generation2, w.unknown)]
    pairs += [(w.a_generation.upper(), w.unknown.upper()), ("@fox", UNKNOWN_ALIAS)]
    return probes(
        method, "/api/v1/generations/{t}" + suffix, pairs, 404, "GENERATION_NOT_FOUND", body
    )


def flow_probes(
    w: World, method: str, suffix: str = "", body: Callable[[str], Any] | None = None
) -> list[Probe]:
    pairs = [(f, w.unknown) for f in (w.a_flow, w.a_flow_empty, w.a_flow_announced)]
    pairs.append((w.a_flow.upper(), w.unknown.upper()))
    return probes(method, "/api/v1/flows/{t}" + suffix, pairs, 404, "FLOW_NOT_FOUND", body)


def scope_probes(
    method: str, suffix: str = "", body: Callable[[str], Any] | None = None
) -> list[Probe]:
    pairs = [("secret", UNKNOWN_SCOPE), ("idle", UNKNOWN_SCOPE)]
    return probes(method, "/api/v1/live/scopes/{t}" + suffix, pairs, 404, "SCOPE_NOT_FOUND", body)


def lists_show_only_b(w: World, path: str, **params: str) -> None:
    """A list for B's key holds only B's objects and no id of A's."""
    response = w.b("GET", path, params=params)
    assert response.status_code == 200, response.text
    a_ids = ids_in(project_state(w.app, w.a_project, "default/default/"))
    assert a_ids, "project A has no rows"
    for a_id in a_ids | {w.a_project}:
        assert a_id not in response.text, f"{path} shows {a_id} of project A"
    for item in response.json()["data"]:
        assert item["projectId"] == w.b_project


def image_is_b(w: World, image_id: str) -> None:
    (row,) = rows(w.app, "SELECT project_id FROM images WHERE id = ?", image_id)
    assert row["project_id"] == w.b_project


CaseFn = Callable[[World], Checks]
CASES: dict[tuple[str, str], CaseFn] = {}


def case(method: str, path: str) -> Callable[[CaseFn], CaseFn]:
    def register(fn: CaseFn) -> CaseFn:
        CASES[(method, path)] = fn
        return fn

    return register


@case("GET", "/api/v1/project")
def _get_project(w: World) -> Checks:
    def own_project(w: World) -> None:
        data = data_of(w.b("GET", "/api/v1/project"), 200)
        assert (data["id"], data["organizationSlug"], data["slug"]) == (
            w.b_project,
            "other",
            "site",
        )

    return Checks(now=[own_project])


@case("PUT", "/api/v1/project")
def _put_project(w: World) -> Checks:
    def changes_only_b(w: World) -> None:
        body = {"newLiveScopesGenerationLimit": 7}
        data = data_of(w.b("PUT", "/api/v1/project", json=body), 200)
        assert data["id"] == w.b_project
        assert data["newLiveScopesGenerationLimit"] == 7

    return Checks(later=[changes_only_b])


@case("GET", "/api/v1/project/signing-secret")
def _signing_secret(w: World) -> Checks:
    def own_secret(w: World) -> None:
        a = data_of(w.app.project("GET", "/api/v1/project/signing-secret"), 200)["secret"]
        b = data_of(w.b("GET", "/api/v1/project/signing-secret"), 200)["secret"]
        assert a != b

    return Checks(now=[own_secret])


@case("POST", "/api/v1/project/signing-secret/rotate")
def _rotate_secret(w: World) -> Checks:
    def rotates_only_b(w: World) -> None:
        a = data_of(w.app.project("GET", "/api/v1/project/signing-secret"), 200)["secret"]
        b = data_of(w.b("GET", "/api/v1/project/signing-secret"), 200)["secret"]
        rotated = data_of(w.b("POST", "/api/v1/project/signing-secret/rotate"), 200)
        assert rotated["secret"] not in (a, b)
        assert data_of(w.app.project("GET", "/api/v1/project/signing-secret"), 200)["secret"] == a

    return Checks(later=[rotates_only_b])


@case("POST", "/api/v1/signed-urls")
def _sign_url(w: World) -> Checks:
    def only_own_paths(w: World) -> None:
        for path in (
            f"/cdn/default/default/img/{w.a_upload}",
            "/cdn/default/default/live/secret",
            "/api/images/default/default/uploads/a.png",
        ):
            body = {"path": path, "query": {"prompt": "x"}}
            assert_error(w.b("POST", "/api/v1/signed-urls", json=body), 400, "VALIDATION_ERROR")
        own = {"path": f"/cdn/other/site/img/{w.b_image}", "query": {}}
        signed = data_of(w.b("POST", "/api/v1/signed-urls", json=own), 200)
        assert signed["path"].startswith(f"/cdn/other/site/img/{w.b_image}?sig=")

    return Checks(now=[only_own_paths])


@case("POST", "/mcp")
def _mcp(w: World) -> Checks:
    headers = {"Accept": "application/json, text/event-stream", "X-API-Key": w.b_key}

    def call(tool: str, **arguments: Any) -> dict[str, Any]:
        message = {
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments},
        }  # fmt: skip
        answer = w.app.client.post("/mcp", json=message, headers=headers)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()["result"]
        return result

    def only_b(w: World) -> None:
        listed = json.dumps(call("list_images", limit=100))
        assert w.b_image in listed
        for image_id in w.a_images:
            assert image_id not in listed
        for ref in (*w.a_images, "@hero", "@fox"):
            assert call("get_image", image=ref)["isError"] is True
            assert call("delete_image", image=ref)["isError"] is True
            assert call("set_alias", image=ref, alias="@taken")["isError"] is True
        made = call("generate_image", prompt="a red fox", reference_images=["@hero"])
        assert made["isError"] is True  # A's alias is no reference for B

    return Checks(now=[only_b])


@case("POST", "/api/v1/images/upload")
def _upload(w: World) -> Checks:
    def foreign_flows_refused(w: World) -> None:
        before = project_state(w.app, w.b_project, "other/site/")
        for flow_id in (w.a_flow, w.a_flow_announced):
            for extra in ({}, {"flowAlias": "@mine"}):
                response = upload(w.app, png_bytes(), key=w.b_key, flowId=flow_id, **extra)
                assert_error(response, 404, "FLOW_NOT_FOUND")
        assert project_state(w.app, w.b_project, "other/site/") == before

    def alias_of_a_is_b_own(w: World) -> None:
        data = data_of(upload(w.app, png_bytes(color=(5, 5, 5)), key=w.b_key, alias="@hero"))
        assert data["projectId"] == w.b_project
        assert data["alias"] == "@hero"

    return Checks(later=[foreign_flows_refused, alias_of_a_is_b_own])


@case("GET", "/api/v1/images")
def _list_images(w: World) -> Checks:
    found = probes("GET", "/api/v1/images?flowId={t}", [(w.a_flow, w.unknown)], 200, None)
    found += probes(
        "GET", "/api/v1/images?flowId={t}", [(w.a_flow_announced, w.unknown)], 200, None
    )
    found += probes(
        "GET", "/api/v1/images?alias={t}", [("@hero", UNKNOWN_ALIAS), ("@fox", "@x")], 200, None
    )
    return Checks(
        probes=found,
        now=[
            lambda w: lists_show_only_b(w, "/api/v1/images", limit="100"),
            lambda w: lists_show_only_b(w, "/api/v1/images", source="generated"),
        ],
    )


@case("GET", "/api/v1/images/<ref:str>")
def _get_image(w: World) -> Checks:
    return Checks(probes=image_probes(w, "GET"))


@case("PUT", "/api/v1/images/<ref:str>")
def _put_image(w: World) -> Checks:
    body = {"meta": {"owner": "b"}, "focalPoint": {"x": 0.5, "y": 0.5}}
    return Checks(probes=image_probes(w, "PUT", body=lambda _: body))


@case("PUT", "/api/v1/images/<ref:str>/alias")
def _put_image_alias(w: World) -> Checks:
    assign = image_probes(w, "PUT", "/alias", body=lambda _: {"alias": "@stolen"})
    remove = image_probes(w, "PUT", "/alias", body=lambda _: {"alias": None})
    return Checks(probes=assign + remove)


@case("DELETE", "/api/v1/images/<ref:str>")
def _delete_image(w: World) -> Checks:
    return Checks(probes=image_probes(w, "DELETE"))


@case("POST", "/api/v1/generations")
def _create_generation(w: World) -> Checks:
    def refs(t: str) -> dict[str, Any]:
        return {"prompt": "p", "referenceImages": [t]}

    found = probes(
        "POST",
        "/api/v1/generations",
        [(image, w.unknown) for image in w.a_images] + [("@hero", UNKNOWN_ALIAS)],
        400,
        "REFERENCE_NOT_FOUND",
        refs,
    )
    for alias in ("@last", "@first", "@upload", "@shot"):
        found += probes(
            "POST",
            "/api/v1/generations",
            [(w.a_flow, w.unknown)],
            400,
            "REFERENCE_NOT_FOUND",
            lambda t, alias=alias: {"prompt": "p", "flowId": t, "referenceImages": [alias]},
        )

    def foreign_flows_refused(w: World) -> None:
        before = project_state(w.app, w.b_project, "other/site/")
        for flow_id in (w.a_flow, w.a_flow_announced):
            body = {"prompt": "in their flow", "flowId": flow_id}
            assert_error(w.b("POST", "/api/v1/generations", json=body), 404, "FLOW_NOT_FOUND")
        assert project_state(w.app, w.b_project, "other/site/") == before

    def prompt_aliases_of_a_are_not_references(w: World) -> None:
        body = {"prompt": "draw @hero and @fox"}
        data = data_of(w.b("POST", "/api/v1/generations", json=body))
        assert data["status"] == "success"
        assert data["projectId"] == w.b_project
        # @fox exists only in A; @hero may by now be B's own (the upload case)
        referenced = [ref["imageId"] for ref in data["referencedImages"]]
        assert not set(referenced) & set(w.a_images)
        assert "@fox" not in [ref["alias"] for ref in data["referencedImages"]]
        for image_id in referenced:
            image_is_b(w, image_id)

    return Checks(
        probes=found, later=[foreign_flows_refused, prompt_aliases_of_a_are_not_references]
    )


@case("GET", "/api/v1/generations")
def _list_generations(w: World) -> Checks:
    pairs = [(w.a_flow, w.unknown), (w.a_flow_announced, w.unknown)]
    return Checks(
        probes=probes("GET", "/api/v1/generations?flowId={t}", pairs, 200, None),
        now=[lambda w: lists_show_only_b(w, "/api/v1/generations", limit="100")],
    )


@case("GET", "/api/v1/generations/<generation_id:str>")
def _get_generation(w: World) -> Checks:
    return Checks(probes=generation_probes(w, "GET"))


@case("PUT", "/api/v1/generations/<generation_id:str>")
def _put_generation(w: World) -> Checks:
    body = {"prompt": "taken over", "aspectRatio": "16:9", "meta": {"b": 1}, "flowId": None}

    def own_generation_stays_out_of_foreign_flows(w: World) -> None:
        before = project_state(w.app, w.b_project, "other/site/")
        for flow_id in (w.a_flow, w.a_flow_announced):
            response = w.b("PUT", f"/api/v1/generations/{w.b_generation}", json={"flowId": flow_id})
            assert_error(response, 404, "FLOW_NOT_FOUND")
        assert project_state(w.app, w.b_project, "other/site/") == before

    return Checks(
        probes=generation_probes(w, "PUT", body=lambda _: body),
        now=[own_generation_stays_out_of_foreign_flows],
    )


@case("POST", "/api/v1/generations/<generation_id:str>/regenerate")
def _regenerate_generation(w: World) -> Checks:
    return Checks(probes=generation_probes(w, "POST", "/regenerate"))


@case("POST", "/api/v1/generations/<generation_id:str>/retry")
def _retry_generation(w: World) -> Checks:
    return Checks(probes=generation_probes(w, "POST", "/retry"))


@case("DELETE", "/api/v1/generations/<generation_id:str>")
def _delete_generation(w: World) -> Checks:
    return Checks(probes=generation_probes(w, "DELETE"))


@case("POST", "/api/v1/flows")
def _create_flow(w: World) -> Checks:
    found = probes(
        "POST",
        "/api/v1/flows",
        [(image, w.unknown) for image in w.a_images],
        404,
        "IMAGE_NOT_FOUND",
        lambda t: {"aliases": {"@mine": t}},
    )
    found += probes(
        "POST",
        "/api/v1/flows",
        [("@hero", UNKNOWN_ALIAS)],
        404,
        "ALIAS_NOT_FOUND",
        lambda t: {"aliases": {"@mine": t}},
    )
    return Checks(probes=found)


@case("GET", "/api/v1/flows")
def _list_flows(w: World) -> Checks:
    return Checks(now=[lambda w: lists_show_only_b(w, "/api/v1/flows", limit="100")])


@case("GET", "/api/v1/flows/<flow_id:str>")
def _get_flow(w: World) -> Checks:
    return Checks(probes=flow_probes(w, "GET"))


@case("GET", "/api/v1/flows/<flow_id:str>/generations")
def _flow_generations(w: World) -> Checks:
    return Checks(probes=flow_probes(w, "GET", "/generations"))


@case("GET", "/api/v1/flows/<flow_id:str>/images")
def _flow_images(w: World) -> Checks:
    return Checks(probes=flow_probes(w, "GET", "/images"))


@case("PUT", "/api/v1/flows/<flow_id:str>/aliases")
def _put_flow_aliases(w: World) -> Checks:
    found = flow_probes(w, "PUT", "/aliases", body=lambda _: {"aliases": {"@x": w.b_image}})
    # B's own flow may not point at A's images
    found += probes(
        "PUT",
        f"/api/v1/flows/{w.b_flow}/aliases",
        [(image, w.unknown) for image in w.a_images],
        404,
        "IMAGE_NOT_FOUND",
        lambda t: {"aliases": {"@x": t}},
    )
    found += probes(
        "PUT",
        f"/api/v1/flows/{w.b_flow}/aliases",
        [("@hero", UNKNOWN_ALIAS)],
        404,
        "ALIAS_NOT_FOUND",
        lambda t: {"aliases": {"@x": t}},
    )
    return Checks(probes=found)


@case("DELETE", "/api/v1/flows/<flow_id:str>/aliases/<alias:str>")
def _delete_flow_alias(w: World) -> Checks:
    return Checks(
        probes=flow_probes(w, "DELETE", "/aliases/@shot")
        + flow_probes(w, "DELETE", "/aliases/@foxshot")
    )


@case("POST", "/api/v1/flows/<flow_id:str>/regenerate")
def _regenerate_flow(w: World) -> Checks:
    return Checks(probes=flow_probes(w, "POST", "/regenerate"))


@case("DELETE", "/api/v1/flows/<flow_id:str>")
def _delete_flow(w: World) -> Checks:
    return Checks(probes=flow_probes(w, "DELETE"))


@case("GET", "/api/v1/live/generate")
def _live_generate(w: World) -> Checks:
    def never_serves_a_cache(w: World) -> None:
        calls = len(w.provider.calls)
        params = {"prompt": LIVE_PROMPT, "scope": "secret"}
        response = w.b("GET", "/api/v1/live/generate", params=params)
        assert response.status_code == 200, response.text
        assert response.headers["x-cache-status"] == "MISS"
        assert response.headers["x-image-id"] != w.a_live
        image_is_b(w, response.headers["x-image-id"])
        assert len(w.provider.calls) == calls + 1

    return Checks(later=[never_serves_a_cache])


@case("POST", "/api/v1/live/scopes")
def _create_scope(w: World) -> Checks:
    def slugs_are_per_project(w: World) -> None:
        for slug in ("idle", "fresh-scope"):  # A's slug, and one nobody has
            data = data_of(w.b("POST", "/api/v1/live/scopes", json={"slug": slug}))
            assert (data["projectId"], data["currentGenerations"]) == (w.b_project, 0)

    return Checks(later=[slugs_are_per_project])


@case("GET", "/api/v1/live/scopes")
def _list_scopes(w: World) -> Checks:
    def only_b(w: World) -> None:
        lists_show_only_b(w, "/api/v1/live/scopes")
        slugs = [s["slug"] for s in w.b("GET", "/api/v1/live/scopes").json()["data"]]
        assert slugs == ["mine"]

    return Checks(now=[only_b])


@case("GET", "/api/v1/live/scopes/<slug:str>")
def _get_scope(w: World) -> Checks:
    return Checks(probes=scope_probes("GET"))


@case("PUT", "/api/v1/live/scopes/<slug:str>")
def _put_scope(w: World) -> Checks:
    body = {"allowNewGenerations": False, "newGenerationsLimit": 0, "meta": {"b": 1}}
    return Checks(probes=scope_probes("PUT", body=lambda _: body))


@case("POST", "/api/v1/live/scopes/<slug:str>/regenerate")
def _regenerate_scope(w: World) -> Checks:
    found = scope_probes("POST", "/regenerate", body=lambda _: {"imageId": w.a_live})
    found += scope_probes("POST", "/regenerate")
    # B's own scope with A's live image
    found += probes(
        "POST",
        "/api/v1/live/scopes/mine/regenerate",
        [(w.a_live, w.unknown)],
        400,
        "IMAGE_NOT_IN_SCOPE",
        lambda t: {"imageId": t},
    )
    return Checks(probes=found)


@case("DELETE", "/api/v1/live/scopes/<slug:str>")
def _delete_scope(w: World) -> Checks:
    return Checks(probes=scope_probes("DELETE"))


def _cdn_image_probes(w: World, method: str) -> list[Probe]:
    found = probes(
        method,
        "/cdn/other/site/img/{t}",
        [(image, w.unknown) for image in w.a_images],
        404,
        "IMAGE_NOT_FOUND",
        keyed=False,
    )
    found += probes(
        method,
        "/cdn/other/site/img/{t}",
        [("@hero", UNKNOWN_ALIAS), ("@fox", UNKNOWN_ALIAS), ("%40hero", "%40nosuch")],
        404,
        "IMAGE_NOT_FOUND",
        keyed=False,
    )
    return found


@case("GET", "/cdn/<org:str>/<project:str>/img/<ref:str>")
def _cdn_image(w: World) -> Checks:
    return Checks(probes=_cdn_image_probes(w, "GET"))


@case("HEAD", "/cdn/<org:str>/<project:str>/img/<ref:str>")
def _cdn_image_head(w: World) -> Checks:
    return Checks(probes=_cdn_image_probes(w, "HEAD"))


def _legacy_made_in_b(route: str, **request: Any) -> Callable[[World], None]:
    """B's legacy generation: published under B's name space, no reference of A's
    (``@hero`` in the prompt is B's alias or nothing)."""

    def check(w: World) -> None:
        response = w.b("POST", route, **request)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert data["filepath"].startswith("other/site/generated/")
        image_is_b(w, data["imageId"])
        refs = rows(
            w.app,
            "SELECT image_id FROM generation_references WHERE generation_id = ?",
            data["generationId"],
        )
        assert all(r["image_id"] not in w.a_images for r in refs)
        name = data["filepath"].rsplit("/", 1)[-1]
        refused = w.app.client.get(f"/api/images/default/default/generated/{name}")
        assert refused.status_code == 404

    return check


@case("POST", "/api/generate")
def _legacy_generate(w: World) -> Checks:
    form = {"prompt": "like @hero", "filename": "b-hero"}
    return Checks(later=[_legacy_made_in_b("/api/generate", data=form, files={"_": ("", b"")})])


@case("POST", "/api/text-to-image")
def _legacy_text_to_image(w: World) -> Checks:
    body = {"prompt": "like @fox", "filename": "b-fox"}
    return Checks(later=[_legacy_made_in_b("/api/text-to-image", json=body)])


@case("POST", "/api/upload")
def _legacy_upload(w: World) -> Checks:
    def published_in_b(w: World) -> None:
        files = {"file": ("secret.png", png_bytes(color=(3, 3, 3)), "image/png")}
        response = w.b("POST", "/api/upload", files=files)
        assert response.status_code == 201, response.text
        data = response.json()["data"]
        assert data["filepath"] == "other/site/uploads/secret.png"
        image_is_b(w, data["imageId"])
        # A's name of the same spelling still serves A's image
        own = w.app.client.get("/api/images/default/default/uploads/secret.png")
        assert own.headers["x-image-id"] == w.a_upload

    return Checks(later=[published_in_b])


@case("POST", "/api/enhance")
def _legacy_enhance(w: World) -> Checks:
    def stores_nothing(w: World) -> None:
        before = project_state(w.app, w.b_project, "other/site/")
        response = w.b("POST", "/api/enhance", json={"prompt": "@hero at dawn"})
        assert response.status_code == 200, response.text
        assert project_state(w.app, w.b_project, "other/site/") == before

    return Checks(now=[stores_nothing])


def _legacy_image_probes(method: str) -> list[Probe]:
    return probes(
        method,
        "/api/images/other/site/uploads/{t}",
        [("secret.png", "nosuch.png")],
        404,
        "IMAGE_NOT_FOUND",
        keyed=False,
    )


@case("GET", "/api/images/<org:str>/<project:str>/<category:str>/<filename:str>")
def _legacy_image(w: World) -> Checks:
    return Checks(probes=_legacy_image_probes("GET"))


@case("HEAD", "/api/images/<org:str>/<project:str>/<category:str>/<filename:str>")
def _legacy_image_head(w: World) -> Checks:
    return Checks(probes=_legacy_image_probes("HEAD"))


def _door_made_in_b(path: str, **request: Any) -> Callable[[World], None]:
    """B's image through the OpenAI door: B's generation, image and uploads only."""

    def check(w: World) -> None:
        headers = {"Authorization": f"Bearer {w.b_key}"}
        response = w.app.client.post(path, headers=headers, **request)
        assert response.status_code == 200, response.text
        for item in response.json()["data"]:
            image_is_b(w, item["image_id"])
            refs = rows(
                w.app,
                "SELECT r.image_id, i.project_id FROM generation_references r"
                " JOIN images i ON i.id = r.image_id WHERE r.generation_id = ?",
                item["generation_id"],
            )
            assert all(r["project_id"] == w.b_project for r in refs)
            assert all(r["image_id"] not in w.a_images for r in refs)

    return check


@case("POST", "/v1/images/generations")
def _door_generate(w: World) -> Checks:
    body = {"prompt": "like @hero", "size": "256x256"}
    return Checks(later=[_door_made_in_b("/v1/images/generations", json=body)])


@case("POST", "/v1/images/edits")
def _door_edit(w: World) -> Checks:
    files = {"image": ("a.png", png_bytes(color=(4, 4, 4)), "image/png")}
    form = {"prompt": "like @hero", "size": "256x256"}
    return Checks(later=[_door_made_in_b("/v1/images/edits", files=files, data=form)])


@case("POST", "/v1/images/variations")
def _door_variation(w: World) -> Checks:
    files = {"image": ("a.png", png_bytes(color=(6, 6, 6)), "image/png")}
    return Checks(later=[_door_made_in_b("/v1/images/variations", files=files)])


def _models_are_the_providers(w: World) -> None:
    """Models are the provider's, the same for every project; nothing of A's shows."""
    headers = {"Authorization": f"Bearer {w.b_key}"}
    listed = w.app.client.get("/v1/models", headers=headers).json()["data"]
    assert listed == w.app.client.get("/v1/models", headers=bearer_a(w)).json()["data"]
    for model in listed:
        one = w.app.client.get(f"/v1/models/{model['id']}", headers=headers)
        assert one.json() == model
    for a_id in (w.a_project, w.a_upload, w.a_generation):
        refused = w.app.client.get(f"/v1/models/{a_id}", headers=headers)
        assert refused.status_code == 404


def bearer_a(w: World) -> dict[str, str]:
    return {"Authorization": f"Bearer {w.app.project_key}"}


@case("GET", "/v1/models")
def _door_models(w: World) -> Checks:
    return Checks(now=[_models_are_the_providers])


@case("GET", "/v1/models/<model_id:str>")
def _door_model(w: World) -> Checks:
    return Checks(now=[_models_are_the_providers])


@case("GET", "/cdn/<org:str>/<project:str>/live/<scope:str>")
def _cdn_live(w: World) -> Checks:
    def never_serves_a_cache(w: World) -> None:
        response = w.app.client.get("/cdn/other/site/live/secret", params={"prompt": LIVE_PROMPT})
        assert response.status_code == 200, response.text
        assert response.headers["x-image-id"] != w.a_live
        image_is_b(w, response.headers["x-image-id"])
        # one generation of the prompt per project, never a shared one
        made = rows(
            w.app,
            "SELECT project_id, COUNT(*) AS n FROM generations WHERE user_prompt = ?"
            " GROUP BY project_id ORDER BY project_id",
            LIVE_PROMPT,
        )
        assert sorted((r["project_id"], r["n"]) for r in made) == sorted(
            [(w.a_project, 1), (w.b_project, 1)]
        )

    return Checks(later=[never_serves_a_cache])


def project_scoped_routes() -> list[tuple[str, str]]:
    """Routes that read or write one project's data: ``/api/v1``, the legacy routes,
    ``/cdn`` and the legacy ``/api/images``."""
    return [
        (method, path)
        for access, method, path, _ in ROUTES
        if access == "project" or path.startswith(("/cdn/", "/api/images/"))
    ]


def test_every_project_route_has_an_isolation_case() -> None:
    """A new project route without a case here fails; so does a case for a route
    that is gone. Routes outside projects take no parameter that names project data."""
    scoped = project_scoped_routes()
    missing = [route for route in scoped if route not in CASES]
    assert not missing, f"routes without an isolation case: {missing}"
    stale = [route for route in CASES if route not in scoped]
    assert not stale, f"isolation cases for routes that do not exist: {stale}"
    for access, method, path, _ in ROUTES:
        if (method, path) in scoped:
            continue
        assert access in ("public", "master"), (access, method, path)
        params = set(re.findall(r"<(\w+)", path))
        # key ids are global (master keys only); documentation assets are static files
        assert params <= {"key_id", "asset"}, f"{method} {path} takes {params}"


def test_no_project_route_reaches_another_projects_data(start_server: Start) -> None:
    """Project B's key gets, on every project route, the answer an unknown id gets;
    nothing of project A changes; B's lists and live URLs never show A's objects."""
    w = build_world(start_server)
    a_before = project_state(w.app, w.a_project, "default/default/")
    b_before = project_state(w.app, w.b_project, "other/site/")
    assert len(a_before["images"]) == 4
    assert len(a_before["live_cache_entries"]) == 1

    plans = []
    for route in project_scoped_routes():
        assert route in CASES, f"no isolation case for {route}"
        plans.append((route, CASES[route](w)))
    assert sum(len(plan.probes) for _, plan in plans) > 100

    # Phase 1: reads, and writes that must fail. Neither project changes.
    for _, plan in plans:
        for probe in plan.probes:
            run_probe(w, probe)
        for check in plan.now:
            check(w)
    assert project_state(w.app, w.b_project, "other/site/") == b_before
    assert project_state(w.app, w.a_project, "default/default/") == a_before

    # Phase 2: B makes things of its own under A's names; A still does not change.
    for _, plan in plans:
        for check in plan.later:
            check(w)
    assert project_state(w.app, w.a_project, "default/default/") == a_before
    for path in ("/api/v1/images", "/api/v1/generations", "/api/v1/flows", "/api/v1/live/scopes"):
        lists_show_only_b(w, path, limit="100")

    # A still reaches all of it
    assert data_of(w.app.project("GET", "/api/v1/images/@hero"), 200)["id"] == w.a_upload
    hit = w.app.client.get("/cdn/default/default/live/secret", params={"prompt": LIVE_PROMPT})
    assert (hit.headers["x-cache-status"], hit.headers["x-image-id"]) == ("HIT", w.a_live)


# =========================================================================== 2
# Keys are never logged, and shown once


def record_text(record: logging.LogRecord) -> str:
    """Everything a log record carries: message, arguments, extras, exception."""
    return record.getMessage() + "\n" + repr(vars(record))


def test_keys_appear_only_in_the_response_that_creates_them(
    start_server: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = start_server(
        create_keys=False,
        provider=QuickProvider(),
        log__level="debug",
        server__access_log=True,
    )
    seen: list[tuple[str, httpx.Response]] = []
    made: dict[str, str] = {}  # label of the creating request -> its key

    def call(label: str, method: str, path: str, key: str | None = None, **kw: Any) -> Any:
        headers = {"X-API-Key": key} if key is not None else {}
        response = app.client.request(method, path, headers=headers, **kw)
        seen.append((label, response))
        return response

    boot = call("bootstrap", "POST", "/api/bootstrap/initial-key")
    master = made["bootstrap"] = data_of(boot)["key"]
    assert_error(call("again", "POST", "/api/bootstrap/initial-key"), 403, "BOOTSTRAP_DISABLED")
    body = {"type": "project", "organizationSlug": "acme", "projectSlug": "web", "name": "web"}
    project = made["create project"] = data_of(
        call("create project", "POST", "/api/admin/keys", master, json=body)
    )["key"]
    second = data_of(
        call("create master", "POST", "/api/admin/keys", master, json={"type": "master"})
    )
    made["create master"] = second["key"]
    listed = data_of(call("list", "GET", "/api/admin/keys", master), 200)
    assert sorted(k["keyPrefix"] for k in listed) == sorted(k[:12] for k in made.values())

    # the project key at work
    data_of(call("project", "GET", "/api/v1/project", project), 200)
    image = upload(app, png_bytes(), key=project)
    seen.append(("upload", image))
    data_of(image)
    live = call("live", "GET", "/api/v1/live/generate", project, params={"prompt": "keys"})
    assert live.status_code == 200
    call("404", "GET", f"/api/v1/images/{uuid.uuid4()}", project)

    # every way to fail authentication
    near_miss = project[:-1] + flip(project[-1])
    failures = [
        (None, "/api/v1/project", 401, "MISSING_API_KEY"),
        ("bnt_123", "/api/v1/project", 401, "INVALID_API_KEY"),
        ("bnt_" + "a" * 64, "/api/v1/project", 401, "INVALID_API_KEY"),
        (near_miss, "/api/v1/project", 401, "INVALID_API_KEY"),
        (project.upper(), "/api/v1/project", 401, "INVALID_API_KEY"),
        (master, "/api/v1/project", 403, "FORBIDDEN"),
        (project, "/api/admin/keys", 403, "FORBIDDEN"),
    ]
    for key, path, status, code in failures:
        assert_error(call("failure", "GET", path, key), status, code)
    assert_error(
        call("revoke by project key", "DELETE", f"/api/admin/keys/{second['id']}", project),
        403,
        "FORBIDDEN",
    )
    revoked = data_of(call("revoke", "DELETE", f"/api/admin/keys/{second['id']}", master), 200)
    assert revoked == {"id": second["id"], "isActive": False}
    assert_error(call("revoked", "GET", "/api/admin/keys", second["key"]), 401, "API_KEY_REVOKED")
    call("list again", "GET", "/api/admin/keys", master)
    app.client.close()  # no idle connection left for the stopping server
    app.server.stop()  # every access-log line and shutdown message is written now

    for label, response in seen:
        text = response.text + "\n" + repr(sorted(response.headers.multi_items()))
        expected = [made[label]] if label in made else []
        assert KEY_ANY_CASE.findall(text) == expected, f"{label}: {text[:300]}"

    presented = [near_miss, "bnt_" + "a" * 64, *made.values()]
    for record in caplog.records:
        text = record_text(record)
        assert not KEY_ANY_CASE.search(text), f"{record.name}: {text[:500]}"
        for key in presented:
            assert key[4:].lower() not in text.lower(), f"{record.name} logs a key"

    # the capture saw what it had to see: access lines for key routes, debug records
    access = [r for r in caplog.records if r.name == "sanic.access"]
    assert any("/api/admin/keys" in record_text(r) for r in access)
    assert any("/api/bootstrap/initial-key" in record_text(r) for r in access)
    assert any(r.levelno == logging.DEBUG for r in caplog.records)


def test_bootstrap_gives_out_one_master_key_however_many_ask(start_server: Start) -> None:
    """Racing callers of the keyless bootstrap route: one 201, every other one 403."""
    app = start_server(create_keys=False)

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=app.url, timeout=30) as client:
            calls = [client.post("/api/bootstrap/initial-key") for _ in range(12)]
            return list(await asyncio.gather(*calls))

    answers = asyncio.run(race())
    assert sorted(r.status_code for r in answers) == [201] + [403] * 11
    for refused in (r for r in answers if r.status_code == 403):
        assert_error(refused, 403, "BOOTSTRAP_DISABLED")
        assert not KEY_ANY_CASE.search(refused.text)
    assert count(app, "api_keys") == 1


@pytest.fixture
def cli_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Run the CLI in-process on a fresh data directory; returns stdout and stderr."""
    for name in list(os.environ):
        if name.startswith("BANATIE_") or name in ("GEMINI_API_KEY", "OPENAI_API_KEY"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    data_dir = tmp_path / "cli-data"

    def run(*args: str) -> str:
        result = runner.invoke(cli, [*args, "--data-dir", str(data_dir)], prog_name="banatie-local")
        assert result.exit_code == 0, result.output
        return result.output

    return run


def test_cli_shows_a_key_only_when_it_makes_it(
    cli_run: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first = sorted(set(KEY_IN_TEXT.findall(cli_run("init"))))  # the hint repeats one
    assert len(first) == 2
    made = KEY_IN_TEXT.findall(cli_run("keys", "create", "--type", "project", "--org", "acme"))
    as_json = json.loads(cli_run("keys", "create", "--type", "master", "--json"))
    assert len(made) == 1
    assert KEY_IN_TEXT.fullmatch(as_json["key"])
    keys = [*first, *made, as_json["key"]]

    quiet = [
        cli_run("keys", "list"),
        cli_run("keys", "list", "--json"),
        cli_run("init"),
        cli_run("init", "--json"),
        cli_run("projects", "list"),
        cli_run("stats"),
        cli_run("keys", "revoke", as_json["id"]),
        cli_run("keys", "list", "--json"),
    ]
    for output in quiet:
        assert not KEY_IN_TEXT.search(output), output
        for key in keys:
            assert key[12:] not in output
    # the JSON document comes first; stderr may follow it in the mixed output
    listed = json.JSONDecoder().raw_decode(quiet[1])[0]
    assert sorted(k["keyPrefix"] for k in listed) == sorted(k[:12] for k in keys)
    init_json = json.JSONDecoder().raw_decode(quiet[3])[0]
    assert init_json["masterKey"] is None
    assert init_json["projectKey"] is None
    for record in caplog.records:
        assert not KEY_IN_TEXT.search(record_text(record))


# =========================================================================== 3
# Keys are looked up by their SHA-256


def flip(text: str) -> str:
    """Every hex character replaced by a different one."""
    return "".join("1" if c == "0" else "0" for c in text)


def test_near_miss_keys_get_the_same_answer_as_any_other_wrong_key(app: Running) -> None:
    """Sharing 67, 36 or 12 characters with a real key, or none: the same 401, byte
    for byte, on both key types' routes."""
    for real, path in ((app.project_key, "/api/v1/project"), (app.master_key, "/api/admin/keys")):
        assert real is not None
        assert app.client.get(path, headers={"X-API-Key": real}).status_code == 200
        candidates = [
            real[:-1] + flip(real[-1]),
            real[:36] + flip(real[36:]),
            real[:12] + flip(real[12:]),  # the prefix the key list shows
            "bnt_" + flip(real[4:]),
            "bnt_" + hashlib.sha256(b"unrelated").hexdigest(),
            real.upper(),
            real + "0",
            real[:-1],
            real[4:],
            "bnt_",
            "x" * 500,
        ]
        answers = set()
        for candidate in candidates:
            response = app.client.get(path, headers={"X-API-Key": candidate})
            assert_error(response, 401, "INVALID_API_KEY")
            answers.add((response.status_code, response.content, tuple(sorted(response.headers))))
        assert len(answers) == 1, answers


def key_lookups(caplog: pytest.LogCaptureFixture) -> list[tuple[str, tuple[Any, ...]]]:
    """The SELECTs on api_keys that peewee logged: (sql, params)."""
    found = []
    for record in caplog.records:
        if record.name != "peewee" or not isinstance(record.msg, tuple):
            continue
        sql, params = record.msg
        if sql.lstrip().upper().startswith("SELECT") and '"api_keys"' in sql:
            found.append((sql, tuple(params or ())))
    return found


def test_authentication_looks_up_the_hash_never_the_key(
    app: Running, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one query authentication makes carries ``hash_key(presented)`` and no part
    of the key; SQLite answers it from the unique index on ``key_hash``. Near and far
    misses cost the same query; a malformed key costs none."""
    real = app.project_key
    assert real is not None
    hashed: list[str] = []
    original = keys_module.hash_key

    def spy(plaintext: str) -> str:
        hashed.append(plaintext)
        return original(plaintext)

    monkeypatch.setattr(keys_module, "hash_key", spy)
    caplog.set_level(logging.DEBUG, logger="peewee")
    queries = set()
    for presented, status in (
        (real, 200),
        (real[:-1] + flip(real[-1]), 401),
        ("bnt_" + flip(real[4:]), 401),
    ):
        caplog.clear()
        hashed.clear()
        response = app.client.get("/api/v1/project", headers={"X-API-Key": presented})
        assert response.status_code == status
        assert hashed == [presented]
        (lookup,) = key_lookups(caplog)
        sql, params = lookup
        assert [p for p in params if isinstance(p, str)] == [hash_key(presented)]
        assert all(isinstance(p, str | int) for p in params)
        assert presented[4:] not in repr(params)  # nor the key itself, which contains it
        assert "key_hash" in sql
        queries.add(sql)
    assert len(queries) == 1  # one query text, whatever the key

    with sqlite(app.settings.database_path) as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
    assert "(key_hash=?)" in plan, plan
    assert "INDEX" in plan, plan

    for malformed in ("bnt_123", real.upper(), real + "0"):
        caplog.clear()
        hashed.clear()
        assert (
            app.client.get("/api/v1/project", headers={"X-API-Key": malformed}).status_code == 401
        )
        assert key_lookups(caplog) == []
        assert hashed == []


def test_only_hashes_of_keys_are_stored(app: Running) -> None:
    """The database keeps SHA-256 and the 12-character prefix; no file in the data
    directory holds a key or the part of it that is never shown."""
    keys = [app.master_key, app.project_key, app.new_project_key("acme", "web")]
    keys = [k for k in keys if k]
    assert len(keys) == 3
    with sqlite(app.settings.database_path) as conn:
        stored = {
            (row["key_hash"], row["key_prefix"])
            for row in conn.execute("SELECT key_hash, key_prefix FROM api_keys")
        }
        assert stored == {(hashlib.sha256(k.encode()).hexdigest(), k[:12]) for k in keys}
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for cell in row:
                    for key in keys:
                        assert key[12:] not in str(cell), f"{table} holds a key"
    data_files = [p for p in app.settings.data_dir.rglob("*") if p.is_file()]
    assert any(p.name.startswith("banatie.db") for p in data_files)
    for path in data_files:
        content = path.read_bytes()
        for key in keys:
            assert key[12:].encode() not in content, f"{path} holds a key"


# =========================================================================== 4
# Upload bombs and polyglots


def huge_jpeg() -> bytes:
    """A real baseline JPEG whose SOF0 header is rewritten to declare 65000×65000."""
    data = bytearray(jpeg_bytes(8, 8))
    i = 2
    while i < len(data):
        marker = data[i + 1]
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", 65000, 65000)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker")


def zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", "<script>alert(document.cookie)</script>")
    return buffer.getvalue()


HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"
SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg">'
    b"<script>alert(document.cookie)</script></svg>"
)


def truncated_webp() -> bytes:
    data = webp_bytes(64, 64)
    return data[: len(data) // 2]  # the RIFF size still declares the whole file


INVALID = (400, "INVALID_FILE")
UNSUPPORTED = (415, "UNSUPPORTED_MEDIA_TYPE")
TOO_LARGE = (413, "FILE_TOO_LARGE")

# name: (bytes, the part's Content-Type, expected status and code)
HOSTILE_UPLOADS: dict[str, tuple[Callable[[], bytes], str, tuple[int, str]]] = {
    "png declaring 100000x100000": (lambda: declared_png(100_000, 100_000), "image/png", INVALID),
    "png of 42 megapixels": (lambda: bilevel_png(7000, 6000), "image/png", INVALID),
    "jpeg declaring 65000x65000": (huge_jpeg, "image/jpeg", INVALID),
    "png signature then html": (lambda: PNG_SIGNATURE + HTML, "image/png", INVALID),
    "gif header then html": (lambda: b"GIF89a/*" + HTML + b"*/", "image/gif", UNSUPPORTED),
    "real gif": (gif_bytes, "image/png", UNSUPPORTED),
    "png signature then zip": (lambda: PNG_SIGNATURE + zip_archive(), "image/png", INVALID),
    "zip named png": (zip_archive, "image/png", UNSUPPORTED),
    "svg with script named png": (lambda: SVG, "image/png", UNSUPPORTED),
    "html named png": (lambda: HTML, "image/png", UNSUPPORTED),
    "webp with a truncated chunk": (truncated_webp, "image/webp", INVALID),
    "webp header only": (lambda: b"RIFF\xff\xff\xff\x7fWEBPVP8L", "image/webp", INVALID),
    "truncated png": (truncated_png, "image/png", INVALID),
    "corrupt jpeg": (corrupt_jpeg, "image/jpeg", INVALID),
    "empty file": (lambda: b"", "image/png", INVALID),
    "file over the upload limit": (lambda: padded_png(1024 * 1024 + 1), "image/png", TOO_LARGE),
}


def nothing_stored(app: Running) -> Callable[[], None]:
    """A check that no row or file appeared since it was made."""
    tables = ("images", "flows", "flow_aliases", "generations")
    counts = {table: count(app, table) for table in tables}
    files = stored_files(app)

    def check() -> None:
        assert {table: count(app, table) for table in tables} == counts
        assert stored_files(app) == files

    return check


@pytest.mark.parametrize("name", list(HOSTILE_UPLOADS))
def test_hostile_uploads_are_refused_and_store_nothing(start_server: Start, name: str) -> None:
    payload, content_type, (status, code) = HOSTILE_UPLOADS[name]
    app = start_server(server__max_upload_mb=1)
    unchanged = nothing_stored(app)
    data = payload()
    for fields in ({}, {"alias": "@evil", "flowId": str(uuid.uuid4()), "flowAlias": "@evil"}):
        assert_error(upload(app, data, "evil.png", content_type, **fields), status, code)
    unchanged()


def test_bodies_over_the_server_limit_are_refused_before_reading(start_server: Start) -> None:
    app = start_server(server__max_upload_mb=1)
    unchanged = nothing_stored(app)
    too_big = os.urandom(2 * 1024 * 1024 + 4096)  # over 1 MB + the 1 MiB envelope
    assert_error(upload(app, too_big), 413, "FILE_TOO_LARGE")
    unchanged()


@pytest.mark.parametrize(
    "meta",
    [
        pytest.param(json.dumps({"pad": "x" * 20_000}), id="over 16 KB"),
        pytest.param(json.dumps({"pad": "x" * 500_000}), id="half a megabyte"),
        pytest.param("[" * 8000 + "]" * 8000, id="deeply nested"),
        pytest.param('{"a": NaN}', id="not json"),
        pytest.param("[1, 2]", id="not an object"),
    ],
)
def test_oversized_or_hostile_meta_field_is_refused(start_server: Start, meta: str) -> None:
    app = start_server(server__max_upload_mb=1)
    unchanged = nothing_stored(app)
    error = assert_error(upload(app, png_bytes(), meta=meta), 400, "VALIDATION_ERROR")
    assert error["details"] == {"field": "meta"}
    unchanged()


def test_accepted_images_are_served_with_the_type_of_their_bytes(
    start_server: Start,
) -> None:
    """A PNG sent as ``text/html`` with an HTML file name, and carrying HTML after its
    end, is stored under its own key and always served as image/png: cleaned of the
    HTML by default, byte for byte with ``uploads.strip_metadata`` off."""
    polyglot = png_bytes(16, 16) + HTML
    cleaning = start_server()
    cleaned = data_of(upload(cleaning, polyglot, "../../index.html", "text/html"))
    served = cleaning.client.get(f"/cdn/default/default/img/{cleaned['id']}")
    assert served.headers["content-type"] == "image/png"
    assert served.content == png_bytes(16, 16)  # what follows the image's end is gone
    assert cleaned["fileSize"] == len(served.content)
    cleaning.stop()
    app = start_server(uploads__strip_metadata=False)
    data = data_of(upload(app, polyglot, "../../index.html", "text/html", alias="@page"))
    assert data["mimeType"] == "image/png"
    assert data["storageKey"] == f"default/default/img/{data['id']}"
    assert data["fileSize"] == len(polyglot)
    jpeg = data_of(upload(app, jpeg_bytes(), "photo.html", "text/html"))
    assert jpeg["mimeType"] == "image/jpeg"

    for ref, mime, body in ((data["id"], "image/png", polyglot), ("@page", "image/png", polyglot)):
        for method in ("GET", "HEAD"):
            response = app.client.request(method, f"/cdn/default/default/img/{ref}")
            assert response.status_code == 200
            assert response.headers["content-type"] == mime
            assert "html" not in response.headers["content-type"]
            if method == "GET":
                assert response.content == body
    served = app.client.get(f"/cdn/default/default/img/{jpeg['id']}")
    assert served.headers["content-type"] == "image/jpeg"
    assert (app.settings.storage_root / data["storageKey"]).read_bytes() == polyglot


# =========================================================================== 5
# Header injection


@dataclass(frozen=True)
class RawResponse:
    status: int
    header_lines: list[bytes]
    body: bytes

    def header(self, name: str) -> str | None:
        for line in self.header_lines:
            key, _, value = line.partition(b":")
            if key.decode().lower() == name.lower():
                return value.decode().strip()
        return None

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(
    app: Running,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> RawResponse:
    """One request over a plain socket; the response head exactly as sent."""
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: 127.0.0.1:{app.server.port}",
        "Connection: close",
    ]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    with socket.create_connection(("127.0.0.1", app.server.port), timeout=20) as sock:
        sock.sendall("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, separator, rest = raw.partition(b"\r\n\r\n")
    assert separator, raw[:200]
    status_line, *header_lines = head.split(b"\r\n")
    assert re.fullmatch(rb"HTTP/1\.1 \d{3} [ -~]*", status_line), status_line
    return RawResponse(int(status_line.split()[1]), header_lines, rest)


HEADER_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[ \t]*[^\r\n]*")
KNOWN_HEADERS = {
    "allow",
    "alt-svc",
    "cache-control",
    "connection",
    "content-length",
    "content-type",
    "etag",
    "keep-alive",
    "retry-after",
    "x-cache-hit-count",
    "x-cache-status",
    "x-generation-id",
    "x-image-id",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-scope",
}


def assert_clean_head(response: RawResponse) -> None:
    """Every header line is one well-formed header of a name this API sends."""
    names = []
    for line in response.header_lines:
        assert HEADER_LINE.fullmatch(line), line
        names.append(line.split(b":", 1)[0].decode().lower())
    assert "set-cookie" not in names
    assert set(names) <= KNOWN_HEADERS, set(names) - KNOWN_HEADERS
    assert len(names) == len(set(names)), names


CRLF_IN_QUERY = [
    "%0d%0aSet-Cookie:%20x=1",
    "%0aSet-Cookie:%20x=1",
    "%E5%98%8A%E5%98%8DSet-Cookie:%20x=1",
]
CRLF_IN_TEXT = ["\r\nSet-Cookie: x=1", "\nSet-Cookie: x=1", "\r\n\r\n<html>", "\n"]


@dataclass
class Injector:
    """An appliance with an image ``@base`` in a flow, and requests whose response
    heads are checked line by line."""

    app: Running
    flow: str
    image: str

    def send(
        self,
        method: str,
        target: str,
        body: Any = None,
        *,
        status: int = 200,
        code: str | None = None,
        key: str | None = None,
    ) -> RawResponse:
        headers = {}
        if target.startswith("/api/"):
            headers["X-API-Key"] = key or self.app.project_key or ""
        payload = b""
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        response = raw_request(self.app, method, target, headers, payload)
        assert_clean_head(response)
        assert response.status == status, (target, body, response.body[:300])
        if code is not None:
            assert response.json()["error"]["code"] == code
        return response

    def refused(self, method: str, target: str, code: str, body: Any = None) -> RawResponse:
        status = 404 if code.endswith("NOT_FOUND") else 400
        return self.send(method, target, body, status=status, code=code)


@pytest.fixture
def injector(start_server: Start) -> Injector:
    app = start_server(provider=QuickProvider())
    flow = str(uuid.uuid4())
    image = data_of(upload(app, png_bytes(), flowId=flow, alias="@base"))["id"]
    return Injector(app, flow, image)


@pytest.mark.parametrize("crlf", CRLF_IN_QUERY)
def test_crlf_in_query_strings_and_paths_never_becomes_a_header(
    injector: Injector, crlf: str
) -> None:
    send, refused, flow = injector.send, injector.refused, injector.flow
    # a prompt is free text: it is generated (MISS), then served (HIT), headers intact
    for _ in range(2):
        served = send("GET", f"/cdn/default/default/live/main?prompt=p{crlf}")
        assert served.header("x-scope") == "main"
        assert served.header("content-type") == "image/png"
    send("GET", f"/api/v1/live/generate?prompt=q{crlf}")
    send("GET", f"/health?x={crlf}")
    # every other query parameter is checked and refused
    live = "/cdn/default/default/live/main?prompt=p"
    refused("GET", f"{live}&aspectRatio=1:1{crlf}", "INVALID_ASPECT_RATIO")
    refused("GET", f"{live}&template=general{crlf}", "VALIDATION_ERROR")
    refused("GET", f"{live}&autoEnhance=true{crlf}", "VALIDATION_ERROR")
    refused("GET", f"/api/v1/live/generate?prompt=p&scope=s{crlf}", "SCOPE_INVALID_FORMAT")
    refused("GET", f"/api/v1/images?alias=%40a{crlf}", "INVALID_ALIAS_FORMAT")
    refused("GET", f"/api/v1/images?flowId={flow}{crlf}", "VALIDATION_ERROR")
    refused("GET", f"/api/v1/images?source=generated{crlf}", "VALIDATION_ERROR")
    refused("GET", f"/api/v1/images?limit=1{crlf}", "VALIDATION_ERROR")
    refused("GET", f"/api/v1/generations?status=success{crlf}", "VALIDATION_ERROR")
    refused("GET", f"/api/v1/images/%40base?flowId={flow}{crlf}", "VALIDATION_ERROR")
    # paths: slugs and aliases with CR/LF are refused or not found
    refused("GET", f"/cdn/default/default/live/s{crlf}?prompt=p", "SCOPE_INVALID_FORMAT")
    refused("GET", f"/cdn/default/default/img/%40base{crlf}", "IMAGE_NOT_FOUND")
    send("HEAD", f"/cdn/default/default/img/%40base{crlf}", status=404)
    refused("GET", f"/cdn/default{crlf}/default/img/{injector.image}", "IMAGE_NOT_FOUND")
    refused("GET", f"/api/v1/images/%40base{crlf}", "INVALID_ALIAS_FORMAT")
    refused("GET", f"/api/v1/live/scopes/main{crlf}", "SCOPE_NOT_FOUND")
    refused("DELETE", f"/api/v1/flows/{flow}/aliases/%40a{crlf}", "ALIAS_NOT_FOUND")
    refused("GET", f"/no-such-route{crlf}", "NOT_FOUND")


@pytest.mark.parametrize("crlf", CRLF_IN_TEXT)
def test_crlf_in_json_fields_never_becomes_a_header(injector: Injector, crlf: str) -> None:
    send, refused, flow, image = injector.send, injector.refused, injector.flow, injector.image
    # free text (prompts, meta) is kept as given and stays inside the JSON body
    made = send(
        "POST",
        "/api/v1/generations",
        {"prompt": f"a prompt{crlf}end", "meta": {"note": f"v{crlf}"}},
        status=201,
    )
    assert made.json()["data"]["prompt"] == f"a prompt{crlf}end"
    send("PUT", f"/api/v1/images/{image}", {"meta": {"note": f"v{crlf}"}})
    send("POST", "/api/v1/live/scopes", {"slug": "noted", "meta": {"n": crlf}}, status=201)
    for method in ("GET", "HEAD"):  # served images carry none of it
        assert send(method, f"/cdn/default/default/img/{image}").header("x-image-id") == image
    # aliases and slugs are refused with their format errors
    bad_alias = f"@a{crlf}"
    for method, target, body in (
        ("POST", "/api/v1/generations", {"prompt": "p", "alias": bad_alias}),
        ("POST", "/api/v1/generations", {"prompt": "p", "flowAlias": bad_alias}),
        ("PUT", f"/api/v1/images/{image}/alias", {"alias": bad_alias}),
        ("PUT", f"/api/v1/flows/{flow}/aliases", {"aliases": {bad_alias: image}}),
        ("POST", "/api/v1/flows", {"aliases": {bad_alias: image}}),
    ):
        refused(method, target, "INVALID_ALIAS_FORMAT", body)
    refused("POST", "/api/v1/live/scopes", "SCOPE_INVALID_FORMAT", {"slug": f"s{crlf}"})
    for field_name in ("organizationSlug", "projectSlug"):
        body = {"type": "project", field_name: f"acme{crlf}"}
        send(
            "POST",
            "/api/admin/keys",
            body,
            status=400,
            code="VALIDATION_ERROR",
            key=injector.app.master_key,
        )
    app = injector.app
    assert not any(
        "\r" in r["alias"] or "\n" in r["alias"]
        for r in rows(app, "SELECT alias FROM images WHERE alias IS NOT NULL")
    )
    assert all(
        re.fullmatch(r"[A-Za-z0-9_-]+", r["slug"])
        for r in rows(app, "SELECT slug FROM live_scopes")
    )
    assert all(
        re.fullmatch(r"[a-z0-9-]+", r["slug"]) for r in rows(app, "SELECT slug FROM projects")
    )


@pytest.mark.parametrize("crlf", CRLF_IN_TEXT)
def test_crlf_in_upload_form_fields_never_becomes_a_header(injector: Injector, crlf: str) -> None:
    for form, code in (
        ({"alias": f"@a{crlf}"}, "INVALID_ALIAS_FORMAT"),
        ({"flowAlias": f"@a{crlf}"}, "INVALID_ALIAS_FORMAT"),
        ({"flowId": f"{injector.flow}{crlf}"}, "VALIDATION_ERROR"),
        ({"meta": json.dumps({"n": crlf})}, None),
    ):
        request = httpx.Request(
            "POST",
            "http://appliance/api/v1/images/upload",
            files={"file": ("a.png", png_bytes(), "image/png")},
            data=form,
        )
        headers = {
            "X-API-Key": injector.app.project_key or "",
            "Content-Type": request.headers["content-type"],
        }
        response = raw_request(
            injector.app, "POST", "/api/v1/images/upload", headers, request.read()
        )
        assert_clean_head(response)
        if code is None:
            assert response.status == 201, response.body
        else:
            assert (response.status, response.json()["error"]["code"]) == (400, code)


# =========================================================================== 6
# Trusted proxies


def live_get(app: Running, prompt: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return app.client.get(
        "/cdn/default/default/live/main", params={"prompt": prompt}, headers=headers or {}
    )


def assert_miss(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["x-cache-status"] == "MISS"


def test_forwarded_headers_are_ignored_without_trusted_proxies(start_server: Start) -> None:
    provider = QuickProvider()
    app = start_server(
        provider=provider, live__new_generations_per_ip_per_hour=1, live__ip_limit_exempt=[]
    )
    assert_miss(live_get(app, "the one allowed miss"))
    spoofs = [
        {"X-Forwarded-For": "203.0.113.7"},
        {"X-Forwarded-For": "198.51.100.1, 203.0.113.9"},
        {"X-Forwarded-For": "127.0.0.2"},
        {"X-Forwarded-For": "::1"},
        {"X-Forwarded-For": "garbage"},
        {"X-Real-IP": "203.0.113.8"},
        {"Forwarded": "for=203.0.113.10;proto=https"},
        {"True-Client-IP": "203.0.113.11", "CF-Connecting-IP": "203.0.113.12"},
    ]
    for i, headers in enumerate(spoofs):
        refused = live_get(app, f"spoofed {i}", headers)
        assert_error(refused, 429, "RATE_LIMIT_EXCEEDED")
        assert refused.headers["x-ratelimit-remaining"] == "0"
    assert provider.calls == ["the one allowed miss"]
    assert count(app, "generations") == 1


def test_behind_a_trusted_proxy_the_rightmost_untrusted_address_is_limited(
    start_server: Start,
) -> None:
    provider = QuickProvider()
    app = start_server(
        provider=provider,
        live__new_generations_per_ip_per_hour=1,
        live__ip_limit_exempt=[],
        server__trusted_proxies=["127.0.0.1"],
    )

    def get(prompt: str, forwarded: str | None = None) -> httpx.Response:
        return live_get(app, prompt, {"X-Forwarded-For": forwarded} if forwarded else None)

    assert_miss(get("client one", "203.0.113.7"))
    # addresses a client writes to the left of what the proxy appended change nothing
    assert_error(get("client one again", "198.51.100.23, 203.0.113.7"), 429, "RATE_LIMIT_EXCEEDED")
    # a trusted hop on the right is skipped
    assert_error(get("client one again", "203.0.113.7, 127.0.0.1"), 429, "RATE_LIMIT_EXCEEDED")
    # the rightmost untrusted address is the client, not the leftmost
    assert_miss(get("client two", "203.0.113.7, 198.51.100.1"))
    assert_error(get("client two again", "198.51.100.1"), 429, "RATE_LIMIT_EXCEEDED")
    # no header: the proxy itself is the client
    assert_miss(get("the proxy"))
    # anything unbelievable falls back to the peer, whose budget is spent
    for junk in (
        "garbage",
        "unknown",
        "203.0.113.50:8080",
        "[2001:db8::1]",
        ", ,,",
        "203.0.113.51, garbage",
        "127.0.0.1",
        "x" * 4000,
    ):
        assert_error(get(f"junk {junk[:20]}", junk), 429, "RATE_LIMIT_EXCEEDED")
    assert provider.calls == ["client one", "client two", "the proxy"]


def test_trusted_proxy_settings_do_not_touch_keyed_live_requests(start_server: Start) -> None:
    """/api/v1/live/generate is limited by its key; no forwarded address moves it."""
    app = start_server(
        provider=QuickProvider(),
        live__new_generations_per_ip_per_hour=1,
        limits__requests_per_hour=2,
        server__trusted_proxies=["127.0.0.1"],
    )
    for i in range(2):
        response = app.project(
            "GET",
            "/api/v1/live/generate",
            params={"prompt": f"keyed {i}"},
            headers={"X-Forwarded-For": f"203.0.113.{i + 1}"},
        )
        assert response.status_code == 200, response.text
    refused = app.project(
        "GET",
        "/api/v1/live/generate",
        params={"prompt": "keyed 3"},
        headers={"X-Forwarded-For": "203.0.113.99"},
    )
    assert_error(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert "requests in the last hour" in refused.json()["error"]["message"]


# =========================================================================== 7
# What a request without a key may write


def live_statuses(app: Running, slugs: list[str]) -> list[int]:
    return [
        app.client.get(f"/cdn/default/default/live/{slug}", params={"prompt": "x"}).status_code
        for slug in slugs
    ]


def test_fresh_scope_slugs_spend_the_ip_budget(start_server: Start) -> None:
    """Without a key, a new scope is made only by a miss that spends the per-IP budget;
    with the budget spent, or with new scopes closed, fresh slugs add nothing."""
    app = start_server(
        provider=QuickProvider(), live__new_generations_per_ip_per_hour=2, live__ip_limit_exempt=[]
    )
    slugs = [f"fresh{i}" for i in range(8)]
    assert live_statuses(app, slugs) == [200, 200] + [429] * 6
    assert count(app, "live_scopes") == 2

    closed = start_server(provider=QuickProvider(), live__new_generations_per_ip_per_hour=0)
    closed.project("PUT", "/api/v1/project", json={"allowNewLiveScopes": False})
    assert live_statuses(closed, slugs) == [403] * 8
    assert count(closed, "live_scopes") == 0
    assert count(closed, "generations") == 0


def test_refused_misses_in_new_scopes_do_not_add_rows_without_limit(start_server: Start) -> None:
    app = start_server(provider=QuickProvider(), live__new_generations_per_ip_per_hour=2)
    app.project("PUT", "/api/v1/project", json={"newLiveScopesGenerationLimit": 0})
    assert set(live_statuses(app, [f"s{i}" for i in range(20)])) == {429}
    assert count(app, "generations") == 0
    assert count(app, "live_scopes") <= 2  # at most what the per-IP budget pays for
