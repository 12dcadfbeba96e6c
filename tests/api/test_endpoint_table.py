"""The endpoint table is the one definition of each resource endpoint: the OpenAPI document
describes its rows and FastAPI routes none of them; a read answers alike whichever of the
edge's ways in it takes (held in the process, inside Observe alone, behind every guard), at
the root and under a mount point."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DECLARED, settings_for
from twotier.api.app import App, create_app
from twotier.api.dispatch import Edge

#: Headers every answer has its own of.
_OWN = {"x-request-id", "date"}
_HERO = {"name": "Ada", "hero": "H", "power": "P", "xp": 5, "color": "C"}


@pytest.fixture(params=["", "/prod"], ids=["at-the-root", "under-a-mount-point"])
async def served(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[App, httpx.AsyncClient, str]]:
    """An app over SQLite and the in-process cache, with rows 1 and 2 of the heroes and a
    product, and a client that sends no key (reads and writes are open)."""
    root: str = request.param
    settings = settings_for(
        "sqlite", "memory", tmp_path, resources=str(DECLARED), require_key_for_writes=False
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, root_path=root)
    async with (
        app.api.router.lifespan_context(app.api),
        httpx.AsyncClient(transport=transport, base_url="http://table") as client,
    ):
        heroes = app.state.service.resource("heroes")
        for name in ("Ada", "Bo"):
            await heroes.create(_HERO | {"name": name})
        await app.state.service.resource("products").create(
            {"sku": "A-1", "name": "Lamp", "category": "c", "price": 1, "stock": 1, "active": True}
        )
        yield app, client, root


class Counted:
    """One of the edge's ways in, counting the requests it takes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.paths: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        await self.inner(scope, receive, send)


def _counted(edge: Edge) -> tuple[Counted, Counted]:
    observed, guarded = Counted(edge.observed), Counted(edge.guarded)
    edge.observed, edge.guarded = observed, guarded  # type: ignore[assignment]
    return observed, guarded


def _compared(headers: httpx.Headers) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name not in _OWN}


async def test_the_document_describes_the_table_and_fastapi_routes_none_of_it(
    served: tuple[App, httpx.AsyncClient, str],
) -> None:
    app, client, root = served
    rows = {(row.method.lower(), row.path) for row in app.edge.table}
    assert ("get", "/heroes/{hero_id}") in rows
    assert ("post", "/batch") in rows
    spec = (await client.get(root + "/openapi.json")).json()
    documented = {
        (method, path)
        for path, operations in spec["paths"].items()
        for method in operations
        if path.split("/")[1] in app.edge.table.routes
    }
    assert documented == rows
    # FastAPI itself, asked for every row's path, has no route for any of them.
    transport = httpx.ASGITransport(app=app.api, root_path=root)
    async with httpx.AsyncClient(transport=transport, base_url="http://fastapi") as fastapi:
        for method, path in rows:
            concrete = path.replace("{hero_id}", "1").replace("{product_sku}", "A-1")
            concrete = concrete.replace("{event_id}", "1").replace("{thing_code}", "abc")
            answered = await fastapi.request(method, root + concrete)
            assert answered.status_code == 404, (method, path)
        assert (await fastapi.get(root + "/healthz")).status_code == 200


async def test_a_read_answers_alike_whichever_way_it_comes_in(
    served: tuple[App, httpx.AsyncClient, str], caplog: pytest.LogCaptureFixture
) -> None:
    app, client, root = served
    paths = ("/heroes/1", "/heroes/9", "/heroes/abc", "/heroes/0", "/products/A-1")
    for path in paths:  # each read once, so that every later one is a hit
        await client.get(root + path)
    observed, guarded = _counted(app.edge)
    heroes = app.state.service.resource("heroes")
    assert heroes.held(1) is not None  # held since its write: the first way in takes it
    origin = {"Origin": "https://x.example"}  # the CORS layer's to judge: behind the guards
    for path in paths:
        with caplog.at_level(logging.INFO, logger="twotier.access"):
            first = await client.get(root + path)
            inside = await client.get(root + path, headers={"X-Request-Id": "mine"})
            behind = await client.get(root + path, headers=origin)
        where = f"GET {path}"
        assert first.status_code == inside.status_code == behind.status_code, where
        assert first.content == inside.content == behind.content, where
        assert _compared(first.headers) == _compared(inside.headers), where
        assert _compared(first.headers) == _compared(behind.headers), where
        assert inside.headers["x-request-id"] == "mine"
        lines = [r for r in caplog.records if r.name == "twotier.access"]
        assert {line.route for line in lines[-3:]} == {  # type: ignore[attr-defined]
            "/heroes/{hero_id}" if path.startswith("/heroes") else "/products/{product_sku}"
        }
        caplog.clear()
    # The plain reads of the rows held were answered at once; every other read without an
    # Origin inside Observe alone; each with one behind the guards.
    inside_only = ["/heroes/1", *(p for p in paths[1:4] for _ in range(2)), "/products/A-1"]
    assert observed.paths == [root + path for path in inside_only]
    assert len(guarded.paths) == 5


async def test_a_key_a_head_or_a_write_goes_behind_the_guards(
    served: tuple[App, httpx.AsyncClient, str],
) -> None:
    app, client, root = served
    observed, guarded = _counted(app.edge)
    assert (await client.get(root + "/heroes/1", headers={"X-API-Key": "nope"})).status_code == 401
    assert (await client.head(root + "/heroes/1")).status_code == 200
    assert (await client.post(root + "/heroes", json=_HERO)).status_code == 201
    assert (await client.get(root + "/heroes?xp=5")).status_code == 200
    assert (await client.get(root + "/admin/keys")).status_code == 401
    assert (await client.get(root + "/healthz")).status_code == 200
    assert observed.paths == []
    # Each behind the guards: the table's, and FastAPI's (the edge's for no cheaper way).
    assert guarded.paths == [
        root + path
        for path in ("/heroes/1", "/heroes/1", "/heroes", "/heroes", "/admin/keys", "/healthz")
    ]


@pytest.mark.parametrize(
    ("method", "path", "status", "detail"),
    [
        ("GET", "/heroes/1/more", 404, "Not Found"),
        ("GET", "/heroes/", 404, "Not Found"),
        ("DELETE", "/heroes", 405, "Method Not Allowed"),
        ("PUT", "/batch", 405, "Method Not Allowed"),
        ("GET", "/batch/1", 404, "Not Found"),
    ],
)
async def test_a_path_under_a_row_that_names_none_is_404_or_405(
    served: tuple[App, httpx.AsyncClient, str], method: str, path: str, status: int, detail: str
) -> None:
    _, client, root = served
    answer = await client.request(method, root + path, headers={"Origin": "https://x.example"})
    assert (answer.status_code, answer.json()) == (status, {"detail": detail})
    if status == 405:
        assert answer.headers["allow"]
