"""A database URL read without SQLAlchemy (``sql_url``) is the URL SQLAlchemy reads."""

from __future__ import annotations

import pytest
from sqlalchemy import make_url

from twotier.store.sql_url import DatabaseURL

URLS = [
    "sqlite:///./var/superhero_db.sqlite3",
    "sqlite:////tmp/abs/path.db",
    "sqlite:///:memory:",
    "sqlite://",
    "sqlite+aiosqlite:///x.db?timeout=3",
    "mysql://root@127.0.0.1:3306/twotier",
    "mysql+asyncmy://root@127.0.0.1/twotier?charset=utf8mb4",
    "mysql://user:p%40ss%3Aw%2Ford@db.example.com:3307/app?ssl_ca=rds&ssl_check_hostname=false",
    "mysql://user:pa/ss?#word@Db.Example.COM/app",
    "mysql://user:@host/db",
    "mysql://user@host",
    "mysql://host/",
    "mysql://host:3306",
    "postgresql://postgres@127.0.0.1:5432/twotier?options=-csearch_path%3Dsales",
    "postgresql://u:p@[::1]:5432/db?sslmode=verify-full&sslrootcert=rds",
    "postgresql://u:p@[fe80::1%25eth0]/db",
    "postgresql://u@h/db?options=-ca%3D1&options=-cb%3D2",
    "postgresql+asyncpg://us%20er:p+w@h/d%20b",
    "mariadb://root@localhost/x?charset=latin1&empty=",
]


@pytest.mark.parametrize("text", URLS)
def test_a_url_reads_as_sqlalchemy_reads_it(text: str) -> None:
    ours, theirs = DatabaseURL.parse(text), make_url(text)
    assert ours.drivername == theirs.drivername
    assert ours.username == theirs.username
    assert ours.password == theirs.password
    assert ours.host == theirs.host
    assert ours.port == theirs.port
    assert ours.database == theirs.database
    assert dict(ours.query) == dict(theirs.query)
    assert ours.get_backend_name() == theirs.get_backend_name()
    assert ours.sqlalchemy() == theirs
    again = DatabaseURL.parse(ours.render_as_string(hide_password=False))
    assert again == ours
    assert ours.render_as_string() == theirs.render_as_string()


@pytest.mark.parametrize("text", ["not a url", "mysql:/h/db", "my sql://h", "mysql://h:port/db"])
def test_what_is_not_a_url_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="database URL"):
        DatabaseURL.parse(text)
