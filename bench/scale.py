"""The data-scale benchmark (``python -m bench.scale``, part of ``make bench``): fills a database with
millions of delivery attempts, then times, through the product, what operators and scrapers ask for
and what the jobs query, with that much history present. Writes ``bench/SCALE.md``.

    python -m bench.scale [--attempts 5000000] [--database postgresql|sqlite] [--repeat 7] [--fresh]

The rows are written by the database itself (``generate_series``, a recursive CTE on SQLite): one
event and one delivery per two attempts, 100 subscriptions, 30 days of history, a failure in ten,
two dead letters in a hundred. On PostgreSQL the history is kept in a database of its own
(``fae_scale_<attempts>_<digest>``, 3.3 GB at 5 million) that the next run copies in seconds
instead of writing it again; drop it to get the space back. Each read is timed ``--repeat``
times after one warm-up (three times once it has taken 20 s); the table gives the median and the
slowest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from bench.common import (
    ROOT,
    copy_database,
    database_name,
    database_uri,
    drop_database,
    fresh_database,
    kept_database,
    start_redis,
)

if TYPE_CHECKING:
    from flask.testing import FlaskClient

RESULTS = ROOT / "bench" / "SCALE.md"
MIGRATIONS = ROOT / "flask_async_events" / "migrations" / "versions"
SUBSCRIPTIONS = 100
DAYS = 30
NOW = datetime(2026, 12, 1, tzinfo=UTC)
BUDGET = 20.0  # seconds one measure may take before it stops at three samples


# The history is written at this revision, so the migrations after it run on millions of rows, timed.
FILLED_AT = "0005"


def delivery_uuid(number: int) -> str:
    """The uuid the fill gives delivery ``number`` (the same expression as the SQL's)."""
    return str(uuid.UUID(hashlib.md5(f"{number}d".encode()).hexdigest()))


FILL_POSTGRESQL = [
    """INSERT INTO async_event (id, uuid, event_name, store_id, arguments, body, created_at, triggered_at)
       SELECT i, md5(i || 'e')::uuid::text, 'bench.created', 0, '{}',
              '{"data":{"id":' || i || ',"customer":{"email":"c' || (i % 1000) || '@example.com"},"total":'
              || (i % 500) || '}}',
              :start + (i::bigint * :span / :events) * interval '1 second',
              :start + (i::bigint * :span / :events) * interval '1 second'
       FROM generate_series(1, :events) AS i""",
    """INSERT INTO async_event_delivery (id, uuid, event_id, subscription_id, state, attempt_count,
              round_attempts, next_attempt_at, created_at, updated_at)
       SELECT i, md5(i || 'd')::uuid::text, i, i % :subscriptions + 1,
              CASE WHEN i % 50 = 0 THEN 'dead' ELSE 'delivered' END, 2, 2,
              e.created_at, e.created_at, e.created_at
       FROM generate_series(1, :events) AS i JOIN async_event e ON e.id = i""",
    """INSERT INTO async_event_subscriber_log (log_id, uuid, subscription_id, delivery_id, attempt, success,
              status_code, duration_ms, error_class, response_data, created, serialized_data)
       SELECT 2 * d.id - 2 + a, d.uuid, d.subscription_id, d.id, a,
              a = 2 AND d.state <> 'dead',
              CASE WHEN a = 2 AND d.state <> 'dead' THEN 200 WHEN d.id % 7 = 0 THEN NULL ELSE 500 END,
              20 + (d.id * 7 + a) % 300,
              CASE WHEN a = 2 AND d.state <> 'dead' THEN NULL WHEN d.id % 7 = 0 THEN 'Timeout' ELSE NULL END,
              CASE WHEN a = 2 AND d.state <> 'dead' THEN 'ok' ELSE 'upstream failed' END,
              d.created_at + a * interval '1 second', e.body
       FROM async_event_delivery d JOIN async_event e ON e.id = d.event_id CROSS JOIN generate_series(1, 2) AS a""",
]


def history_name(attempts: int) -> str:
    """The PostgreSQL database kept with the history at :data:`FILLED_AT`, so a next run copies it
    instead of writing it again; named after all that shapes it (the fill, its constants, the
    migrations up to that revision), so a change to any of them writes it afresh."""
    digest = hashlib.sha256("\n".join([*FILL_POSTGRESQL, str(SUBSCRIPTIONS), str(DAYS), NOW.isoformat()]).encode())
    for path in sorted(MIGRATIONS.glob("*.py")):
        if path.name[:4] <= FILLED_AT:
            digest.update(path.read_bytes())
    return f"fae_scale_{attempts}_{digest.hexdigest()[:12]}"


def sealed_secret() -> str:
    """The subscriptions' secret as the bench app stores it, encrypted with its key."""
    from bench.app import create_app
    from flask_async_events.state import get_state

    return get_state(create_app()).box.encrypt("scale-secret")


def history(args: argparse.Namespace, folder: Path) -> tuple[str, str]:
    """A database holding the history at :data:`FILLED_AT` (the bench app's from now on), and how
    it was made: written now, or copied from the one an earlier run kept (PostgreSQL; ``--fresh``
    writes it again)."""
    kept = history_name(args.attempts)
    written = kept_database(kept) if args.database == "postgresql" and not args.fresh else None
    if written is not None:
        began = time.perf_counter()
        uri = os.environ["BENCH_DATABASE_URI"] = copy_database(kept, f"fae_bench_{uuid.uuid4().hex[:8]}")
        return uri, (
            f"{written}; this run copied it in {time.perf_counter() - began:.0f} s from `{kept}`, the database"
            " an earlier run kept (`--fresh` writes it again)"
        )
    uri = os.environ["BENCH_DATABASE_URI"] = fresh_database(args.database, folder, 1)
    try:
        made = f"written in {fill(uri, args.attempts, sealed_secret()):.0f} s by the database itself"
        if args.database == "postgresql":
            drop_database(database_uri(kept))  # a --fresh run's, or one a stopped run left without its comment
            copy_database(database_name(uri), kept, comment=made)
    except BaseException:  # a half-written history is of no use: gigabytes to give back
        drop_database(uri)
        raise
    return uri, made


def _fill_sqlite(connection: sa.Connection, events: int, start: datetime, span: int) -> None:
    """SQLite has no generate_series by default: a recursive CTE does the same."""
    numbers = f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {events})"
    moment = f"datetime('{start:%Y-%m-%d %H:%M:%S}', '+' || (i * {span} / {events}) || ' seconds')"
    connection.execute(
        sa.text(
            f"""{numbers} INSERT INTO async_event (id, uuid, event_name, store_id, arguments, body, created_at,
                triggered_at)
            SELECT i, lower(hex(randomblob(16))), 'bench.created', 0, '{{}}',
                   '{{"data":{{"id":' || i || ',"customer":{{"email":"c' || (i % 1000) || '@example.com"}},"total":'
                   || (i % 500) || '}}}}', {moment}, {moment} FROM n"""
        )
    )
    connection.execute(
        sa.text(
            f"""{numbers} INSERT INTO async_event_delivery (id, uuid, event_id, subscription_id, state,
                attempt_count, round_attempts, next_attempt_at, created_at, updated_at)
            SELECT i, 'd-' || i, i, i % {SUBSCRIPTIONS} + 1,
                   CASE WHEN i % 50 = 0 THEN 'dead' ELSE 'delivered' END, 2, 2, {moment}, {moment}, {moment} FROM n"""
        )
    )
    connection.execute(
        sa.text(
            """INSERT INTO async_event_subscriber_log (log_id, uuid, subscription_id, delivery_id, attempt, success,
                status_code, duration_ms, error_class, response_data, created, serialized_data)
            SELECT 2 * d.id - 2 + a.a, d.uuid, d.subscription_id, d.id, a.a,
                   a.a = 2 AND d.state <> 'dead',
                   CASE WHEN a.a = 2 AND d.state <> 'dead' THEN 200 WHEN d.id % 7 = 0 THEN NULL ELSE 500 END,
                   20 + (d.id * 7 + a.a) % 300,
                   CASE WHEN a.a = 2 AND d.state <> 'dead' THEN NULL WHEN d.id % 7 = 0 THEN 'Timeout' END,
                   CASE WHEN a.a = 2 AND d.state <> 'dead' THEN 'ok' ELSE 'upstream failed' END,
                   datetime(d.created_at, '+' || a.a || ' seconds'), e.body
            FROM async_event_delivery d JOIN async_event e ON e.id = d.event_id
            CROSS JOIN (SELECT 1 AS a UNION ALL SELECT 2) AS a"""
        )
    )


