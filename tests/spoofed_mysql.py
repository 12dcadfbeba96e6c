"""A server of the tests' own that speaks just enough of MySQL's protocol to pass for one:
it takes any login, answers OK to every statement, and answers a ``LOAD DATA LOCAL`` by
asking the client for a file of its choosing (the one the statement names, or another),
recording every byte the client sends. What a spoofed or taken-over database server could
do to a client with ``local_infile`` on."""

from __future__ import annotations

import re
import socket
import struct

from tests.loopback import LoopbackServer

_CAPABILITIES = (
    0x1  # LONG_PASSWORD
    | 0x4  # LONG_FLAG
    | 0x8  # CONNECT_WITH_DB
    | 0x80  # LOCAL_FILES
    | 0x200  # PROTOCOL_41
    | 0x2000  # TRANSACTIONS
    | 0x8000  # SECURE_CONNECTION
    | 0x20000  # MULTI_RESULTS
    | 0x80000  # PLUGIN_AUTH
)
_OK = b"\x00\x00\x00\x02\x00\x00\x00"
_INFILE = re.compile(rb"INFILE '([^']*)'")


class SpoofedMySQL(LoopbackServer):
    """``with SpoofedMySQL(asks_for=path) as server:`` on ``server.port``; None asks for the
    file the ``LOAD DATA`` names. ``received``: the bytes of every file the client sent."""

    def __init__(self, asks_for: str | None = None) -> None:
        super().__init__()
        self.asks_for = asks_for
        self.received = b""
        self.asked: list[bytes] = []

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn:
            try:
                self._session(conn)
            except (OSError, ConnectionError):
                return

    def _session(self, conn: socket.socket) -> None:
        salt = b"abcdefghijklmnopqrst"
        greeting = (
            b"\x0a5.7.99-spoofed\x00"
            + struct.pack("<I", 1)
            + salt[:8]
            + b"\x00"
            + struct.pack("<H", _CAPABILITIES & 0xFFFF)
            + b"\x21"
            + struct.pack("<H", 2)
            + struct.pack("<H", _CAPABILITIES >> 16)
            + bytes([21])
            + b"\x00" * 10
            + salt[8:]
            + b"\x00"
            + b"mysql_native_password\x00"
        )
        _send(conn, 0, greeting)
        _receive(conn)  # the login: any will do
        _send(conn, 2, _OK)
        while True:
            sequence, payload = _receive(conn)
            if not payload or payload[0] == 0x01:  # COM_QUIT
                return
            if payload[0] != 0x03:  # not a query: fine all the same
                _send(conn, sequence + 1, _OK)
                continue
            named = _INFILE.search(payload)
            if named is None:
                _send(conn, 1, _OK)
                continue
            wanted = named.group(1) if self.asks_for is None else self.asks_for.encode()
            self.asked.append(wanted)
            _send(conn, 1, b"\xfb" + wanted)
            number = 1
            while True:  # the file's packets, then an empty one
                number, chunk = _receive(conn)
                if not chunk:
                    break
                self.received += chunk
            _send(conn, number + 1, _OK)


def _send(conn: socket.socket, sequence: int, payload: bytes) -> None:
    conn.sendall(struct.pack("<I", len(payload))[:3] + bytes([sequence & 0xFF]) + payload)


def _receive(conn: socket.socket) -> tuple[int, bytes]:
    header = _exactly(conn, 4)
    length = int.from_bytes(header[:3], "little")
    return header[3], _exactly(conn, length)


def _exactly(conn: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            raise ConnectionError("the client went away")
        data += chunk
    return data
