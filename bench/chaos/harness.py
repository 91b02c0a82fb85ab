"""One chaos run: publish a stream of events while faults are injected on a seeded timetable, let
the system drain, then check that no delivery was lost, misrouted or left pending.

Everything runs on this machine and on loopback: its own redis-server, its own PostgreSQL
database, a misbehaving receiver, and worker processes that are killed and restarted. Every loop
has a count and a deadline.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests
import sqlalchemy as sa

from bench.common import (
    ROOT,
    admin_connection,
    create_database,
    database_uri,
    drop_database,
    start_redis,
    wait_until,
)
from bench.sentinel import SentinelGroup

# (path, event pattern, store, enabled, receives the run's events: store 1, chaos.order.created)
SUBSCRIPTIONS = [
    ("exact", "chaos.order.created", 1, True, True),
    ("wildcard", "chaos.*", 1, True, True),
    ("suffix", "*.created", 1, True, True),
    ("other-store", "chaos.order.created", 2, True, False),
    ("unscoped", "chaos.order.created", 0, True, False),  # store-N events skip store-0 subscriptions
    ("disabled", "chaos.order.created", 1, False, False),
    ("unrelated", "nothing.*", 1, True, False),
]
# A rate limit above the publish rate: it holds back the bursts that drain a backlog after a
# fault, so the limiter's state is in Redis when Redis is restarted empty.
RATE_LIMITS = {"wildcard": 400.0}
SECRET = "chaos-secret"


@dataclass
class ChaosConfig:
    seed: int = 1
    events: int = 10_000
    workers: int = 3
    rate: float = 250.0  # events published per second
    fault_rate: float = 0.3
    kill_every: float = 4.0  # mean seconds between random worker kills; 0 for none
    kill_jitter: float = 0.5  # each gap is kill_every x (1 +- this), drawn by the seed
    restart_redis: bool = True
    sentinel: bool = False  # Redis as a master, a replica and three sentinels; its fault is a failover
    spool: bool = True  # the attempt journal also on disk (False: in Redis only)
    drop_database: bool = True
    outage: float = 8.0  # seconds one endpoint answers only 503 (its circuit opens), mid-run; 0 for none
    drain_timeout: float = 240.0
    burst: int = 1  # events published back to back at each tick (the rate counts events, not ticks)
    one_endpoint: bool = False  # every subscription on the receiver's first port: one host, one circuit
    retry_schedule: tuple[float, ...] | None = None  # the workers' (None: bench/chaos/app.py's)
    redis_down: float = 1.5  # seconds Redis stays down when it is restarted empty


@dataclass(frozen=True)
class Profile:
    """A timetable of faults: how many runs, how much is published, how often a worker dies, and
    what else the run does (see :class:`ChaosConfig`)."""

    runs: int
    events: int
    rate: float
    kill_every: float
    kill_jitter: float
    burst: int = 1
    one_endpoint: bool = False
    retry_schedule: tuple[float, ...] | None = None
    redis_down: float = 1.5
    drop_database: bool = True
    outage: float = 8.0
    drain_limit: float | None = None  # seconds after the last fault within which every run must drain

    def config(
        self,
        seed: int,
        *,
        events: int | None = None,
        workers: int = 3,
        rate: float | None = None,
        sentinel: bool = False,
        spool: bool = True,
    ) -> ChaosConfig:
        """One seeded run of this timetable, with what the command line changed."""
        return ChaosConfig(
            seed=seed,
            events=events or self.events,
            workers=workers,
            rate=rate or self.rate,
            kill_every=self.kill_every,
            kill_jitter=self.kill_jitter,
            sentinel=sentinel,
            spool=spool,
            burst=self.burst,
            one_endpoint=self.one_endpoint,
            retry_schedule=self.retry_schedule,
            redis_down=self.redis_down,
            drop_database=self.drop_database,
            outage=self.outage,
        )


PROFILES = {
    "default": Profile(runs=5, events=10_000, rate=250.0, kill_every=4.0, kill_jitter=0.5),
    "harsh": Profile(runs=10, events=600, rate=20.0, kill_every=2.5, kill_jitter=0.4),
    # An operator's failover test: bursts of 25 events every 0.2 s to three subscriptions of one
    # receiver host, a quick retry schedule, a worker killed every 1.5 to 3.5 s while publishing,
    # Redis killed half-way and started empty 2 s later; everything must drain within 20 s.
    "bursts": Profile(
        runs=10,
        events=600,
        rate=125.0,
        kill_every=2.5,
        kill_jitter=0.4,
        burst=25,
        one_endpoint=True,
        retry_schedule=(1, 1, 2, 2, 3, 3, 5, 5, 8, 8),
        redis_down=2.0,
        drop_database=False,
        outage=0.0,
        drain_limit=20.0,
    ),
}


@dataclass
class Report:
    seed: int
    events: int = 0
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    misrouted: int = 0
    pending: int = 0
    not_received: int = 0
    duplicates: int = 0
    duplicates_interrupted: int = 0  # resent after an attempt logged as interrupted (in flight at a kill)
    # resent after neither an interrupted attempt nor a timed-out one (whose answer, a 200 the receiver
    # logged, came too late): what at-least-once does not explain
    duplicates_unexplained: int = 0
    requests: int = 0
    unlogged_attempts: int = 0
    circuit_openings: int = 0  # circuits opened or reopened, from the workers' logs
    kills: int = 0
    worker_exits: int = 0  # workers that stopped by themselves (a supervisor restarts them)
    publish_retries: int = 0
    drain_seconds: float = 0.0
    elapsed: float = 0.0
    faults: list[str] = field(default_factory=list)

    @property
    def duplicate_rate(self) -> float:
        return self.duplicates / self.expected if self.expected else 0.0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.misrouted or self.pending or self.not_received)


class Services:
    """Redis, the database, the receiver and the workers of one run, and the ways to hurt them."""

    def __init__(self, config: ChaosConfig, folder: Path) -> None:
        self.config, self.folder = config, folder
        self.redis_socket = folder / "redis.sock"
        self.redis_url = f"unix://{self.redis_socket}"
        self.database = f"fae_chaos_{uuid.uuid4().hex[:8]}"
        self.database_uri = database_uri(self.database)
        self.ports: dict[str, int] = {}  # one endpoint per subscriber, bound by the receiver itself
        self.port = 0  # the first of them
        self.ports_file = folder / "ports.json"
        self.receiver_log = folder / "received.jsonl"
        self.outage_file = folder / "outage"
        self.redis_process: subprocess.Popen[bytes] | None = None
        self.sentinel: SentinelGroup | None = None
        if config.sentinel:
            self.sentinel = SentinelGroup(folder)
        self.receiver: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes] | None] = []
        self.logs: list[IO[bytes]] = []
        self.env = {
            **os.environ,
            "CHAOS_DATABASE_URI": self.database_uri,
            "CHAOS_REDIS_URL": self.redis_url,
            "CHAOS_JOURNAL_DIR": str(folder / "journal") if config.spool else "",
            "CHAOS_RETRY_SCHEDULE": " ".join(str(delay) for delay in config.retry_schedule or ()),
            "PYTHONPATH": str(ROOT),
        }

    def start_redis(self) -> None:
        if self.sentinel is not None:
            self.sentinel.start()  # its ports are known from here on
            self.env["CHAOS_REDIS_URL"] = self.redis_url = self.sentinel.url
            return
        self.redis_process, _ = start_redis(self.folder)  # on self.redis_socket

    def fail_over(self) -> str:
        """Kill the Sentinel service's master; once a replica is promoted, the old one rejoins as a replica."""
        assert self.sentinel is not None
        killed_at = time.monotonic()
        promoted = self.sentinel.fail_over()
        self.sentinel.rejoin()
        return f"master killed, replica promoted {promoted - killed_at:.1f}s later"

    def kill_redis(self) -> None:
        if self.sentinel is not None:
            self.sentinel.stop()
        if self.redis_process is not None:
            self.redis_process.kill()
            self.redis_process.wait(10)
            self.redis_process = None

    def create_database(self) -> None:
        create_database(self.database)

    def drop_connections(self) -> int:
        """Terminate every backend of the run's database (what a PostgreSQL restart does to clients)."""
        with admin_connection() as connection:
            dropped = connection.execute(
                sa.text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = :name"),
                {"name": self.database},
            ).scalar()
        return int(dropped or 0)

    def drop_database(self) -> None:
        drop_database(self.database_uri)

    def start_receiver(self) -> None:
        self.receiver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.chaos.receiver",
                "--listen",
                str(len(SUBSCRIPTIONS)),
                "--ports-file",
                str(self.ports_file),
                "--seed",
                str(self.config.seed),
                "--fault-rate",
                str(self.config.fault_rate),
                "--log",
                str(self.receiver_log),
                "--outage",
                str(self.outage_file),
            ],
            cwd=ROOT,
        )
        wait_until(lambda: self.ports_file.exists() and self.ports_file.stat().st_size > 0)
        ports = json.loads(self.ports_file.read_text())
        self.ports = {path: port for (path, *_), port in zip(SUBSCRIPTIONS, ports, strict=True)}
        self.port = ports[0]
        wait_until(lambda: requests.get(f"http://127.0.0.1:{self.port}/inflight", timeout=1).ok)

    def in_flight(self) -> int:
        return int(requests.get(f"http://127.0.0.1:{self.port}/inflight", timeout=2).text)

    def start_worker(self, index: int) -> None:
        log = open(self.folder / f"worker-{index}.log", "ab")  # noqa: SIM115 - closed in stop()
        self.logs.append(log)
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "bench.chaos.app:create_app",
                "async-events",
                "worker",
                "--logging-level",
                "WARNING",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if index < len(self.workers):
            self.workers[index] = process
        else:
            self.workers.append(process)

    def kill_worker(self, index: int) -> None:
        process = self.workers[index]
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)

    def stop(self) -> None:
        for process in self.workers:
            if process is not None and process.poll() is None:
                process.terminate()
        for process in self.workers:
            if process is not None:
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
        for log in self.logs:
            log.close()
        if self.receiver is not None:
            self.receiver.terminate()
            self.receiver.wait(10)
        self.kill_redis()


