"""The ``banatie-local`` command line, run in-process with Click's test runner.

Every test works in its own data directory under ``tmp_path``, with no
``BANATIE_*`` or ``GEMINI_API_KEY`` variables and ``tmp_path`` as the working
directory, so nothing from the host leaks in. The database is checked with
plain ``sqlite3``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from banatie_local import __version__
from banatie_local.cli import cli
from tests.helpers import sqlite

KEY_IN_TEXT = re.compile(r"bnt_[0-9a-f]{64}")
WHOLE_KEY = re.compile(r"^bnt_[0-9a-f]{64}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")

Run = Callable[..., Result]


# --------------------------------------------------------------------------- helpers


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
def invoke() -> Run:
    """Run the CLI with exactly the given arguments."""
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(cli, list(args), prog_name="banatie-local")

    return run


@pytest.fixture
def run(invoke: Run, data_dir: Path) -> Run:
    """Run the CLI with ``--data-dir`` (the test's data directory) appended."""

    def run_in_data_dir(*args: str) -> Result:
        return invoke(*args, "--data-dir", str(data_dir))

    return run_in_data_dir


def succeeded(result: Result) -> Result:
    """Assert a zero exit, showing what went wrong otherwise."""
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def as_json(result: Result) -> Any:
    return json.loads(succeeded(result).stdout)


def assert_clean_failure(result: Result, *fragments: str, usage: bool = False) -> str:
    """A handled failure: non-zero exit, one ``Error:`` line on stderr, no traceback.

    Returns the error line. Usage errors exit 2 and come with Click's usage
    lines; every other failure exits 1 with only the error sentence on stderr
    and nothing on stdout.
    """
    assert result.exit_code != 0, result.output
    # The runner records an unhandled exception instead of printing it.
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    line = errors[0]
    for fragment in fragments:
        assert fragment in line, line
    if usage:
        assert result.exit_code == 2
    else:
        assert result.exit_code == 1
        assert result.stderr.strip() == line
        assert result.stdout == ""
        assert line.endswith(".")
    return line


def rows(db_path: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    with sqlite(db_path) as conn:
        return [dict(row) for row in conn.execute(sql, params)]


def count(db_path: Path, table: str) -> int:
    with sqlite(db_path) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def project_row(db_path: Path, org: str, slug: str) -> dict[str, Any] | None:
    found = rows(
        db_path,
        "SELECT p.* FROM projects p JOIN organizations o ON o.id = p.organization_id "
        "WHERE o.slug = ? AND p.slug = ?",
        org,
        slug,
    )
    return found[0] if found else None


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def init_keys(run: Run) -> tuple[str, str]:
    """Initialise the data directory and return (master key, project key)."""
    data = as_json(run("init", "--json"))
    return data["masterKey"], data["projectKey"]


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- init


def test_init_creates_data_dir_database_project_and_two_hashed_keys(
    run: Run, data_dir: Path, db_path: Path
) -> None:
    """First ``init`` builds everything and stores only hashes of the two keys."""
    assert not data_dir.exists()
    out = succeeded(run("init")).stdout

    assert data_dir.is_dir()
    assert db_path.is_file()
    default = project_row(db_path, "default", "default")
    assert default is not None
    assert count(db_path, "organizations") == 1
    assert count(db_path, "projects") == 1

    master_lines = [line for line in out.splitlines() if "master key" in line]
    project_lines = [line for line in out.splitlines() if "project key" in line]
    assert len(master_lines) == 1
    assert len(project_lines) == 1
    master = KEY_IN_TEXT.findall(master_lines[0])
    project = KEY_IN_TEXT.findall(project_lines[0])
    assert len(master) == 1
    assert len(project) == 1
    master_key, project_key = master[0], project[0]
    assert master_key != project_key
    assert set(KEY_IN_TEXT.findall(out)) == {master_key, project_key}
    assert out.count(master_key) == 1

    hints = [line for line in out.splitlines() if "X-API-Key" in line]
    assert len(hints) == 1
    assert project_key in hints[0]
    assert "/api/v1/project" in hints[0]

    keys = rows(db_path, "SELECT * FROM api_keys")
    assert len(keys) == 2
    by_type = {row["type"]: row for row in keys}
    assert set(by_type) == {"master", "project"}
    for row in keys:
        assert SHA256.match(row["key_hash"])
        assert row["is_active"] == 1
    assert by_type["master"]["key_hash"] == sha256(master_key)
    assert by_type["project"]["key_hash"] == sha256(project_key)
    assert by_type["master"]["key_prefix"] == master_key[:12]
    assert by_type["project"]["key_prefix"] == project_key[:12]
    assert by_type["master"]["project_id"] is None
    assert by_type["project"]["project_id"] == default["id"]

    stored = b"".join(path.read_bytes() for path in data_dir.glob("banatie.db*"))
    assert master_key.encode() not in stored
    assert project_key.encode() not in stored


def test_init_again_changes_nothing_and_shows_no_key(
    run: Run, data_dir: Path, db_path: Path
) -> None:
    """A second ``init`` says so and leaves the database as it was."""
    succeeded(run("init"))
    before = rows(db_path, "SELECT id, key_hash, is_active FROM api_keys ORDER BY id")
    projects_before = rows(db_path, "SELECT id FROM projects")

    result = succeeded(run("init"))

    assert "Already initialised" in result.stdout
    assert str(data_dir) in result.stdout
    assert not KEY_IN_TEXT.search(result.output)
    assert rows(db_path, "SELECT id, key_hash, is_active FROM api_keys ORDER BY id") == before
    assert rows(db_path, "SELECT id FROM projects") == projects_before


def test_init_json_reports_keys_once_and_null_on_rerun(
    run: Run, data_dir: Path, db_path: Path
) -> None:
    """``init --json`` carries the keys on the first run only."""
    first = as_json(run("init", "--json"))
    assert WHOLE_KEY.match(first["masterKey"])
    assert WHOLE_KEY.match(first["projectKey"])
    assert first["createdProject"] is True
    assert first["dataDir"] == str(data_dir)
    hashes = {row["key_hash"] for row in rows(db_path, "SELECT key_hash FROM api_keys")}
    assert hashes == {sha256(first["masterKey"]), sha256(first["projectKey"])}

    second = as_json(run("init", "--json"))
    assert second["masterKey"] is None
    assert second["projectKey"] is None
    assert second["createdProject"] is False
    assert count(db_path, "api_keys") == 2


def test_init_no_keys_creates_the_project_only(run: Run, db_path: Path) -> None:
    """``init --no-keys`` leaves key creation to a later run (or the bootstrap route)."""
    result = succeeded(run("init", "--no-keys"))
    assert "Created project default/default" in result.stdout
    assert not KEY_IN_TEXT.search(result.output)
    assert project_row(db_path, "default", "default") is not None
    assert count(db_path, "api_keys") == 0

    data = as_json(run("init", "--json"))
    assert data["createdProject"] is False
    assert WHOLE_KEY.match(data["masterKey"])
    assert WHOLE_KEY.match(data["projectKey"])
    assert count(db_path, "api_keys") == 2


# --------------------------------------------------------- --data-dir and --config

# Each command in a data directory that ``init`` prepared, and how to see that it
# worked on that directory rather than on ./banatie-data.
COMMANDS: dict[str, tuple[list[str], Callable[[Result, Path], None]]] = {
    "init": (
        ["init"],
        lambda result, data: assert_in(f"Already initialised in {data}", result.stdout),
    ),
    "keys list": (
        ["keys", "list", "--json"],
        lambda result, data: assert_equal(len(json.loads(result.stdout)), 2),
    ),
    "keys create": (
        ["keys", "create", "--type", "master"],
        lambda result, data: assert_equal(count(data / "banatie.db", "api_keys"), 3),
    ),
    "keys revoke": (
        ["keys", "revoke", "{key_id}"],
        lambda result, data: assert_equal(
            rows(data / "banatie.db", "SELECT COUNT(*) AS n FROM api_keys WHERE is_active = 0"),
            [{"n": 1}],
        ),
    ),
    "projects list": (
        ["projects", "list", "--json"],
        lambda result, data: assert_equal(
            [(p["organizationSlug"], p["slug"]) for p in json.loads(result.stdout)],
            [("default", "default")],
        ),
    ),
    "projects create": (
        ["projects", "create", "acme/site"],
        lambda result, data: assert_is_not_none(project_row(data / "banatie.db", "acme", "site")),
    ),
    "projects update": (
        ["projects", "update", "default/default", "--scope-limit", "3"],
        lambda result, data: assert_equal(
            (project_row(data / "banatie.db", "default", "default") or {}).get(
                "new_live_scopes_generation_limit"
            ),
            3,
        ),
    ),
}


def assert_in(part: str, whole: str) -> None:
    assert part in whole


def assert_equal(actual: Any, expected: Any) -> None:
    assert actual == expected


def assert_is_not_none(value: Any) -> None:
    assert value is not None


def place(option: list[str], argv: list[str], where: str) -> list[str]:
    """Put ``option`` before the command, after it, or between group and subcommand."""
    if where == "before":
        return [*option, *argv]
    if where == "after":
        return [*argv, *option]
    return [argv[0], *option, *argv[1:]]


PLACEMENTS = [
    pytest.param(name, where, id=f"{name}-{where}")
    for name in COMMANDS
    for where in ("before", "after", "between")
    if where != "between" or " " in name
]


@pytest.mark.parametrize(("name", "where"), PLACEMENTS)
def test_data_dir_option_is_honoured_anywhere(
    invoke: Run, run: Run, tmp_path: Path, data_dir: Path, db_path: Path, name: str, where: str
) -> None:
    """``--data-dir`` works before the command, after it, and after a group name."""
    succeeded(run("init"))
    key_id = rows(db_path, "SELECT id FROM api_keys WHERE type = 'project'")[0]["id"]
    argv, check = COMMANDS[name]
    argv = [arg.replace("{key_id}", key_id) for arg in argv]

    result = succeeded(invoke(*place(["--data-dir", str(data_dir)], argv, where)))

    check(result, data_dir)
    assert not (tmp_path / "banatie-data").exists()


@pytest.mark.parametrize("where", ["before", "after"])
def test_version_accepts_data_dir_anywhere(invoke: Run, tmp_path: Path, where: str) -> None:
    """``version`` takes ``--data-dir`` like every other command and creates nothing."""
    result = succeeded(invoke(*place(["--data-dir", str(tmp_path / "d")], ["version"], where)))
    assert result.stdout.strip() == f"banatie-local {__version__}"
    assert not (tmp_path / "d").exists()


def test_default_data_dir_is_banatie_data_in_the_working_directory(
    invoke: Run, tmp_path: Path
) -> None:
    """Without ``--data-dir`` or ``$BANATIE_DATA_DIR`` the data lives in ./banatie-data."""
    succeeded(invoke("init"))
    assert (tmp_path / "banatie-data" / "banatie.db").is_file()


@pytest.mark.parametrize(("name", "where"), PLACEMENTS)
def test_config_option_is_read_anywhere(
    invoke: Run, run: Run, tmp_path: Path, data_dir: Path, name: str, where: str
) -> None:
    """A bad value in the ``--config`` file stops every command, wherever the option is."""
    succeeded(run("init"))
    config = write_config(tmp_path / "bad.toml", '[server]\nport = "x"\n')
    argv = [
        arg.replace("{key_id}", "00000000-0000-4000-8000-000000000000") for arg in COMMANDS[name][0]
    ]
    full = place(["--config", str(config)], argv, where)

    result = invoke(*full, "--data-dir", str(data_dir))

    line = assert_clean_failure(result, "server.port", "bad.toml")
    assert "'x'" in line


@pytest.mark.parametrize("where", ["before", "after"])
def test_config_file_values_are_used(
    invoke: Run, tmp_path: Path, data_dir: Path, where: str
) -> None:
    """Settings from ``--config`` reach the command (the URL in init's hint)."""
    config = write_config(
        tmp_path / "site.toml",
        '[server]\npublic_base_url = "http://images.example:8080/"\n'
        "[limits]\nrequests_per_hour = 5\n",
    )
    argv = place(["--config", str(config)], ["init"], where)
    out = succeeded(invoke(*argv, "--data-dir", str(data_dir))).stdout
    assert "http://images.example:8080/api/v1/project" in out


def test_config_port_and_host_shape_the_hint_url(run: Run, tmp_path: Path) -> None:
    """``server.host``/``server.port`` from the file make the default public URL."""
    config = write_config(tmp_path / "c.toml", '[server]\nhost = "0.0.0.0"\nport = 4321\n')
    out = succeeded(run("init", "--config", str(config))).stdout
    assert "http://127.0.0.1:4321/api/v1/project" in out


def test_environment_beats_the_config_file(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``BANATIE_<SECTION>_<KEY>`` overrides the same key from the TOML file."""
    config = write_config(
        tmp_path / "c.toml", '[server]\npublic_base_url = "http://file.example"\n'
    )
    monkeypatch.setenv("BANATIE_SERVER_PUBLIC_BASE_URL", "http://env.example")
    out = succeeded(run("init", "--config", str(config))).stdout
    assert "http://env.example/api/v1/project" in out
    assert "file.example" not in out


def test_bad_environment_value_names_the_variable(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad ``BANATIE_*`` value fails with a sentence naming the setting and variable."""
    monkeypatch.setenv("BANATIE_LIMITS_REQUESTS_PER_HOUR", "lots")
    assert_clean_failure(
        run("keys", "list"), "limits.requests_per_hour", "BANATIE_LIMITS_REQUESTS_PER_HOUR"
    )


def test_banatie_config_variable_and_local_file_are_found(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``$BANATIE_CONFIG`` is used, else ``./banatie.toml``; ``--config`` beats both."""
    write_config(tmp_path / "banatie.toml", '[server]\npublic_base_url = "http://local.example"\n')
    assert "http://local.example/api/v1/project" in succeeded(run("init")).stdout

    env_file = write_config(tmp_path / "env.toml", "[limits]\nrequests_per_hour = -1\n")
    monkeypatch.setenv("BANATIE_CONFIG", str(env_file))
    assert_clean_failure(run("keys", "list"), "limits.requests_per_hour")

    good = write_config(tmp_path / "good.toml", "[limits]\nrequests_per_hour = 5\n")
    succeeded(run("keys", "list", "--config", str(good)))


def test_missing_banatie_config_file_is_a_clean_error(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``$BANATIE_CONFIG`` that points nowhere names the file and the variable."""
    monkeypatch.setenv("BANATIE_CONFIG", str(tmp_path / "gone.toml"))
    assert_clean_failure(run("keys", "list"), "gone.toml", "BANATIE_CONFIG")


@pytest.mark.parametrize("where", ["before", "after"])
def test_missing_config_file_is_a_clean_error(
    invoke: Run, tmp_path: Path, data_dir: Path, where: str
) -> None:
    """``--config`` naming a file that does not exist fails with the file's name."""
    missing = tmp_path / "nowhere.toml"
    argv = place(["--config", str(missing)], ["keys", "list"], where)
    assert_clean_failure(invoke(*argv, "--data-dir", str(data_dir)), str(missing))
    assert not data_dir.exists()


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("[server\nport = 1\n", ["not valid TOML"]),
        ("[nope]\nx = 1\n", ["[nope]"]),
        ("[server]\nbogus = 1\n", ["server.bogus"]),
        ("[server]\nport = 70000\n", ["server.port"]),
        ('[storage]\nbackend = "s3"\n', ["storage.backend"]),
        ('[storage]\nbackend = "minio"\n', ["storage.minio_endpoint"]),
        ('[server]\ntrusted_proxies = ["not-an-ip"]\n', ["server.trusted_proxies"]),
        ('[server]\npublic_base_url = "ftp://x"\n', ["server.public_base_url"]),
    ],
)
def test_broken_config_files_fail_with_one_sentence(
    run: Run, tmp_path: Path, data_dir: Path, text: str, fragments: list[str]
) -> None:
    """Every kind of bad config file gives one clear sentence and touches no data."""
    config = write_config(tmp_path / "broken.toml", text)
    assert_clean_failure(run("init", "--config", str(config)), *fragments)
    assert not data_dir.exists()


# ---------------------------------------------------------------------- keys create


def test_keys_create_prints_only_the_key_on_stdout(run: Run, db_path: Path) -> None:
    """The key alone goes to stdout (for scripts); the note goes to stderr."""
    succeeded(run("init", "--no-keys"))
    result = succeeded(run("keys", "create", "--type", "project"))

    assert WHOLE_KEY.match(result.stdout.rstrip("\n"))
    assert result.stdout.count("\n") == 1
    key = result.stdout.strip()
    assert key not in result.stderr
    assert "project key" in result.stderr
    assert "cannot be shown again" in result.stderr

    (row,) = rows(db_path, "SELECT * FROM api_keys")
    assert row["id"] in result.stderr
    assert row["type"] == "project"
    assert row["key_hash"] == sha256(key)
    assert row["key_prefix"] == key[:12]
    assert row["project_id"] == (project_row(db_path, "default", "default") or {})["id"]
    assert row["expires_at"] is None


def test_keys_create_master_key_belongs_to_no_project(run: Run, db_path: Path) -> None:
    """A master key is stored without organization or project."""
    result = succeeded(run("keys", "create", "--type", "master", "--name", "ops"))
    key = result.stdout.strip()
    assert WHOLE_KEY.match(key)
    assert "master key" in result.stderr
    (row,) = rows(db_path, "SELECT * FROM api_keys")
    assert row["type"] == "master"
    assert row["name"] == "ops"
    assert row["organization_id"] is None
    assert row["project_id"] is None
    assert row["key_hash"] == sha256(key)


def test_keys_create_json_with_new_org_project_and_expiry(run: Run, db_path: Path) -> None:
    """``--json`` returns the key object; unknown slugs become a new project."""
    before = datetime.now(UTC)
    data = as_json(
        run(
            "keys",
            "create",
            "--type",
            "project",
            "--org",
            "acme",
            "--project",
            "site",
            "--name",
            "deploy bot",
            "--expires-in-days",
            "30",
            "--json",
        )
    )
    after = datetime.now(UTC)

    assert WHOLE_KEY.match(data["key"])
    assert UUID.match(data["id"])
    assert data["type"] == "project"
    assert data["organizationSlug"] == "acme"
    assert data["projectSlug"] == "site"
    assert data["name"] == "deploy bot"
    assert data["keyPrefix"] == data["key"][:12]
    assert data["isActive"] is True
    expires = datetime.strptime(data["expiresAt"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before + timedelta(days=30, seconds=-1) <= expires <= after + timedelta(days=30)

    projects = as_json(run("projects", "list", "--json"))
    assert ("acme", "site") in [(p["organizationSlug"], p["slug"]) for p in projects]
    project = project_row(db_path, "acme", "site")
    assert project is not None
    (row,) = rows(db_path, "SELECT * FROM api_keys WHERE id = ?", data["id"])
    assert row["project_id"] == project["id"]
    assert row["expires_at"] is not None
    assert row["key_hash"] == sha256(data["key"])


def test_keys_create_json_without_expiry(run: Run) -> None:
    """Without ``--expires-in-days`` the key never expires."""
    data = as_json(run("keys", "create", "--type", "master", "--json"))
    assert data["expiresAt"] is None
    assert data["type"] == "master"
    assert data["organizationSlug"] is None
    assert data["projectSlug"] is None
    assert data["keyPrefix"] == data["key"][:12]


def test_keys_create_reuses_an_existing_project(run: Run, db_path: Path) -> None:
    """A second key for the same slugs does not duplicate the project."""
    for _ in range(2):
        succeeded(run("keys", "create", "--type", "project", "--org", "acme", "--project", "x"))
    assert count(db_path, "projects") == 1
    assert count(db_path, "organizations") == 1
    assert count(db_path, "api_keys") == 2


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--org", "Bad_Slug"], ["organizationSlug"]),
        (["--project", "-nope"], ["projectSlug"]),
        (["--name", "n" * 101], ["name", "100"]),
    ],
)
def test_keys_create_rejects_bad_values(
    run: Run, db_path: Path, args: list[str], fragments: list[str]
) -> None:
    """Bad slugs or names fail with one sentence and create nothing."""
    succeeded(run("init", "--no-keys"))
    assert_clean_failure(run("keys", "create", "--type", "project", *args), *fragments)
    assert count(db_path, "api_keys") == 0
    assert count(db_path, "projects") == 1


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--type", "project", "--expires-in-days", "0"], "--expires-in-days"),
        (["--type", "project", "--expires-in-days", "36501"], "--expires-in-days"),
        (["--type", "project", "--expires-in-days", "soon"], "--expires-in-days"),
        (["--type", "admin"], "--type"),
        ([], "--type"),
    ],
)
def test_keys_create_usage_errors(run: Run, data_dir: Path, args: list[str], fragment: str) -> None:
    """Out-of-range or missing options are usage errors (exit 2)."""
    assert_clean_failure(run("keys", "create", *args), fragment, usage=True)
    assert not data_dir.exists()


