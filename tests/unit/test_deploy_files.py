"""The container files of docs/deploy.md name real settings with valid values (no
container runtime runs in the tests: this checks what they hand the appliance)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from banatie_local.config import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_compose_file_configures_postgres_s3_and_the_proxy() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    environment = compose["x-app"]["environment"]
    assert all(name.startswith("BANATIE_") for name in environment)
    settings = load_settings(environ={k: str(v) for k, v in environment.items()})
    assert settings.database.url.startswith("postgresql://banatie:banatie@db:5432/")
    assert settings.storage.backend == "minio"
    assert settings.storage.minio_endpoint == "s3:9000"
    assert settings.server.metrics is True
    assert settings.server.trusted_networks
    apps = [name for name in compose["services"] if name.startswith("app")]
    assert len(apps) == 2
    nginx = (ROOT / "docs" / "nginx.conf").read_text(encoding="utf-8")
    for app in apps:
        assert f"server {app}:3000;" in nginx
    assert "X-Forwarded-For" in nginx


def test_the_dockerfile_sets_real_settings() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    environ = dict(re.findall(r"(BANATIE_[A-Z_]+)=(\S+)", text))
    assert environ
    settings = load_settings(environ=environ)
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == 3000
