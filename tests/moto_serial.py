"""moto in server mode, one request at a time: ``python -m tests.moto_serial PORT``.

moto's backends are not thread-safe: its threaded server applies two concurrent
``UpdateItem`` calls of one item from the same old state, and one update is lost. DynamoDB
applies the writes of an item one at a time, and the store relies on it; so the tests' moto
takes its requests one at a time (connections are still kept alive, each on its thread).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main(port: int) -> None:
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serial(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with lock:
            return list(app(environ, start_response))

    run_simple("127.0.0.1", port, serial, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main(int(sys.argv[1]))