# ------------------------------------------------------------------ keys list/revoke


def test_keys_list_shows_prefixes_and_never_a_key(run: Run) -> None:
    """Both listing forms show each key's prefix and no plaintext."""
    master, project = init_keys(run)
    extra = succeeded(run("keys", "create", "--type", "project", "--org", "acme")).stdout.strip()

    table = succeeded(run("keys", "list")).stdout
    assert "keyPrefix" in table.splitlines()[0]
    assert len(table.strip().splitlines()) == 4
    for key in (master, project, extra):
        assert key[:12] in table
    assert not KEY_IN_TEXT.search(table)

    result = run("keys", "list", "--json")
    listed = as_json(result)
    assert not KEY_IN_TEXT.search(result.output)
    assert len(listed) == 3
    assert {item["keyPrefix"] for item in listed} == {k[:12] for k in (master, project, extra)}
    for item in listed:
        assert "key" not in item
        assert item["isActive"] is True
    assert {(i["type"], i["organizationSlug"]) for i in listed} == {
        ("master", None),
        ("project", "default"),
        ("project", "acme"),
    }


def test_keys_list_when_there_are_none(run: Run) -> None:
    """An empty key list reads ``(none)`` or ``[]``."""
    succeeded(run("init", "--no-keys"))
    assert succeeded(run("keys", "list")).stdout.strip() == "(none)"
    assert as_json(run("keys", "list", "--json")) == []


