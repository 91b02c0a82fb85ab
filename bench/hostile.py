"""The hostile-endpoints benchmark: a healthy subscriber's publish-to-arrival latency at a steady
rate while five endpoints hang or drip with a backlog of deliveries each, against the same run
without them; and the database queries per second that backlog costs.

    python -m bench.hostile [--backlog 10000] [--rate 200] [--seconds 30] [--settle 20] [--quiet 30]

Two workers, default settings (15 s timeout, circuits after 10 failures). Three hostile endpoints
accept and never answer, two send their headers a byte a second; each on its own loopback address.
Writes its table into ``bench/RESULTS.md`` (between its markers).
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
import sqlalchemy as sa
from flask import Flask

from bench import ours
from bench.__main__ import RESULTS, Services, percentile
from tests.notifiers.hostile import HostileServer, drip_headers, hostile, never_answer

HOSTS = [f"127.0.0.{n}" for n in range(2, 7)]
BEHAVIOURS = [never_answer, never_answer, never_answer, drip_headers, drip_headers]
BEGIN, END = "<!-- hostile:begin -->", "<!-- hostile:end -->"


@dataclass
class Window:
    """One measurement window: the healthy latencies (ms) and the workers' queries per second."""

    latencies: list[float]
    queries: float


@dataclass
class Run:
    """One run: two windows back to back (the first starting ``settle`` seconds after the
    backlog was made), the queries per second while only the backlog was left, what stayed open."""

    windows: list[Window]
    quiet_queries: float
    backlog: int


@contextmanager
def hostile_endpoints(count: int) -> Iterator[list[HostileServer]]:
    with ExitStack() as stack:
        yield [stack.enter_context(hostile(BEHAVIOURS[i], host=HOSTS[i]))[0] for i in range(count)]


def queries(redis_url: str) -> int:
    return int(redis.Redis.from_url(redis_url).get("bench:queries") or 0)


def waiting(app: Flask) -> int:
    """Deliveries not yet finished: the backlog."""
    from bench.app import db
    from flask_async_events.models import Delivery, DeliveryState

    with app.app_context():
        count = db.session.scalar(sa.select(sa.func.count()).where(Delivery.state.in_(DeliveryState.OPEN)))
        db.session.remove()
    return int(count or 0)


def one_run(env: dict[str, str], receiver: str, endpoints: int, args: argparse.Namespace) -> Run:
    env = {**env, "BENCH_COUNT_QUERIES": "1"}
    app = ours.bench_app(env)
    ours.subscribe(app, [f"{receiver}/timed"])
    with hostile_endpoints(endpoints) as servers:
        ours.subscribe(app, [server.url for server in servers], event="bench.backlog")
        with ours.running_workers(env, 2):
            ours.warm_up(app)
            if endpoints:
                ours.publish(app, args.backlog, event="bench.backlog")
                expected = args.backlog * endpoints
                ours.wait_for(lambda: waiting(app) >= expected, 300, "the backlog's fan-out", every=0.5)
                time.sleep(args.settle)  # the first attempts time out and the circuits open
            redis_url = env["BENCH_REDIS_URL"]
            windows = []
            for _ in range(2):
                before, started = queries(redis_url), time.monotonic()
                latencies = ours.steady_latencies(app, receiver, rate=args.rate, seconds=args.seconds)
                windows.append(Window(latencies, (queries(redis_url) - before) / (time.monotonic() - started)))
            before, started = queries(redis_url), time.monotonic()
            time.sleep(args.quiet)
            quiet = (queries(redis_url) - before) / (time.monotonic() - started)
            backlog = waiting(app)
    return Run(windows, quiet, backlog)


def table(calm: Run, rough: Run, args: argparse.Namespace) -> str:
    def row(name: str, window: Window, run: Run) -> str:
        p50, p99 = percentile(window.latencies, 0.5), percentile(window.latencies, 0.99)
        return (
            f"| {name} | {p50:.1f} | {p99:.1f} | {window.queries:,.0f} | {run.quiet_queries:,.1f} | {run.backlog:,} |"
        )

    later = args.settle + args.seconds
    rows = []
    for index, name in enumerate((f"{args.settle:.0f} s", f"{later:.0f} s")):
        rows.append(row(f"no hostile endpoints, window {index + 1}", calm.windows[index], calm))
        rows.append(row(f"5 hostile x {args.backlog:,}, from {name} after the backlog", rough.windows[index], rough))
    ratios = [
        percentile(rough.windows[i].latencies, 0.99) / percentile(calm.windows[i].latencies, 0.99) for i in (0, 1)
    ]
    return "\n".join(
        [
            BEGIN,
            f"Healthy subscriber at {args.rate:.0f} events/s, two windows of {args.seconds:.0f} s back to back,"
            f" two workers, PostgreSQL; hostile: 3 endpoints that never answer and 2 that drip their headers,"
            f" {args.backlog:,} deliveries each, the first window starting {args.settle:.0f} s after they were all"
            " made (`python -m bench.hostile`). Queries: every SQL statement the workers sent, per second, in"
            f" the window, and over {args.quiet:.0f} s after both (no healthy traffic: only the backlog).",
            "",
            "| run | p50 ms | p99 ms | queries/s, healthy traffic | queries/s, backlog only | deliveries open |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            f"p99 with the hostile endpoints: {ratios[0]:.2f}x (first window) and {ratios[1]:.2f}x (second) the"
            " p99 without them in the same window.",
            END,
        ]
    )


def write(text: str) -> None:
    current = RESULTS.read_text() if RESULTS.exists() else ""
    if BEGIN in current:
        current = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: text, current, flags=re.S)
    else:
        current = current.rstrip() + "\n\n## Hostile endpoints\n\n" + text + "\n"
    RESULTS.write_text(current)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=10_000, help="deliveries per hostile endpoint")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--quiet", type=float, default=20.0, help="seconds measured with only the backlog")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds for the first attempts and circuits")
    args = parser.parse_args()
    services = Services(Path(tempfile.mkdtemp(prefix="fae-hostile-")), "postgresql")
    try:
        calm = services.with_database(lambda env: one_run(env, services.url, 0, args))
        print(f"no hostile endpoints: p99 {percentile(calm.windows[0].latencies, 0.99):.1f} ms", flush=True)
        rough = services.with_database(lambda env: one_run(env, services.url, 5, args))
        print(f"5 hostile endpoints: p99 {percentile(rough.windows[0].latencies, 0.99):.1f} ms", flush=True)
    finally:
        services.stop()
    text = table(calm, rough, args)
    print(text)
    write(text)


if __name__ == "__main__":
    main()
