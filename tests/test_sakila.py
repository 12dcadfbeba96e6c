"""Sakila, as published (``tests/samples/sakila``), on PostgreSQL and MariaDB: what a stranger
does with a database twotier did not make. Introspected and served without editing the file;
every row of every table read back through the API exactly as the database's own SQL reads
it; relations and embeddings equal to its joins; writes through twotier and by plain SQL
both seen (the follower, on servers of the module's own that log changes); and
``db detach`` leaves every table as it was."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, inspect, make_url, text

from tests.conftest import SERVER_URLS, require
from tests.sakila import load_sakila
from tests.samples_check import fingerprint, same
from twotier.api.app import create_app
from twotier.config import Settings
from twotier.follow.pg_logical import slot_name
from twotier.resources import load_resources
from twotier.resources.fields import StringField

TWOTIER = str(Path(sys.executable).with_name("twotier"))
KINDS = ["postgres", "mysql"]
PATIENCE = 30.0


class Sakila:
    """Sakila in a database of its own on a server, and the commands a stranger runs."""

    def __init__(self, kind: str, server: str, tmp_path: Path) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.name = f"twotier_sakila_{uuid.uuid4().hex[:10]}"
        self.server = make_url(server)
        self.url = self.server.set(database=self.name).render_as_string(hide_password=False)
        driver = "postgresql+psycopg2" if kind == "postgres" else "mysql+pymysql"
        self.engine: Engine = create_engine(make_url(self.url).set(drivername=driver))

    def twotier(self, *args: str, resources: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWOTIER_")}
        env["TWOTIER_DATABASE_URL"] = self.url
        if resources is not None:
            env["TWOTIER_RESOURCES"] = resources
        return subprocess.run(
            [TWOTIER, *args], env=env, cwd=self.tmp_path, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip

    def sql(self, statement: str, **values: Any) -> Any:
        """The user's own application: plain SQL, outside twotier."""
        with self.engine.begin() as conn:
            result = conn.execute(text(statement), values)
            return result.all() if result.returns_rows else result.rowcount

    def introspected(self) -> str:
        out = self.tmp_path / "sakila.toml"
        said = self.twotier("db", "introspect", "--out", str(out))
        assert said.returncode == 0, said.stderr
        return str(out)

    def settings(self, declared: str, **extra: Any) -> Settings:
        return Settings(
            database_url=self.url,
            cache_url="memory://",
            resources=declared,
            require_key_for_writes=False,
            **({"follow": "off"} | extra),
        )


def _server(kind: str, own: bool, request: pytest.FixtureRequest) -> str:
    if not own:
        require(kind)
        return SERVER_URLS[kind]
    found = request.getfixturevalue("postgres" if kind == "postgres" else "binlog_mariadb")
    return str(found.url)


def _admin(sakila: Sakila, statement: str) -> None:
    server = sakila.server
    if sakila.kind == "postgres":
        with contextlib.closing(
            psycopg2.connect(
                host=server.host, port=server.port, user=server.username, dbname="postgres"
            )
        ) as conn:
            conn.autocommit = True
            with conn.cursor() as cursor:
                if statement.startswith("DROP"):
                    cursor.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()",
                        (sakila.name,),
                    )
                cursor.execute(statement)
        return
    import pymysql

    with (
        contextlib.closing(
            pymysql.connect(host=server.host, port=server.port, user=server.username)
        ) as conn,
        conn.cursor() as cursor,
    ):
        cursor.execute(statement)


@contextlib.contextmanager
def _sakila(kind: str, server: str, tmp_path: Path) -> Iterator[Sakila]:
    made = Sakila(kind, server, tmp_path)
    _admin(made, f"CREATE DATABASE {made.name}")
    try:
        load_sakila(kind, made.url)
        yield made
    finally:
        made.engine.dispose()
        _admin(made, f"DROP DATABASE IF EXISTS {made.name}")


@pytest.fixture(params=KINDS)
def sakila(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sakila]:
    kind = str(request.param)
    with _sakila(kind, _server(kind, False, request), tmp_path) as made:
        yield made