def test_keys_revoke_deactivates_only_that_key(run: Run, db_path: Path) -> None:
    """A revoked key shows ``isActive`` false; the others stay active."""
    init_keys(run)
    listed = as_json(run("keys", "list", "--json"))
    target = next(item["id"] for item in listed if item["type"] == "project")

    result = succeeded(run("keys", "revoke", target))
    assert result.stdout.strip() == f"revoked {target}"

    after = {item["id"]: item["isActive"] for item in as_json(run("keys", "list", "--json"))}
    assert after[target] is False
    assert [active for key_id, active in after.items() if key_id != target] == [True]
    active = {r["id"]: r["is_active"] for r in rows(db_path, "SELECT id, is_active FROM api_keys")}
    assert active[target] == 0


def test_keys_revoke_json(run: Run) -> None:
    """``keys revoke --json`` reports the id and the new state."""
    init_keys(run)
    target = as_json(run("keys", "list", "--json"))[0]["id"]
    assert as_json(run("keys", "revoke", target, "--json")) == {"id": target, "isActive": False}


@pytest.mark.parametrize("key_id", ["00000000-0000-4000-8000-000000000000", "not-an-id"])
def test_keys_revoke_unknown_id_is_a_clean_error(run: Run, db_path: Path, key_id: str) -> None:
    """Revoking an id that does not exist names it and changes nothing."""
    init_keys(run)
    assert_clean_failure(run("keys", "revoke", key_id), key_id, "does not exist")
    assert rows(db_path, "SELECT COUNT(*) AS n FROM api_keys WHERE is_active = 1") == [{"n": 2}]


