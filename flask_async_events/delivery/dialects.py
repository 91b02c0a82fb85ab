"""The few statements that differ between PostgreSQL, MySQL/MariaDB and SQLite."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    CursorResult,
    Insert,
    Table,
    TextClause,
    Update,
    any_,
    bindparam,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, scoped_session

from flask_async_events.errors import ConfigError
from flask_async_events.models import naive_utc


def insert_ignoring_duplicates(
    session: Session | scoped_session[Any], table: Table, rows: Sequence[dict[str, Any]]
) -> None:
    """Insert rows, skipping any that would break a unique constraint (idempotent fan-out)."""
    if rows:
        session.execute(_ignoring(session.get_bind().dialect.name, table), list(rows))


def inserted_rows(
    session: Session | scoped_session[Any],
    table: Table,
    rows: Sequence[dict[str, Any]],
    returning: Sequence[str],
    *,
    key: str,
    among: ColumnElement[bool],
) -> list[Any]:
    """Insert rows as :func:`insert_ignoring_duplicates` does, and return the ``returning`` columns
    of those this call inserted, not of those skipped. On PostgreSQL one statement does both, each
    column an array of the rows' values; elsewhere the rows are read back in the same transaction,
    among the rows ``among`` selects, by their ``key`` column (unique per row, and in ``returning``)."""
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return list(_run_arrays(session, _inserting_arrays(table, tuple(rows[0]), tuple(returning)), rows))
    insert_ignoring_duplicates(session, table, rows)
    ours = {row[key] for row in rows}
    found = session.execute(select(*(table.c[name] for name in returning)).where(among))
    return [row for row in found if row._mapping[key] in ours]


def insert_rows(session: Session | scoped_session[Any], table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows (all with the same columns): on PostgreSQL in one statement, each column an
    array of the rows' values; elsewhere an ``executemany``."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        _run_arrays(session, _inserting_arrays(table, tuple(rows[0])), rows)
    else:
        session.execute(_inserting(table), list(rows))


@lru_cache(maxsize=32)
def _inserting(table: Table) -> Insert:
    """The insert of :func:`insert_rows` elsewhere than on PostgreSQL, made once."""
    return insert(table)


def _run_arrays(
    session: Session | scoped_session[Any], statement: TextClause, rows: Sequence[dict[str, Any]]
) -> CursorResult[Any]:
    """Run a PostgreSQL statement whose parameters are the columns of ``rows``, each an array of
    the rows' values (times as their columns store them, which a text statement does not know).
    Through psycopg the arrays go in binary: as text, each of them would be quoted and escaped in
    Python (docs/performance.md has the cost)."""
    connection = session.connection()
    arrays = {name: _stored([row[name] for row in rows]) for name in rows[0]}
    if connection.dialect.driver == "psycopg":
        return connection.exec_driver_sql(_in_binary(statement, connection.dialect), arrays)
    return connection.execute(statement, arrays)


def _stored(column: list[Any]) -> list[Any]:
    """A column's values as stored: times in naive UTC, each distinct time converted once (a
    batch's rows share a few)."""
    if not isinstance(next((value for value in column if value is not None), None), datetime):
        return column  # a column holds one type
    converted: dict[datetime, datetime] = {}
    for index, value in enumerate(column):
        if isinstance(value, datetime):
            stored = converted.get(value)
            if stored is None:
                stored = converted[value] = naive_utc(value)
            column[index] = stored
    return column


@lru_cache(maxsize=32)
def _in_binary(statement: TextClause, dialect: Dialect) -> str:
    """``statement`` as psycopg's own SQL, every parameter passed in binary (``%(name)b``)."""
    return _PYFORMAT.sub(r"%(\1)b", str(statement.compile(dialect=dialect)))


_PYFORMAT = re.compile(r"%\((\w+)\)s")


