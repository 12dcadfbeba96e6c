"""The seed's ``superheroes`` table, and the API keys guarding it, for every SQL dialect
twotier speaks."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)
from sqlalchemy.dialects import mysql

from twotier.heroes import TEXT_MAX, UINT_MAX

TABLE_NAME = "superheroes"

# MySQL gets the seed's INT UNSIGNED; PostgreSQL has no unsigned ints, so a BIGINT with a
# range check; SQLite needs exactly INTEGER for an auto-increment rowid key.
_UNSIGNED = (
    BigInteger()
    .with_variant(mysql.INTEGER(unsigned=True), "mysql", "mariadb")
    .with_variant(Integer(), "sqlite")
)

metadata = MetaData()

superheroes = Table(
    TABLE_NAME,
    metadata,
    Column("id", _UNSIGNED, primary_key=True, autoincrement=True),
    Column("name", String(TEXT_MAX), nullable=False),
    Column("hero", String(TEXT_MAX), nullable=False),
    Column("power", String(TEXT_MAX), nullable=False),
    Column("xp", _UNSIGNED, nullable=False),
    Column("color", String(TEXT_MAX), nullable=False),
    # Grows with every write; the cache only ever replaces an entry by a newer version.
    Column("version", BigInteger(), nullable=False, server_default="1"),
    CheckConstraint(f"xp >= 0 AND xp <= {UINT_MAX}", name="ck_superheroes_xp_range"),
    # The seed reads by xp; (xp, id) answers "all rows with this xp, by id" from the index.
    Index("ix_superheroes_xp_id", "xp", "id"),
    mysql_charset="utf8mb4",
    mysql_engine="InnoDB",
    # Ids are never handed out twice: SQLite's plain rowid key would reuse the highest id
    # after its row is deleted (MySQL/MariaDB's InnoDB counter and PostgreSQL's sequence
    # never go back).
    sqlite_autoincrement=True,
)

#: The columns every read selects, in HeroRecord's field order.
RECORD_COLUMNS = (
    superheroes.c.id,
    superheroes.c.name,
    superheroes.c.hero,
    superheroes.c.power,
    superheroes.c.xp,
    superheroes.c.color,
    superheroes.c.version,
)

# Keys live in their own metadata: dropping the heroes (``load --replace``, tests) keeps them.
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