def migrate_filled(uri: str) -> float:
    """Upgrade the filled database from :data:`FILLED_AT` to the head; return the seconds it took."""
    from flask_async_events.migrate import upgrade

    engine = sa.create_engine(uri)
    began = time.perf_counter()
    upgrade(engine)
    seconds = time.perf_counter() - began
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"))
    engine.dispose()
    return seconds


def fill(uri: str, attempts: int, token: str) -> float:
    """Write the history at revision :data:`FILLED_AT`; return the seconds it took."""
    from flask_async_events.migrate import downgrade

    events = attempts // 2
    start = NOW - timedelta(days=DAYS)
    span = DAYS * 86400
    began = time.perf_counter()
    engine = sa.create_engine(uri)
    downgrade(engine, FILLED_AT)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO async_event_subscriber (subscription_id, event_name, recipient_url, verification_token,"
                " status, subscribed_at, modified, metadata, store_id, consecutive_failures)"
                " VALUES (:id, 'bench.created', :url, :token, true, :now, :now, 'http', 0, 0)"
            ),
            [
                {"id": n, "url": f"http://127.0.0.1:9/hook/{n}", "token": token, "now": start}
                for n in range(1, SUBSCRIPTIONS + 1)
            ],
        )
        if engine.dialect.name == "sqlite":
            _fill_sqlite(connection, events, start, span)
        else:
            naive = start.replace(tzinfo=None)  # the columns hold naive UTC
            parameters = {"events": events, "start": naive, "span": span, "subscriptions": SUBSCRIPTIONS}
            for statement in FILL_POSTGRESQL:
                connection.execute(sa.text(statement), parameters)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"))
    engine.dispose()
    return time.perf_counter() - began