@lru_cache(maxsize=32)
def _ignoring(dialect: str, table: Table) -> Insert:
    """The insert of :func:`insert_ignoring_duplicates`, made once (as :func:`_adding`)."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    if dialect in ("mysql", "mariadb"):
        return insert(table).prefix_with("IGNORE")
    raise unsupported(dialect)


@lru_cache(maxsize=32)
def _inserting_arrays(table: Table, columns: tuple[str, ...], returning: tuple[str, ...] = ()) -> TextClause:
    """PostgreSQL's insert of a batch from one array per column (a statement of constant size,
    prepared once: the same rows as a multi-row VALUES made the driver parse thousands of
    placeholders per batch, slower than the rows themselves). With ``returning``, it skips rows
    that would break a unique constraint and names those it inserted."""
    dialect = postgresql.dialect()
    arrays = ", ".join(f"CAST(:{name} AS {table.c[name].type.compile(dialect=dialect)}[])" for name in columns)
    ignoring = f" ON CONFLICT DO NOTHING RETURNING {', '.join(returning)}" if returning else ""
    return text(f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays}){ignoring}")


def add_counts(
    session: Session, table: Table, keys: Sequence[str], counters: Sequence[str], rows: Sequence[dict[str, Any]]
) -> None:
    """Insert rows of counters, or add them to the row already there with the same ``keys``, in one
    statement each, atomically: several workers may count into the same row at once. Rows go in
    key order, so two transactions lock shared rows in the same order and never deadlock."""
    if not rows:
        return
    ordered = sorted(rows, key=lambda row: tuple(row[key] for key in keys))
    statement = _adding(session.get_bind().dialect.name, table, tuple(keys), tuple(counters))
    session.execute(statement, ordered)


@lru_cache(maxsize=32)
def _adding(dialect: str, table: Table, keys: tuple[str, ...], counters: tuple[str, ...]) -> Insert:
    """The upsert of :func:`add_counts`, made once: building it, and the cache key SQLAlchemy
    derives from a new statement, cost a fifth of a worker's CPU at 200 events a second."""
    if dialect in ("postgresql", "sqlite"):
        upsert = (postgresql if dialect == "postgresql" else sqlite).insert(table)
        return upsert.on_conflict_do_update(
            index_elements=list(keys), set_={name: table.c[name] + upsert.excluded[name] for name in counters}
        )
    if dialect in ("mysql", "mariadb"):
        insert_row = mysql.insert(table)
        added = {name: table.c[name] + insert_row.inserted[name] for name in counters}
        return insert_row.on_duplicate_key_update(added)
    raise unsupported(dialect)


def has_row_locks(session: Session | scoped_session[Any]) -> bool:
    """Whether ``FOR UPDATE SKIP LOCKED`` lets workers take disjoint rows (not so in SQLite, which
    locks the whole database: there each job touches only the rows it was given)."""
    return session.get_bind().dialect.name != "sqlite"


def update_rows(
    session: Session | scoped_session[Any],
    statement: Update,
    from_arrays: TextClause,
    rows: Sequence[dict[str, Any]],
) -> None:
    """Run ``statement`` for each of ``rows``; on PostgreSQL, ``from_arrays`` once instead, each
    parameter an array of the rows' values (one statement for the batch, not one per row)."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        _run_arrays(session, from_arrays, rows)
    else:
        session.execute(statement, list(rows))


def id_in(session: Session | scoped_session[Any], column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
    """``column IN ids``; on PostgreSQL ``column = ANY(array)``, one parameter instead of one per
    id (a batch of 10,000 ids is otherwise 10,000 parameters to send and parse)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam("ids", list(ids), type_=postgresql.ARRAY(BigInteger())))
    return column.in_(list(ids))


def unsupported(dialect: str) -> ConfigError:
    """The error for a database this package does not run on."""
    return ConfigError(
        f"flask-async-events does not support the {dialect} database (PostgreSQL, MySQL, MariaDB, SQLite)"
    )