# ------------------------------------------------------------------------- projects


def test_projects_create_and_list(run: Run, db_path: Path) -> None:
    """A created project is in the list and the database, with no key."""
    init_keys(run)
    result = succeeded(run("projects", "create", "acme/site"))
    row = project_row(db_path, "acme", "site")
    assert row is not None
    assert result.stdout.strip() == f"created project acme/site ({row['id']})"
    assert count(db_path, "api_keys") == 2

    listed = as_json(run("projects", "list", "--json"))
    assert [(p["organizationSlug"], p["slug"]) for p in listed] == [
        ("acme", "site"),
        ("default", "default"),
    ]
    table = succeeded(run("projects", "list")).stdout
    assert "acme" in table
    assert "site" in table
    assert "allowNewLiveScopes" in table.splitlines()[0]


def test_projects_create_json(run: Run, db_path: Path) -> None:
    """``projects create --json`` returns the project object."""
    data = as_json(run("projects", "create", "acme/site", "--json"))
    row = project_row(db_path, "acme", "site")
    assert row is not None
    assert data["id"] == row["id"]
    assert data["organizationSlug"] == "acme"
    assert data["slug"] == "site"
    assert data["allowNewLiveScopes"] is bool(row["allow_new_live_scopes"])
    assert data["newLiveScopesGenerationLimit"] == row["new_live_scopes_generation_limit"]


