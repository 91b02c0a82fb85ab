"""CSV exports of the admin pages: what the search finds, all of it, streamed, and cells a
spreadsheet would run as formulas (a receiver's answer is the receiver's to choose) made inert."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from flask_async_events.pages.csv_export import ROWS_PER_CHUNK, cell, csv_chunks
from tests.conftest import AppEnv, Receiver, run_burst
from tests.helpers import attempts, place_order, subscribe
from tests.operations.test_charts import login_client


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("ok", "ok"),
        (500, 500),
        (None, None),
        (datetime(2026, 12, 1, 8, 0, tzinfo=UTC), "2026-12-01T08:00:00+00:00"),
    ],
)
def test_a_cell_is_inert_in_a_spreadsheet(value: object, shown: object) -> None:
    assert cell(value) == shown


def test_the_text_comes_in_chunks_and_parses_back() -> None:
    rows = [[index, f"row {index}"] for index in range(ROWS_PER_CHUNK * 2 + 7)]
    chunks = list(csv_chunks(["n", "text"], rows))
    assert len(chunks) == 3
    parsed = list(csv.reader(io.StringIO("".join(chunks))))
    assert (
        parsed[0] == ["n", "text"]
        and len(parsed) == len(rows) + 1
        and parsed[-1] == [str(len(rows) - 1), f"row {len(rows) - 1}"]
    )


def test_the_log_export_holds_every_match_and_defuses_a_receivers_formula(env: AppEnv, receiver: Receiver) -> None:
    app = env.app(ASYNC_EVENTS_RETRY_SCHEDULE=[])
    subscribe(app, receiver.respond("/evil", [500], body='=HYPERLINK("http://evil.example","click")'))
    subscribe(app, receiver.respond("/ok"))
    for _ in range(60):  # more than a page of the log
        place_order(app)
    run_burst(app)
    client = login_client(app)
    answer = client.get("/async-events/admin/logs.csv", query_string={"q": "status:500"})
    assert answer.is_streamed and answer.mimetype == "text/csv"
    assert answer.headers["Content-Disposition"].startswith('attachment; filename="attempts-')
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert len(rows) == 60 == sum(attempt.status_code == 500 for attempt in attempts(app))
    assert {row["response_data"] for row in rows} == {'\'=HYPERLINK("http://evil.example","click")'}
    everything = list(csv.DictReader(io.StringIO(client.get("/async-events/admin/logs.csv").get_data(as_text=True))))
    assert len(everything) == 120


def test_exports_need_a_login(env: AppEnv) -> None:
    client = env.app().test_client()
    for url in ("/async-events/admin/logs.csv", "/async-events/admin/subscriptions.csv"):
        assert client.get(url).status_code == 302
