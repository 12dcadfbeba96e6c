"""A TCP server of the tests' own on a free loopback port, run by a thread for as long as a
``with`` block lasts; subclasses say what to do with each connection (``handle``)."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self


class LoopbackServer:
    """Accepts on ``self.port`` and hands each connection to ``handle``, one after another;
    every socket in ``self._sockets`` is closed when the block ends."""

    def __init__(self) -> None:
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._closed.set()
        self._thread.join(5)
        self._listener.close()
        for each in self._sockets:
            with contextlib.suppress(OSError):
                each.close()

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._sockets.append(conn)
            self.handle(conn)
