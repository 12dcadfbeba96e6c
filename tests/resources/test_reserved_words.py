"""The copy of the dialects' reserved words (``twotier.resources.reserved_words``) is the
SQLAlchemy installed's: a word it adds is refused in a declaration, as it would have been
read from the dialects themselves."""

from __future__ import annotations

import textwrap

from sqlalchemy.dialects.mysql import reserved_words as mysql_words
from sqlalchemy.dialects.postgresql.base import RESERVED_WORDS as POSTGRESQL_WORDS
from sqlalchemy.dialects.sqlite.base import SQLiteIdentifierPreparer

from twotier.resources.reserved_words import RESERVED_WORDS


def test_the_copy_is_the_dialects_own_lists() -> None:
    dialects = (
        mysql_words.RESERVED_WORDS_MYSQL
        | mysql_words.RESERVED_WORDS_MARIADB
        | POSTGRESQL_WORDS
        | SQLiteIdentifierPreparer.reserved_words
    )
    copy = textwrap.fill(
        " ".join(sorted(dialects)), 88, initial_indent="    ", subsequent_indent="    "
    )
    assert dialects == RESERVED_WORDS, f"reserved_words.py's list is now:\n{copy}"
