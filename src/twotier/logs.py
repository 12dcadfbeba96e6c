"""Logs: one JSON object per line on stdout, the shape CloudWatch Logs Insights queries.

Every line has ``time``, ``level``, ``logger`` and ``message``; lines written while a request
is served carry its ``request_id``; fields passed as ``extra=`` become keys of their own.
Exceptions become one ``error`` string, so a traceback stays one log event in CloudWatch.

The formatter is a few lines over orjson rather than a library: the access log writes one
line per request on the hot path, and this is the cheapest correct encoding of it.
"""

from __future__ import annotations

import atexit
import logging
import logging.config
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson

from twotier.telemetry import CURRENT_REQUEST

T = TypeVar("T")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        attributes = record.__dict__
        fields = {key: attributes[key] for key in attributes.keys() - _STANDARD}
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info)
        return json_line(record.created, record.levelname, record.name, record.getMessage(), fields)


def json_line(created: float, level: str, logger: str, message: str, fields: dict[str, Any]) -> str:
    """One log line: the keys every line has, the request's id if one is being served,
    then ``fields``."""
    current = None if "request_id" in fields else CURRENT_REQUEST.get()
    if current is not None:
        fields = {"request_id": current.request_id, **fields}
    line = {
        "time": _timestamp(created),
        "level": level,
        "logger": logger,
        "message": message,
        **fields,
    }
    return orjson.dumps(line, default=str).decode()


_SECRET_PARAMS = ("password", "passwd", "secret", "token", "key")


def redacted_url(url: str) -> str:
    """``url`` fit for a log or a terminal: its password and any secret-looking query
    parameter replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = urlencode(
        [
            (name, "***" if any(word in name.lower() for word in _SECRET_PARAMS) else value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*/:",
    )
    # Built by hand: urlunsplit would drop the empty authority of sqlite:///path.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


_second: tuple[int, str] = (-1, "")
_millisecond: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    """``created`` as ISO 8601 in UTC to the millisecond; made once a millisecond (a busy
    server writes many lines in each), its second's part once a second."""
    global _second, _millisecond
    milliseconds = int(created * 1000)
    if milliseconds == _millisecond[0]:
        return _millisecond[1]
    whole, fraction = divmod(milliseconds, 1000)
    if whole != _second[0]:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    _millisecond = (milliseconds, f"{_second[1]}.{fraction:03d}Z")
    return _millisecond[1]


class StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is at the time of each line (it may be replaced
    after logging is configured: test capture, a runtime's redirection)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


#: A line whose fields are made when it is written: (time, logger, message, how, from what).
Deferred = tuple[float, str, str, Callable[[Any], dict[str, Any]], Any]


class BufferedStdoutHandler(StdoutHandler):
    """Collects lines and writes them in blocks of whole lines, at most ``PIPE_BUF`` bytes
    each (so that workers sharing one pipe never interleave inside a line), once ``HELD``
    lines are held and at least every ``interval`` seconds. One write per request cost the
    hot path a system call; one per block costs it almost nothing. A deferred line
    (``log_fields_later``) is formatted only then, off the request's path. ``flush()``
    writes what is held at once (Lambda calls it before each invocation returns)."""

    BLOCK = 4096  # PIPE_BUF on Linux: a write up to this size is atomic on a pipe
    HELD = 128

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__()
        # Appended to by any thread without a lock (a deque's ends are thread-safe); taken
        # from by one writer at a time (the handler's lock).
        self._held: deque[str | Deferred] = deque()
        self._stopped = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_every, args=(interval,), name="twotier-log-flush", daemon=True
        )
        self._flusher.start()
        atexit.register(self.flush)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.write_line(line)

    def write_line(self, line: str | Deferred) -> None:
        """One formatted line (without its newline), or one to format when written."""
        held = self._held
        held.append(line)
        if len(held) >= self.HELD:
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_held()

    def _write_held(self) -> None:
        held = self._held
        block: list[str] = []
        size = 0
        for _ in range(len(held)):  # what is held now; later lines wait for the next write
            line = _formatted(held.popleft())
            # Bytes, as the pipe counts them (an ASCII line's length is its size at once).
            length = (len(line) if line.isascii() else len(line.encode())) + 1
            if block and size + length > self.BLOCK:
                self._write(block)
                block, size = [], 0
            block.append(line)
            size += length
        if block:
            self._write(block)

    @staticmethod
    def _write(lines: list[str]) -> None:
        lines.append("")  # the last line's end
        try:
            sys.stdout.write("\n".join(lines))
            sys.stdout.flush()
        except (OSError, ValueError):  # stdout closed: nowhere left to write
            pass

    def _flush_every(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            self.flush()

    def close(self) -> None:
        self._stopped.set()
        self.flush()
        super().close()


def _formatted(line: str | Deferred) -> str:
    if isinstance(line, str):
        return line
    created, logger, message, make, item = line
    try:
        fields = make(item)
    except Exception as error:  # a bug in ``make``: said, in the line's place
        return json_line(
            created, "ERROR", __name__, "a log line could not be made", {"error": repr(error)}
        )
    return json_line(created, "INFO", logger, message, fields)


def _direct(logger: logging.Logger) -> BufferedStdoutHandler | None:
    """twotier's handler, when a line of ``logger`` may go straight to it: it is the only
    handler, and nothing filters or formats lines otherwise."""
    handlers = logging.root.handlers
    handler = handlers[0] if len(handlers) == 1 else None
    if (
        isinstance(handler, BufferedStdoutHandler)
        and not logger.handlers
        and not logger.filters
        and not handler.filters
        and isinstance(handler.formatter, JsonFormatter)
    ):
        return handler
    return None


def log_fields(logger: logging.Logger, message: str, fields: dict[str, Any]) -> None:
    """An INFO line with ``fields``: ``logger.info(message, extra=fields)``, in effect.

    When the only handler is twotier's own (as configured for servers), the line goes to it
    directly: the same JSON, at a third of the cost of a LogRecord's way through logging.
    Any other handler or filter (a test's capture, a user's configuration) gets the
    ordinary LogRecord.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _direct(logger)
    if handler is not None:
        handler.write_line(json_line(time.time(), "INFO", logger.name, message, fields))
    else:
        logger.info(message, extra=fields)


def log_fields_later(
    logger: logging.Logger, message: str, make: Callable[[T], dict[str, Any]], item: T
) -> None:
    """``log_fields(logger, message, make(item))``, with ``make`` called when the line is
    written where twotier's handler writes it directly (the line keeps this moment as its
    time): the access log's one line per request is formatted in batches, off the
    request's path. ``item`` must not change meanwhile."""
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _direct(logger)
    if handler is not None:
        handler.write_line((time.time(), logger.name, message, make, item))
    else:
        logger.info(message, extra=make(item))


def flush() -> None:
    """Write out whatever the root handlers hold."""
    for handler in logging.getLogger().handlers:
        handler.flush()


def dict_config(level: str = "info") -> dict[str, Any]:
    """``logging.config`` for JSON lines on stdout, at ``level``; servers take it as is."""
    level = level.upper()
    via_root = {"handlers": [], "level": level, "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"stdout": {"class": f"{__name__}.StdoutHandler", "formatter": "json"}},
        # The root replaces whatever handler was there (the Lambda runtime installs a
        # plain-text one); the servers' loggers write through it, in the same format.
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {name: via_root for name in ("_granian", "uvicorn", "uvicorn.error")},
    }


def configure(level: str = "info", *, buffered: bool = False) -> None:
    """JSON lines on stdout for every logger, at ``level`` (debug, info, warning, error).

    ``buffered``: lines are written in blocks (``BufferedStdoutHandler``), within 0.2 s;
    servers use it. The default writes each line at once.
    """
    config = dict_config(level)
    if buffered:
        config["handlers"]["stdout"]["class"] = f"{__name__}.BufferedStdoutHandler"
    logging.config.dictConfig(config)
    # Where each call came from (file, line, thread, process) is never logged: skip
    # finding it out (the logging HOWTO's "Optimization" switches).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
