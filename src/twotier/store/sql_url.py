"""A SQL database's URL, read as SQLAlchemy reads it, without importing SQLAlchemy.

``scheme+driver://user:password@host:port/database?name=value``: the user, the password and
the database percent-decoded, a host in brackets for IPv6, a parameter given twice kept as
a tuple of its values. The drivers' own pools connect from these parts, so a process that
serves only what they run (a Lambda function's cold start) never loads SQLAlchemy; the
engine, made on first use, gets the same URL as SQLAlchemy's own (``sqlalchemy``). A test
holds the two readings equal over a corpus of URLs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

if TYPE_CHECKING:
    from sqlalchemy import URL

QueryValue = str | tuple[str, ...]


@dataclass(frozen=True)
class DatabaseURL:
    drivername: str
    username: str | None = None
    password: str | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None
    query: Mapping[str, QueryValue] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> DatabaseURL:
        """``text`` read as SQLAlchemy's ``make_url`` reads it: the user's part ends at the
        first ``@`` (a password may hold ``/``, ``?`` or ``#``: only ``@`` must be
        percent-encoded); ValueError if it is not a database URL."""
        scheme, sep, rest = text.partition("://")
        if not sep or not scheme or not all(c.isalnum() or c in "+_" for c in scheme):
            raise ValueError(f"could not parse a database URL from {text!r}")
        username = password = None
        userinfo, at, after = rest.partition("@")
        user, colon, secret = userinfo.partition(":")
        if at and "/" not in user:
            username, rest = unquote(user), after
            password = unquote(secret) if colon else None
        if rest.startswith("["):
            host, bracket, rest = rest[1:].partition("]")
            if not bracket or not host:
                raise ValueError(f"database URL: an unclosed [ in its host: {text!r}")
        else:
            host, rest = _until(rest, "/:?")
        port = None
        if rest.startswith(":"):
            digits, rest = _until(rest[1:], "/?")
            if digits:
                if not digits.isdigit() or int(digits) > 65535:
                    raise ValueError(f"database URL: port {digits!r} is not a port number")
                port = int(digits)
        database = None
        if rest.startswith("/"):
            database, rest = _until(rest[1:], "?")
            database = unquote(database)
        query: dict[str, QueryValue] = {}
        if rest.startswith("?"):
            for name, value in parse_qsl(rest[1:]):
                given = query.get(name)
                if given is None:
                    query[name] = value
                else:
                    query[name] = (*((given,) if isinstance(given, str) else given), value)
        elif rest:
            raise ValueError(f"could not parse a database URL from {text!r}")
        return cls(scheme, username, password, host or None, port, database, query)

    def get_backend_name(self) -> str:
        """The database's kind: ``mysql`` of ``mysql+asyncmy``."""
        return self.drivername.partition("+")[0]

    def set(self, **changes: Any) -> DatabaseURL:
        return replace(self, **changes)

    def update_query_dict(self, values: Mapping[str, QueryValue]) -> DatabaseURL:
        return replace(self, query={**self.query, **values})

    def difference_update_query(self, names: Iterable[str]) -> DatabaseURL:
        left = set(names)
        return replace(self, query={n: v for n, v in self.query.items() if n not in left})

    def render_as_string(self, *, hide_password: bool = True) -> str:
        """The URL as text (its password as ``***`` unless ``hide_password`` is false)."""
        text = f"{self.drivername}://"
        if self.username is not None:
            text += quote(self.username, safe=" +")
            if self.password is not None:
                secret = "***" if hide_password else quote(self.password, safe=" +")
                text += f":{secret}"
            text += "@"
        if self.host is not None:
            text += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            text += f":{self.port}"
        if self.database is not None:
            text += "/" + quote(self.database, safe=" +/")
        if self.query:
            text += "?" + urlencode(sorted(self.query.items()), doseq=True)
        return text

    def __repr__(self) -> str:  # the password never reaches a log line
        return f"DatabaseURL({self.render_as_string()!r})"

    def sqlalchemy(self) -> URL:
        """The same URL as SQLAlchemy's own (for its engine)."""
        from sqlalchemy import URL

        return URL.create(
            self.drivername,
            self.username,
            self.password,
            self.host,
            self.port,
            self.database,
            dict(self.query),
        )


def _until(text: str, stops: str) -> tuple[str, str]:
    """``text`` up to the first of ``stops``, and the rest from it."""
    end = next((index for index, c in enumerate(text) if c in stops), len(text))
    return text[:end], text[end:]
