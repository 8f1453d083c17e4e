"""Alias rules of API.md §1.2 at the service level, on a real SQLite file."""

from __future__ import annotations

import asyncio
import io
import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from banatie_local.db.models import FlowAlias, Image
from banatie_local.errors import NotFoundError, ValidationError
from banatie_local.services.aliases import (
    AliasService,
    check_alias,
    prompt_aliases,
)
from banatie_local.services.container import Services, initialize, open_services
from banatie_local.services.context import Context
from banatie_local.services.images import Upload
from banatie_local.services.validation import new_id
from tests.helpers import make_settings, sqlite

_colors = itertools.count(1)


def png_bytes() -> bytes:
    """A tiny PNG, different on every call."""
    n = next(_colors)
    buffer = io.BytesIO()
    PILImage.new("RGB", (4, 4), (n % 256, n * 7 % 256, n * 13 % 256)).save(buffer, "PNG")
    return buffer.getvalue()


@dataclass
class Env:
    services: Services
    ctx: Context
    other: Context

    @property
    def aliases(self) -> AliasService:
        return self.services.aliases

    @property
    def project_id(self) -> str:
        return self.ctx.project_id

    def upload(self, ctx: Context | None = None, **fields: Any) -> Image:
        """An uploaded image; ``flow_id`` defaults to no flow."""
        fields.setdefault("flow_id", None)
        upload = Upload(data=png_bytes(), **fields)
        return asyncio.run(self.services.images.upload(ctx or self.ctx, upload))

    def generated(self, flow_id: str | None, ctx: Context | None = None) -> Image:
        """A 'generated' image row (no file needed for alias rules)."""
        ctx = ctx or self.ctx
        image_id = new_id()
        now = self.services.clock.now_us()
        return Image.create(
            id=image_id,
            project_id=ctx.project_id,
            flow_id=flow_id,
            generation_id=None,
            storage_key=f"{ctx.organization.slug}/{ctx.project.slug}/img/{image_id}",
            mime_type="image/png",
            file_size=1,
            file_hash="0" * 64,
            width=1,
            height=1,
            source="generated",
            meta={},
            created_at=now,
            updated_at=now,
        )

    def flow(self, ctx: Context | None = None) -> str:
        """A new flow row; its id."""
        flow_id = str(uuid.uuid4())
        self.services.flows.ensure((ctx or self.ctx).project_id, flow_id)
        return flow_id

    def alias_of(self, image: Image) -> str | None:
        with sqlite(self.services.settings.database_path) as db:
            row = db.execute("SELECT alias FROM images WHERE id = ?", (image.id,)).fetchone()
        return row["alias"] if row else None


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    services = open_services(make_settings(tmp_path / "data"))
    initialize(services, create_keys=False)
    ref = services.projects.get("default", "default")
    other = services.projects.ensure("other", "site")
    yield Env(
        services,
        Context(ref.organization, ref.project),
        Context(other.organization, other.project),
    )
    services.close()


def ids(refs: list[Any]) -> list[str]:
    return [ref.image.id for ref in refs]


# ------------------------------------------------------------ check_alias


