"""``banatie-local generate``: one generation without a server, recorded in the
database like any other, run in-process with Click's test runner and once as a real
process."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from PIL import Image

from banatie_local.cli import cli
from banatie_local.providers.enhance import template_rewrite
from tests.e2e.test_cli import assert_clean_failure, succeeded
from tests.e2e.test_serve_subprocess import assert_no_traceback, clean_env
from tests.fakes.gemini import Answer, FakeGemini
from tests.helpers import sqlite

Run = Callable[..., Result]
OFFLINE_MODEL = "offline-renderer-1"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No host settings, and a working directory with no banatie.toml in it."""
    for name in list(os.environ):
        if name.startswith("BANATIE_") or name in ("GEMINI_API_KEY", "OPENAI_API_KEY"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def db_path(data_dir: Path) -> Path:
    return data_dir / "banatie.db"


@pytest.fixture
def run(data_dir: Path) -> Run:
    """Run the CLI with ``--data-dir`` (the test's data directory) appended."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(cli, [*args, "--data-dir", str(data_dir)], prog_name="banatie-local")

    return invoke


@pytest.fixture
def initialized(run: Run) -> Run:
    succeeded(run("init"))
    return run


def rows(db_path: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    with sqlite(db_path) as conn:
        return [dict(row) for row in conn.execute(sql, params)]


def one(db_path: Path, sql: str, *params: Any) -> dict[str, Any]:
    found = rows(db_path, sql, *params)
    assert len(found) == 1, found
    return found[0]


def count(db_path: Path, table: str) -> int:
    with sqlite(db_path) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG"
        return img.size


def as_json(result: Result) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(succeeded(result).stdout)
    return data


# ---------------------------------------------------------------------- success


def test_generate_writes_the_image_and_records_it(
    initialized: Run, tmp_path: Path, data_dir: Path, db_path: Path
) -> None:
    """``-o`` gets exactly the stored PNG at the ratio's size; the row is a success."""
    result = succeeded(
        initialized("generate", "a lighthouse", "-o", "out.png", "--aspect-ratio", "21:9")
    )
    written = (tmp_path / "out.png").read_bytes()
    assert png_size(written) == (2016, 864)

    generation = one(db_path, "SELECT * FROM generations")
    assert generation["status"] == "success"
    assert generation["aspect_ratio"] == "21:9"
    assert generation["user_prompt"] == "a lighthouse"
    assert generation["original_prompt"] == "a lighthouse"
    assert generation["prompt"] == template_rewrite("a lighthouse", "general")
    assert generation["error_message"] is None
    assert generation["retry_count"] == 0
    assert generation["processing_time_ms"] >= 0
    meta = json.loads(generation["meta"])
    assert meta["provider"] == "offline"
    assert meta["model"] == OFFLINE_MODEL

    image = one(db_path, "SELECT * FROM images")
    assert generation["output_image_id"] == image["id"]
    assert image["generation_id"] == generation["id"]
    assert image["source"] == "generated"
    assert image["flow_id"] == generation["flow_id"]
    assert (image["width"], image["height"]) == (2016, 864)
    assert image["file_hash"] == hashlib.sha256(written).hexdigest()
    assert image["file_size"] == len(written)
    assert (data_dir / "storage" / image["storage_key"]).read_bytes() == written

    lines = result.stdout.splitlines()
    assert lines == [
        f"generation {generation['id']}: image {image['id']} (2016x864, offline)",
        "out.png",
    ]
    assert result.stderr == ""


def test_generate_without_output_prints_the_storage_url(initialized: Run, db_path: Path) -> None:
    result = succeeded(initialized("generate", "a lighthouse"))
    image = one(db_path, "SELECT id FROM images")
    assert result.stdout.splitlines()[-1] == (
        f"http://127.0.0.1:3000/cdn/default/default/img/{image['id']}"
    )


def test_generate_json_prints_the_generation_object(initialized: Run, db_path: Path) -> None:
    data = as_json(initialized("generate", "a lighthouse", "--aspect-ratio", "3:4", "--json"))
    generation = one(db_path, "SELECT * FROM generations")
    assert data["id"] == generation["id"]
    assert data["projectId"] == generation["project_id"]
    assert data["flowId"] == generation["flow_id"]
    assert data["status"] == "success"
    assert data["aspectRatio"] == "3:4"
    assert data["autoEnhance"] is True
    assert data["originalPrompt"] == "a lighthouse"
    assert data["prompt"] == generation["prompt"]
    assert data["retryCount"] == 0
    assert data["errorMessage"] is None
    assert data["referencedImages"] == []
    assert data["referenceImages"] == []
    assert data["meta"] == {"provider": "offline", "model": OFFLINE_MODEL}
    image = data["outputImage"]
    assert data["outputImageId"] == image["id"]
    assert (image["width"], image["height"]) == (1008, 1344)
    assert image["generationId"] == data["id"]
    assert image["storageKey"] == f"default/default/img/{image['id']}"
    assert image["storageUrl"] == f"http://127.0.0.1:3000/cdn/default/default/img/{image['id']}"
    assert set(data) >= {"createdAt", "updatedAt", "processingTimeMs"}


def test_generate_with_alias_then_ref(initialized: Run, db_path: Path) -> None:
    """``--alias`` names the output; ``--ref`` by alias or id is recorded as a reference."""
    first = as_json(initialized("generate", "a lighthouse", "--alias", "@lh", "--json"))
    lh = first["outputImageId"]
    assert first["outputImage"]["alias"] == "@lh"
    assert one(db_path, "SELECT alias FROM images WHERE id = ?", lh)["alias"] == "@lh"

    second = as_json(initialized("generate", "a boat", "--ref", "@lh", "--json"))
    assert second["referencedImages"] == [{"imageId": lh, "alias": "@lh"}]
    assert [image["id"] for image in second["referenceImages"]] == [lh]
    refs = rows(
        db_path,
        "SELECT position, image_id, alias FROM generation_references WHERE generation_id = ?",
        second["id"],
    )
    assert refs == [{"position": 0, "image_id": lh, "alias": "@lh"}]

    third = as_json(initialized("generate", "a boat", "--ref", lh, "--json"))
    assert third["referencedImages"] == [{"imageId": lh, "alias": None}]
    # the reference steers the offline picture
    plain = as_json(initialized("generate", "a boat", "--json"))
    assert plain["outputImage"]["fileHash"] != third["outputImage"]["fileHash"]


def test_generate_no_enhance_keeps_the_prompt(initialized: Run, db_path: Path) -> None:
    succeeded(initialized("generate", "a lighthouse, at dawn", "--no-enhance"))
    generation = one(db_path, "SELECT * FROM generations")
    assert generation["prompt"] == "a lighthouse, at dawn"
    assert generation["original_prompt"] is None
    assert generation["auto_enhance"] == 0


def test_generate_template_changes_the_enhancement(initialized: Run) -> None:
    data = as_json(initialized("generate", "a lighthouse", "--template", "comic", "--json"))
    assert data["prompt"] == template_rewrite("a lighthouse", "comic")


# ---------------------------------------------------------------------- failure


@pytest.mark.parametrize("ref", ["@nope", "7f1d6c1e-65ab-4f63-8a5e-0d4a3b7c2e10", "garbage"])
def test_unknown_ref_is_a_clean_error(initialized: Run, db_path: Path, ref: str) -> None:
    line = assert_clean_failure(initialized("generate", "a boat", "--ref", ref, "-o", "x.png"))
    assert ref in line
    assert count(db_path, "generations") == 0
    assert not Path("x.png").exists()


def test_bad_aspect_ratio_is_a_usage_error(initialized: Run, db_path: Path) -> None:
    assert_clean_failure(initialized("generate", "a boat", "--aspect-ratio", "5:4"), usage=True)
    assert count(db_path, "generations") == 0


def test_generate_before_init_is_a_clean_error(run: Run) -> None:
    assert_clean_failure(run("generate", "a boat"), "default/default")


def test_unwritable_output_is_a_clean_error(initialized: Run, db_path: Path) -> None:
    result = initialized("generate", "a boat", "-o", "missing/dir/out.png")
    line = assert_clean_failure(result, "missing/dir/out.png")
    assert "nothing was generated" in line
    assert count(db_path, "generations") == 0  # refused before anything was spent


def test_failing_provider_exits_1_and_keeps_the_failed_record(
    initialized: Run,
    db_path: Path,
    fake_gemini: FakeGemini,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BANATIE_GENERATION_PROVIDER", "gemini")
    monkeypatch.setenv("BANATIE_GENERATION_GEMINI_API_KEY", "secret-test-key")
    monkeypatch.setenv("BANATIE_GENERATION_GEMINI_BASE_URL", fake_gemini.url)
    monkeypatch.setenv("BANATIE_GENERATION_MAX_RETRIES", "0")
    monkeypatch.setenv("BANATIE_GENERATION_RETRY_BACKOFF_SECONDS", "0.01")
    # one for the enhancement call, one for the image call
    fake_gemini.queue(Answer("error", 500), Answer("error", 500))

    line = assert_clean_failure(initialized("generate", "a boat", "-o", "boat.png"))
    generation = one(db_path, "SELECT * FROM generations")
    assert line.startswith(f"Error: generation {generation['id']} failed:")
    assert "secret-test-key" not in line
    assert generation["status"] == "failed"
    assert generation["error_message"]
    assert generation["error_message"] in line
    assert generation["output_image_id"] is None
    assert json.loads(generation["meta"])["provider"] == "gemini"
    assert count(db_path, "images") == 0
    assert not Path("boat.png").exists()
    assert len(fake_gemini.image_requests()) == 1

    # with --json the failed record is printed, and the exit is still 1
    fake_gemini.queue(Answer("error", 500), Answer("error", 500))
    result = initialized("generate", "a ship", "--json")
    assert result.exit_code == 1
    printed = json.loads(result.stdout)
    assert printed["status"] == "failed"
    assert printed["outputImage"] is None
    assert count(db_path, "generations") == 2


def test_generate_as_a_real_process(tmp_path: Path, data_dir: Path, db_path: Path) -> None:
    """``python -m banatie_local generate`` writes the file and exits 0."""

    def run_module(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "banatie_local", *args, "--data-dir", str(data_dir)],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert run_module("init").returncode == 0
    out = tmp_path / "shot.png"
    proc = run_module("generate", "a lighthouse", "-o", str(out), "--aspect-ratio", "16:9")
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc.stdout, proc.stderr)
    assert proc.stdout.splitlines()[-1] == str(out)
    data = out.read_bytes()
    assert png_size(data) == (1792, 1008)
    image = one(db_path, "SELECT * FROM images")
    assert image["file_hash"] == hashlib.sha256(data).hexdigest()
    assert one(db_path, "SELECT status FROM generations")["status"] == "success"
