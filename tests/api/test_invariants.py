"""Random sequences of uploads, generations, alias moves, regenerations and deletes,
driven over HTTP against a running server. After every step the database and the
stored files must be consistent, and must match a small model of the alias and delete
rules of API.md §1.2, §2, §3 and §4."""

from __future__ import annotations

import hashlib
import io
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from PIL import Image as PILImage

from banatie_local.providers import GeneratedImage, ProviderError, ReferenceImage
from tests.conftest import Running
from tests.helpers import sqlite
from tests.imagedata import png_bytes

FAIL_WORD = "unrenderable"
ALIASES = ("@a", "@b", "@c")
RESERVED = ("@last", "@first", "@upload")
PROMPTS = (
    "a red kite over the dunes",
    "a lighthouse at dusk",
    "@a in the rain",
    "@b next to @c",
    "@a, @b and @c together",
    f"an {FAIL_WORD} scene",
)
# flowIds a request may name; each example starts with none of them created
FLOW_POOL = (
    "0b7c58a8-1f55-4a8e-9d43-2f4a8e0c6d11",
    "5e2d4c1a-7b3f-4f0e-8a6c-9d1b2e3f4a52",
    "c9a8b7d6-e5f4-4a3b-8c2d-1e0f9a8b7c63",
)
MAX_REFERENCES = 3
PROMPT_ALIAS_RE = re.compile(r"(?:^|\s)(@[\w-]+)")  # API.md §1.2

# Derandomized, so CI runs the same examples every time. No shrinking: each attempt
# replays a whole sequence against the server, which would take minutes; add
# Phase.shrink locally to reduce a failing sequence.
RUN_SETTINGS = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

OPTIONAL_ALIAS = st.sampled_from((None, None, *ALIASES))
# mostly a real alias or none; now and then a reserved one, which must be refused
ALIAS_OR_RESERVED = st.sampled_from((None, None, None, *ALIASES, *ALIASES, "@last"))
# "absent", "null", or an index into the flow ids this example knows
FLOW = st.one_of(st.sampled_from(["absent", "null"]), st.integers(0, 63))
INDEX = st.integers(0, 63)
STALE = st.integers(0, 7).map(lambda n: n == 7)


class InstantProvider:
    """Answers at once with a tiny PNG whose pixels depend on the prompt and on a call
    counter, so every regeneration writes new bytes; refuses prompts with FAIL_WORD."""

    name = "instant"
    model = "instant-1"

    def __init__(self) -> None:
        self.calls = 0

    async def generate(
        self, prompt: str, aspect_ratio: str, references: list[ReferenceImage]
    ) -> GeneratedImage:
        if FAIL_WORD in prompt:
            raise ProviderError("the instant provider refuses this prompt.")
        self.calls += 1
        width, height = 6, 4
        pixels = hashlib.shake_256(f"{self.calls}|{prompt}".encode()).digest(width * height * 3)
        buffer = io.BytesIO()
        PILImage.frombytes("RGB", (width, height), pixels).save(buffer, "PNG")
        return GeneratedImage(buffer.getvalue(), "image/png", width, height, self.model)

    async def enhance(self, prompt: str, template: str) -> str:
        return f"{prompt}, in a {template} style"


# ------------------------------------------------------------------ the model


@dataclass
class ImageRow:
    alias: str | None
    flow_id: str | None
    generation_id: str | None
    source: str
    file_hash: str


@dataclass
class GenerationRow:
    flow_id: str | None
    status: str
    output_image_id: str | None
    alias: str | None
    flow_alias: str | None
    references: list[tuple[str, str | None]] = field(default_factory=list)
    retry_count: int = 0


# ------------------------------------------------------------- global checks


