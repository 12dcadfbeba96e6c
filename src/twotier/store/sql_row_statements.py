"""The statements of one resource's rows, as SQLAlchemy Core constructs (``SQLRows`` runs
them): every value a bound parameter, every name quoted.

``SQLRows`` asks for each statement by its shape (a read by key; an ``IN`` list of so many
keys; an ``UPDATE`` of these fields) and keeps what is compiled; the common shapes are
compiled ahead and kept in the database (``sql_book``), so this module, and SQLAlchemy, are
imported only for a shape that was not.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Insert,
    Integer,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    column,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy import values as values_of
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from twotier.resources import Key, Resource
from twotier.store.base import Condition, Query, prefix_bound
from twotier.store.sql_compile import compiled, row_conversions
from twotier.store.sql_statement import AT, KEY, LIMIT, VERSION, Conversion, Statement


class RowStatements:
    """The constructs of ``resource``'s statements over ``table``."""

    def __init__(self, resource: Resource, table: Table, backend: str) -> None:
        self.resource = resource
        self.table = table
        self._backend = backend
        self._keys = resource.key_fields
        self.key_columns = tuple(table.c[name] for name in self._keys)
        self.selected = (*(table.c[name] for name in resource.columns), table.c[VERSION])

    @staticmethod
    def compile(construct: ClauseElement, dialect: Dialect) -> Statement:
        return compiled(construct, dialect)

    def row_conversions(self, dialect: Dialect) -> tuple[Conversion, ...]:
        return row_conversions(self.selected, dialect)

    # -- conditions -----------------------------------------------------------------------

    def _equal(self, name: str, value: object) -> list[ColumnElement[bool]]:
        """``name`` equals ``value`` exactly, as on every store: MySQL's text collations
        would also match other cases, accents and trailing spaces, and the cache would then
        hold two entries for what the database treats as one value. The collation's test
        stays too, so that an index on the column still narrows the search."""
        col = self.table.c[name]
        exact: list[ColumnElement[bool]] = [col == value]
        if self._backend == "mysql" and isinstance(col.type, String):
            bound = value if isinstance(value, BindParameter) else literal(value)
            exact.append(cast(col, mysql.BINARY) == cast(bound, mysql.BINARY))
        return exact

    def _key_is(self, name: str) -> list[ColumnElement[bool]]:
        """The key equals the value bound as ``name`` (see ``_equal``); a composite key's
        parts each equal theirs, bound as ``name_0``, ``name_1`` … (``SQLRows._key_bound``)."""
        if len(self._keys) == 1:
            return self._equal(self._keys[0], bindparam(name))
        return [
            exact
            for index, part in enumerate(self._keys)
            for exact in self._equal(part, bindparam(f"{name}_{index}"))
        ]

    def _keys_among(self, names: Sequence[str]) -> list[ColumnElement[bool]]:
        """The key is one of those bound as ``names`` (each as ``_key_is`` binds it)."""
        if len(self._keys) == 1:
            return self._among(self._keys[0], [bindparam(name) for name in names])
        return [or_(*(and_(*self._key_is(name)) for name in names))]

    def _among(self, name: str, values: Sequence[Any]) -> list[ColumnElement[bool]]:
        """``name`` is exactly one of ``values`` (see ``_equal``)."""
        col = self.table.c[name]
        among: list[ColumnElement[bool]] = [col.in_(values)]
        if self._backend == "mysql" and isinstance(col.type, String):
            bound = [v if isinstance(v, BindParameter) else literal(v) for v in values]
            among.append(cast(col, mysql.BINARY).in_([cast(v, mysql.BINARY) for v in bound]))
        return among

    def _key_after(self, key: Key) -> ColumnElement[bool]:
        """The rows after ``key`` in key order (a composite key's: its fields in turn)."""
        if len(self._keys) == 1:
            return self.key_columns[0] > key
        values = self.resource.key_values(key)
        return tuple_(*self.key_columns) > tuple_(*(values[part] for part in self._keys))

    # -- reads ----------------------------------------------------------------------------

    def by_key(self, *, locked: bool = False) -> Select[Any]:
        """The row whose key is bound as ``KEY`` (``locked``: and its lock)."""
        made = select(*self.selected).where(*self._key_is(KEY))
        return made.with_for_update() if locked else made

    def among_keys(self, count: int) -> Select[Any]:
        return select(*self.selected).where(*self._keys_among([f"k{i}" for i in range(count)]))

    def locked_keys(self, count: int) -> Select[Any]:
        """``SELECT … WHERE key IN (…) ORDER BY key FOR UPDATE`` of ``count`` keys."""
        return self.among_keys(count).order_by(*self.key_columns).with_for_update()

    def among_values(self, field: str, count: int, *, limited: bool) -> Select[Any]:
        """The rows whose ``field`` is one of ``count`` bound values, by value and key
        (the lookup's index), the first ``LIMIT`` of them if ``limited``."""
        kind = self.table.c[field].type  # so that its values are bound as the column's
        params: list[Any] = [bindparam(f"v{index}", type_=kind) for index in range(count)]
        made = (
            select(*self.selected)
            .where(*self._among(field, params))
            .order_by(self.table.c[field], *self.key_columns)
        )
        return made.limit(bindparam(LIMIT, type_=Integer())) if limited else made

    def page(self, query: Query) -> Select[Any]:
        made = select(*self.selected)
        if query.after is not None:
            made = made.where(self._key_after(query.after))
        for name, value in query.filters:
            made = made.where(*self._equal(name, value))
        for condition in query.conditions:
            made = made.where(*self._condition(condition))
        names = query.position_fields(self._keys)
        order = [self._in_order(name) for name in names]
        if query.position is not None:
            made = made.where(self._beyond(names, query.position, query.descending))
        by = [ordered.desc() for ordered in order] if query.descending else order
        return made.order_by(*by).limit(query.limit)

    def _in_order(self, name: str) -> ColumnElement[Any]:
        """A column as lists compare and order it: text byte for byte (as SQLite does, and
        as the cache's keys and every store do), whatever the database's collation."""
        col = self.table.c[name]
        if not isinstance(col.type, String) or name in self._keys:
            return col  # a key: in the order its own index has, as every page by key
        if self._backend == "postgresql":
            return col.collate("C")
        if self._backend == "mysql":
            return cast(col, mysql.BINARY)
        return col

    def _value(self, name: str, value: Any) -> ColumnElement[Any]:
        """A value bound as a column's, compared as ``_in_order`` compares the column."""
        col = self.table.c[name]
        bound: ColumnElement[Any] = literal(value, type_=col.type)
        if self._backend == "mysql" and isinstance(col.type, String) and name not in self._keys:
            return cast(bound, mysql.BINARY)
        return bound

    def _condition(self, condition: Condition) -> list[ColumnElement[bool]]:
        name, op, value = condition.field, condition.op, condition.value
        col = self.table.c[name]
        if op == "null":
            return [col.is_(None) if value else col.is_not(None)]
        if op == "in":
            return self._among(name, list(value))
        ordered = self._in_order(name)
        if op == "prefix":
            found = [ordered >= self._value(name, value)]
            above = prefix_bound(value)
            if above is not None:
                found.append(ordered < self._value(name, above))
            if self._backend == "mysql":
                # The collation's own LIKE matches a superset (other cases, accents), and
                # lets an index on the column narrow the search.
                escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                found.append(col.like(escaped + "%", escape="\\"))
            return found
        compared = self._value(name, value)
        return [_COMPARISONS[op](ordered, compared)]

    def _beyond(
        self, names: Sequence[str], position: Sequence[Any], descending: bool
    ) -> ColumnElement[bool]:
        """The rows after ``position`` (the last row's values of the fields ``names``) in
        the order of those fields."""
        order = [self._in_order(name) for name in names]
        values = [self._value(name, value) for name, value in zip(names, position, strict=True)]
        if self._backend != "mysql":
            row, at = tuple_(*order), tuple_(*values)
            return row < at if descending else row > at
        # Written out: MariaDB's range optimizer does not take a row comparison.
        after: ColumnElement[bool] | None = None
        for ordered, value in zip(reversed(order), reversed(values), strict=True):
            beyond = ordered < value if descending else ordered > value
            after = beyond if after is None else or_(beyond, and_(ordered == value, after))
        assert after is not None
        return after

    def count(self) -> Select[Any]:
        return select(func.count()).select_from(self.table)

    # -- writes ---------------------------------------------------------------------------

    def deleted(self, *, at: bool) -> ClauseElement:
        """``DELETE`` by key (``at``: only at the version bound as ``AT``)."""
        where = self._key_is(KEY)
        if at:
            where.append(self.table.c[VERSION] == bindparam(AT))
        return delete(self.table).where(*where)

    def insert_named(self, names: Sequence[str]) -> Insert:
        """``INSERT`` of a row that gives ``names``, returning an automatic key where the
        database can."""
        return insert(self.table).values({name: bindparam(name) for name in sorted(names)})

    def insert_rows(self, names: Sequence[str], count: int) -> Insert:
        """``INSERT … VALUES`` of ``count`` rows, ``RETURNING`` each row's key and version."""
        rows: list[dict[str, Any]] = [
            {name: bindparam(f"r{index}_{name}") for name in names} for index in range(count)
        ]
        return insert(self.table).values(rows).returning(self.key_columns[0], self.table.c[VERSION])

    def insert_many(self, *, returning_keys: bool = False) -> Insert:
        """``INSERT`` of rows given as a list (``returning_keys``: in the order given)."""
        made = insert(self.table)
        if returning_keys:
            return made.returning(self.key_columns[0], sort_by_parameter_order=True)
        return made

    def setter(self, names: Sequence[str], *, conditional: bool) -> ClauseElement:
        """``UPDATE … SET`` these fields and the next version, by key (and, conditional,
        only at the version bound as ``AT``)."""
        where = self._key_is(KEY)
        if conditional:
            where.append(self.table.c[VERSION] == bindparam(AT))
        return (
            update(self.table)
            .where(*where)
            .values(
                {name: bindparam(name) for name in sorted(names)}
                | {VERSION: self.table.c[VERSION] + 1}
            )
        )

    def set_cases(self, fields: Sequence[str], count: int) -> ClauseElement:
        """``UPDATE … SET`` each of ``fields`` to ``CASE key WHEN … THEN … END`` and the
        next version, of ``count`` rows by key (locked, and checked at their version)."""
        keys = [f"r{index}__twotier_key" for index in range(count)]

        def case_of(name: str) -> ColumnElement[Any]:
            kind = self.table.c[name].type
            return case(
                *(
                    (and_(*self._key_is(key)), bindparam(f"r{index}_{name}", type_=kind))
                    for index, key in enumerate(keys)
                )
            )

        return (
            update(self.table)
            .where(*self._keys_among(keys))
            .values(
                {name: case_of(name) for name in sorted(fields)}
                | {VERSION: self.table.c[VERSION] + 1}
            )
        )

    def set_many(self, fields: Sequence[str], count: int) -> ClauseElement:
        """``UPDATE … SET`` ``fields`` and the next version ``FROM (VALUES …)`` of
        ``count`` rows (key, version read, values), where each row is still at its
        version, ``RETURNING`` the keys changed."""
        names = sorted(fields)
        keys = (
            ["_twotier_key"]
            if len(self._keys) == 1
            else [f"_twotier_key_{index}" for index in range(len(self._keys))]
        )  # as SQLRows._key_bound names them
        columns = [
            *(column(name, key.type) for name, key in zip(keys, self.key_columns, strict=True)),
            column("_twotier_at", self.table.c[VERSION].type),
            *(column(name, self.table.c[name].type) for name in names),
        ]
        rows = [
            tuple(bindparam(f"r{index}_{c.name}", type_=c.type) for c in columns)
            for index in range(count)
        ]
        given = values_of(*columns, name="given").data(rows)
        return (
            update(self.table)
            .values({name: given.c[name] for name in names} | {VERSION: self.table.c[VERSION] + 1})
            .where(
                *(key == given.c[name] for name, key in zip(keys, self.key_columns, strict=True)),
                self.table.c[VERSION] == given.c["_twotier_at"],
            )
            .returning(*self.key_columns)
        )


_COMPARISONS: dict[str, Any] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