def _tables_with_keys(sakila: Sakila) -> dict[str, list[str]]:
    """Every table with a primary key, and its key's columns."""
    with sakila.engine.connect() as conn:
        catalog = inspect(conn)
        found = {}
        for table in catalog.get_table_names():
            primary = catalog.get_pk_constraint(table).get("constrained_columns") or []
            if primary:
                found[table] = list(primary)
    return found


def test_every_table_is_served_row_for_row(sakila: Sakila) -> None:
    declared = sakila.introspected()
    resources = {resource.table: resource for resource in load_resources(declared)}
    tables = _tables_with_keys(sakila)
    assert sorted(resources) == sorted(tables)  # every table with a primary key, no edit
    made = sakila.twotier("db", "init", resources=declared)
    assert made.returncode == 0, made.stderr
    quote = sakila.engine.dialect.identifier_preparer.quote
    with TestClient(create_app(sakila.settings(declared))) as client:
        for table, keys in sorted(tables.items()):
            resource = resources[table]
            assert list(resource.key_fields) == keys, table
            order = ", ".join(quote(key) for key in keys)
            with sakila.engine.connect() as conn:
                stored = conn.execute(text(f"SELECT * FROM {quote(table)} ORDER BY {order}"))
                rows = [dict(row) for row in stored.mappings()]
            served: list[dict[str, Any]] = []
            after: Any = None
            while True:
                params: dict[str, Any] = {"limit": 1000} | ({"after": after} if after else {})
                page = client.get(f"/{resource.name}", params=params)
                assert page.status_code == 200, (table, page.text)
                served += page.json()["items"]
                after = page.json()["next_after"]
                if after is None:
                    break
            assert len(served) == len(rows), table
            padded = {
                column
                for column in resource.columns
                if isinstance(spec := resource.field(column), StringField) and spec.fixed
            }
            for answered, row in zip(served, rows, strict=True):
                for column in resource.columns:
                    stored = row[column]
                    if column in padded and stored is not None:
                        stored = stored.rstrip(" ")  # a CHAR, read without its padding
                    assert same(answered[column], stored), (table, column, stored)
            # One row by its key, cached on the second read.
            key = ",".join(str(rows[0][part]) for part in keys)
            first = client.get(f"/{resource.name}/{key}")
            assert first.status_code == 200, (table, first.text)
            assert client.get(f"/{resource.name}/{key}").headers["x-cache"] == "HIT"


def test_relations_are_the_joins(sakila: Sakila) -> None:
    declared = sakila.introspected()
    assert sakila.twotier("db", "init", resources=declared).returncode == 0
    with TestClient(create_app(sakila.settings(declared))) as client:
        # A film with its language and its actors (a join table keyed by both).
        film = client.get("/film/1", params={"embed": "language,film_actor"})
        assert film.status_code == 200, film.text
        [(language,)] = sakila.sql(
            "SELECT l.name FROM film f JOIN language l ON l.language_id = f.language_id "
            "WHERE f.film_id = 1"
        )
        assert film.json()["language"]["name"] == language.rstrip(" ")  # a CHAR(20)
        actors = sakila.sql("SELECT actor_id FROM film_actor WHERE film_id = 1 ORDER BY 1")
        embedded = film.json()["film_actor"]["items"]
        assert [row["actor_id"] for row in embedded] == [actor for (actor,) in actors]
        # An actor's films, through the join table, against the SQL join.
        joined = sakila.sql(
            "SELECT f.title FROM film_actor fa JOIN film f ON f.film_id = fa.film_id "
            "WHERE fa.actor_id = 1 ORDER BY fa.film_id"
        )
        links = client.get("/actor/1/film_actor", params={"limit": 1000}).json()["items"]
        titles = [
            client.get(f"/film_actor/1,{link['film_id']}", params={"embed": "film"}).json()["film"][
                "title"
            ]
            for link in links
        ]
        assert titles == [title for (title,) in joined]
        # A customer's rentals, a page at a time, all of them.
        [(count,)] = sakila.sql("SELECT count(*) FROM rental WHERE customer_id = 1")
        rentals = client.get("/customer/1/rental", params={"limit": 1000}).json()["items"]
        assert len(rentals) == count


