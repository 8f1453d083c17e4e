"""The layering of docs/architecture.md holds: imports point down only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "banatie_local"
MAX_LINES = 350


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("http/routes"), ids=lambda p: p.name)
def test_no_route_imports_another_route(path: Path) -> None:
    assert not {m for m in _imports(path) if m.startswith("banatie_local.http.routes")}


@pytest.mark.parametrize("path", _modules("services"), ids=lambda p: p.name)
def test_services_know_nothing_of_http_or_the_cli(path: Path) -> None:
    banned = ("sanic", "click", "banatie_local.http", "banatie_local.cli")
    assert not {m for m in _imports(path) if m.startswith(banned)}


@pytest.mark.parametrize("path", _modules("cli"), ids=lambda p: p.name)
def test_the_cli_reaches_the_database_only_through_services(path: Path) -> None:
    """No models, connections or queries (catching ``MigrationError`` is allowed)."""
    banned = ("peewee", "banatie_local.db.models", "banatie_local.db.connection")
    assert not {m for m in _imports(path) if m.startswith(banned)}


@pytest.mark.parametrize(
    "path", [*_modules("services"), *_modules("http"), *_modules("cli")], ids=lambda p: p.name
)
def test_no_module_is_over_the_size_limit(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES
