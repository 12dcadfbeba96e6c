"""The layers import in one direction only (docs/architecture.md), for every module of the
package: entrypoints call the use cases and never an adapter, adapters sit side by side
(none imports another, nor the policy or an entrypoint), errors come from their one root,
and no two modules import each other, however indirectly."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).parent.parent / "src"
PACKAGE = SOURCE / "twotier"

#: The adapters of the database, the cache, and the change logs (``follow``'s readers).
STORE_ADAPTERS = ("store.sql", "store.dynamo")
CACHE_ADAPTERS = ("cache.redis", "cache.memory", "cache.near")
LOG_READERS = (
    "follow.binlog",
    "follow.pg_logical",
    "follow.sqlite_log",
    "follow.dynamo_streams",
    "follow.threaded",
)
ADAPTERS = (*STORE_ADAPTERS, *CACHE_ADAPTERS, *LOG_READERS)
ENTRYPOINTS = ("api", "cli", "aws_lambda", "batch", "follow.follower", "bench")
#: Where adapters are chosen and put together: the only modules that may import them all.
COMPOSITION = ("bootstrap", "follow.sources")

#: module prefix → what modules under it must not import (prefixes of module names).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "errors": ("",),  # the root: imports nothing of twotier's
    "key_records": ("",),
    "heap": ("",),  # imported by the package itself: nothing of twotier's
    "resources": ("store", "cache", "access", "api", "policy", "service", "batch", "follow"),
    "access": ("store", "cache", "api", "policy", "service", "batch", "follow", "bootstrap"),
    "store": ("cache", "access", "api", "policy", "service", "batch", "follow", "bootstrap"),
    "cache": ("store", "access", "api", "policy", "service", "batch", "follow", "bootstrap"),
    "cache.redis": ("cache.near",),
    "policy": ("api", "service", "batch", "follow", "bootstrap", *ADAPTERS),
    "pages": ("cache", "access", "api", "policy", "service", "batch", "follow", "bootstrap"),
    # Order keys and nodes: pure arithmetic over values, below the policy that uses them.
    "spans": (
        "store",
        "cache",
        "access",
        "api",
        "policy",
        "service",
        "batch",
        "follow",
        "bootstrap",
        "resources",
    ),
    "service": ("api", "batch", "follow", "bootstrap", "cli", *ADAPTERS),
    "problems": ("api", "cli", "bootstrap", *ADAPTERS),
    "api": ("cli", "aws_lambda", *ADAPTERS),
    "cli": ("api", *ADAPTERS),
    "aws_lambda": ("cli", *STORE_ADAPTERS, "cache.memory", "cache.near", *LOG_READERS),
    "batch": ("api", "cli", "bootstrap", *ADAPTERS),
    "follow.follower": ("api", "batch", "cli", *ADAPTERS),
    "follow.changes": ("api", "batch", "cli", "bootstrap", *ADAPTERS),
    "follow": ("api", "batch", "cli", "bootstrap", *CACHE_ADAPTERS),
    "bootstrap": ("api", "cli", "aws_lambda", "batch"),
    "bench": ("api", "aws_lambda"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path) -> set[str]:
    """Every module of twotier's that ``path`` imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if f"{node.module}.{alias.name}" in MODULES
            )
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in MODULES}


def _under(name: str, prefix: str) -> bool:
    full = f"twotier.{prefix}" if prefix else "twotier"
    return name == full or name.startswith(full + ".") or name.startswith(full + "_")


def rules_for(name: str) -> tuple[str, ...]:
    """What a module must not import: the rules of every prefix it falls under."""
    banned: list[str] = []
    for prefix, forbidden in FORBIDDEN.items():
        if _under(name, prefix):
            banned.extend(forbidden)
    return tuple(banned)


def test_every_module_falls_under_a_rule() -> None:
    free = {"twotier", "twotier.config", "twotier.logs", "twotier.emf", "twotier.telemetry"}
    free |= {"twotier.versions", "twotier.singleflight", "twotier.batching", "twotier.breaker"}
    free |= {"twotier.dataset", "twotier.loader", "twotier.secrets", "twotier.__main__"}
    unruled = [
        name
        for name in MODULES
        if name not in free and not rules_for(name) and not name.startswith(COMPOSITION)
    ]
    assert not unruled, f"modules no rule covers: {unruled}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_layers_import_one_way(name: str) -> None:
    banned = rules_for(name)
    wrong = sorted(
        imported
        for imported in imports_of(MODULES[name])
        if imported != name
        and not imported.startswith("twotier.errors")
        and any(
            _under(imported, prefix) if prefix else imported != "twotier.errors"
            for prefix in banned
        )
    )
    assert not wrong, f"{name} imports {wrong}"


def test_errors_have_one_root() -> None:
    """Every exception class of twotier's is a TwotierError, or private to its module."""
    import importlib

    from twotier.errors import TwotierError

    strays = []
    for name, path in MODULES.items():
        if name.startswith("twotier.bench"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                kind = getattr(importlib.import_module(name), node.name, None)
                if (
                    isinstance(kind, type)
                    and issubclass(kind, BaseException)
                    and not issubclass(kind, TwotierError)
                ):
                    strays.append(f"{name}.{node.name}")
    assert not strays, strays


def test_no_modules_import_each_other_however_indirectly() -> None:
    graph = {name: imports_of(path) - {name} for name, path in MODULES.items()}
    circles: list[list[str]] = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            circle = []
            while True:
                member = stack.pop()
                circle.append(member)
                if member == node:
                    break
            if len(circle) > 1:
                circles.append(sorted(circle))

    for node in graph:
        if node not in index:
            visit(node)
    assert not circles, circles
