"""The pattern index (PostgreSQL, opt in): the trigrams of the delivered bodies' lower-cased text,
so a payload pattern (``data.customer.email:c7@*``) is looked up instead of read from every body.

Opt in because of what it costs: PostgreSQL keeps up to a trigram per character of each body, so
logging an attempt costs several times what the log's other indexes cost together (measured in
``bench/SCALE.md``). Searches use it whenever it is there (:func:`~flask_async_events.operations.
payload_sql.pattern_candidates`); without it they read the bodies. Built and dropped
``CONCURRENTLY``: delivery goes on meanwhile; a build that was interrupted leaves an invalid index,
which the next build replaces. The table is analyzed after a build, so the planner can tell a
pattern most bodies hold (read in order, stopping at a page) from a rare one (looked up).
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from flask_async_events.errors import IndexUnavailable
from flask_async_events.models import DeliveryAttempt

PATTERN_INDEX = "ix_async_event_subscriber_log_text"


def _check_postgresql(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        raise IndexUnavailable(
            f"the pattern index is PostgreSQL's (pg_trgm); on {engine.dialect.name} payload patterns read the bodies"
        )


def pattern_index_state(engine: Engine) -> str:
    """``valid``, ``invalid`` (an interrupted build) or ``absent``."""
    if engine.dialect.name != "postgresql":
        return "absent"
    with engine.connect() as connection:
        return _state(connection)


def _state(connection: Connection) -> str:
    valid = connection.scalar(
        sa.text("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = :n"),
        {"n": PATTERN_INDEX},
    )
    return "absent" if valid is None else "valid" if valid else "invalid"


def _reason(exc: sa.exc.DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0]


def create_pattern_index(engine: Engine) -> float:
    """Make ``pg_trgm`` if needed, then build the index without blocking writes; the seconds it
    took. Raises :class:`IndexUnavailable` when the extension cannot be made, or the build stops."""
    _check_postgresql(engine)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        try:
            connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        except sa.exc.DBAPIError as exc:
            raise IndexUnavailable(
                f"the pattern index needs PostgreSQL's pg_trgm extension, which could not be made ({_reason(exc)}):"
                " a superuser can run CREATE EXTENSION pg_trgm in this database, then run this again"
            ) from None
        began = time.perf_counter()
        try:
            if _state(connection) == "invalid":
                connection.execute(sa.text(f"DROP INDEX CONCURRENTLY IF EXISTS {PATTERN_INDEX}"))
            connection.execute(
                sa.text(
                    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {PATTERN_INDEX} ON {DeliveryAttempt.__tablename__}"
                    " USING gin (lower(serialized_data) gin_trgm_ops)"
                )
            )
        except sa.exc.DBAPIError as exc:
            raise IndexUnavailable(
                f"the pattern index was not built ({_reason(exc)}): run this again (it replaces what the"
                " stopped build left), or with --drop to remove it"
            ) from None
        # Statistics of the indexed text, so the planner knows a common pattern from a rare one
        # (without them it took the index for both: 5 s against 0.2 s for a pattern in a tenth of
        # 2 million bodies).
        connection.execute(sa.text(f"ANALYZE {DeliveryAttempt.__tablename__}"))
        return time.perf_counter() - began


def drop_pattern_index(engine: Engine) -> bool:
    """Drop the index without blocking writes; False if there was none."""
    _check_postgresql(engine)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if _state(connection) == "absent":
            return False
        connection.execute(sa.text(f"DROP INDEX CONCURRENTLY IF EXISTS {PATTERN_INDEX}"))
    return True
