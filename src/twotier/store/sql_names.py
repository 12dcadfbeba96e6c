"""Names as the database matches them.

A declaration names a table and its columns; the database may have them spelled in another
case and still take them for the same: SQLite ignores case in every name, MySQL and MariaDB
in column names always and in table names where ``lower_case_table_names`` is 1 or 2 (the
default on Windows and macOS), PostgreSQL not at all in a quoted name (twotier quotes every
name). Whatever twotier compares with the catalog (does the table exist, which columns does
it have, which triggers are on it) or with a change log is compared by these rules, or it
would take an existing table for a missing one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection


@dataclass(frozen=True, slots=True)
class NameRules:
    """Whether the database takes table names, and column names, in any case."""

    tables_fold: bool
    columns_fold: bool

    @classmethod
    def of(cls, conn: Connection) -> NameRules:
        dialect = conn.dialect.name
        if dialect == "sqlite":
            return cls(tables_fold=True, columns_fold=True)
        if dialect in ("mysql", "mariadb"):
            setting = conn.exec_driver_sql("SELECT @@lower_case_table_names").scalar()
            return cls(tables_fold=bool(int(setting or 0)), columns_fold=True)
        return cls(tables_fold=False, columns_fold=False)

    def table(self, name: str, present: Iterable[str]) -> str | None:
        """The name under which the database has the table ``name``, or None."""
        return _find(name, present, self.tables_fold)

    def column(self, name: str, present: Iterable[str]) -> str | None:
        """The name under which the table has the column ``name``, or None."""
        return _find(name, present, self.columns_fold)

    def same_table(self, one: str, other: str) -> bool:
        return one.lower() == other.lower() if self.tables_fold else one == other

    def same_column(self, one: str, other: str) -> bool:
        return one.lower() == other.lower() if self.columns_fold else one == other


def _find(name: str, present: Iterable[str], fold: bool) -> str | None:
    names = list(present)
    if name in names:
        return name
    if fold:
        wanted = name.lower()
        for each in names:
            if each.lower() == wanted:
                return each
    return None
