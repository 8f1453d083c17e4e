"""Settings: defaults, sources and their precedence, validation, the example file."""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from banatie_local.config import (
    SECTIONS,
    ConfigError,
    Settings,
    load_settings,
    render_example_toml,
    settings_table,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "config.example.toml"


def load(tmp_path: Path, **kwargs: Any) -> Settings:
    """``load_settings`` with an empty environment and a data dir under ``tmp_path``."""
    kwargs.setdefault("environ", {})
    kwargs.setdefault("data_dir", tmp_path / "data")
    return load_settings(**kwargs)


def write_toml(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def sections(settings: Settings) -> dict[str, Any]:
    """Every section's values, without the paths that depend on where they came from."""
    return {name: asdict(getattr(settings, name)) for name in SECTIONS}


def assert_one_sentence(message: str, key: str) -> None:
    assert key in message
    assert "\n" not in message
    assert message.endswith(".")
    assert not re.search(r"[.!?] +[A-Z]", message), message


# --------------------------------------------------------------------------- #
# defaults
# --------------------------------------------------------------------------- #


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no file, no environment and no flags every documented default applies."""
    monkeypatch.chdir(tmp_path)
    s = load_settings(environ={})
    assert s.server.port == 3000
    assert s.server.host == "127.0.0.1"
    assert s.server.max_upload_mb == 5
    assert s.server.trusted_proxies == ()
    assert s.server.public_base_url == ""
    assert s.server.access_log is False
    assert s.storage.backend == "local"
    assert s.storage.minio_bucket == "banatie"
    assert s.storage.minio_secure is False
    assert s.generation.provider == "auto"
    assert s.generation.gemini_api_key == ""
    assert s.generation.image_model == "gemini-2.5-flash-image"
    assert s.generation.text_model == "gemini-2.5-flash"
    assert s.generation.timeout_seconds == 120
    assert s.generation.max_retries == 2
    assert s.limits.requests_per_hour == 1000
    assert s.live.new_generations_per_ip_per_hour == 10
    assert s.live.memory_cache_mb == 256
    assert s.cdn.max_age == 31536000
    assert s.log.level == "info"
    assert s.config_file is None
    assert s.data_dir == Path("banatie-data")


def test_derived_paths_and_sizes(tmp_path: Path) -> None:
    """Database and storage live in the data dir; the upload limit is in bytes."""
    s = load(tmp_path, overrides={"server.max_upload_mb": 2})
    assert s.database_path == tmp_path / "data" / "banatie.db"
    assert s.storage_root == tmp_path / "data" / "storage"
    assert s.max_upload_bytes == 2 * 1024 * 1024


def test_settings_table_matches_dataclass_defaults() -> None:
    """Every row of the table names a real field and carries that field's default."""
    defaults = Settings()
    rows = list(settings_table())
    assert {row.section for row in rows} == set(SECTIONS)
    for row in rows:
        assert getattr(getattr(defaults, row.section), row.key) == row.default
        assert row.env_var == f"BANATIE_{row.section.upper()}_{row.key.upper()}"
        assert row.help


# --------------------------------------------------------------------------- #
# precedence
# --------------------------------------------------------------------------- #


def test_toml_overrides_defaults(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[server]\nport = 3100\n[log]\nlevel = 'debug'\n")
    s = load(tmp_path, config_file=path)
    assert s.server.port == 3100
    assert s.log.level == "debug"
    assert s.server.host == "127.0.0.1"
    assert s.config_file == path


def test_env_overrides_toml(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[server]\nport = 3100\nhost = '127.0.0.2'\n")
    s = load(tmp_path, config_file=path, environ={"BANATIE_SERVER_PORT": "3200"})
    assert s.server.port == 3200
    assert s.server.host == "127.0.0.2"


def test_overrides_beat_env_and_toml(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[server]\nport = 3100\n")
    s = load(
        tmp_path,
        config_file=path,
        environ={"BANATIE_SERVER_PORT": "3200"},
        overrides={"server.port": 3300},
    )
    assert s.server.port == 3300


def test_override_of_none_is_ignored(tmp_path: Path) -> None:
    """A flag that was not given (None) leaves the lower layers alone."""
    s = load(tmp_path, environ={"BANATIE_SERVER_PORT": "3200"}, overrides={"server.port": None})
    assert s.server.port == 3200


def test_unknown_override_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.nope") as info:
        load(tmp_path, overrides={"server.nope": 1})
    assert_one_sentence(str(info.value), "server.nope")


def test_env_values_are_typed(tmp_path: Path) -> None:
    """Environment strings become bools, numbers and lists of the declared type."""
    s = load(
        tmp_path,
        environ={
            "BANATIE_SERVER_ACCESS_LOG": "yes",
            "BANATIE_STORAGE_MINIO_SECURE": "1",
            "BANATIE_SERVER_MAX_UPLOAD_MB": "2.5",
            "BANATIE_GENERATION_MAX_RETRIES": " 4 ",
            "BANATIE_LIMITS_REQUESTS_PER_HOUR": "0",
        },
    )
    assert s.server.access_log is True
    assert s.storage.minio_secure is True
    assert s.server.max_upload_mb == 2.5
    assert s.generation.max_retries == 4
    assert s.limits.requests_per_hour == 0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("on", True),
        ("0", False),
        ("off", False),
        ("No", False),
    ],
)
def test_env_bool_spellings(tmp_path: Path, raw: str, expected: bool) -> None:
    s = load(tmp_path, environ={"BANATIE_SERVER_ACCESS_LOG": raw})
    assert s.server.access_log is expected


def test_gemini_api_key_from_plain_env(tmp_path: Path) -> None:
    s = load(tmp_path, environ={"GEMINI_API_KEY": "plain-key"})
    assert s.generation.gemini_api_key == "plain-key"
    assert s.provider_name == "gemini"


def test_prefixed_gemini_key_beats_plain_env(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        environ={"GEMINI_API_KEY": "plain-key", "BANATIE_GENERATION_GEMINI_API_KEY": "ours"},
    )
    assert s.generation.gemini_api_key == "ours"


def test_plain_gemini_env_beats_toml(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[generation]\ngemini_api_key = 'from-file'\n")
    s = load(tmp_path, config_file=path, environ={"GEMINI_API_KEY": "from-env"})
    assert s.generation.gemini_api_key == "from-env"


def test_empty_plain_gemini_env_is_ignored(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[generation]\ngemini_api_key = 'from-file'\n")
    s = load(tmp_path, config_file=path, environ={"GEMINI_API_KEY": ""})
    assert s.generation.gemini_api_key == "from-file"


@pytest.mark.parametrize(
    ("provider", "key", "expected"),
    [
        ("auto", "k", "gemini"),
        ("auto", "", "offline"),
        ("offline", "k", "offline"),
        ("gemini", "", "gemini"),
    ],
)
def test_provider_name(tmp_path: Path, provider: str, key: str, expected: str) -> None:
    s = load(
        tmp_path,
        overrides={"generation.provider": provider, "generation.gemini_api_key": key},
    )
    assert s.provider_name == expected


# --------------------------------------------------------------------------- #
# config file and data dir discovery
# --------------------------------------------------------------------------- #


def test_explicit_config_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[cdn]\nmax_age = 60\n", name="explicit.toml")
    s = load(tmp_path, config_file=str(path))
    assert s.cdn.max_age == 60
    assert s.config_file == path


def test_explicit_config_beats_env_config(tmp_path: Path) -> None:
    explicit = write_toml(tmp_path, "[cdn]\nmax_age = 60\n", name="explicit.toml")
    other = write_toml(tmp_path, "[cdn]\nmax_age = 70\n", name="other.toml")
    s = load(tmp_path, config_file=explicit, environ={"BANATIE_CONFIG": str(other)})
    assert s.cdn.max_age == 60


def test_config_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(tmp_path, "[cdn]\nmax_age = 70\n", name="env.toml")
    write_toml(tmp_path, "[cdn]\nmax_age = 80\n", name="banatie.toml")
    monkeypatch.chdir(tmp_path)
    s = load(tmp_path, environ={"BANATIE_CONFIG": str(path)})
    assert s.cdn.max_age == 70
    assert s.config_file == path


def test_config_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(tmp_path, "[cdn]\nmax_age = 80\n", name="banatie.toml")
    monkeypatch.chdir(tmp_path)
    s = load(tmp_path)
    assert s.cdn.max_age == 80
    assert s.config_file == Path("banatie.toml")


def test_no_config_file_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load(tmp_path)
    assert s.config_file is None
    assert s.cdn.max_age == 31536000


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as info:
        load(tmp_path, config_file=missing)
    assert_one_sentence(str(info.value), str(missing))


def test_missing_config_from_env(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match="BANATIE_CONFIG") as info:
        load(tmp_path, environ={"BANATIE_CONFIG": str(missing)})
    assert_one_sentence(str(info.value), str(missing))


def test_data_dir_argument_beats_env(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path / "arg", environ={"BANATIE_DATA_DIR": str(tmp_path)})
    assert s.data_dir == tmp_path / "arg"


def test_data_dir_from_env(tmp_path: Path) -> None:
    s = load_settings(environ={"BANATIE_DATA_DIR": str(tmp_path / "env")})
    assert s.data_dir == tmp_path / "env"


def test_data_dir_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(environ={})
    assert s.data_dir == Path("banatie-data")
    assert s.database_path == Path("banatie-data") / "banatie.db"


# --------------------------------------------------------------------------- #
# bad values
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"BANATIE_SERVER_PORT": "abc"}, "server.port"),
        ({"BANATIE_SERVER_PORT": "70000"}, "server.port"),
        ({"BANATIE_SERVER_PORT": "0"}, "server.port"),
        ({"BANATIE_SERVER_PORT": "3000.5"}, "server.port"),
        ({"BANATIE_SERVER_ACCESS_LOG": "maybe"}, "server.access_log"),
        ({"BANATIE_STORAGE_BACKEND": "ftp"}, "storage.backend"),
        ({"BANATIE_LOG_LEVEL": "loud"}, "log.level"),
        ({"BANATIE_GENERATION_MAX_RETRIES": "11"}, "generation.max_retries"),
        ({"BANATIE_LIMITS_REQUESTS_PER_HOUR": "-1"}, "limits.requests_per_hour"),
        ({"BANATIE_SERVER_MAX_UPLOAD_MB": "lots"}, "server.max_upload_mb"),
        ({"BANATIE_SERVER_TRUSTED_PROXIES": '["10.0.0.1", 5]'}, "server.trusted_proxies"),
        ({"BANATIE_SERVER_TRUSTED_PROXIES": "[not json"}, "server.trusted_proxies"),
        ({"BANATIE_SERVER_TRUSTED_PROXIES": "10.0.0.1,proxy"}, "server.trusted_proxies"),
        ({"BANATIE_SERVER_PUBLIC_BASE_URL": "example.com"}, "server.public_base_url"),
        ({"BANATIE_SERVER_PUBLIC_BASE_URL": "ftp://example.com"}, "server.public_base_url"),
        ({"BANATIE_STORAGE_BACKEND": "minio"}, "storage.minio_endpoint"),
    ],
)
def test_bad_env_values(tmp_path: Path, env: dict[str, str], key: str) -> None:
    """Each bad value stops loading with one sentence that names the key."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, environ=env)
    assert_one_sentence(str(info.value), key)


def test_bad_env_value_names_its_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, environ={"BANATIE_SERVER_PORT": "abc"})
    message = str(info.value)
    assert "BANATIE_SERVER_PORT" in message
    assert "'abc'" in message
    assert "1 to 65535" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[server]\nport = 70000\n", "server.port"),
        ("[server]\nport = true\n", "server.port"),
        ("[server]\nport = '3000'\n", "server.port"),
        ("[server]\nport = 3000.5\n", "server.port"),
        ("[server]\naccess_log = 'yes'\n", "server.access_log"),
        ("[server]\nmax_upload_mb = false\n", "server.max_upload_mb"),
        ("[server]\ntrusted_proxies = '10.0.0.1'\n", "server.trusted_proxies"),
        ("[server]\ntrusted_proxies = ['10.0.0.1', 'nope']\n", "server.trusted_proxies"),
        ("[server]\nhost = 1\n", "server.host"),
        ("[server]\nportt = 3000\n", "server.portt"),
        ("[storage]\nbackend = 'ftp'\n", "storage.backend"),
        ("[storage]\nbackend = 'minio'\n", "storage.minio_endpoint"),
        ("[cdn]\nmax_age = -1\n", "cdn.max_age"),
        ("[database]\npath = 'x'\n", "database.path"),
        ("[database]\nbusy_timeout_ms = 5\n", "database.busy_timeout_ms"),
        ("[nosuch]\nkey = 1\n", "[nosuch]"),
        ("server = 1\n", "[server]"),
    ],
)
def test_bad_toml_values(tmp_path: Path, text: str, key: str) -> None:
    path = write_toml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(tmp_path, config_file=path)
    assert_one_sentence(str(info.value), key)


def test_toml_error_names_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[server]\nport = true\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, config_file=path)
    assert str(path) in str(info.value)


def test_invalid_toml(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[server\nport = \n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load(tmp_path, config_file=path)
    assert_one_sentence(str(info.value), str(path))


def test_bad_override_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="command line") as info:
        load(tmp_path, overrides={"server.port": 0})
    assert_one_sentence(str(info.value), "server.port")


def test_int_setting_accepts_integral_float(tmp_path: Path) -> None:
    """``port = 3100.0`` is a whole number and is stored as an int."""
    path = write_toml(tmp_path, "[server]\nport = 3100.0\n")
    s = load(tmp_path, config_file=path)
    assert s.server.port == 3100
    assert isinstance(s.server.port, int)


def test_float_setting_accepts_int(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[server]\nmax_upload_mb = 3\n")
    s = load(tmp_path, config_file=path)
    assert s.server.max_upload_mb == 3.0
    assert isinstance(s.server.max_upload_mb, float)


def test_minio_with_endpoint_loads(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        environ={
            "BANATIE_STORAGE_BACKEND": "minio",
            "BANATIE_STORAGE_MINIO_ENDPOINT": "localhost:9000",
        },
    )
    assert s.storage.backend == "minio"
    assert s.storage.minio_endpoint == "localhost:9000"


@pytest.mark.parametrize(
    "env",
    [
        {"BANATIE_SERVER_MAX_UPLOAD_MB": "nan"},
        {"BANATIE_GENERATION_TIMEOUT_SECONDS": "nan"},
    ],
)
def test_nan_float_setting_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load(tmp_path, environ=env)


# --------------------------------------------------------------------------- #
# list values
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10.0.0.1, 192.168.0.0/16", ("10.0.0.1", "192.168.0.0/16")),
        ("10.0.0.1,,", ("10.0.0.1",)),
        ("", ()),
        ('["10.0.0.1", "::1"]', ("10.0.0.1", "::1")),
        ("[]", ()),
    ],
)
def test_trusted_proxies_from_env(tmp_path: Path, raw: str, expected: tuple[str, ...]) -> None:
    s = load(tmp_path, environ={"BANATIE_SERVER_TRUSTED_PROXIES": raw})
    assert s.server.trusted_proxies == expected


def test_trusted_proxies_from_toml(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[server]\ntrusted_proxies = ['10.0.0.0/8', 'fd00::/8']\n")
    s = load(tmp_path, config_file=path)
    assert s.server.trusted_proxies == ("10.0.0.0/8", "fd00::/8")


# --------------------------------------------------------------------------- #
# public base URL
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, "http://127.0.0.1:3000"),
        ({"server.port": 3100}, "http://127.0.0.1:3100"),
        ({"server.host": "0.0.0.0"}, "http://127.0.0.1:3000"),
        ({"server.host": "::"}, "http://127.0.0.1:3000"),
        ({"server.host": "::1"}, "http://[::1]:3000"),
        ({"server.host": "192.168.1.5", "server.port": 80}, "http://192.168.1.5:80"),
        ({"server.public_base_url": "https://img.example.com/"}, "https://img.example.com"),
        ({"server.public_base_url": "https://example.com/cdn//"}, "https://example.com/cdn"),
        (
            {"server.public_base_url": "http://example.com", "server.port": 3100},
            "http://example.com",
        ),
    ],
)
def test_public_base_url(tmp_path: Path, overrides: dict[str, Any], expected: str) -> None:
    s = load(tmp_path, overrides=overrides)
    assert s.public_base_url == expected


# --------------------------------------------------------------------------- #
# config.example.toml
# --------------------------------------------------------------------------- #


def test_example_file_is_current() -> None:
    """The committed example is exactly what the settings table renders."""
    assert EXAMPLE.read_text(encoding="utf-8") == render_example_toml()


def test_example_parses_as_toml() -> None:
    doc = tomllib.loads(render_example_toml())
    assert set(doc) == set(SECTIONS)
    for row in settings_table():
        assert row.key in doc[row.section]


def test_example_loads_to_the_defaults(tmp_path: Path) -> None:
    """Loading the example as a config file changes nothing."""
    from_example = load(tmp_path, config_file=EXAMPLE)
    defaults = load(tmp_path)
    assert from_example.config_file == EXAMPLE
    assert sections(from_example) == sections(defaults)
    assert sections(defaults) == sections(Settings())


def test_example_documents_every_setting() -> None:
    """Each setting sits in its section, under a comment with its help and env var."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for row in settings_table():
        start = lines.index(f"[{row.section}]")
        assignment = next(
            i for i in range(start, len(lines)) if lines[i].startswith(f"{row.key} = ")
        )
        assert not any(line.startswith("[") for line in lines[start + 1 : assignment]), row.name
        comment = lines[assignment - 1]
        assert comment.startswith("# "), row.name
        assert f"Env: {row.env_var}" in comment, row.name
        assert row.help in comment, row.name
