"""Settings: one declarative table, read from TOML, then environment, then flags.

Every setting is declared exactly once, as a field of a section dataclass below,
with its default, its help line and its bounds. The TOML loader, the environment
reader (``BANATIE_<SECTION>_<KEY>``), the CLI flag overrides, ``config.example.toml``
and the documentation test all walk the same table, so they cannot drift apart.
A bad value stops startup with one sentence that names the key.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any, TypeAlias, get_type_hints

from banatie_local.text import truth

ENV_PREFIX = "BANATIE_"
DEFAULT_CONFIG_NAME = "banatie.toml"
DEFAULT_DATA_DIR = "banatie-data"

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(Exception):
    """A setting or the config file is unusable; the message is one sentence."""


def setting(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    maximum: float | None = None,
    secret: bool = False,
) -> Any:
    """Declare one setting: its default, help line and bounds."""
    meta = {
        "help": help,
        "choices": choices,
        "minimum": minimum,
        "maximum": maximum,
        "secret": secret,
    }
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ServerSettings:
    host: str = setting("127.0.0.1", "Address to bind; 0.0.0.0 listens on every interface")
    port: int = setting(3000, "TCP port to listen on", minimum=1, maximum=65535)
    public_base_url: str = setting("", 'Base of every storageUrl; "" means http://{host}:{port}')
    trusted_proxies: tuple[str, ...] = setting(
        (), "Peers (IPs or CIDRs) whose X-Forwarded-For header is believed"
    )
    max_upload_mb: float = setting(
        5.0, "Largest accepted upload in megabytes", minimum=0.01, maximum=1024
    )
    request_timeout: float = setting(
        60.0,
        "Seconds a client may take to send its request headers, and again its body",
        minimum=1,
        maximum=3600,
    )
    access_log: bool = setting(False, "Log one line per request")
    metrics: bool = setting(False, "Serve GET /metrics (Prometheus text format)")
    workers: int = setting(
        1,
        "Worker processes serving one port; they share limits and caches through the database",
        minimum=1,
        maximum=64,
    )

    @cached_property
    def trusted_networks(self) -> tuple[Network, ...]:
        """``trusted_proxies`` as networks, parsed on first use (``load_settings``
        asks, so a bad entry stops startup) and kept."""
        return tuple(_network(entry, "server.trusted_proxies") for entry in self.trusted_proxies)


@dataclass(frozen=True)
class StorageSettings:
    backend: str = setting("local", "Where image files live", choices=("local", "minio"))
    local_root: str = setting(
        "",
        'Folder of the local backend; "" means <data-dir>/storage (a shared mount for instances)',
    )
    minio_endpoint: str = setting("", "S3 endpoint as host:port (minio backend)")
    minio_access_key: str = setting("", "S3 access key (minio backend)", secret=True)
    minio_secret_key: str = setting("", "S3 secret key (minio backend)", secret=True)
    minio_bucket: str = setting("banatie", "S3 bucket, created if missing (minio backend)")
    minio_secure: bool = setting(False, "Use HTTPS to reach the S3 endpoint")


@dataclass(frozen=True)
class GenerationSettings:
    provider: str = setting(
        "auto",
        "auto (gemini if its key is set, else openai if its key is set, else offline), "
        "gemini, openai or offline",
        choices=("auto", "gemini", "openai", "offline"),
    )
    gemini_api_key: str = setting("", "Gemini API key; also read from GEMINI_API_KEY", secret=True)
    gemini_base_url: str = setting("", "Override the Gemini endpoint (proxies, tests)")
    image_model: str = setting("gemini-2.5-flash-image", "Gemini model that draws images")
    gemini_price_per_image: float = setting(
        0.039, "Estimated USD per Gemini image, for /metrics and stats", minimum=0, maximum=100
    )
    text_model: str = setting("gemini-2.5-flash", "Gemini model that enhances prompts")
    openai_api_key: str = setting(
        "", "Key of the openai provider; also read from OPENAI_API_KEY", secret=True
    )
    openai_base_url: str = setting(
        "https://api.openai.com/v1",
        "Base URL of the openai provider: OpenAI or any OpenAI-compatible server (LocalAI, ...)",
    )
    openai_model: str = setting("gpt-image-2", "Model that draws images on the openai provider")
    openai_text_model: str = setting(
        "", 'Chat model that enhances prompts on the openai provider; "" = the offline rewrite'
    )
    openai_sizes: tuple[str, ...] = setting(
        ("1024x1024", "1536x1024", "1024x1536"),
        "Sizes (WxH) the openai provider asks for; each aspect ratio gets the nearest",
    )
    openai_price_per_image: float = setting(
        0.04, "Estimated USD per openai image, for /metrics and stats", minimum=0, maximum=100
    )
    timeout_seconds: float = setting(
        120.0, "Seconds allowed for one provider call", minimum=1, maximum=3600
    )
    max_retries: int = setting(2, "Retries on provider 429/5xx answers", minimum=0, maximum=10)
    retry_backoff_seconds: float = setting(
        1.0, "First retry delay; each later retry waits twice as long", minimum=0, maximum=60
    )

    @cached_property
    def openai_size_table(self) -> tuple[tuple[int, int], ...]:
        """``openai_sizes`` as ``(width, height)`` pairs, parsed on first use
        (``load_settings`` asks, so a bad entry stops startup) and kept."""
        sizes = tuple(_size(entry) for entry in self.openai_sizes)
        if not sizes:
            raise ConfigError("setting generation.openai_sizes must list at least one size.")
        return sizes


@dataclass(frozen=True)
class LimitsSettings:
    requests_per_hour: int = setting(
        1000, "Requests per project key per rolling hour; 0 turns the limit off", minimum=0
    )


@dataclass(frozen=True)
class LiveSettings:
    new_generations_per_ip_per_hour: int = setting(
        10, "Live-URL cache misses per client IP per hour; 0 turns the limit off", minimum=0
    )
    hit_flush_seconds: float = setting(
        5.0, "How often live-URL hit counts are written", minimum=0.05, maximum=5
    )
    memory_cache_mb: int = setting(
        256, "In-memory cache for hot image bytes, in megabytes", minimum=0, maximum=65536
    )
    ip_limit_exempt: tuple[str, ...] = setting(
        ("127.0.0.0/8", "::1"),
        "Socket peers (IPs or CIDRs) exempt from the per-IP live limit when the request"
        " carries no forwarding header: the person at the workstation",
    )

    @cached_property
    def exempt_networks(self) -> tuple[Network, ...]:
        """``ip_limit_exempt`` as networks (parsed at startup, like trusted_proxies)."""
        return tuple(_network(entry, "live.ip_limit_exempt") for entry in self.ip_limit_exempt)


@dataclass(frozen=True)
class CdnSettings:
    max_age: int = setting(31536000, "Cache-Control max-age (seconds) on image routes", minimum=0)
    max_variants_per_image: int = setting(
        24,
        "Stored size/format variants kept per image; the least recently used goes first",
        minimum=1,
        maximum=1000,
    )
    signature_grace_seconds: int = setting(
        86400,
        "How long a rotated signing secret still signs valid URLs",
        minimum=0,
        maximum=31536000,
    )


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = setting(
        "",
        'Empty: SQLite in the data dir; "postgresql://user:pass@host:5432/db" for PostgreSQL',
        secret=True,
    )
    busy_timeout_ms: int = setting(
        5000,
        "How long a write waits for another process's lock before answering 503 DATABASE_BUSY",
        minimum=10,
        maximum=600_000,
    )
    read_threads: int = setting(
        3, "Threads that run database reads beside the one writer thread", minimum=1, maximum=64
    )


@dataclass(frozen=True)
class LogSettings:
    level: str = setting("info", "Log level", choices=("debug", "info", "warning", "error"))


@dataclass(frozen=True)
class UploadSettings:
    strip_metadata: bool = setting(
        True,
        "Remove EXIF (GPS above all), XMP, IPTC and comments from uploads before they are"
        " stored and served; the orientation is applied first, the colour profile kept",
    )


@dataclass(frozen=True)
class MetadataSettings:
    embed_prompt: bool = setting(
        True, "Write the prompt into the provenance metadata of generated images"
    )
    c2pa_certificate: str = setting(
        "", "PEM certificate chain that signs a C2PA manifest into generated images (optional)"
    )
    c2pa_private_key: str = setting("", "PEM private key file of c2pa_certificate")


SECTIONS: dict[str, type] = {
    "server": ServerSettings,
    "storage": StorageSettings,
    "generation": GenerationSettings,
    "limits": LimitsSettings,
    "live": LiveSettings,
    "cdn": CdnSettings,
    "uploads": UploadSettings,
    "metadata": MetadataSettings,
    "database": DatabaseSettings,
    "log": LogSettings,
}


@dataclass(frozen=True)
class Settings:
    """The effective configuration of one appliance."""

    data_dir: Path = Path(DEFAULT_DATA_DIR)
    config_file: Path | None = None
    server: ServerSettings = field(default_factory=ServerSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    live: LiveSettings = field(default_factory=LiveSettings)
    cdn: CdnSettings = field(default_factory=CdnSettings)
    uploads: UploadSettings = field(default_factory=UploadSettings)
    metadata: MetadataSettings = field(default_factory=MetadataSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    log: LogSettings = field(default_factory=LogSettings)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "banatie.db"

    @property
    def storage_root(self) -> Path:
        if self.storage.local_root:
            return Path(self.storage.local_root).expanduser()
        return self.data_dir / "storage"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.server.max_upload_mb * 1024 * 1024)

    @property
    def public_base_url(self) -> str:
        if self.server.public_base_url:
            return self.server.public_base_url.rstrip("/")
        host = self.server.host
        # A wildcard bind address is not something a browser can reach.
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - comparing, not binding
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.server.port}"

    @property
    def provider_name(self) -> str:
        """The provider that ``generation.provider`` selects."""
        choice = self.generation.provider
        if choice == "auto":
            if self.generation.gemini_api_key:
                return "gemini"
            return "openai" if self.generation.openai_api_key else "offline"
        return choice


@dataclass(frozen=True)
class SettingSpec:
    """One row of the settings table."""

    section: str
    key: str
    type: Any
    default: Any
    help: str
    choices: tuple[str, ...]
    minimum: float | None
    maximum: float | None
    secret: bool

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env_var(self) -> str:
        return f"{ENV_PREFIX}{self.section}_{self.key}".upper()


def settings_table() -> Iterator[SettingSpec]:
    """Every setting, in declaration order."""
    for section, cls in SECTIONS.items():
        hints = get_type_hints(cls)
        for f in fields(cls):
            default = f.default if f.default is not MISSING else None
            yield SettingSpec(
                section=section,
                key=f.name,
                type=hints[f.name],
                default=default,
                help=f.metadata["help"],
                choices=f.metadata["choices"],
                minimum=f.metadata["minimum"],
                maximum=f.metadata["maximum"],
                secret=f.metadata["secret"],
            )


# --------------------------------------------------------------------------- #
# coercion and validation
# --------------------------------------------------------------------------- #


def _from_text(spec: SettingSpec, raw: str) -> Any:
    """Turn an environment string into a TOML-like value for ``_coerce``."""
    if spec.type is bool:
        value = truth(raw.strip())
        return raw if value is None else value
    if spec.type is int:
        try:
            return int(raw.strip())
        except ValueError:
            return raw
    if spec.type is float:
        try:
            return float(raw.strip())
        except ValueError:
            return raw
    if spec.type == tuple[str, ...]:
        text = raw.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError:
                return raw
        return [part.strip() for part in text.split(",") if part.strip()]
    return raw


def _describe(spec: SettingSpec) -> str:
    if spec.choices:
        return "one of " + ", ".join(repr(c) for c in spec.choices)
    kind = {
        bool: "true or false",
        int: "a whole number",
        float: "a number",
        str: "a string",
    }.get(spec.type, "a list of strings")
    if spec.minimum is not None and spec.maximum is not None:
        return f"{kind} from {_num(spec.minimum)} to {_num(spec.maximum)}"
    if spec.minimum is not None:
        return f"{kind} of at least {_num(spec.minimum)}"
    return kind


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _coerce(spec: SettingSpec, value: Any, origin: str) -> Any:
    bad = ConfigError(f"setting {spec.name} must be {_describe(spec)}, got {value!r} ({origin}).")
    if spec.type is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if spec.type is int or spec.type is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        if not math.isfinite(value) or (spec.type is int and not float(value).is_integer()):
            raise bad
        value = spec.type(value)
        if spec.minimum is not None and value < spec.minimum:
            raise bad
        if spec.maximum is not None and value > spec.maximum:
            raise bad
        return value
    if spec.type is str:
        if not isinstance(value, str) or (spec.choices and value not in spec.choices):
            raise bad
        return value
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise bad
    return tuple(value)


def _network(entry: str, name: str) -> Network:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise ConfigError(
            f"setting {name} has {entry!r}, which is not an IP address or network."
        ) from None


def _size(entry: str) -> tuple[int, int]:
    match = re.fullmatch(r"([0-9]{1,4})x([0-9]{1,4})", entry.strip().lower())
    if match and all(0 < int(side) <= 8192 for side in match.groups()):
        return int(match.group(1)), int(match.group(2))
    raise ConfigError(
        f"setting generation.openai_sizes has {entry!r}, which is not a size WIDTHxHEIGHT "
        "such as 1024x1024."
    )


def _check_cross_fields(settings: Settings) -> None:
    _ = settings.server.trusted_networks  # parsed once, here: a bad entry stops startup
    _ = settings.live.exempt_networks
    _ = settings.generation.openai_size_table
    openai_url = settings.generation.openai_base_url
    if not openai_url.startswith(("http://", "https://")):
        raise ConfigError(
            "setting generation.openai_base_url must start with http:// or https://, "
            f"got {openai_url!r}."
        )
    url = settings.server.public_base_url
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"setting server.public_base_url must start with http:// or https://, got {url!r}."
        )
    db_url = settings.database.url
    if db_url and not db_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            "setting database.url must be empty (SQLite in the data dir) or start with "
            "postgresql://."
        )
    if settings.storage.backend == "minio" and not settings.storage.minio_endpoint:
        raise ConfigError(
            "setting storage.minio_endpoint is required when storage.backend is 'minio'."
        )


# --------------------------------------------------------------------------- #
# loading
# --------------------------------------------------------------------------- #


def find_config_file(
    explicit: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> Path | None:
    """``--config``, else ``$BANATIE_CONFIG``, else ``./banatie.toml`` if present."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist.")
        return path
    from_env = environ.get("BANATIE_CONFIG")
    if from_env:
        path = Path(from_env)
        if not path.is_file():
            raise ConfigError(f"config file {path} (from BANATIE_CONFIG) does not exist.")
        return path
    default = Path(DEFAULT_CONFIG_NAME)
    return default if default.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not valid TOML: it is not UTF-8 text.") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}.") from None