def _subscribe(services: Services) -> None:
    from bench.chaos.app import create_app, db, events
    from flask_async_events.delivery.subscription_status import disable_subscriptions

    app = create_app()
    with app.app_context():
        for path, pattern, store, enabled, _ in SUBSCRIPTIONS:
            port = services.port if services.config.one_endpoint else services.ports[path]
            url = f"http://127.0.0.1:{port}/{path}"
            subscription = events.subscribe(
                pattern, url, verification_token=SECRET, store_id=store, rate_limit=RATE_LIMITS.get(path)
            )
            db.session.flush()
            if not enabled:
                disable_subscriptions(db.session, [subscription.subscription_id], "chaos: never enabled")
        db.session.commit()
        db.engine.dispose()


class Publisher(threading.Thread):
    """Publishes the run's events at a steady rate, each in its own transaction; a failed commit
    (the database dropped us) is retried, as an application would."""

    def __init__(self, config: ChaosConfig) -> None:
        super().__init__(daemon=True)
        self.config = config
        self.retries = 0
        self.published = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        from bench.chaos.app import EVENT, create_app, db, events

        try:
            app = create_app()
            started = time.monotonic()
            for n in range(self.config.events):
                deadline = time.monotonic() + 60
                while True:
                    try:
                        with app.app_context():
                            events.publish(EVENT, store_id=1, n=n)
                            db.session.commit()
                        break
                    except sa.exc.OperationalError:
                        self.retries += 1
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.2)
                self.published += 1
                if (n + 1) % self.config.burst:
                    continue  # the rest of this burst, back to back
                pause = started + (n + 1) / self.config.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            with app.app_context():
                db.engine.dispose()
        except BaseException as exc:  # reported by the harness
            self.error = exc