def test_the_users_writes_and_twotiers_are_both_seen(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    for kind in KINDS:
        with _sakila(kind, _server(kind, True, request), tmp_path / kind) as sakila:
            _both_writers(sakila)


def _both_writers(sakila: Sakila) -> None:
    (sakila.tmp_path).mkdir(exist_ok=True)
    declared = sakila.introspected()
    assert sakila.twotier("db", "init", resources=declared).returncode == 0
    settings = sakila.settings(declared, follow="on")
    try:
        with TestClient(create_app(settings)) as client:
            # Cached (once the follower, starting with no position, has emptied the cache).
            _eventually(lambda: client.get("/actor/1").headers["x-cache"] == "HIT", "a HIT")
            # The user's own application changes the actor: the cache follows.
            sakila.sql("UPDATE actor SET first_name = 'PENNY' WHERE actor_id = 1")
            _eventually(
                lambda: client.get("/actor/1").json()["first_name"] == "PENNY",
                "the plain UPDATE reaches the cache",
            )
            # Through twotier: the database has it, and so does the embedding film.
            patched = client.patch("/language/1", json={"name": "Englisch"})
            assert patched.status_code == 200, patched.text
            [(name, stamped)] = sakila.sql(
                "SELECT name, last_update FROM language WHERE language_id = 1"
            )
            assert name.rstrip(" ") == "Englisch"
            # Its last_update, set by the database's own trigger (or ON UPDATE), as stored.
            assert same(patched.json()["last_update"], stamped)
            assert same(client.get("/language/1").json()["last_update"], stamped)
            assert (
                client.get("/film/1", params={"embed": "language"}).json()["language"]["name"]
                == "Englisch"
            )
            # A join table row, inserted by plain SQL, is found by both its parts.
            assert client.get("/film_actor/2,999").status_code == 404  # cached absent
            sakila.sql("INSERT INTO film_actor (actor_id, film_id) VALUES (2, 999)")
            _eventually(
                lambda: client.get("/film_actor/2,999").status_code == 200,
                "the plain INSERT reaches the cache",
            )
            films = client.get("/actor/2/film_actor", params={"limit": 1000}).json()["items"]
            assert 999 in [row["film_id"] for row in films]
            # A payment: PostgreSQL's rules redirect its inserts, which it cannot then
            # return: a 501 that says so, nothing written. MariaDB takes it.
            payment = {
                "customer_id": 1, "staff_id": 1, "rental_id": 1, "amount": "1.99",
                "payment_date": "2007-02-15T10:00:00",
            }  # fmt: skip
            made = client.post("/payment", json=payment)
            if sakila.kind == "postgres":
                assert made.status_code == 501, made.text
                assert "INSERT RETURNING" in made.text
            else:
                assert made.status_code == 201, made.text
                assert made.json()["amount"] == "1.99"
            # A new film, its defaults left to the database: last_update's is an expression
            # (now(), CURRENT_TIMESTAMP), the others plain values the declaration carries.
            film = client.post("/film", json={"title": "NEW FILM", "language_id": 1})
            assert film.status_code == 201, film.text
            [(stamped, rate)] = sakila.sql(
                "SELECT last_update, rental_rate FROM film WHERE film_id = :id",
                id=film.json()["film_id"],
            )
            assert same(film.json()["last_update"], stamped)
            assert film.json()["rental_rate"] == str(rate)
            assert client.get(f"/film/{film.json()['film_id']}").json() == film.json()
    finally:
        if sakila.kind == "postgres":
            _drop_slot(sakila, slot_name(settings.cache_namespace or ""))


def _eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not check():
        assert time.monotonic() < deadline, f"not within {PATIENCE} s: {what}"
        time.sleep(0.05)


def _drop_slot(sakila: Sakila, slot: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            sakila.sql("SELECT pg_drop_replication_slot(:slot)", slot=slot)
            return
        if not sakila.sql(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = :slot", slot=slot
        )[0][0]:
            return
        time.sleep(0.2)


def test_detached_as_it_was_found(sakila: Sakila) -> None:
    before = fingerprint(sakila.engine, sakila.kind)
    declared = sakila.introspected()
    assert sakila.twotier("db", "init", resources=declared).returncode == 0
    assert fingerprint(sakila.engine, sakila.kind) != before
    detached = sakila.twotier("db", "detach", resources=declared)
    assert detached.returncode == 0, detached.stderr
    assert fingerprint(sakila.engine, sakila.kind) == before
