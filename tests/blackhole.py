"""A TCP proxy of the tests' own that can turn into a black hole: it keeps every connection
open and takes what either side sends, but forwards nothing more, and answers nothing (no
reset, no close): what a link that died half-open (a server gone without a word, a firewall
dropping packets) looks like to a client."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class BlackHoleProxy:
    """``with BlackHoleProxy(port) as proxy:`` forwards ``proxy.port`` to ``port`` on
    loopback until ``proxy.swallow()``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> BlackHoleProxy:
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

    def swallow(self) -> None:
        """From now on, nothing gets through, either way, and nothing says so."""
        self._forwarding.clear()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._sockets.append(client)
            if not self._forwarding.is_set():
                threading.Thread(target=self._pump, args=(client, None), daemon=True).start()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets.append(upstream)
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket | None) -> None:
        with contextlib.suppress(OSError):
            while not self._closed.is_set():
                data = source.recv(65536)
                if not data:
                    if target is not None and self._forwarding.is_set():
                        target.shutdown(socket.SHUT_WR)
                    return
                if target is not None and self._forwarding.is_set():
                    target.sendall(data)
