"""Sakila (``tests/samples/sakila``) loaded into a database of a test's own, as published:
PostgreSQL's scripts by ``psql``, MySQL's schema by the ``mysql`` client (its triggers and
procedures change delimiters) and, as the collection has no MySQL rows, the PostgreSQL
``COPY`` blocks' rows inserted column by column where the schemas share one."""

from __future__ import annotations

import gzip
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
from sqlalchemy import make_url

SAMPLES = Path(__file__).with_name("samples") / "sakila"
PG_SCHEMA = "postgres-sakila-schema.sql.gz"
PG_DATA = "postgres-sakila-insert-data-using-copy.sql.gz"
MYSQL_SCHEMA = "mysql-sakila-schema.sql.gz"


def _text(name: str) -> str:
    return gzip.decompress((SAMPLES / name).read_bytes()).decode("utf-8")


def load_sakila(kind: str, url: str) -> None:
    """Sakila's tables and rows in the (empty) database at ``url``: ``postgres`` or
    ``mysql``."""
    if kind == "postgres":
        for name in (PG_SCHEMA, PG_DATA):
            _client(kind, url, _text(name))
        return
    # The script makes its own database (dropped first) and names it in its views.
    schema = re.sub(r"(?m)^(DROP|CREATE) SCHEMA .*$|^USE sakila;$", "", _text(MYSQL_SCHEMA))
    _client(kind, url, schema.replace("sakila.", ""))
    _mysql_rows(url)


def _client(kind: str, url: str, script: str) -> None:
    parsed = make_url(url)
    if kind == "postgres":
        command = [
            "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", parsed.host or "127.0.0.1",
            "-p", str(parsed.port or 5432), "-U", parsed.username or "postgres",
            "-d", parsed.database or "",
        ]  # fmt: skip
    else:
        command = [
            "mysql", "--protocol=TCP", "-h", parsed.host or "127.0.0.1",
            "-P", str(parsed.port or 3306), "-u", parsed.username or "root",
            parsed.database or "",
        ]  # fmt: skip
    done = subprocess.run(command, input=script, capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"{command[0]} failed: {done.stderr[-2000:]}")


def copy_blocks(script: str) -> Iterator[tuple[str, list[str], list[list[str | None]]]]:
    """Each ``COPY table (columns) FROM stdin`` block of a dump: the table, its columns and
    its rows, every value as its text (None for ``\\N``)."""
    lines = iter(script.splitlines())
    for line in lines:
        found = re.match(r"COPY (?:public\.)?(\w+) \(([^)]*)\) FROM stdin;", line)
        if found is None:
            continue
        rows: list[list[str | None]] = []
        for row in lines:
            if row == "\\.":
                break
            rows.append([None if cell == "\\N" else _unescaped(cell) for cell in row.split("\t")])
        yield found.group(1), [c.strip() for c in found.group(2).split(",")], rows


_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _unescaped(cell: str) -> str:
    """A ``COPY`` text cell's value (its backslash escapes)."""
    if "\\" not in cell:
        return cell
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), cell)


def _mysql_rows(url: str) -> None:
    parsed = make_url(url)
    conn = pymysql.connect(
        host=parsed.host,
        port=parsed.port or 3306,
        user=parsed.username,
        database=parsed.database,
        charset="utf8mb4",
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
            cursor.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = DATABASE()"
            )
            types: dict[str, dict[str, str]] = {}
            for table, column, kind in cursor.fetchall():
                types.setdefault(table, {})[column] = kind
            for table, columns, rows in copy_blocks(_text(PG_DATA)):
                kept = [i for i, column in enumerate(columns) if column in types.get(table, {})]
                names = [columns[i] for i in kept]
                statement = (
                    f"INSERT INTO `{table}` ({', '.join(f'`{n}`' for n in names)}) "
                    f"VALUES ({', '.join(['%s'] * len(names))})"
                )
                values = [
                    [_for_mysql(row[i], types[table][columns[i]]) for i in kept] for row in rows
                ]
                cursor.executemany(statement, values)
            cursor.execute("SET FOREIGN_KEY_CHECKS = 1")
        conn.commit()
    finally:
        conn.close()


def _for_mysql(value: str | None, kind: str) -> Any:
    """A PostgreSQL ``COPY`` value as MySQL's column takes it."""
    if value is None:
        return None
    if kind == "set" and value.startswith("{"):  # a text array: the SET's members
        return ",".join(item.strip('"') for item in re.findall(r'"[^"]*"|[^,{}]+', value))
    if kind == "tinyint" and value in ("t", "f"):
        return 1 if value == "t" else 0
    if kind.endswith("blob") and value.startswith("\\x"):
        return bytes.fromhex(value[2:])
    return value
