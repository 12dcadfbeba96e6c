"""Tables from declarations: each resource's table, for every SQL dialect twotier speaks, and
the API keys table guarding them.

A resource's table has its key (an auto-increment id, or the declared key field), its
fields, and twotier's ``version`` column; every lookup field is indexed with the key, so
"every row with this value, by key" is read from the index; declared ranges are CHECK
constraints. Names come from the declaration, which checked them; SQLAlchemy quotes them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    MetaData,
    Select,
    String,
    Table,
    Text,
    and_,
    bindparam,
    literal,
    select,
)
from sqlalchemy.dialects import mysql

from twotier.resources import Resource
from twotier.resources.fields import FieldSpec, IntegerField, StringField
from twotier.store.sql_statement import VERSION


def resource_table(resource: Resource, metadata: MetaData) -> Table:
    """The table ``resource`` is stored in, as twotier creates it."""
    keys = resource.key_fields
    if resource.auto_key:
        columns = [_column(resource.key_field, key=True, auto=True)]
    else:
        columns = [_column(resource.field(name), key=True) for name in keys]
    columns += [_column(spec) for spec in resource.fields if spec.name not in keys]
    columns.append(Column(VERSION, BigInteger(), nullable=False, server_default="1"))
    table = Table(
        resource.table,
        metadata,
        *columns,
        mysql_charset="utf8mb4",
        mysql_engine="InnoDB",
        # Ids are never handed out twice: SQLite's plain rowid key would reuse the highest
        # id after its row is deleted (InnoDB's counter and PostgreSQL's sequences never go
        # back).
        sqlite_autoincrement=resource.auto_key,
    )
    for name in needs_index(resource):
        field_index(resource, table, name)
    for spec in resource.fields:
        if isinstance(spec, StringField) and spec.values is not None:
            allowed = [literal(value, literal_execute=True) for value in spec.values]
            table.append_constraint(
                CheckConstraint(
                    table.c[spec.name].in_(allowed), name=f"ck_{resource.table}_{spec.name}_values"
                )
            )
        low, high = spec.range()
        bounds = []
        if low is not None:
            bounds.append(table.c[spec.name] >= literal(low, literal_execute=True))
        if high is not None:
            bounds.append(table.c[spec.name] <= literal(high, literal_execute=True))
        if bounds:
            table.append_constraint(
                CheckConstraint(and_(*bounds), name=f"ck_{resource.table}_{spec.name}_range")
            )
    return table


def needs_index(resource: Resource) -> tuple[str, ...]:
    """The lookups and filters an index of their own serves: all but a composite key's
    first field, which the primary key's index leads with."""
    return tuple(name for name in resource.indexed if name != resource.key_fields[0])


def field_index(resource: Resource, table: Table, field: str) -> Index:
    """A lookup's or filter's index: on the field, then the key (a lookup's rows come in
    key order), ``ix_superheroes_xp_id`` like the seed table's own."""
    keys = [name for name in resource.key_fields if name != field]
    name = f"ix_{resource.table}_{field}_{'_'.join(keys)}"[:63]
    return Index(name, table.c[field], *(table.c[key] for key in keys))


def _column(spec: FieldSpec, *, key: bool = False, auto: bool = False) -> Column[object]:
    sql_type = spec.sql_type()
    if key and isinstance(spec, StringField):
        # Keys are compared byte for byte, as the API and the cache do: a case-insensitive
        # collation would take "abc" for a duplicate of "ABC".
        sql_type = String(spec.max_length).with_variant(
            mysql.VARCHAR(spec.max_length, collation="utf8mb4_bin"), "mysql", "mariadb"
        )
    if key:
        return Column(
            spec.name,
            sql_type,
            primary_key=True,
            autoincrement=auto and isinstance(spec, IntegerField),
        )
    return Column(spec.name, sql_type, nullable=spec.nullable)


# API keys live in their own metadata: dropping a resource's table (``load --replace``,
# tests) keeps them.
access_metadata = MetaData()

api_keys = Table(
    "twotier_api_keys",
    access_metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("role", String(8), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    mysql_charset="utf8mb4",
    mysql_engine="InnoDB",
)

#: twotier's own facts about the database (its identity), one row per name.
meta = Table(
    "twotier_meta",
    access_metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(200), nullable=False),
    mysql_charset="utf8mb4",
    mysql_engine="InnoDB",
)

#: The statements a process runs first, compiled ahead (``SQLStore.book``): one row per
#: resource (``_store`` for the store's own), each for the schema's digest it was compiled
#: against, so that a process that finds its digest there needs no SQLAlchemy to serve.
statements = Table(
    "twotier_statements",
    access_metadata,
    Column("name", String(64), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("book", Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), nullable=False),
    mysql_charset="utf8mb4",
    mysql_engine="InnoDB",
)


def fact_query() -> Select[Any]:
    """One of the meta table's facts, by its name bound as ``name``."""
    return select(meta.c.value).where(meta.c.name == bindparam("name"))


def book_query() -> Select[Any]:
    """The book's rows for the digest bound as ``digest``."""
    return select(statements.c.name, statements.c.book).where(
        statements.c.digest == bindparam("digest")
    )


#: One thing twotier made, as the ledger below records it: its kind, table and name.
Made = tuple[str, str, str]

#: What twotier made in the user's schema, one row each, so that ``db detach`` removes
#: exactly that: ``kind`` (table, column, index, trigger, function, identity, user), the
#: table it is on (or ""), its name, and for a table's replica identity the one it had
#: (``was``). An object made by a version of twotier older than this record is not in it.
made = Table(
    "twotier_made",
    access_metadata,
    Column("kind", String(16), primary_key=True),
    Column("tbl", String(128), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("was", String(200), nullable=False, server_default=""),
    mysql_charset="utf8mb4",
    mysql_engine="InnoDB",
)