def timed(action: Callable[[], Any], repeat: int, budget: float = BUDGET) -> list[float]:
    """Milliseconds of each of ``repeat`` runs after one warm-up, fewer (three at least) once a
    measure has taken ``budget`` seconds: a read that takes seconds at this scale is slow enough
    to say so without timing it seven times."""
    began = time.perf_counter()
    action()
    samples: list[float] = []
    while len(samples) < repeat and (len(samples) < 3 or time.perf_counter() - began < budget):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def order_body(number: int, rng: random.Random) -> str:
    """A ~1 KB order, its text as varied as a real one's (names, SKUs, addresses, amounts)."""
    letters = "abcdefghijklmnopqrstuvwxyz"

    def word(size: int) -> str:
        return "".join(rng.choice(letters) for _ in range(size))

    items = [
        {
            "sku": word(3).upper() + str(rng.randrange(10**6)),
            "name": f"{word(7)} {word(5)}",
            "qty": rng.randint(1, 5),
            "price": round(rng.uniform(1, 300), 2),
        }
        for _ in range(8)
    ]
    customer = {"email": f"{word(6)}.{word(8)}@{word(7)}.com", "name": f"{word(6).title()} {word(9).title()}"}
    address = {"street": f"{rng.randrange(1, 999)} {word(10).title()} Street", "city": word(8).title(), "zip": word(5)}
    body = {"data": {"id": number, "customer": customer, "shipping": address, "items": items}}
    return json.dumps(body, separators=(",", ":"))


def logging_cost(uri: str, rows: int = 5000, per_statement: int = 500) -> float:
    """Microseconds to log an attempt of a ~1 KB order (in statements of ``per_statement`` rows,
    each its own transaction, as the workers log), into the filled log; the rows go again after."""
    rng = random.Random(1)
    engine = sa.create_engine(uri)
    with engine.begin() as connection:
        first = int(connection.scalar(sa.text("SELECT max(log_id) FROM async_event_subscriber_log")) or 0) + 1
    batch = [{"id": first + n, "body": order_body(n, rng), "now": NOW.replace(tzinfo=None)} for n in range(rows)]
    insert = sa.text(
        "INSERT INTO async_event_subscriber_log (log_id, uuid, subscription_id, attempt, success, status_code,"
        " duration_ms, response_data, created, serialized_data)"
        " VALUES (:id, 'cost', 1, 1, true, 200, 20, 'ok', :now, :body)"
    )
    began = time.perf_counter()
    for start in range(0, rows, per_statement):
        with engine.begin() as connection:
            connection.execute(insert, batch[start : start + per_statement])
    seconds = time.perf_counter() - began
    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM async_event_subscriber_log WHERE log_id >= :first"), {"first": first})
    engine.dispose()
    return seconds / rows * 1e6


Row = tuple[str, list[float], str]