def check_store(database: Path, storage_root: Path) -> None:
    """Invariants over the whole database and storage root, whatever made them."""
    with sqlite(database) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        dangling = {
            "generation output": "SELECT g.id FROM generations g LEFT JOIN images i"
            " ON i.id = g.output_image_id WHERE g.output_image_id IS NOT NULL AND i.id IS NULL",
            "image generation": "SELECT i.id FROM images i LEFT JOIN generations g"
            " ON g.id = i.generation_id WHERE i.generation_id IS NOT NULL AND g.id IS NULL",
            "flow alias image": "SELECT a.alias FROM flow_aliases a LEFT JOIN images i"
            " ON i.id = a.image_id WHERE i.id IS NULL",
            "flow alias flow": "SELECT a.alias FROM flow_aliases a LEFT JOIN flows f"
            " ON f.id = a.flow_id WHERE f.id IS NULL",
            "reference image": "SELECT r.generation_id FROM generation_references r"
            " LEFT JOIN images i ON i.id = r.image_id WHERE i.id IS NULL",
            "reference generation": "SELECT r.generation_id FROM generation_references r"
            " LEFT JOIN generations g ON g.id = r.generation_id WHERE g.id IS NULL",
        }
        for name, query in dangling.items():
            assert conn.execute(query).fetchall() == [], f"dangling {name}"
        duplicates = conn.execute(
            "SELECT project_id, alias, COUNT(*) FROM images WHERE alias IS NOT NULL"
            " GROUP BY project_id, alias HAVING COUNT(*) > 1"
        ).fetchall()
        assert [tuple(row) for row in duplicates] == []
        unfinished = conn.execute(
            "SELECT id, status FROM generations WHERE status IN ('pending', 'processing')"
        ).fetchall()
        assert [tuple(row) for row in unfinished] == []
        rows = conn.execute(
            "SELECT storage_key, file_size, file_hash, width, height FROM images"
        ).fetchall()

    on_disk: set[str] = set()
    leftovers: list[str] = []
    for dirpath, _dirnames, filenames in os.walk(storage_root):
        relative = Path(dirpath).relative_to(storage_root)
        for filename in filenames:
            key = (relative / filename).as_posix()
            if relative.parts[:1] == (".tmp",):
                leftovers.append(key)
            else:
                on_disk.add(key)
    assert leftovers == [], "temporary files left behind"
    assert on_disk == {row["storage_key"] for row in rows}, "files and image rows differ"
    for row in rows:
        data = (storage_root / row["storage_key"]).read_bytes()
        assert len(data) == row["file_size"], row["storage_key"]
        assert hashlib.sha256(data).hexdigest() == row["file_hash"], row["storage_key"]
        with PILImage.open(io.BytesIO(data)) as img:
            assert img.size == (row["width"], row["height"]), row["storage_key"]


# ---------------------------------------------------------------- the machine