def _toml_values(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    known = {spec.name: spec for spec in settings_table()}
    values: dict[str, Any] = {}
    for section, table in doc.items():
        if section not in SECTIONS or not isinstance(table, dict):
            raise ConfigError(f"config file {path} has an unknown section [{section}].")
        for key, value in table.items():
            name = f"{section}.{key}"
            if name not in known:
                raise ConfigError(f"config file {path} has an unknown setting {name}.")
            values[name] = _coerce(known[name], value, f"from {path}")
    return values


# Provider keys also read from the variables their own SDKs and tools use; the
# BANATIE_GENERATION_* variables win over these.
PLAIN_KEY_VARS: dict[str, str] = {
    "generation.gemini_api_key": "GEMINI_API_KEY",
    "generation.openai_api_key": "OPENAI_API_KEY",
}


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the effective settings: defaults < TOML < environment < overrides.

    ``overrides`` maps ``section.key`` to a value, as the CLI flags pass them.
    """
    env = os.environ if environ is None else environ
    path = find_config_file(config_file, env)
    values = _toml_values(_read_toml(path), path) if path else {}
    for spec in settings_table():
        raw = env.get(spec.env_var)
        if raw is None and spec.name in PLAIN_KEY_VARS:
            raw = env.get(PLAIN_KEY_VARS[spec.name]) or None
        if raw is not None:
            values[spec.name] = _coerce(spec, _from_text(spec, raw), f"from {spec.env_var}")
    specs = {spec.name: spec for spec in settings_table()}
    for name, value in (overrides or {}).items():
        if name not in specs:
            raise ConfigError(f"unknown setting {name}.")
        if value is not None:
            values[name] = _coerce(specs[name], value, "from the command line")
    chosen_dir = data_dir or env.get("BANATIE_DATA_DIR") or DEFAULT_DATA_DIR
    settings = Settings(data_dir=Path(chosen_dir), config_file=path)
    settings = with_values(settings, values)
    _check_cross_fields(settings)
    return settings


def with_values(settings: Settings, values: Mapping[str, Any]) -> Settings:
    """A copy of ``settings`` with ``section.key`` values replaced (already valid)."""
    by_section: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        section, key = name.split(".", 1)
        by_section.setdefault(section, {})[key] = value
    changes = {
        section: replace(getattr(settings, section), **keys) for section, keys in by_section.items()
    }
    return replace(settings, **changes)


# --------------------------------------------------------------------------- #
# config.example.toml
# --------------------------------------------------------------------------- #


def _toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _num(value) if isinstance(value, float) and value.is_integer() else str(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    return json.dumps(value)


def render_example_toml() -> str:
    """The text of ``config.example.toml``: every setting, default and help line."""
    lines = [
        "# banatie-local configuration: every setting with its default.",
        "# Copy to banatie.toml (or pass --config FILE) and change what you need.",
        "# Each key can also be set by the environment as BANATIE_<SECTION>_<KEY>,",
        "# for example BANATIE_SERVER_PORT=3100; flags override both.",
        "# Generated from banatie_local/config.py: python -m banatie_local.config",
    ]
    current = ""
    for spec in settings_table():
        if spec.section != current:
            current = spec.section
            lines += ["", f"[{current}]"]
        default = spec.default
        if isinstance(default, float) and default.is_integer():
            default = int(default)
        lines.append(f"# {spec.help}. Env: {spec.env_var}")
        lines.append(f"{spec.key} = {_toml_literal(default)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - regeneration helper
    print(render_example_toml(), end="")
