"""The Chinook sample database (``tests/samples/chinook``), loaded into a test's database
as its own scripts make it: twotier is then pointed at tables it did not make."""

from __future__ import annotations

import gzip
import re
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pymysql
from sqlalchemy import URL, make_url

from tests.conftest import SERVER_URLS, require

SAMPLES = Path(__file__).with_name("samples") / "chinook"
SCRIPTS = {
    "sqlite": "Chinook_Sqlite_AutoIncrementPKs.sql.gz",
    "postgres": "Chinook_PostgreSql_SerialPKs.sql.gz",
    "mysql": "Chinook_MySql_AutoIncrementPKs.sql.gz",
}
#: The tables, as each script names them (SQLite and MySQL alike).
TABLES = (
    "Album",
    "Artist",
    "Customer",
    "Employee",
    "Genre",
    "Invoice",
    "InvoiceLine",
    "MediaType",
    "Playlist",
    "PlaylistTrack",
    "Track",
)


def script(kind: str) -> str:
    """The script for ``kind`` (sqlite, postgres, mysql), without the part that drops and
    makes a database of its own."""
    text = gzip.decompress((SAMPLES / SCRIPTS[kind]).read_bytes()).decode("utf-8")
    if kind == "postgres":
        return text.split("\\c chinook_serial;", 1)[1]
    if kind == "mysql":
        return text.split("USE `Chinook_AutoIncrement`;", 1)[1]
    return text


def load_chinook(kind: str, url: str) -> None:
    """Make Chinook's eleven tables, with every row, in the database at ``url`` (an empty
    one: the tests' database of this run holds none of them)."""
    parsed = make_url(url)
    if kind == "sqlite":
        with sqlite3.connect(parsed.database or "") as conn:
            conn.executescript(script(kind))
        return
    if kind == "postgres":
        conn = psycopg2.connect(
            host=parsed.host,
            port=parsed.port or 5432,
            user=parsed.username,
            dbname=parsed.database,
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(script(kind))
        finally:
            conn.close()
        return
    mysql = pymysql.connect(
        host=parsed.host,
        port=parsed.port or 3306,
        user=parsed.username,
        database=parsed.database,
        autocommit=True,
        charset="utf8mb4",
    )
    try:
        with mysql.cursor() as cursor:
            for statement in _statements(script(kind)):
                cursor.execute(statement)
    finally:
        mysql.close()


@contextmanager
def chinook_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A database of its own holding Chinook (``kind``: sqlite, postgres, mysql), dropped
    afterwards; its URL."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/chinook.sqlite3"
        load_chinook(kind, url)
        yield url
        return
    require(kind)
    name = f"twotier_chinook_{uuid.uuid4().hex[:10]}"
    server = make_url(SERVER_URLS[kind])
    url = server.set(database=name).render_as_string(hide_password=False)
    _server_command(kind, server, f"CREATE DATABASE {name}")
    try:
        load_chinook(kind, url)
        yield url
    finally:
        _server_command(kind, server, f"DROP DATABASE IF EXISTS {name}")


def _server_command(kind: str, server: URL, statement: str) -> None:
    if kind == "postgres":
        conn = psycopg2.connect(
            host=server.host, port=server.port or 5432, user=server.username, dbname="postgres"
        )
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                if statement.startswith("DROP"):  # a server still connected is sent away
                    cursor.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()",
                        (statement.split()[-1],),
                    )
                cursor.execute(statement)
        finally:
            conn.close()
        return
    mysql = pymysql.connect(
        host=server.host, port=server.port or 3306, user=server.username, autocommit=True
    )
    try:
        with mysql.cursor() as cursor:
            cursor.execute(statement)
    finally:
        mysql.close()


def _statements(text: str) -> list[str]:
    """The script's statements, one by one (comments dropped)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    return [part.strip() for part in re.split(r";\s*\n", text) if part.strip()]