@pytest.mark.parametrize(
    "value",
    ["@a", "@hero", "@Hero_2-b", "@-", "@_", "@" + "a" * 49, "@lastone", "@uploads"],
)
def test_check_alias_accepts_valid_names(value: str) -> None:
    assert check_alias(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "@",
        "hero",
        "@@hero",
        "@" + "a" * 50,
        "@he ro",
        "@hero!",
        "@a.b",
        "@a/b",
        "@héro",
        "@١٢",
        " @hero",
        "@hero ",
        "@hero\t",
        "@hero\x00",
    ],
)
def test_check_alias_rejects_bad_format(value: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_alias(value)
    assert info.value.code == "INVALID_ALIAS_FORMAT"
    assert info.value.status == 400
    assert info.value.details == {"field": "alias"}


def test_check_alias_rejects_trailing_newline() -> None:
    with pytest.raises(ValidationError) as info:
        check_alias("@hero\n")
    assert info.value.code == "INVALID_ALIAS_FORMAT"


@pytest.mark.parametrize("value", [None, 5, 1.5, True, ["@a"], {"@a": 1}, b"@hero"])
def test_check_alias_rejects_other_types(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        check_alias(value)
    assert info.value.code == "INVALID_ALIAS_FORMAT"


@pytest.mark.parametrize("value", ["@last", "@first", "@upload"])
def test_check_alias_refuses_technical_names(value: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_alias(value)
    assert info.value.code == "RESERVED_ALIAS"
    assert info.value.status == 400


def test_check_alias_names_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        check_alias("bad", "flowAlias")
    assert info.value.details == {"field": "flowAlias"}
    with pytest.raises(ValidationError) as info:
        check_alias("@last", "flowAlias")
    assert info.value.details == {"field": "flowAlias"}


# -------------------------------------------------------- prompt_aliases


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("@hero on a beach", ["@hero"]),
        ("a cat next to @hero", ["@hero"]),
        ("first line\n@hero second", ["@hero"]),
        ("tab\t@hero", ["@hero"]),
        ("mail a@b.com please", []),
        ("x@hero", []),
        ("(@hero)", []),
        ("@a,@b", ["@a"]),
        ("@a @b\n@c", ["@a", "@b", "@c"]),
        ("@c then @a then @b", ["@c", "@a", "@b"]),
        ("@a @a", ["@a", "@a"]),
        ("@hero-2_x.png", ["@hero-2_x"]),
        ("@", []),
        ("no aliases at all", []),
        ("", []),
    ],
)
def test_prompt_aliases(prompt: str, expected: list[str]) -> None:
    assert prompt_aliases(prompt) == expected


def test_prompt_aliases_returns_unchecked_candidates() -> None:
    long = "@" + "x" * 60
    assert prompt_aliases(f"{long} @héro @last") == [long, "@héro", "@last"]


# ---------------------------------------------------------------- resolve


def test_resolve_project_alias(env: Env) -> None:
    image = env.upload(alias="@hero")
    assert env.aliases.resolve(env.project_id, "@hero").id == image.id
    flow_id = env.flow()
    assert env.aliases.resolve(env.project_id, "@hero", flow_id).id == image.id


def test_resolve_unknown_alias(env: Env) -> None:
    env.upload(alias="@hero")
    with pytest.raises(NotFoundError) as info:
        env.aliases.resolve(env.project_id, "@nobody")
    assert info.value.code == "ALIAS_NOT_FOUND"
    assert info.value.status == 404
    with pytest.raises(NotFoundError) as info:
        env.aliases.resolve(env.project_id, "@nobody", env.flow())
    assert info.value.code == "ALIAS_NOT_FOUND"


@pytest.mark.parametrize("alias", ["hero", "@", "@he ro", "@" + "a" * 50])
def test_resolve_malformed_alias(env: Env, alias: str) -> None:
    with pytest.raises(ValidationError) as info:
        env.aliases.resolve(env.project_id, alias)
    assert info.value.code == "INVALID_ALIAS_FORMAT"


def test_flow_alias_shadows_project_alias_only_inside_its_flow(env: Env) -> None:
    project_image = env.upload(alias="@hero")
    flow_id = env.flow()
    flow_image = env.upload(flow_id=flow_id, flow_alias="@hero")
    elsewhere = env.flow()
    assert env.aliases.resolve(env.project_id, "@hero", flow_id).id == flow_image.id
    assert env.aliases.resolve(env.project_id, "@hero").id == project_image.id
    assert env.aliases.resolve(env.project_id, "@hero", elsewhere).id == project_image.id
    # an announced flow id without a row has no flow aliases either
    assert env.aliases.resolve(env.project_id, "@hero", str(uuid.uuid4())).id == project_image.id


def test_flow_only_alias_needs_its_flow(env: Env) -> None:
    flow_id = env.flow()
    image = env.upload(flow_id=flow_id, flow_alias="@scene")
    assert env.aliases.resolve(env.project_id, "@scene", flow_id).id == image.id
    with pytest.raises(NotFoundError) as info:
        env.aliases.resolve(env.project_id, "@scene")
    assert info.value.code == "ALIAS_NOT_FOUND"
    with pytest.raises(NotFoundError):
        env.aliases.resolve(env.project_id, "@scene", env.flow())


def test_aliases_do_not_cross_projects(env: Env) -> None:
    flow_id = env.flow()
    env.upload(alias="@hero", flow_id=flow_id, flow_alias="@scene")
    other_id = env.other.project_id
    with pytest.raises(NotFoundError):
        env.aliases.resolve(other_id, "@hero")
    # the flow belongs to the default project: its map is not visible from another one
    with pytest.raises(NotFoundError):
        env.aliases.resolve(other_id, "@scene", flow_id)
    theirs = env.upload(ctx=env.other, alias="@hero")
    assert env.aliases.resolve(other_id, "@hero").id == theirs.id
    assert env.aliases.resolve(env.project_id, "@hero").id != theirs.id


def test_technical_alias_wins_over_a_flow_alias_of_that_name(env: Env) -> None:
    flow_id = env.flow()
    generated = env.generated(flow_id)
    decoy = env.upload(flow_id=flow_id)
    FlowAlias.insert(flow_id=flow_id, alias_name="@last", image_id=decoy.id, created_at=1).execute()
    assert env.aliases.resolve(env.project_id, "@last", flow_id).id == generated.id


# ------------------------------------------------------ technical aliases


def test_technical_aliases_pick_newest_and_oldest(env: Env) -> None:
    flow_id = env.flow()
    other_flow = env.flow()
    env.generated(None)  # outside any flow
    first = env.generated(flow_id)
    env.upload(flow_id=flow_id)
    middle = env.generated(flow_id)
    last_upload = env.upload(flow_id=flow_id)
    last = env.generated(flow_id)
    # newer images elsewhere never count
    env.generated(other_flow)
    env.upload(flow_id=other_flow)
    env.generated(None)
    env.generated(flow_id, ctx=env.other)
    assert middle.id not in {first.id, last.id}
    assert env.aliases.resolve(env.project_id, "@last", flow_id).id == last.id
    assert env.aliases.resolve(env.project_id, "@first", flow_id).id == first.id
    assert env.aliases.resolve(env.project_id, "@upload", flow_id).id == last_upload.id


def test_technical_aliases_follow_new_images(env: Env) -> None:
    flow_id = env.flow()
    first = env.generated(flow_id)
    assert env.aliases.resolve(env.project_id, "@last", flow_id).id == first.id
    newer = env.generated(flow_id)
    assert env.aliases.resolve(env.project_id, "@last", flow_id).id == newer.id
    assert env.aliases.resolve(env.project_id, "@first", flow_id).id == first.id


@pytest.mark.parametrize("alias", ["@last", "@first", "@upload"])
def test_technical_alias_needs_a_flow(env: Env, alias: str) -> None:
    env.generated(None)
    env.upload()
    with pytest.raises(ValidationError) as info:
        env.aliases.resolve(env.project_id, alias)
    assert info.value.code == "FLOW_CONTEXT_REQUIRED"
    assert info.value.status == 400


def test_technical_alias_in_a_flow_without_matching_images(env: Env) -> None:
    uploads_only = env.flow()
    env.upload(flow_id=uploads_only)
    for alias in ("@last", "@first"):
        with pytest.raises(NotFoundError) as info:
            env.aliases.resolve(env.project_id, alias, uploads_only)
        assert info.value.code == "ALIAS_NOT_FOUND"
    generated_only = env.flow()
    env.generated(generated_only)
    with pytest.raises(NotFoundError) as info:
        env.aliases.resolve(env.project_id, "@upload", generated_only)
    assert info.value.code == "ALIAS_NOT_FOUND"
    empty = env.flow()
    for alias in ("@last", "@first", "@upload"):
        with pytest.raises(NotFoundError):
            env.aliases.resolve(env.project_id, alias, empty)


def test_technical_alias_ignores_another_projects_flow(env: Env) -> None:
    flow_id = env.flow()
    env.generated(flow_id)
    with pytest.raises(NotFoundError) as info:
        env.aliases.resolve(env.other.project_id, "@last", flow_id)
    assert info.value.code == "ALIAS_NOT_FOUND"


# ------------------------------------------------------------ resolve_ref


def test_resolve_ref_by_id(env: Env) -> None:
    image = env.upload(alias="@hero")
    assert env.aliases.resolve_ref(env.project_id, image.id).id == image.id
    assert env.aliases.resolve_ref(env.project_id, image.id.upper()).id == image.id
    assert env.aliases.resolve_ref(env.project_id, "@hero").id == image.id


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "garbage",
        "123",
        "{id}x",
        " {id}",
        "{{{id}}}",
        "urn:uuid:{id}",
        "{nohyphens}",
        "../{id}",
        str(uuid.uuid4()),
    ],
)
def test_resolve_ref_unknown_is_image_not_found(env: Env, ref: str) -> None:
    image = env.upload()
    value = ref.format(id=image.id, nohyphens=image.id.replace("-", ""))
    with pytest.raises(NotFoundError) as info:
        env.aliases.resolve_ref(env.project_id, value)
    assert info.value.code == "IMAGE_NOT_FOUND"
    assert info.value.status == 404


