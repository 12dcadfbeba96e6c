"""``LOAD DATA LOCAL INFILE`` that sends the server the one file the load names, and no other.

With ``local_infile`` on, PyMySQL sends whatever file the server asks for, in answer to any
statement: a server that is not the one meant (spoofed, or taken over) could read the
client's files (``~/.aws/credentials``, ``/proc/self/environ``). The bulk load's connection
allows one path, the FIFO it fills, and only while its own ``LOAD DATA`` runs; a request for
anything else fails the statement and sends nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pymysql import err
from pymysql.connections import Connection, MySQLResult
from pymysql.protocol import LoadLocalPacketWrapper


class OneFileConnection(Connection):  # type: ignore[misc]
    """A PyMySQL connection whose server may read one file: ``sending(path)``'s."""

    def __init__(self, **arguments: Any) -> None:
        super().__init__(**arguments, local_infile=True)
        self._allowed: bytes | None = None

    @contextmanager
    def sending(self, path: str) -> Iterator[None]:
        """While the block runs, the server may ask for ``path`` (and for nothing else)."""
        self._allowed = path.encode()
        try:
            yield
        finally:
            self._allowed = None

    def _read_query_result(self, unbuffered: bool = False) -> int:
        # PyMySQL's own, reading the answer with the guarded result below.
        self._result = None
        result = _GuardedResult(self)
        if unbuffered:
            result.init_unbuffered_query()
        else:
            result.read()
        self._result = result
        if result.server_status is not None:
            self.server_status = result.server_status
        return int(result.affected_rows or 0)


class _GuardedResult(MySQLResult):  # type: ignore[misc]
    def _read_load_local_packet(self, first_packet: Any) -> None:
        conn: OneFileConnection = self.connection
        asked = LoadLocalPacketWrapper(first_packet).filename
        if conn._allowed is None or asked != conn._allowed:
            # An empty file, as the protocol has it when a file cannot be read: the server
            # answers, and the connection stays in step.
            conn.write_packet(b"")
            conn._read_packet()
            raise err.OperationalError(
                2068,
                f"the server asked for the file {asked[:200]!r}, which this load does not "
                "send: refused (is this the database server you meant?)",
            )
        super()._read_load_local_packet(first_packet)
