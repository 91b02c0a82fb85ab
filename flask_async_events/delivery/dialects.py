"""The few statements that differ between PostgreSQL, MySQL/MariaDB and SQLite."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Insert, Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, scoped_session


def insert_ignoring_duplicates(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows, skipping any that would break a unique constraint (idempotent fan-out)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    statement: Insert
    if dialect == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing()
    elif dialect in ("mysql", "mariadb"):
        statement = insert(table).prefix_with("IGNORE")
    else:
        raise NotImplementedError(f"flask-async-events does not support the {dialect} database")
    session.execute(statement, list(rows))


def has_row_locks(session: Session | scoped_session[Any]) -> bool:
    """Whether ``FOR UPDATE SKIP LOCKED`` lets workers take disjoint rows (not so in SQLite, which
    locks the whole database: there each job touches only the rows it was given)."""
    return session.get_bind().dialect.name != "sqlite"