def test_projects_list_empty(run: Run) -> None:
    """A fresh data directory has no project until ``init``."""
    assert succeeded(run("projects", "list")).stdout.strip() == "(none)"
    assert as_json(run("projects", "list", "--json")) == []


def test_projects_create_twice_is_a_conflict(run: Run, db_path: Path) -> None:
    """Creating an existing project fails and leaves one row."""
    succeeded(run("projects", "create", "acme/site"))
    assert_clean_failure(run("projects", "create", "acme/site"), "acme/site", "already exists")
    assert count(db_path, "projects") == 1


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("badpath", "ORG/PROJECT"),
        ("Acme/site", "organization"),
        ("acme/Site!", "project"),
        ("acme/", "project"),
    ],
)
def test_projects_create_rejects_bad_paths(
    run: Run, db_path: Path, path: str, fragment: str
) -> None:
    """A path must be two valid slugs joined by a slash."""
    assert_clean_failure(run("projects", "create", path), fragment)
    assert count(db_path, "projects") == 0


def test_projects_update_changes_live_settings(run: Run, db_path: Path) -> None:
    """``projects update`` changes exactly the options given."""
    succeeded(run("projects", "create", "acme/site"))
    original = project_row(db_path, "acme", "site")
    assert original is not None
    assert original["allow_new_live_scopes"] == 1
    assert original["new_live_scopes_generation_limit"] != 7

    data = as_json(
        run(
            "projects",
            "update",
            "acme/site",
            "--no-allow-new-scopes",
            "--scope-limit",
            "7",
            "--json",
        )
    )
    assert data["allowNewLiveScopes"] is False
    assert data["newLiveScopesGenerationLimit"] == 7
    row = project_row(db_path, "acme", "site")
    assert row is not None
    assert row["allow_new_live_scopes"] == 0
    assert row["new_live_scopes_generation_limit"] == 7

    listed = as_json(run("projects", "list", "--json"))
    site = next(p for p in listed if p["slug"] == "site")
    assert site["allowNewLiveScopes"] is False
    assert site["newLiveScopesGenerationLimit"] == 7

    table = succeeded(run("projects", "update", "acme/site", "--allow-new-scopes")).stdout
    assert "True" in table
    assert "7" in table.splitlines()[1]
    row = project_row(db_path, "acme", "site")
    assert row is not None
    assert row["allow_new_live_scopes"] == 1
    assert row["new_live_scopes_generation_limit"] == 7