def measure(uri: str, attempts: int, repeat: int) -> list[Row]:
    """Every timed read, through the app's REST API, metrics and admin pages, and the jobs' queries."""
    from bench.app import create_app, db
    from flask_async_events.auth import create_token

    app = create_app()
    with app.app_context():
        admin = create_token(db.session, "scale", admin=True)
        db.session.commit()
    reader = _Reader(app.test_client(), {"Authorization": f"Bearer {admin}"})
    rows = _api_reads(reader, uri, attempts, repeat)
    reader.log_in(admin)
    rows.append(("the dead-letter page", timed(reader.get("/async-events/admin/dead-letters"), repeat), ""))
    with app.app_context():
        rows += _job_and_chart_reads(reader, repeat)
    return rows


@dataclass
class _Reader:
    """GETs through the app's test client, as an admin: each answer must be a 200."""

    client: FlaskClient
    auth: dict[str, str]

    def get(self, path: str, **query: str) -> Callable[[], None]:
        def run() -> None:
            answer = self.client.get(path, query_string=query, headers=self.auth)
            if answer.status_code != 200:
                raise RuntimeError(f"{path} {query}: {answer.status_code} {answer.get_data(True)[:300]}")

        return run

    def log_in(self, admin: str) -> None:
        """Log in to the admin pages (their session cookie stays on the client)."""
        login = self.client.get("/async-events/admin/login").get_data()
        csrf = re.search(rb'name="csrf_token" value="([^"]+)"', login)
        answer = self.client.post(
            "/async-events/admin/login", data={"token": admin, "csrf_token": csrf and csrf.group(1)}
        )
        if answer.status_code != 302:
            raise RuntimeError(f"could not log in to the admin pages: {answer.status_code}")


def _api_reads(reader: _Reader, uri: str, attempts: int, repeat: int) -> list[Row]:
    """The metrics scrape, the log's first page, its searches and a trace."""
    logs = "/rest/V1/async_event_logs"
    middle = attempts // 4
    recent = (NOW - timedelta(days=1)).strftime("%Y-%m-%d")
    rows: list[Row] = [
        ("metrics scrape", timed(reader.get("/async-events/metrics"), repeat), "< 200 ms"),
        ("the log's first page", timed(reader.get(logs), repeat), "< 300 ms"),
    ]
    patterns = ("data.customer.email:c7@*", "data.customer.email:*7@example.c*")
    for search in (
        f"data.id:{middle}",
        "data.customer.email:C7@Example.com",
        *patterns,
        "status:500",
        "subscription:7",
        "event:bench.created AND success:false",
        f"created:[{recent} TO *]",
        "error:Timeout",
    ):
        rows.append((f"search `{search}`", timed(reader.get(logs, q=search), repeat), "< 300 ms"))
    if uri.startswith("postgresql"):
        rows.extend(with_pattern_index(uri, [(search, reader.get(logs, q=search)) for search in patterns], repeat))
    trace_uuid = delivery_uuid(middle) if uri.startswith("postgresql") else f"d-{middle}"
    rows.append(("a trace", timed(reader.get(f"{logs}/{trace_uuid}"), repeat), "< 50 ms"))
    return rows


def _job_and_chart_reads(reader: _Reader, repeat: int) -> list[Row]:
    """A deliver job's claim of a batch, the charts' data and the queue-health page (in an app context)."""
    from bench.app import db
    from flask_async_events.delivery.claims import claim
    from flask_async_events.operations.charts import WINDOWS, attempt_series
    from flask_async_events.state import get_state

    state = get_state()
    session = db.session

    def claim_batch() -> None:
        session.execute(
            sa.text("UPDATE async_event_delivery SET state = 'pending', claim_token = NULL WHERE id <= 100")
        )
        session.commit()
        claimed = claim(state, list(range(1, 101)), "scale.claim", skip=set())
        if len(claimed) != 100:
            raise RuntimeError(f"claimed {len(claimed)} of 100")
        session.execute(sa.text("UPDATE async_event_delivery SET state = 'delivered' WHERE id <= 100"))
        session.commit()

    rows: list[Row] = [("deliver job: claim a batch of 100 (with its reset)", timed(claim_batch, repeat), "")]
    for window in WINDOWS:
        chart = partial(attempt_series, state, window)
        rows.append((f"the charts' data, {window}, all subscriptions", timed(chart, repeat), "< 100 ms"))
    one = partial(attempt_series, state, "7d", [7])
    rows.append(("the charts' data, 7d, one subscription", timed(one, repeat), "< 100 ms"))
    rows.append(
        ("the queue-health page (charts and status)", timed(reader.get("/async-events/admin/health"), repeat), "")
    )
    return rows


