"""Logs: one JSON object per line on stdout, the shape CloudWatch Logs Insights queries.

Every line has ``time``, ``level``, ``logger`` and ``message``; lines written while a request
is served carry its ``request_id``; fields passed as ``extra=`` become keys of their own.
Exceptions become one ``error`` string, so a traceback stays one log event in CloudWatch.

The formatter is a few lines over orjson rather than a library: the access log writes one
line per request on the hot path, and this is the cheapest correct encoding of it.
"""

from __future__ import annotations

import logging
import logging.config
import sys
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson

from twotier.telemetry import CURRENT_REQUEST

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = CURRENT_REQUEST.get()
        if current is not None:
            line["request_id"] = current.request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                line[key] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
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
        safe="*/",
    )
    # Built by hand: urlunsplit would drop the empty authority of sqlite:///path.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def _timestamp(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


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


def configure(level: str = "info") -> None:
    """JSON lines on stdout for every logger, at ``level`` (debug, info, warning, error)."""
    logging.config.dictConfig(dict_config(level))