def test_resolve_ref_of_another_projects_image(env: Env) -> None:
    theirs = env.upload(ctx=env.other)
    for value in (theirs.id, theirs.id.upper()):
        with pytest.raises(NotFoundError) as info:
            env.aliases.resolve_ref(env.project_id, value)
        assert info.value.code == "IMAGE_NOT_FOUND"
    assert env.aliases.resolve_ref(env.other.project_id, theirs.id).id == theirs.id


def test_resolve_ref_alias_errors(env: Env) -> None:
    with pytest.raises(NotFoundError) as info:
        env.aliases.resolve_ref(env.project_id, "@nobody")
    assert info.value.code == "ALIAS_NOT_FOUND"
    with pytest.raises(ValidationError) as info:
        env.aliases.resolve_ref(env.project_id, "@last")
    assert info.value.code == "FLOW_CONTEXT_REQUIRED"


# ------------------------------------------------------------- references


@pytest.fixture
def four(env: Env) -> list[Image]:
    """Four images with project aliases @a, @b, @c, @d."""
    return [env.upload(alias=f"@{name}") for name in "abcd"]


def test_references_explicit_first_then_prompt(env: Env, four: list[Image]) -> None:
    a, b, c, _ = four
    refs = env.aliases.references(env.project_id, [c.id], "put @a next to @b", None)
    assert ids(refs) == [c.id, a.id, b.id]
    assert [ref.alias for ref in refs] == [None, "@a", "@b"]