def with_pattern_index(
    uri: str, searches: list[tuple[str, Callable[[], None]]], repeat: int
) -> list[tuple[str, list[float], str]]:
    """PostgreSQL: logging an attempt without and with the pattern index, the index's build, and
    the pattern searches with it; the index is dropped again after."""
    from flask_async_events.operations.pattern_index import create_pattern_index, drop_pattern_index

    engine = sa.create_engine(uri)
    rows = [("logging an attempt of a 1 KB order, 500 a statement", [logging_cost(uri) / 1000], "")]
    built = create_pattern_index(engine)
    print(f"  the pattern index built in {built:.0f} s", flush=True)
    rows.append(("`db pattern-index`: building it (delivery going on)", [built * 1000], ""))
    rows.append(("... then logging an attempt of a 1 KB order", [logging_cost(uri) / 1000], ""))
    for search, run in searches:
        rows.append((f"search `{search}` with the pattern index", timed(run, repeat), "< 300 ms"))
    drop_pattern_index(engine)
    engine.dispose()
    return rows


def prune_rate() -> tuple[int, float]:
    """Prune what is older than 24 days (a fifth of the history): rows deleted and rows per second."""
    from bench.app import create_app
    from flask_async_events.operations.retention import prune
    from flask_async_events.state import get_state

    app = create_app()
    with app.app_context():
        began = time.perf_counter()
        report = prune(get_state(), timedelta(days=24) + (datetime.now(UTC) - NOW))
        seconds = time.perf_counter() - began
    return report.total, report.total / seconds


def duration(milliseconds: float) -> str:
    """``115 µs``, ``25 ms`` or ``12.3 s``."""
    if milliseconds < 1:
        return f"{milliseconds * 1000:.0f} µs"
    return f"{milliseconds:.0f} ms" if milliseconds < 10_000 else f"{milliseconds / 1000:.1f} s"


def render(
    args: argparse.Namespace,
    made: str,
    migrate_seconds: float,
    rows: list[tuple[str, list[float], str]],
    pruned: tuple[int, float],
) -> str:
    lines = [
        "# Data-scale results",
        "",
        f"Written by `python -m bench.scale --attempts {args.attempts} --database {args.database}"
        f" --repeat {args.repeat}` (part of `make bench`).",
        "",
        f"{args.attempts:,} attempts, {args.attempts // 2:,} events and deliveries, {SUBSCRIPTIONS} subscriptions,"
        f" {DAYS} days of history, {made}. Each read timed"
        f" {args.repeat} times after a warm-up (three once it has taken {BUDGET:.0f} s). The history is"
        f" written at revision {FILLED_AT}; the migrations after it then ran on it in {migrate_seconds:.1f} s"
        " (0006 counts the attempt statistics from the log; 0007 indexes the bodies, 0008 the dead letters, on"
        " PostgreSQL).",
        "",
        "| through the product | median | slowest | target |",
        "|---|---|---|---|",
    ]
    for name, samples, target in rows:
        slowest = f"{duration(max(samples))}" if len(samples) > 1 else ""
        lines.append(f"| {name} | {duration(statistics.median(samples))} | {slowest} | {target} |")
    count, rate = pruned
    lines.append(f"| `prune --older-than 24d`: {count:,} rows | {rate:,.0f} rows/s | | >= 50,000 rows/s |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attempts", type=int, default=5_000_000)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--fresh", action="store_true", help="write the history even if a kept copy exists")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="fae-scale-"))
    redis_process, redis_url = start_redis(folder)
    uri = ""
    try:
        os.environ.update(BENCH_REDIS_URL=redis_url)
        print(f"the history: {args.attempts:,} attempts in {args.database}", flush=True)
        uri, made = history(args, folder)
        print(f"  {made}; the migrations after {FILLED_AT} on it:", flush=True)
        migrate_seconds = migrate_filled(uri)
        print(f"  {migrate_seconds:.0f} s", flush=True)
        rows = measure(uri, args.attempts, args.repeat)
        for name, samples, _ in rows:
            print(
                f"  {name}: median {duration(statistics.median(samples))}, slowest {duration(max(samples))}", flush=True
            )
        pruned = prune_rate()
        print(f"  prune: {pruned[0]:,} rows at {pruned[1]:,.0f} rows/s", flush=True)
    finally:
        if uri:
            drop_database(uri)
        redis_process.terminate()
        redis_process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
    report = render(args, made, migrate_seconds, rows, pruned)
    RESULTS.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
