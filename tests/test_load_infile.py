"""The bulk load's ``LOAD DATA LOCAL INFILE`` sends the server the FIFO it fills and
nothing else: a server that asks for another file (spoofed, or taken over; here one of the
tests' own that speaks MySQL's protocol) gets none of it, and the load fails saying why."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.heroes import HEROES
from tests.spoofed_mysql import SpoofedMySQL
from twotier.store.sql_bulk import bulk_load
from twotier.store.sql_url import DatabaseURL

ROWS = [((1, "Ann", "H", "P", 5, "blue"), "1,Ann,H,P,5,blue")]


def load(port: int) -> int:
    url = DatabaseURL.parse(f"mysql://root@127.0.0.1:{port}/superhero_db")
    return asyncio.run(bulk_load(url, HEROES, ROWS, replace=False, version=1, keep=lambda: True))


def test_the_load_sends_its_own_rows() -> None:
    with SpoofedMySQL() as server:  # asks for the file the statement names
        assert load(server.port) == 1
    assert server.received == b"1,Ann,H,P,5,blue\n"
    [asked] = server.asked
    assert asked.endswith(b"/rows.csv")


def test_a_server_asking_for_another_file_gets_nothing(tmp_path: Path) -> None:
    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key = not-for-the-server\n")
    with (
        SpoofedMySQL(asks_for=str(secret)) as server,
        pytest.raises(Exception, match="which this load does not send"),
    ):
        load(server.port)
    assert server.asked == [str(secret).encode()]
    assert server.received == b""