def test_references_explicit_aliases_keep_their_name(env: Env, four: list[Image]) -> None:
    a, b, _, _ = four
    refs = env.aliases.references(env.project_id, ["@b", a.id], "", None)
    assert ids(refs) == [b.id, a.id]
    assert [ref.alias for ref in refs] == ["@b", None]


def test_references_dedupe_by_image_keeping_the_first(env: Env, four: list[Image]) -> None:
    a, b, c, _ = four
    refs = env.aliases.references(
        env.project_id, [b.id, "@a", a.id.upper()], "@b and @c and @a again @c", None
    )
    assert ids(refs) == [b.id, a.id, c.id]
    assert [ref.alias for ref in refs] == [None, "@a", "@c"]


def test_references_prompt_only(env: Env, four: list[Image]) -> None:
    a, _, c, _ = four
    refs = env.aliases.references(env.project_id, [], "@c\n@a", None)
    assert ids(refs) == [c.id, a.id]


def test_references_none(env: Env, four: list[Image]) -> None:
    assert env.aliases.references(env.project_id, [], "a plain prompt, mail x@a.com", None) == []


@pytest.mark.parametrize(
    "ref",
    ["@nobody", "garbage", str(uuid.uuid4()), "@bad!", "@" + "a" * 60, "@last-flow", ""],
)
def test_references_unknown_explicit(env: Env, four: list[Image], ref: str) -> None:
    with pytest.raises(ValidationError) as info:
        env.aliases.references(env.project_id, [four[0].id, ref], "", None)
    assert info.value.code == "REFERENCE_NOT_FOUND"
    assert info.value.status == 400
    assert info.value.details == {"field": "referenceImages"}


