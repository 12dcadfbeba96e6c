"""A TCP proxy of the tests' own that can turn into a black hole: it keeps every connection
open and takes what either side sends, but forwards nothing more, and answers nothing (no
reset, no close): what a link that died half-open (a server gone without a word, a firewall
dropping packets) looks like to a client."""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.loopback import LoopbackServer


class BlackHoleProxy(LoopbackServer):
    """``with BlackHoleProxy(port) as proxy:`` forwards ``proxy.port`` to ``port`` on
    loopback until ``proxy.swallow()``."""

    def __init__(self, target_port: int) -> None:
        super().__init__()
        self.target_port = target_port
        self._forwarding = threading.Event()
        self._forwarding.set()

    def swallow(self) -> None:
        """From now on, nothing gets through, either way, and nothing says so."""
        self._forwarding.clear()

    def handle(self, conn: socket.socket) -> None:
        if not self._forwarding.is_set():
            threading.Thread(target=self._pump, args=(conn, None), daemon=True).start()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        self._sockets.append(upstream)
        for source, target in ((conn, upstream), (upstream, conn)):
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