def _timetable(config: ChaosConfig) -> list[tuple[float, str]]:
    """The faults of a run, in seconds from the start of publishing, fixed by the seed."""
    rng = random.Random(config.seed)
    duration = config.events / config.rate
    plan: list[tuple[float, str]] = []
    if config.kill_every > 0:
        spread = (1 - config.kill_jitter, 1 + config.kill_jitter)
        moment = rng.uniform(*spread) * config.kill_every
        while moment < duration:
            plan.append((moment, "kill-worker"))
            moment += rng.uniform(*spread) * config.kill_every
        plan.append((0.7 * duration, "kill-worker-mid-delivery"))
    if config.restart_redis:
        plan.append((0.4 * duration, "fail-over" if config.sentinel else "restart-redis-empty"))
    if config.drop_database:
        plan.append((0.6 * duration, "drop-database-connections"))
    if config.outage > 0:  # spans the Redis restart: the open circuit's state is lost with it
        plan.append((0.4 * duration - config.outage / 2, "endpoint-outage"))
        plan.append((0.4 * duration + config.outage / 2, "endpoint-recovers"))
    return sorted(plan)


def _inject(services: Services, plan: list[tuple[float, str]], rng: random.Random, report: Report) -> float:
    """Carry out the timetable; restart killed workers; return when the last fault happened."""
    started = time.monotonic()
    restarts: dict[int, float] = {}
    last_fault = last_kill = started
    for moment, fault in plan:
        while time.monotonic() - started < moment:
            _restart_due(services, restarts, report)
            time.sleep(0.05)
        if fault == "kill-worker" and time.monotonic() - last_kill < 1:
            continue  # a slow mid-delivery wait let random kills pile up: keep them apart
        if fault.startswith("kill-worker"):
            if fault.endswith("mid-delivery"):
                deadline = time.monotonic() + 10
                while services.in_flight() == 0 and time.monotonic() < deadline:
                    time.sleep(0.02)
            index = rng.randrange(len(services.workers))
            services.kill_worker(index)
            restarts[index] = time.monotonic() + rng.uniform(0.3, 1.5)
            report.kills += 1
            last_kill = time.monotonic()
        elif fault == "restart-redis-empty":
            services.kill_redis()
            time.sleep(services.config.redis_down)  # the publisher keeps publishing while Redis is down
            services.start_redis()
        elif fault == "fail-over":
            report.faults.append(services.fail_over())
        elif fault == "drop-database-connections":
            report.faults.append(f"dropped {services.drop_connections()} database connections")
        elif fault == "endpoint-outage":
            services.outage_file.write_text(str(services.port))
        elif fault == "endpoint-recovers":
            services.outage_file.unlink(missing_ok=True)
        report.faults.append(f"{time.monotonic() - started:6.1f}s {fault}")
        last_fault = time.monotonic()
    while restarts:
        _restart_due(services, restarts, report)
        time.sleep(0.05)
    return last_fault