def test_projects_update_unknown_project(run: Run) -> None:
    """Updating a project that does not exist names it."""
    init_keys(run)
    assert_clean_failure(
        run("projects", "update", "acme/nothing", "--scope-limit", "3"),
        "acme/nothing",
        "does not exist",
    )


@pytest.mark.parametrize("limit", ["-1", "1000001", "many"])
def test_projects_update_scope_limit_out_of_range_is_a_usage_error(
    run: Run, db_path: Path, limit: str
) -> None:
    """``--scope-limit`` outside 0..1000000 is refused before anything changes."""
    init_keys(run)
    before = project_row(db_path, "default", "default")
    assert_clean_failure(
        run("projects", "update", "default/default", "--scope-limit", limit),
        "--scope-limit",
        usage=True,
    )
    assert project_row(db_path, "default", "default") == before


def test_projects_update_bad_path(run: Run) -> None:
    """``projects update`` checks its ORG/PROJECT argument too."""
    assert_clean_failure(run("projects", "update", "nopath", "--scope-limit", "1"), "ORG/PROJECT")


# ------------------------------------------------------------------ version and help


def test_version_command(run: Run) -> None:
    """``version`` prints the name and version, plain or as JSON."""
    assert succeeded(run("version")).stdout == f"banatie-local {__version__}\n"
    assert as_json(run("version", "--json")) == {"name": "banatie-local", "version": __version__}