def test_references_explicit_from_another_project(env: Env, four: list[Image]) -> None:
    theirs = env.upload(ctx=env.other, alias="@theirs")
    for ref in (theirs.id, "@theirs"):
        with pytest.raises(ValidationError) as info:
            env.aliases.references(env.project_id, [ref], "", None)
        assert info.value.code == "REFERENCE_NOT_FOUND"


@pytest.mark.parametrize("alias", ["@last", "@first", "@upload"])
def test_references_explicit_technical_needs_flow(env: Env, alias: str) -> None:
    env.generated(None)
    with pytest.raises(ValidationError) as info:
        env.aliases.references(env.project_id, [alias], "", None)
    assert info.value.code == "FLOW_CONTEXT_REQUIRED"


def test_references_explicit_technical_in_flow(env: Env) -> None:
    flow_id = env.flow()
    generated = env.generated(flow_id)
    refs = env.aliases.references(env.project_id, ["@last"], "", flow_id)
    assert ids(refs) == [generated.id]
    assert refs[0].alias == "@last"
    with pytest.raises(ValidationError) as info:
        env.aliases.references(env.project_id, ["@upload"], "", flow_id)
    assert info.value.code == "REFERENCE_NOT_FOUND"


def test_references_skip_bad_prompt_candidates(env: Env, four: list[Image]) -> None:
    a, b, _, _ = four
    long = "@" + "x" * 60
    prompt = f"@nobody {long} @héro @last @first @upload @a then @b"
    refs = env.aliases.references(env.project_id, [], prompt, None)
    assert ids(refs) == [a.id, b.id]
    assert env.aliases.references(env.project_id, [], "@upload", env.flow()) == []


def test_references_prompt_uses_flow_context(env: Env, four: list[Image]) -> None:
    flow_id = env.flow()
    generated = env.generated(flow_id)
    shadow = env.upload(flow_id=flow_id, flow_alias="@a")
    refs = env.aliases.references(env.project_id, [], "@last with @a", flow_id)
    assert ids(refs) == [generated.id, shadow.id]
    assert ids(env.aliases.references(env.project_id, [], "@a", None)) == [four[0].id]


def test_references_three_are_allowed(env: Env, four: list[Image]) -> None:
    a, b, c, _ = four
    assert ids(env.aliases.references(env.project_id, [a.id, b.id, c.id], "", None)) == [
        a.id,
        b.id,
        c.id,
    ]
    assert len(env.aliases.references(env.project_id, [a.id, b.id], "@c", None)) == 3


def test_references_four_that_dedupe_to_three_are_allowed(env: Env, four: list[Image]) -> None:
    a, b, c, _ = four
    refs = env.aliases.references(env.project_id, [a.id, "@b", c.id, "@a"], "@c @b", None)
    assert ids(refs) == [a.id, b.id, c.id]


