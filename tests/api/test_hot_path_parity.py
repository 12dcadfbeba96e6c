"""The hot path answers exactly as the routes do: the same requests, sent to an app with it
and to one without, get the same status, headers and body (under a mount point too)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DECLARED, settings_for
from twotier.access.keys import Role, create_key
from twotier.api.app import create_app
from twotier.api.front_door import FrontDoor
from twotier.store.sql import SQLStore

#: Headers that differ between any two answers.
_OWN = {"x-request-id", "date"}
#: No key: the front door takes such reads in front of the middlewares.
_ANONYMOUS = {"X-API-Key": ""}

REQUESTS: list[tuple[str, str, dict[str, str], Any]] = [
    ("POST", "/heroes", {}, {"name": "Ada", "hero": "H", "power": "P", "xp": 5, "color": "C"}),
    (
        "POST",
        "/products",
        {},
        {"sku": "A-1", "name": "Lamp", "category": "c", "price": 1, "stock": 1},
    ),
    ("GET", "/heroes/1", {}, None),  # a hit
    ("GET", "/heroes/2", {}, None),  # a miss, absent
    ("GET", "/heroes/2", {}, None),  # absent, from the cache
    ("GET", "/heroes/0", {}, None),  # out of range: 422
    ("GET", "/heroes/abc", {}, None),
    ("GET", "/heroes/4294967296", {}, None),
    ("GET", "/heroes/1/more", {}, None),
    ("GET", "/heroes/1", {"Cache-Control": "No-Cache"}, None),
    ("GET", "/heroes/1", {"If-None-Match": '"1", W/"2"'}, None),
    ("HEAD", "/heroes/1", {}, None),
    ("GET", "/products/A-1", {}, None),
    ("GET", "/products/a-1", {}, None),
    ("GET", "/products/A%2F1", {}, None),
    ("GET", "/products/" + "x" * 33, {}, None),
    ("GET", "/products/A-1", {"If-None-Match": "*"}, None),
    ("DELETE", "/products/A-1", {}, None),
    ("GET", "/products/A-1", {}, None),  # the tombstone
    ("GET", "/nowhere/1", {}, None),
    # Writes past the guards: answered by the hot path unless the body does not validate.
    ("PUT", "/heroes/1", {}, {"name": "Bo", "hero": "H", "power": "P", "xp": 6, "color": "C"}),
    ("PUT", "/heroes/77", {}, {"name": "Bo", "hero": "H", "power": "P", "xp": 6, "color": "C"}),
    ("PUT", "/heroes/1", {}, {"name": "Bo"}),
    (
        "PUT",
        "/heroes/555",
        {"If-Match": '"1"'},
        {"name": "B", "hero": "H", "power": "P", "xp": 6, "color": "C"},
    ),
    ("PATCH", "/heroes/1", {}, {"xp": 9}),
    ("PATCH", "/heroes/1", {}, {}),
    ("PATCH", "/heroes/1", {}, {"xp": -1}),
    ("PATCH", "/heroes/1", {"If-Match": "*"}, {"xp": 10}),
    ("PATCH", "/heroes/abc", {}, {"xp": 9}),
    ("POST", "/heroes", {}, {"name": "Cy"}),
    ("POST", "/heroes/3", {}, {"name": "Cy"}),
    ("POST", "/products", {}, {"sku": "A-1", "name": "L", "category": "c", "price": 1, "stock": 1}),
    ("PUT", "/products/B-2", {}, {"name": "Chair", "category": "home", "price": 40, "stock": 1}),
    (
        "PUT",
        "/products/B-2",
        {"If-Match": "*"},
        {"name": "Chair", "category": "home", "price": 41, "stock": 1},
    ),
    ("DELETE", "/products/B-2", {"If-Match": "*"}, None),
    ("DELETE", "/products/B-2", {}, None),
    ("DELETE", "/products/B-2", {}, None),
    ("DELETE", "/heroes/x", {}, None),
    # Without a key: through the front door, in front of the middlewares.
    ("GET", "/products/A-1", _ANONYMOUS, None),
    ("GET", "/heroes/1", _ANONYMOUS, None),
    ("GET", "/heroes/1", _ANONYMOUS | {"If-None-Match": "*"}, None),
    ("GET", "/heroes/1", _ANONYMOUS | {"Cache-Control": "no-cache"}, None),
    ("GET", "/heroes/999", _ANONYMOUS, None),
    ("GET", "/heroes/x", _ANONYMOUS, None),
    # A key's pattern, alike in the path and in the body: `$` is the end, not a newline.
    ("POST", "/things", {}, {"code": "abc\n"}),
    ("PUT", "/things/abc%0A", {}, {"label": "x"}),
    ("GET", "/things/abc%0A", {}, None),
    ("PUT", "/things/abc", {}, {"label": "x"}),
    ("PUT", "/things/abc", {}, {"code": "abc", "label": "y"}),  # the row as GET answers it
    ("PUT", "/things/abc", {}, {"code": "abd", "label": "y"}),  # another key: 422
    ("GET", "/things/abc", {}, None),
    ("GET", "/heroes/1?fields=name", {}, None),  # a parameter a read does not take: 422
    ("PATCH", "/heroes/1?x=1", {}, {"xp": 9}),
    ("POST", "/batch", {}, {"USE_CACHE": "True", "REQUEST": "read", "SQLS": [5, "5"]}),
    ("POST", "/batch", {}, {"USE_CACHE": "True", "REQUEST": "read", "SQLS": ["x"]}),
    ("POST", "/batch", {}, {"USE_CACHE": "True", "REQUEST": "read", "KEY": "id", "SQLS": [1]}),
]


@pytest.fixture(params=["", "/prod"], ids=["at-the-root", "under-a-mount-point"])
async def pair(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, str]]:
    """Clients of two apps over tiers of their own, one without the hot path."""
    root: str = request.param
    clients = []
    lives = AsyncExitStack()
    for hot_path in (True, False):
        work = tmp_path / ("hot" if hot_path else "routes")
        work.mkdir()
        settings = settings_for("sqlite", "memory", work, resources=str(DECLARED))
        key = await _admin_key(settings.database_url)
        app = create_app(settings, hot_path=hot_path)
        transport = httpx.ASGITransport(app=app, root_path=root)
        client = httpx.AsyncClient(
            transport=transport, base_url="http://parity", headers={"X-API-Key": key}
        )
        clients.append((app, client))
    async with lives:
        for app, client in clients:
            await lives.enter_async_context(app.router.lifespan_context(app))
            lives.push_async_callback(client.aclose)
        yield clients[0][1], clients[1][1], root


async def _admin_key(url: str) -> str:
    store = SQLStore(url)
    try:
        await store.init_schema()
        return (await create_key(store, "parity", Role.ADMIN))[1]
    finally:
        await store.close()


def _versionless(headers: httpx.Headers) -> dict[str, str]:
    """The headers to compare: all but the ones every answer has its own of, and the
    versions (each app's rows were born at their own microsecond)."""
    return {k: v for k, v in headers.items() if k not in _OWN and k != "etag"}


async def test_the_hot_path_answers_as_the_routes_do(
    pair: tuple[httpx.AsyncClient, httpx.AsyncClient, str],
) -> None:
    hot, routes, root = pair
    statuses = []
    for method, path, headers, body in REQUESTS:
        answers = [
            await client.request(method, root + path, headers=headers, json=body)
            for client in (hot, routes)
        ]
        first, second = answers
        where = f"{method} {path} {headers}"
        assert first.status_code == second.status_code, where
        assert first.content == second.content, where
        assert _versionless(first.headers) == _versionless(second.headers), where
        assert ("etag" in first.headers) == ("etag" in second.headers), where
        statuses.append(first.status_code)
    # Not one 404 for all: the requests reached what they name.
    assert statuses[:7] == [201, 201, 200, 404, 404, 422, 422]
    assert first.headers["x-cache"] == "HIT"  # the last batch read, a hit as well


async def test_the_access_rules_match_under_a_mount_point(
    pair: tuple[httpx.AsyncClient, httpx.AsyncClient, str],
) -> None:
    hot, _, root = pair
    anonymous = {"X-API-Key": ""}
    assert (await hot.get(root + "/admin/keys", headers=anonymous)).status_code == 401
    assert (await hot.post(root + "/heroes", json={}, headers=anonymous)).status_code == 401
    assert (await hot.get(root + "/healthz", headers=anonymous)).status_code == 200


async def test_plain_reads_without_a_key_skip_the_middleware_stack(
    pair: tuple[httpx.AsyncClient, httpx.AsyncClient, str],
) -> None:
    """The front door answers them, still observed (request id, security headers); a read
    with a key, a bypass, or anything else goes through the whole stack."""
    hot, _, root = pair
    await hot.get(root + "/healthz")  # the stack is built on the first request
    transport = hot._transport
    assert isinstance(transport, httpx.ASGITransport)
    door = transport.app.middleware_stack  # type: ignore[attr-defined]
    assert isinstance(door, FrontDoor)
    through_the_stack: list[str] = []
    stack = door.stack

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        through_the_stack.append(f"{scope['method']} {scope['path']}")
        await stack(scope, receive, send)

    door.stack = counted
    answer = await hot.get(root + "/heroes/7", headers=_ANONYMOUS)
    assert answer.status_code == 404
    assert answer.headers["x-request-id"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert through_the_stack == []
    await hot.get(root + "/heroes/7")  # a key to check
    await hot.get(root + "/heroes/7", headers=_ANONYMOUS | {"Origin": "https://x.example"})
    await hot.head(root + "/heroes/7", headers=_ANONYMOUS)
    await hot.get(root + "/heroes/abc", headers=_ANONYMOUS)
    assert len(through_the_stack) == 4


async def test_a_row_held_here_is_answered_at_the_door_as_the_routes_answer_it(
    pair: tuple[httpx.AsyncClient, httpx.AsyncClient, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A read with none of the headers anything in the stack reads, of a row this process
    holds, is answered by the front door at once (``Observe.answer``): the same status,
    headers and body as the routes', counted and logged the same; every other read goes
    on to the hot path as before."""
    hot, routes, root = pair
    bare = [  # no X-API-Key header at all (the pair's clients send one)
        httpx.AsyncClient(transport=client._transport, base_url="http://parity")
        for client in (hot, routes)
    ]
    await hot.get(root + "/healthz")  # the stack is built on the first request
    door = hot._transport.app.middleware_stack  # type: ignore[attr-defined]
    assert isinstance(door, FrontDoor)
    observe = door.door
    past_the_door: list[str] = []

    class Counted:
        answer = observe.answer

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            past_the_door.append(scope["path"].removeprefix(root))
            await observe(scope, receive, send)

    door.door = Counted()  # type: ignore[assignment]
    for client in (hot, routes):  # rows 1 and 2, held by the write-throughs
        for name in ("Ada", "Bo"):
            hero = {"name": name, "hero": "H", "power": "P", "xp": 5, "color": "C"}
            assert (await client.post(root + "/heroes", json=hero)).status_code == 201
    try:
        with caplog.at_level(logging.INFO, logger="twotier.access"):
            answers = [await client.get(root + "/heroes/1") for client in bare]
        held, routed = answers
        assert held.status_code == routed.status_code == 200
        assert held.content == routed.content
        assert _versionless(held.headers) == _versionless(routed.headers)
        assert held.headers["etag"]
        assert held.headers["x-cache"] == "HIT"
        assert past_the_door == []  # answered at the door
        [line] = [r for r in caplog.records if r.name == "twotier.access"][:1]
        assert (line.route, line.status, line.cache) == ("/heroes/{hero_id}", 200, "HIT")  # type: ignore[attr-defined]
        assert line.request_id == held.headers["x-request-id"]  # type: ignore[attr-defined]

        # Each of these goes past the door, to the hot path, which answers as before.
        await bare[0].get(root + "/heroes/3")  # not held: a miss, absent
        await bare[0].get(root + "/heroes/3")  # held as absent
        await bare[0].get(root + "/heroes/2", headers={"X-Request-Id": "mine"})
        await bare[0].get(root + "/heroes/2", headers={"If-None-Match": "*"})
        forwarded = await bare[0].get(root + "/heroes/2", headers={"X-Forwarded-Proto": "https"})
        assert forwarded.headers["strict-transport-security"]
        assert past_the_door == ["/heroes/3"] * 2 + ["/heroes/2"] * 3
    finally:
        for client in bare:
            await client.aclose()