def _restart_due(services: Services, restarts: dict[int, float], report: Report) -> None:
    """Restart killed workers when due, and, as a supervisor would, any that exited by itself."""
    for index, when in list(restarts.items()):
        if time.monotonic() >= when:
            services.start_worker(index)
            del restarts[index]
    for index, process in enumerate(services.workers):
        if index not in restarts and process is not None and process.poll() is not None:
            report.worker_exits += 1
            services.start_worker(index)


OUTBOX_BACKLOG = sa.text("SELECT count(*) FROM async_event WHERE triggered_at IS NULL")
OPEN_DELIVERIES = sa.text(
    "SELECT state, count(*) FROM async_event_delivery WHERE state IN ('pending', 'delivering', 'retrying') "
    "GROUP BY state"
)


def _backlog(engine: sa.Engine) -> dict[str, int]:
    """Untriggered events and deliveries by open state: what is left to drain."""
    with engine.connect() as connection:
        left = {"untriggered": connection.execute(OUTBOX_BACKLOG).scalar() or 0}
        left.update({row[0]: row[1] for row in connection.execute(OPEN_DELIVERIES)})
    return left


@dataclass
class _Recorded:
    """What the database says of a run: its deliveries, and per delivery uuid its logged attempts
    and which of them were interrupted or timed out."""

    deliveries: list[Any]
    logged: Counter[str]
    interrupted: set[str]
    timed_out: set[str]


def _check(services: Services, engine: sa.Engine, report: Report) -> None:
    receiving = {path for path, *_, receives in SUBSCRIPTIONS if receives}
    recorded = _recorded(engine, report)
    report.expected = report.events * len(receiving)
    delivered = _count_deliveries(report, recorded.deliveries, receiving)
    seen, successes = _count_requests(report, services.receiver_log, receiving)
    report.not_received = sum(1 for delivery in delivered if successes[delivery] == 0)
    repeated = {delivery: count - 1 for delivery, count in successes.items() if count > 1}
    report.duplicates = sum(repeated.values())
    report.duplicates_interrupted = sum(n for delivery, n in repeated.items() if delivery in recorded.interrupted)
    explained = recorded.interrupted | recorded.timed_out
    report.duplicates_unexplained = sum(n for delivery, n in repeated.items() if delivery not in explained)
    report.unlogged_attempts = sum(max(0, count - recorded.logged[delivery]) for delivery, count in seen.items())


