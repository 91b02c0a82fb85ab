"""A time limit on the statements of a search (``ASYNC_EVENTS_SEARCH_TIMEOUT``), set the way each
database can end a statement from the inside: PostgreSQL's ``statement_timeout`` for this
transaction only, MariaDB's ``max_statement_time`` (MySQL's ``max_execution_time``) for this
connection until the block ends, and SQLite's progress handler, which the engine calls every few
thousand steps of its virtual machine and which ends the statement once the time is up.

A statement ended this way raises :class:`~flask_async_events.errors.SearchTimeout` (a
:class:`~flask_async_events.errors.QueryError`, so every surface answers it as a bad query), and
the transaction is rolled back: the database has already let go of what it was doing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, OperationalError

from flask_async_events.errors import SearchTimeout
from flask_async_events.models import DbSession

POSTGRESQL_CANCELED = "57014"  # query_canceled: statement_timeout
MYSQL_TIMEOUTS = (1969, 3024)  # MariaDB's max_statement_time, MySQL's max_execution_time
SQLITE_STEPS = 10_000  # virtual machine steps between two looks at the clock (well under a millisecond)


Undo = Callable[[bool], None]  # sets the limit back; True: after a statement failed


@contextmanager
def time_limited(session: DbSession, seconds: float) -> Iterator[None]:
    """Run the block's statements under a limit of ``seconds`` each (in SQLite: all of them
    together); :class:`SearchTimeout` if one runs longer."""
    setters = {"postgresql": _postgresql, "sqlite": _sqlite}
    undo = setters.get(session.get_bind().dialect.name, _mysql)(session, seconds)
    try:
        yield
    except OperationalError as exc:
        undo(True)
        if not _ended_by_limit(exc):
            raise
        session.rollback()
        raise SearchTimeout(
            f"the search took longer than {seconds:g} s (ASYNC_EVENTS_SEARCH_TIMEOUT): narrow it,"
            " with a time range (created:[2026-01-01 TO *]), a subscription or an exact value"
        ) from None
    except BaseException:
        undo(True)
        raise
    undo(False)


def _postgresql(session: DbSession, seconds: float) -> Undo:
    """``SET LOCAL statement_timeout``, and the old value back after; a failed statement aborted
    the transaction, whose rollback ends the setting with it."""
    before = session.scalar(
        sa.text("SELECT current_setting('statement_timeout'), set_config('statement_timeout', :limit, true)"),
        {"limit": f"{max(1, round(seconds * 1000))}ms"},
    )

    def undo(failed: bool) -> None:
        if not failed:
            session.execute(sa.text("SELECT set_config('statement_timeout', :old, true)"), {"old": before})

    return undo


def _mysql(session: DbSession, seconds: float) -> Undo:
    """MariaDB's ``max_statement_time`` (seconds) or MySQL's ``max_execution_time`` (milliseconds,
    SELECTs only) for this connection, set back to the session's value after the block: the
    connection goes back to the pool, and the next user must not inherit the limit."""
    is_mariadb = bool(getattr(session.connection().dialect, "is_mariadb", False))  # known once connected
    variable, value = ("max_statement_time", seconds) if is_mariadb else ("max_execution_time", round(seconds * 1000))
    before = session.scalar(sa.text(f"SELECT @@SESSION.{variable}"))
    session.execute(sa.text(f"SET SESSION {variable} = :limit"), {"limit": value})

    def undo(failed: bool) -> None:
        # After a failed statement the connection is still usable, unless it was lost (then the
        # pool drops it, and its setting with it).
        with contextlib.suppress(DBAPIError) if failed else contextlib.nullcontext():
            session.execute(sa.text(f"SET SESSION {variable} = :old"), {"old": before})

    return undo


def _sqlite(session: DbSession, seconds: float) -> Undo:
    """A progress handler that ends the running statement once the time is up."""
    connection: Any = session.connection().connection.dbapi_connection
    deadline = time.monotonic() + seconds
    connection.set_progress_handler(lambda: time.monotonic() > deadline, SQLITE_STEPS)
    return lambda failed: connection.set_progress_handler(None, 0)


def _ended_by_limit(exc: OperationalError) -> bool:
    """Whether the database ended the statement for running past its limit."""
    original = exc.orig
    if getattr(original, "sqlstate", None) == POSTGRESQL_CANCELED:
        return True
    code = original.args[0] if original is not None and original.args else None
    return code in MYSQL_TIMEOUTS or str(original) == "interrupted"
