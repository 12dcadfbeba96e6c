"""An app over real tiers, driven through FastAPI's TestClient (the lifespan runs)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.conftest import drop_table, forget_namespace, make_key, settings_for
from twotier.api.app import create_app
from twotier.config import Settings

TIERS = [
    ("sqlite", "memory"),
    ("mysql", "redis"),
    ("postgres", "redis"),
    ("dynamodb", "redis"),
    ("postgres", "cluster"),
]


def serve(settings: Settings, *, role: str | None = "admin") -> Iterator[TestClient]:
    """A client of a fresh app; with ``role``, it sends a key with that role."""
    drop_table(settings.database_url, settings.resources)
    headers = {"X-API-Key": make_key(settings.database_url, role)} if role else {}
    try:
        with TestClient(
            create_app(settings), raise_server_exceptions=False, headers=headers
        ) as client:
            yield client
    finally:
        drop_table(settings.database_url, settings.resources)
        forget_namespace(settings.cache_url, settings.cache_namespace)


@pytest.fixture(params=TIERS, ids=["+".join(t) for t in TIERS])
def client(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[TestClient]:
    store_kind, cache_kind = request.param
    yield from serve(settings_for(store_kind, cache_kind, tmp_path))


@pytest.fixture
def embedded(tmp_path: object) -> Iterator[TestClient]:
    """The embedded default only, for what does not depend on the tiers."""
    yield from serve(settings_for("sqlite", "memory", tmp_path, max_body_bytes=2048))