def _recorded(engine: sa.Engine, report: Report) -> _Recorded:
    """Read the deliveries and the attempt log; count the events the load published (operational
    events about dead deliveries have no subscriber here)."""
    with engine.connect() as connection:
        name: sa.ColumnClause[str] = sa.column("event_name")
        published = sa.select(sa.func.count()).select_from(sa.table("async_event", name))
        load = published.where(sa.not_(name.startswith("async_events.", autoescape=True)))
        report.events = connection.execute(load).scalar() or 0
        rows = connection.execute(
            sa.text(
                "SELECT d.uuid, d.state, e.uuid AS event, s.recipient_url FROM async_event_delivery d "
                "JOIN async_event e ON e.id = d.event_id JOIN async_event_subscriber s "
                "ON s.subscription_id = d.subscription_id"
            )
        ).all()
        per_uuid = sa.text(
            "SELECT uuid, count(*), count(*) FILTER (WHERE error_class = 'Interrupted'), "
            "count(*) FILTER (WHERE error_class = 'Timeout') FROM async_event_subscriber_log GROUP BY uuid"
        )
        per_uuid_rows = connection.execute(per_uuid).all()
    return _Recorded(
        list(rows),
        Counter({row[0]: row[1] for row in per_uuid_rows}),
        {row[0] for row in per_uuid_rows if row[2]},
        {row[0] for row in per_uuid_rows if row[3]},
    )


def _count_deliveries(report: Report, rows: list[Any], receiving: set[str]) -> set[str]:
    """Count delivered, pending and misrouted deliveries; return the delivered ones' uuids."""
    delivered_pairs = set()
    delivered_uuids = set()
    for row in rows:
        path = row.recipient_url.rsplit("/", 1)[1]
        if path not in receiving:
            report.misrouted += 1
        elif row.state == "delivered":
            delivered_pairs.add((row.event, path))
            delivered_uuids.add(row.uuid)
        elif row.state != "dead":
            report.pending += 1
    report.delivered = len(delivered_pairs)
    report.lost = report.expected - report.delivered
    return delivered_uuids


def _count_requests(report: Report, receiver_log: Path, receiving: set[str]) -> tuple[Counter[str], Counter[str]]:
    """Count the receiver's requests (and misrouted ones); return, per delivery uuid, how many
    requests came and how many were answered 200."""
    seen: Counter[str] = Counter()
    successes: Counter[str] = Counter()
    with open(receiver_log) as log:
        for line in log:
            request: dict[str, Any] = json.loads(line)
            report.requests += 1
            if request["path"].lstrip("/") not in receiving:
                report.misrouted += 1
            seen[request["id"]] += 1
            if request["outcome"] == "200":
                successes[request["id"]] += 1
    return seen, successes


def _circuit_openings(folder: Path) -> int:
    """How often the workers opened (or reopened) a circuit, as their logs say."""
    return sum(
        line.count(b"Circuit opened") + line.count(b"Circuit reopened")
        for log in folder.glob("worker-*.log")
        for line in log.read_bytes().splitlines()
    )


def run(config: ChaosConfig) -> Report:
    """One seeded run; the report says what held and what did not."""
    report = Report(seed=config.seed)
    folder = Path(tempfile.mkdtemp(prefix=f"fae-chaos-{config.seed}-"))
    services = Services(config, folder)
    started = time.monotonic()
    engine: sa.Engine | None = None
    try:
        services.start_redis()
        services.create_database()
        services.start_receiver()
        os.environ.update(CHAOS_DATABASE_URI=services.database_uri, CHAOS_REDIS_URL=services.redis_url)
        _subscribe(services)
        for index in range(config.workers):
            services.start_worker(index)
        publisher = Publisher(config)
        publisher.start()
        last_fault = _inject(services, _timetable(config), random.Random(config.seed), report)
        publisher.join(config.events / config.rate + 120)
        if publisher.error is not None:
            raise RuntimeError(f"publishing failed: {publisher.error!r}") from publisher.error
        report.publish_retries = publisher.retries
        engine = sa.create_engine(services.database_uri)
        deadline = time.monotonic() + config.drain_timeout
        shown = 0.0
        while any((left := _backlog(engine)).values()) and time.monotonic() < deadline:
            _restart_due(services, {}, report)  # a supervisor keeps the workers up while they drain
            if time.monotonic() - shown > 10:
                print(f"  seed {config.seed}: draining, {left}", flush=True)
                shown = time.monotonic()
            time.sleep(0.5)
        report.drain_seconds = time.monotonic() - last_fault
        _check(services, engine, report)
    finally:
        services.stop()
        report.circuit_openings = _circuit_openings(folder)
        if engine is not None:
            engine.dispose()
        services.drop_database()
        if report.ok:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            report.faults.append(f"logs kept in {folder}")
        report.elapsed = time.monotonic() - started
    return report
