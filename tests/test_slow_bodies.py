"""Slow and stalled bodies against a real server (granian): a body that does not arrive in
time is answered 408 and its connection closed; bodies held at once are bounded in bytes
(503 past the bound), so stalled uploads cannot exhaust a worker's memory."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import settings_for
from tests.test_cli_and_server import environment, run, start_server

MIB = 1024 * 1024


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    env = environment(settings_for("sqlite", "memory", tmp_path)) | {
        "TWOTIER_BODY_TIMEOUT": "2",
        "TWOTIER_BODY_BUFFER_BYTES": str(2 * MIB),
        "TWOTIER_ACCESS_LOG": "false",
    }
    assert run(["db", "init"], env, tmp_path).returncode == 0
    process, url = start_server([], env, tmp_path)
    try:
        yield url
    finally:
        process.terminate()
        process.communicate(timeout=30)


def stalled_upload(url: str, sent: int) -> socket.socket:
    """A POST /batch that declares a 1 MiB body, sends ``sent`` bytes of it and stops."""
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)))
    connection.sendall(
        b"POST /batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % MIB
    )
    connection.sendall(b" " * sent)
    return connection


def answer(connection: socket.socket, wait: float) -> tuple[int, bool]:
    """The status the server answered within ``wait`` seconds, and whether it then closed
    the connection."""
    connection.settimeout(wait)
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
        closed = True
    except TimeoutError:
        closed = False
    assert received.startswith(b"HTTP/1.1 "), received[:100]
    return int(received.split()[1]), closed


def test_a_stalled_body_gets_408_and_its_connection_closed(server: str) -> None:
    connection = stalled_upload(server, 100_000)
    started = time.monotonic()
    try:
        status, closed = answer(connection, wait=30)
    finally:
        connection.close()
    assert (status, closed) == (408, True)
    assert time.monotonic() - started >= 1.5  # not before the deadline (2 s)


def test_bodies_held_at_once_are_bounded(server: str) -> None:
    # Two stalled uploads hold 1.8 MB of the 2 MiB a process may hold: a third is refused
    # at once rather than buffered, and the first two still end at their deadline.
    holders = [stalled_upload(server, 900_000) for _ in range(2)]
    time.sleep(1.0)  # the server has read what they sent
    third = stalled_upload(server, 900_000)
    try:
        assert answer(third, wait=1.5) == (503, True)
        assert [answer(c, wait=30) for c in holders] == [(408, True), (408, True)]
    finally:
        for connection in (*holders, third):
            connection.close()