def test_version_option(invoke: Run, tmp_path: Path) -> None:
    """``--version`` on the group prints the version."""
    result = succeeded(invoke("--data-dir", str(tmp_path / "d"), "--version"))
    assert "banatie-local" in result.stdout
    assert __version__ in result.stdout


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            paths.extend(_command_paths(command, (*prefix, name)))
        else:
            paths.append((*prefix, name))
    return paths


def _command_at(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


ALL_COMMANDS = _command_paths(cli)


def test_every_expected_command_exists() -> None:
    """The command tree holds the documented commands."""
    assert set(ALL_COMMANDS) == {
        (),
        ("init",),
        ("serve",),
        ("generate",),
        ("mcp",),
        ("version",),
        ("keys",),
        ("keys", "create"),
        ("keys", "list"),
        ("keys", "revoke"),
        ("projects",),
        ("projects", "create"),
        ("projects", "list"),
        ("projects", "update"),
        ("projects", "signing-secret"),
        ("sign-url",),
        ("scopes",),
        ("scopes", "list"),
        ("scopes", "create"),
        ("scopes", "update"),
        ("scopes", "delete"),
        ("purge",),
        ("purge", "cache"),
        ("purge", "orphans"),
        ("stats",),
        ("db",),
        ("db", "upgrade"),
        ("db", "copy"),
    }


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "banatie-local")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_of_every_command(
    invoke: Run, data_dir: Path, path: tuple[str, ...], flag: str
) -> None:
    """``--help`` exits 0 and shows the command's summary and the common options."""
    docstring = _command_at(path).help
    assert docstring
    first_line = docstring.strip().splitlines()[0]

    result = succeeded(invoke(*path, flag, "--data-dir", str(data_dir)))

    text = " ".join(result.stdout.split())
    assert " ".join(first_line.split()) in text
    assert text.startswith("Usage: banatie-local")
    assert "--config" in text
    assert "--data-dir" in text
    assert not data_dir.exists()


