"""Nothing a client sends is silently ignored: a query parameter a path does not take, one
given twice, a filter no index serves, a body naming another row than its path. Each is a
422 that names it and says what is allowed; the rows a valid query asks for come back
exactly (a filter on the key too)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.heroes import hero


def refused(response: Any, parameter: str) -> str:
    """The message of the 422 naming ``parameter``."""
    assert response.status_code == 422, response.text
    messages = [e["msg"] for e in response.json()["detail"] if e["loc"][-1] == parameter]
    assert messages, response.json()
    return str(messages[0])


def made(client: TestClient, **fields: Any) -> dict[str, Any]:
    created = client.post("/heroes", json=hero(**fields))
    assert created.status_code == 201, created.text
    row: dict[str, Any] = created.json()
    return row


def test_an_unknown_parameter_is_named_with_what_the_path_takes(client: TestClient) -> None:
    made(client, name="Ann", color="blue")
    made(client, name="Bob", color="red")
    message = refused(client.get("/heroes", params={"colour": "blue"}), "colour")
    assert "not a parameter of this path" in message
    for taken in ("id", "name", "xp", "after", "limit"):
        assert taken in message
    # Operators and orders this path does not take: refused, not answered unfiltered.
    response = client.get("/heroes?xp[gt]=0&sort=name")
    refused(response, "xp[gt]")
    refused(response, "sort")


def test_a_filter_no_index_serves_is_refused(client: TestClient) -> None:
    made(client, name="Ann", color="blue")
    message = refused(client.get("/heroes", params={"color": "blue"}), "color")
    assert message.startswith("cannot be filtered: no index serves it")
    assert "id, name, xp" in message


def test_a_parameter_given_twice_is_refused(client: TestClient) -> None:
    made(client, name="Ann", xp=1)
    message = refused(client.get("/heroes?xp=1&xp=2"), "xp")
    assert "more than once" in message


def test_a_filter_on_the_key_finds_that_row(client: TestClient) -> None:
    first = made(client, name="Ann", xp=1)
    second = made(client, name="Bob", xp=1)
    found = client.get("/heroes", params={"id": second["id"]})
    assert found.status_code == 200, found.text
    assert found.json() == {"items": [second], "next_after": None}
    both = client.get("/heroes", params={"id": first["id"], "xp": 2}).json()
    assert both["items"] == []  # the key and another filter: both must match
    past = client.get("/heroes", params={"id": first["id"], "after": first["id"]}).json()
    assert past["items"] == []


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_a_read_or_write_by_key_takes_no_parameter(client: TestClient, method: str) -> None:
    """The hot path answers reads and writes by key: a query string sends them to the
    route, which refuses it; nothing is written."""
    row = made(client, name="Ann")
    body = {"name": "Changed"} if method == "PATCH" else None
    response = client.request(method, f"/heroes/{row['id']}?fields=name", json=body)
    assert "not a parameter of this path" in refused(response, "fields")
    assert client.get(f"/heroes/{row['id']}").json() == row


@pytest.mark.parametrize("path", ["/healthz?&", "/heroes/{id}?&", "/heroes?&&"])
def test_separators_alone_name_no_parameter(client: TestClient, path: str) -> None:
    """A query string with no name in it ("?&") asks nothing: never a 422 with nothing
    in it."""
    row = made(client, name="Ann")
    response = client.get(path.format(id=row["id"]))
    assert response.status_code == 200, response.text


def test_a_create_with_a_parameter_writes_nothing(client: TestClient) -> None:
    response = client.post("/heroes?upsert=true", json=hero(name="Ann"))
    refused(response, "upsert")
    assert client.get("/heroes").json()["items"] == []


def test_a_row_read_is_written_back_as_it_came(client: TestClient) -> None:
    """PUT takes what GET answers, the key included when it is the path's; another key is
    a 422 saying so; PATCH likewise."""
    row = made(client, name="Ann", xp=3)
    back = client.put(f"/heroes/{row['id']}", json=row | {"xp": 4})
    assert back.status_code == 200, back.text
    assert back.json() == row | {"xp": 4}
    other = client.put(f"/heroes/{row['id']}", json=row | {"id": row["id"] + 1})
    message = refused(other, "id")
    assert f"{row['id'] + 1!r} is not the id the path names ({row['id']!r})" in message
    patched = client.patch(f"/heroes/{row['id']}", json={"id": row["id"], "xp": 5})
    assert (patched.status_code, patched.json()["xp"]) == (200, 5)
    refused(client.patch(f"/heroes/{row['id']}", json={"id": 0, "xp": 6}), "id")
    assert client.get(f"/heroes/{row['id']}").json()["xp"] == 5