class CascadeMachine(RuleBasedStateMachine):
    """Each example runs against a server of its own (they start in a tenth of a
    second), so the checks can be global and a failing example replays exactly."""

    launch: ClassVar[Callable[..., Running]]

    def __init__(self) -> None:
        super().__init__()
        self.server = self.launch(provider=InstantProvider(), limits__requests_per_hour=0)
        project = self.call("GET", "/api/v1/project", 200)
        self.project_id: str = project["id"]
        self.public = f"/cdn/{project['organizationSlug']}/{project['slug']}/img"
        self.flow_ids = list(FLOW_POOL)
        self.flows: set[str] = set()
        self.images: dict[str, ImageRow] = {}
        self.generations: dict[str, GenerationRow] = {}
        self.flow_aliases: dict[tuple[str, str], str] = {}
        self.dead_images: list[str] = []
        self.dead_generations: list[str] = []
        self.uploads = 0

    # ------------------------------------------------------------ plumbing

    def call(
        self, method: str, path: str, expect: int, code: str | None = None, **kwargs: Any
    ) -> Any:
        """A request with the project key; checks the status and error code."""
        response = self.server.project(method, path, **kwargs)
        assert response.status_code < 500, f"{method} {path}: {response.text}"
        assert response.status_code == expect, f"{method} {path}: {response.text}"
        body = response.json()
        if code is not None:
            assert body["error"]["code"] == code, response.text
        return body.get("data")

    @staticmethod
    def pick(live: list[str], dead: list[str], index: int, stale: bool) -> tuple[str, bool]:
        """A live id, or (when asked or when none is live) a deleted or unknown one."""
        if live and not stale:
            return live[index % len(live)], True
        if dead and index % 2:
            return dead[index % len(dead)], False
        return str(uuid.uuid4()), False

    def pick_flow(self, index: int, stale: bool) -> str:
        """A flow with a row, or (when asked or when none has one) an id announced or
        deleted earlier, or an unknown one."""
        rows = [f for f in self.flow_ids if f in self.flows]
        if rows and not stale:
            return rows[index % len(rows)]
        others = [f for f in self.flow_ids if f not in self.flows]
        if others and index % 2:
            return others[index % len(others)]
        return str(uuid.uuid4())

    def flow_arg(self, flow: str | int) -> str | None:
        if isinstance(flow, int):
            return self.flow_ids[flow % len(self.flow_ids)]
        return None

    def holder(self, alias: str) -> str | None:
        return next((i for i, row in self.images.items() if row.alias == alias), None)

    def give_alias(self, image_id: str, alias: str | None) -> None:
        """Project alias with move semantics."""
        if alias is not None:
            other = self.holder(alias)
            if other is not None:
                self.images[other].alias = None
        self.images[image_id].alias = alias

    def add_output(self, gen_id: str, image: dict[str, Any]) -> None:
        """A generation's new output image, with the aliases the generation asked for."""
        generation = self.generations[gen_id]
        self.images[image["id"]] = ImageRow(
            None, generation.flow_id, gen_id, "generated", image["fileHash"]
        )
        generation.output_image_id = image["id"]
        self.give_alias(image["id"], generation.alias)
        if generation.flow_alias is not None and generation.flow_id is not None:
            self.flows.add(generation.flow_id)
            self.flow_aliases[(generation.flow_id, generation.flow_alias)] = image["id"]

    def check_public(self, ref: str, image_id: str | None) -> None:
        """The public route serves the image's current bytes, or 404 for None."""
        response = self.server.client.get(f"{self.public}/{ref}")
        if image_id is None:
            assert response.status_code == 404, f"{response.status_code} for {ref}"
            return
        assert response.status_code == 200, f"{response.status_code} for {ref}"
        assert response.headers["X-Image-Id"] == image_id
        assert hashlib.sha256(response.content).hexdigest() == self.images[image_id].file_hash

    def prompt_reference(self, alias: str, context: str | None) -> str | None:
        """Where a prompt alias resolves: flow alias of the named flow, then project alias."""
        if context is not None and (context, alias) in self.flow_aliases:
            return self.flow_aliases[(context, alias)]
        return self.holder(alias)

    # ---------------------------------------------------------- model deletes

    def drop_image(self, image_id: str) -> None:
        del self.images[image_id]
        self.dead_images.append(image_id)
        for generation in self.generations.values():
            if generation.output_image_id == image_id:
                generation.output_image_id = None
            generation.references = [r for r in generation.references if r[0] != image_id]
        self.flow_aliases = {k: v for k, v in self.flow_aliases.items() if v != image_id}

    def drop_generation(self, gen_id: str) -> None:
        generation = self.generations.pop(gen_id)
        self.dead_generations.append(gen_id)
        output = generation.output_image_id
        if output is not None and self.images[output].alias is None:
            self.drop_image(output)
        for row in self.images.values():
            if row.generation_id == gen_id:
                row.generation_id = None

    def drop_flow(self, flow_id: str) -> None:
        for gen_id in [g for g, row in self.generations.items() if row.flow_id == flow_id]:
            self.drop_generation(gen_id)
        for image_id in [i for i, row in self.images.items() if row.flow_id == flow_id]:
            if self.images[image_id].alias is None:
                self.drop_image(image_id)
            else:
                self.images[image_id].flow_id = None
        self.flows.discard(flow_id)
        self.flow_aliases = {k: v for k, v in self.flow_aliases.items() if k[0] != flow_id}

    # ------------------------------------------------------------------ rules

    @staticmethod
    def refusal(alias: str | None, flow: str | int, flow_alias: str | None) -> str | None:
        """The error code a create request must get for its aliases and flowId."""
        if alias in RESERVED:
            return "RESERVED_ALIAS"
        if flow == "null" and flow_alias is not None:
            return "VALIDATION_ERROR"  # a flowAlias needs a flow
        return None

    def record_flow(self, flow: str | int, answered: str | None, flow_alias: str | None) -> None:
        """Check the flowId a create answered with, and note whether its row exists now:
        absent announces a new id (row only with a flowAlias), a UUID is used as is."""
        if flow == "absent":
            assert answered is not None
            assert answered not in self.flow_ids
            self.flow_ids.append(answered)
        else:
            assert answered == self.flow_arg(flow)
        if answered is not None and (flow != "absent" or flow_alias is not None):
            self.flows.add(answered)

    def expected_references(
        self, explicit: list[str], prompt: str, context: str | None
    ) -> list[tuple[str, str | None]]:
        """Explicit ids first, then the prompt's aliases that resolve; first one wins."""
        found: list[tuple[str, str | None]] = [(image_id, None) for image_id in explicit]
        for alias in PROMPT_ALIAS_RE.findall(prompt):
            image_id = self.prompt_reference(alias, context)
            if image_id is not None:
                found.append((image_id, alias))
        unique: list[tuple[str, str | None]] = []
        for ref in found:
            if ref[0] not in {u[0] for u in unique}:
                unique.append(ref)
        return unique

    @rule(alias=ALIAS_OR_RESERVED, flow=FLOW, flow_alias=OPTIONAL_ALIAS)
    def upload(self, alias: str | None, flow: str | int, flow_alias: str | None) -> None:
        """Upload a PNG with optional alias, flowId and flowAlias."""
        self.uploads += 1
        form = {"alias": alias, "flowAlias": flow_alias}
        form["flowId"] = "null" if flow == "null" else self.flow_arg(flow)
        color = (self.uploads * 40 % 256, 80, 160)
        request: dict[str, Any] = {
            "data": {k: v for k, v in form.items() if v is not None},
            "files": {"file": ("up.png", png_bytes(3, 2, color), "image/png")},
        }
        path = "/api/v1/images/upload"
        refusal = self.refusal(alias, flow, flow_alias)
        if refusal is not None:
            self.call("POST", path, 400, refusal, **request)
            return
        image = self.call("POST", path, 201, **request)
        self.record_flow(flow, image["flowId"], flow_alias)
        self.images[image["id"]] = ImageRow(
            None, image["flowId"], None, "uploaded", image["fileHash"]
        )
        self.give_alias(image["id"], alias)
        if flow_alias is not None:
            self.flow_aliases[(image["flowId"], flow_alias)] = image["id"]

    @rule(
        prompt=st.sampled_from(PROMPTS),
        alias=ALIAS_OR_RESERVED,
        flow=FLOW,
        flow_alias=OPTIONAL_ALIAS,
        refs=st.lists(INDEX, max_size=MAX_REFERENCES),
        stale=STALE,
    )
    def generate(
        self,
        prompt: str,
        alias: str | None,
        flow: str | int,
        flow_alias: str | None,
        refs: list[int],
        stale: bool,
    ) -> None:
        """Create a generation, with references to known (or deleted) images."""
        live = list(self.images)
        explicit = [live[i % len(live)] for i in refs] if live else []
        if stale:
            explicit.append(self.pick([], self.dead_images, len(refs), True)[0])
        body: dict[str, Any] = {"prompt": prompt, "referenceImages": explicit}
        if flow != "absent":
            body["flowId"] = self.flow_arg(flow)
        body.update({k: v for k, v in (("alias", alias), ("flowAlias", flow_alias)) if v})
        # only a flowId the request names is a context for the prompt's aliases
        references = self.expected_references(explicit, prompt, self.flow_arg(flow))
        refusal = self.refusal(alias, flow, flow_alias)
        if refusal is None and stale:
            refusal = "REFERENCE_NOT_FOUND"
        if refusal is None and len(references) > MAX_REFERENCES:
            refusal = "TOO_MANY_REFERENCES"
        path = "/api/v1/generations"
        if refusal is not None:
            self.call("POST", path, 400, refusal, json=body)
            return
        data = self.call("POST", path, 201, json=body)
        self.record_flow(flow, data["flowId"], flow_alias)
        status = "failed" if FAIL_WORD in prompt else "success"
        assert data["status"] == status, data
        self.generations[data["id"]] = GenerationRow(
            data["flowId"], status, None, alias, flow_alias, references
        )
        if status == "success":
            self.add_output(data["id"], data["outputImage"])

    @precondition(lambda self: self.images)
    @rule(index=INDEX, stale=STALE, alias=ALIAS_OR_RESERVED)
    def set_alias(self, index: int, stale: bool, alias: str | None) -> None:
        """Assign, move or remove a project alias."""
        image_id, live = self.pick(list(self.images), self.dead_images, index, stale)
        path = f"/api/v1/images/{image_id}/alias"
        if alias in RESERVED:
            self.call("PUT", path, 400, "RESERVED_ALIAS", json={"alias": alias})
        elif not live:
            self.call("PUT", path, 404, "IMAGE_NOT_FOUND", json={"alias": alias})
        else:
            if alias is not None:
                self.check_public(alias, self.holder(alias))
            data = self.call("PUT", path, 200, json={"alias": alias})
            assert data["alias"] == alias
            self.give_alias(image_id, alias)
            if alias is not None:
                self.check_public(alias, image_id)

    @precondition(lambda self: self.flows and self.images)
    @rule(flow=INDEX, alias=st.sampled_from(ALIASES), index=INDEX, stale=STALE)
    def set_flow_alias(self, flow: int, alias: str, index: int, stale: bool) -> None:
        """Point a flow alias at an image; the flow row must exist."""
        flow_id = self.pick_flow(flow, stale and index % 2 == 0)
        image_id, live = self.pick(list(self.images), self.dead_images, index, stale)
        path = f"/api/v1/flows/{flow_id}/aliases"
        body = {"aliases": {alias: image_id}}
        if flow_id not in self.flows:
            self.call("PUT", path, 404, "FLOW_NOT_FOUND", json=body)
        elif not live:
            self.call("PUT", path, 404, "IMAGE_NOT_FOUND", json=body)
        else:
            data = self.call("PUT", path, 200, json=body)
            assert data["aliases"][alias] == image_id
            self.flow_aliases[(flow_id, alias)] = image_id

    @precondition(lambda self: self.flows)
    @rule(index=INDEX, stale=STALE, alias=st.sampled_from(ALIASES))
    def remove_flow_alias(self, index: int, stale: bool, alias: str) -> None:
        """Drop a flow alias entry (or try one that is not there)."""
        entries = list(self.flow_aliases)
        if entries and not stale:
            flow_id, alias = entries[index % len(entries)]
        else:
            flow_id = self.pick_flow(index, index % 3 == 0)
        path = f"/api/v1/flows/{flow_id}/aliases/{alias}"
        if flow_id not in self.flows:
            self.call("DELETE", path, 404, "FLOW_NOT_FOUND")
        elif (flow_id, alias) not in self.flow_aliases:
            self.call("DELETE", path, 404, "ALIAS_NOT_FOUND")
        else:
            self.call("DELETE", path, 200)
            del self.flow_aliases[(flow_id, alias)]

    @precondition(lambda self: self.images)
    @rule(index=INDEX, stale=STALE, by_alias=OPTIONAL_ALIAS)
    def delete_image(self, index: int, stale: bool, by_alias: str | None) -> None:
        """Delete an image by id or by project alias; the public route forgets it."""
        if by_alias is not None:
            image_id = self.holder(by_alias)
            path = f"/api/v1/images/{by_alias}"
            if image_id is None:
                self.call("DELETE", path, 404, "ALIAS_NOT_FOUND")
                return
        else:
            image_id, live = self.pick(list(self.images), self.dead_images, index, stale)
            path = f"/api/v1/images/{image_id}"
            if not live:
                self.call("DELETE", path, 404, "IMAGE_NOT_FOUND")
                return
        ref = by_alias or image_id
        self.check_public(ref, image_id)
        assert self.call("DELETE", path, 200) == {"id": image_id}
        self.drop_image(image_id)
        self.check_public(ref, None)

    @precondition(lambda self: self.generations)
    @rule(index=INDEX, stale=STALE)
    def delete_generation(self, index: int, stale: bool) -> None:
        """Delete a generation (its output goes too unless it has a project alias)."""
        gen_id, live = self.pick(list(self.generations), self.dead_generations, index, stale)
        path = f"/api/v1/generations/{gen_id}"
        if not live:
            self.call("DELETE", path, 404, "GENERATION_NOT_FOUND")
            return
        assert self.call("DELETE", path, 200) == {"id": gen_id}
        self.drop_generation(gen_id)

    @precondition(lambda self: self.generations)
    @rule(index=INDEX, stale=STALE)
    def regenerate(self, index: int, stale: bool) -> None:
        """Regenerate in place: same output image, new bytes; a new image if it is gone."""
        gen_id, live = self.pick(list(self.generations), self.dead_generations, index, stale)
        path = f"/api/v1/generations/{gen_id}/regenerate"
        if not live:
            self.call("POST", path, 404, "GENERATION_NOT_FOUND")
            return
        generation = self.generations[gen_id]
        if generation.output_image_id is not None:
            self.check_public(generation.output_image_id, generation.output_image_id)
        data = self.call("POST", path, 200)
        generation.retry_count += 1
        assert data["retryCount"] == generation.retry_count
        assert data["status"] == generation.status
        if generation.status != "success":
            assert data["outputImageId"] == generation.output_image_id
            return
        output = generation.output_image_id
        if output is None:
            self.add_output(gen_id, data["outputImage"])
            return
        assert data["outputImageId"] == output
        assert data["outputImage"]["fileHash"] != self.images[output].file_hash
        self.images[output].file_hash = data["outputImage"]["fileHash"]
        self.check_public(output, output)

    @precondition(lambda self: self.generations)
    @rule(index=INDEX, stale=STALE, flow=st.one_of(st.just("null"), INDEX))
    def move_generation(self, index: int, stale: bool, flow: str | int) -> None:
        """Attach a generation to another flow (created if missing) or detach it; its
        output image follows."""
        gen_id, live = self.pick(list(self.generations), self.dead_generations, index, stale)
        flow_id = self.flow_arg(flow)
        path = f"/api/v1/generations/{gen_id}"
        if not live:
            self.call("PUT", path, 404, "GENERATION_NOT_FOUND", json={"flowId": flow_id})
            return
        data = self.call("PUT", path, 200, json={"flowId": flow_id})
        assert data["flowId"] == flow_id
        generation = self.generations[gen_id]
        generation.flow_id = flow_id
        if flow_id is not None:
            self.flows.add(flow_id)
        if generation.output_image_id is not None:
            self.images[generation.output_image_id].flow_id = flow_id

    @precondition(lambda self: self.flows)
    @rule(flow=INDEX, stale=STALE)
    def delete_flow(self, flow: int, stale: bool) -> None:
        """Delete a flow: its generations, its unaliased images; aliased ones stay."""
        flow_id = self.pick_flow(flow, stale)
        path = f"/api/v1/flows/{flow_id}"
        if flow_id not in self.flows:
            self.call("DELETE", path, 404, "FLOW_NOT_FOUND")
            return
        assert self.call("DELETE", path, 200) == {"id": flow_id}
        self.drop_flow(flow_id)

    @precondition(lambda self: self.images)
    @rule(index=INDEX, stale=STALE, by_alias=OPTIONAL_ALIAS)
    def fetch_public(self, index: int, stale: bool, by_alias: str | None) -> None:
        """The public image route serves the current bytes (no stale cache entry)."""
        if by_alias is not None:
            self.check_public(by_alias, self.holder(by_alias))
        else:
            image_id, live = self.pick(list(self.images), self.dead_images, index, stale)
            self.check_public(image_id, image_id if live else None)

    # ------------------------------------------------------------- invariants

    @invariant()
    def store_is_consistent(self) -> None:
        check_store(self.server.settings.database_path, self.server.settings.storage_root)

    @invariant()
    def database_matches_model(self) -> None:
        with sqlite(self.server.settings.database_path) as conn:
            project = (self.project_id,)
            images = {
                row["id"]: ImageRow(
                    row["alias"],
                    row["flow_id"],
                    row["generation_id"],
                    row["source"],
                    row["file_hash"],
                )
                for row in conn.execute(
                    "SELECT id, alias, flow_id, generation_id, source, file_hash"
                    " FROM images WHERE project_id = ?",
                    project,
                )
            }
            generations = {
                row["id"]: (row["flow_id"], row["status"], row["output_image_id"], row["rc"])
                for row in conn.execute(
                    "SELECT id, flow_id, status, output_image_id, retry_count AS rc"
                    " FROM generations WHERE project_id = ?",
                    project,
                )
            }
            references: dict[str, list[tuple[str, str | None]]] = {g: [] for g in generations}
            for row in conn.execute(
                "SELECT r.generation_id, r.image_id, r.alias FROM generation_references r"
                " JOIN generations g ON g.id = r.generation_id WHERE g.project_id = ?"
                " ORDER BY r.generation_id, r.position",
                project,
            ):
                references[row["generation_id"]].append((row["image_id"], row["alias"]))
            flows = {
                row["id"]
                for row in conn.execute("SELECT id FROM flows WHERE project_id = ?", project)
            }
            flow_aliases = {
                (row["flow_id"], row["alias"]): row["image_id"]
                for row in conn.execute(
                    "SELECT a.flow_id, a.alias, a.image_id FROM flow_aliases a"
                    " JOIN flows f ON f.id = a.flow_id WHERE f.project_id = ?",
                    project,
                )
            }
        assert images == self.images
        assert generations == {
            g: (row.flow_id, row.status, row.output_image_id, row.retry_count)
            for g, row in self.generations.items()
        }
        assert references == {g: row.references for g, row in self.generations.items()}
        assert flows == self.flows
        assert flow_aliases == self.flow_aliases

    # --------------------------------------------------------------- teardown

    def teardown(self) -> None:
        """Empty the project, then stop this example's server."""
        try:
            self.delete_everything()
        finally:
            self.server.client.close()
            self.server.server.stop()

    def delete_everything(self) -> None:
        """Delete what the project still holds, as the database lists it (not the
        model, which may be out of step after a failure); nothing may remain."""
        database = self.server.settings.database_path
        for table in ("flows", "generations", "images"):
            with sqlite(database) as conn:
                ids = [
                    row["id"]
                    for row in conn.execute(
                        f"SELECT id FROM {table} WHERE project_id = ? ORDER BY created_at",
                        (self.project_id,),
                    )
                ]
            for row_id in ids:
                self.call("DELETE", f"/api/v1/{table}/{row_id}", 200)
        with sqlite(database) as conn:
            for table in ("flows", "generations", "images"):
                query = f"SELECT COUNT(*) FROM {table} WHERE project_id = ?"
                assert conn.execute(query, (self.project_id,)).fetchone()[0] == 0, table
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        check_store(database, self.server.settings.storage_root)


def test_random_operations_keep_database_and_files_consistent(
    start_server: Callable[..., Running],
) -> None:
    """Uploads, generations, alias moves, regenerations and deletes in random order
    never leave dangling references, orphan or mismatched files, duplicate aliases,
    unfinished generations or 5xx answers, and follow the delete rules exactly."""

    class Machine(CascadeMachine):
        launch = staticmethod(start_server)

    run_state_machine_as_test(Machine, settings=RUN_SETTINGS)