def test_unknown_command_is_a_usage_error(run: Run) -> None:
    """A mistyped command name fails as a usage error."""
    assert_clean_failure(run("keys", "delete"), "delete", usage=True)


# ------------------------------------------------- known failures without a clean error


def test_data_dir_below_a_file_is_a_clean_error(invoke: Run, tmp_path: Path) -> None:
    """A data directory that cannot be created gives one sentence, not a traceback."""
    (tmp_path / "plain-file").write_text("x", encoding="utf-8")
    assert_clean_failure(invoke("init", "--data-dir", str(tmp_path / "plain-file" / "data")))


def test_corrupt_database_is_a_clean_error(run: Run, data_dir: Path, db_path: Path) -> None:
    """A banatie.db that is not a database gives one sentence naming the problem."""
    data_dir.mkdir()
    db_path.write_text("this is not sqlite\n", encoding="utf-8")
    assert_clean_failure(run("keys", "list"))


def test_config_file_that_is_not_utf8_is_a_clean_error(run: Run, tmp_path: Path) -> None:
    """A config file with bytes that are not UTF-8 is reported like invalid TOML."""
    config = tmp_path / "latin1.toml"
    config.write_bytes(b'[server]\nhost = "caf\xe9"\n')
    assert_clean_failure(run("keys", "list", "--config", str(config)), "latin1.toml")