@pytest.mark.parametrize(
    ("explicit", "prompt"),
    [
        (["@a", "@b", "@c", "@d"], ""),
        (["@a", "@b", "@c"], "and @d"),
        ([], "@a @b @c @d"),
        (["@a"], "@a @b @c @d"),
    ],
)
def test_references_more_than_three(
    env: Env, four: list[Image], explicit: list[str], prompt: str
) -> None:
    with pytest.raises(ValidationError) as info:
        env.aliases.references(env.project_id, explicit, prompt, None)
    assert info.value.code == "TOO_MANY_REFERENCES"
    assert info.value.status == 400


# ------------------------------------------------------------- assignment


def test_assign_project_alias(env: Env) -> None:
    image = env.upload()
    before = image.updated_at
    assert env.aliases.assign_project_alias(image, "@hero") == [image.id]
    assert env.alias_of(image) == "@hero"
    assert image.alias_name == "@hero"
    assert image.updated_at > before
    # assigning the alias it already holds changes only itself
    assert env.aliases.assign_project_alias(image, "@hero") == [image.id]
    assert env.alias_of(image) == "@hero"


def test_assign_project_alias_moves_it(env: Env) -> None:
    holder = env.upload(alias="@hero")
    taker = env.upload()
    changed = env.aliases.assign_project_alias(taker, "@hero")
    assert sorted(changed) == sorted([taker.id, holder.id])
    assert changed[0] == taker.id
    assert env.alias_of(taker) == "@hero"
    assert env.alias_of(holder) is None
    refreshed = Image.get_by_id(holder.id)
    assert refreshed.updated_at > holder.updated_at
    assert env.aliases.resolve(env.project_id, "@hero").id == taker.id


def test_assign_project_alias_leaves_other_projects_alone(env: Env) -> None:
    theirs = env.upload(ctx=env.other, alias="@hero")
    mine = env.upload()
    assert env.aliases.assign_project_alias(mine, "@hero") == [mine.id]
    assert env.alias_of(theirs) == "@hero"
    assert env.alias_of(mine) == "@hero"


def test_assign_project_alias_none_removes_it(env: Env) -> None:
    image = env.upload(alias="@hero")
    other = env.upload(alias="@other")
    assert env.aliases.assign_project_alias(image, None) == [image.id]
    assert env.alias_of(image) is None
    assert env.alias_of(other) == "@other"
    with pytest.raises(NotFoundError):
        env.aliases.resolve(env.project_id, "@hero")
    # removing when there is nothing to remove is harmless
    assert env.aliases.assign_project_alias(image, None) == [image.id]


def test_set_flow_alias_replaces_the_entry(env: Env) -> None:
    flow_id = env.flow()
    second_flow = env.flow()
    first = env.upload(flow_id=flow_id)
    second = env.upload(flow_id=flow_id)
    env.aliases.set_flow_alias(flow_id, "@scene", first.id)
    env.aliases.set_flow_alias(second_flow, "@scene", first.id)
    env.aliases.set_flow_alias(flow_id, "@scene", second.id)
    assert env.aliases.resolve(env.project_id, "@scene", flow_id).id == second.id
    assert env.aliases.resolve(env.project_id, "@scene", second_flow).id == first.id
    with sqlite(env.services.settings.database_path) as db:
        rows = db.execute(
            "SELECT image_id FROM flow_aliases WHERE flow_id = ? AND alias = ?",
            (flow_id, "@scene"),
        ).fetchall()
    assert [row["image_id"] for row in rows] == [second.id]


def test_one_image_may_hold_several_flow_aliases(env: Env) -> None:
    flow_id = env.flow()
    image = env.upload(flow_id=flow_id)
    env.aliases.set_flow_alias(flow_id, "@one", image.id)
    env.aliases.set_flow_alias(flow_id, "@two", image.id)
    assert env.aliases.resolve(env.project_id, "@one", flow_id).id == image.id
    assert env.aliases.resolve(env.project_id, "@two", flow_id).id == image.id
