"""CSV downloads, streamed: a row is written as the database cursor yields it, so an export of
millions of attempts holds one batch in memory, not the whole log.

Cells a spreadsheet would run as a formula (a receiver's response can start with ``=``) are
prefixed with ``'``, as OWASP advises against CSV injection.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from flask import Response, stream_with_context

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ROWS_PER_CHUNK = 500


def cell(value: object) -> object:
    """A value as a CSV cell: times in ISO 8601 UTC, text that a spreadsheet would evaluate quoted."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_chunks(header: Sequence[str], rows: Iterable[Sequence[object]]) -> Iterator[str]:
    """The CSV text of ``header`` and ``rows``, a few hundred rows at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for count, row in enumerate(rows, start=1):
        writer.writerow([cell(value) for value in row])
        if count % ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def csv_response(filename: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Response:
    """A download of ``rows``, streamed inside the request's context (the session stays usable)."""
    response = Response(stream_with_context(csv_chunks(header, rows)), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response
