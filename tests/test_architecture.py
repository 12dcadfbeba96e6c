"""The layers import in one direction only (docs/architecture.md): adapters know neither the
policy nor the entrypoints (the HTTP API, the follower), and ``access`` and ``store`` do not
import each other both ways."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).parent.parent / "src" / "twotier"

#: package → what it must not import.
FORBIDDEN = {
    "resources": ("store", "cache", "access", "api", "policy", "service", "batch", "follow"),
    "access": ("store", "api", "policy", "service", "batch", "follow"),
    "store": ("cache", "api", "policy", "service", "batch", "follow"),
    "cache": ("store", "api", "policy", "service", "batch", "access", "follow"),
    "policy": ("api", "service", "batch", "store.sql", "follow"),
    "service": ("api", "store.sql", "cache.redis", "cache.memory", "cache.near", "follow"),
    # An entrypoint, as HTTP is: it calls the use cases, never the API.
    "follow": ("api", "batch", "cache.redis", "cache.memory", "cache.near"),
}


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("twotier.")}


def modules_of(package: str) -> list[Path]:
    directory = SOURCE / package
    return sorted(directory.glob("*.py")) if directory.is_dir() else [SOURCE / f"{package}.py"]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_one_way(package: str) -> None:
    wrong = [
        f"{path.relative_to(SOURCE)} imports {name}"
        for path in modules_of(package)
        for name in imports_of(path)
        if any(
            name == f"twotier.{banned}" or name.startswith(f"twotier.{banned}.")
            for banned in FORBIDDEN[package]
        )
    ]
    assert not wrong, wrong
