"""The measurements of flask-async-events itself: throughput, latency, fan-out, publish overhead
and worker memory. Each takes the environment of one fresh database and a running Redis."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import redis
import requests
import sqlalchemy as sa
from flask import Flask

from bench.common import ROOT
from bench.cpu import CpuWindow, ThreadSampler, process_cpu, rusage_cpu
from bench.signed import SECRET

WORKER = [sys.executable, "-m", "flask", "--app", "bench.app:create_app", "async-events", "worker"]


def bench_app(env: dict[str, str]) -> Flask:
    """The bench app on ``env``'s database, its tables made, Redis marked as known (as in a running
    deployment: a first worker would otherwise rebuild the queues from the database)."""
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    from bench.app import create_app, db
    from flask_async_events.state import get_state
    from flask_async_events.worker.maintenance import run_maintenance

    app = create_app()
    with app.app_context():
        db.create_all()
        run_maintenance(get_state(app), "bench", force=True)
    return app


def subscribe(app: Flask, recipients: list[str], metadata: str = "http", event: str = "bench.created") -> None:
    from bench.app import db, events

    with app.app_context():
        for recipient in recipients:
            events.subscribe(event, recipient, verification_token=SECRET, metadata=metadata)
        db.session.commit()


def publish(app: Flask, count: int, per_commit: int = 1000, event: str = "bench.created") -> None:
    from bench.app import db, events

    with app.app_context():
        for start in range(0, count, per_commit):
            for index in range(start, min(start + per_commit, count)):
                events.publish(event, id=index)
            db.session.commit()


def delivered(app: Flask) -> int:
    from bench.app import db
    from flask_async_events.models import Delivery, DeliveryState

    with app.app_context():
        count = db.session.scalar(sa.select(sa.func.count()).where(Delivery.state == DeliveryState.DELIVERED))
        db.session.remove()
    return int(count or 0)


def start_workers(
    env: dict[str, str], count: int, *, burst: bool, source: Path = ROOT
) -> list[subprocess.Popen[bytes]]:
    """``count`` worker processes running the package in the checkout at ``source``."""
    command = [*WORKER, "--logging-level", "WARNING", *(["--burst"] if burst else [])]
    environment = {**os.environ, **env, "PYTHONPATH": str(source)}
    return [subprocess.Popen(command, env=environment, cwd=source) for _ in range(count)]


@contextmanager
def running_workers(env: dict[str, str], count: int, source: Path = ROOT) -> Iterator[list[subprocess.Popen[bytes]]]:
    workers = start_workers(env, count, burst=False, source=source)
    try:
        yield workers
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(60)


def throughput(
    env: dict[str, str],
    url: str,
    count: int,
    workers: int,
    window: CpuWindow | None = None,
    metadata: str = "http",
    threads: ThreadSampler | None = None,
    source: Path = ROOT,
) -> float:
    """Deliveries per second: ``count`` events published, then ``workers`` workers started
    (running the checkout at ``source``) and timed until every delivery is recorded as delivered
    (the CPU it took in ``window``, by thread in ``threads``; the workers' stop included).

    The workers run as deployed, until stopped: a burst worker leaves the first time it finds the
    queues empty, and with one trigger job waiting at a time (a trigger job queues the next batch's
    as it starts) a second worker often found them so at its start and left, leaving the first
    alone with the whole backlog."""
    app = bench_app(env)
    subscribe(app, [url], metadata)
    publish(app, count)
    with window or nullcontext(), running_workers(env, workers, source) as processes:
        started = time.perf_counter()
        if threads is not None:
            threads.watch([process.pid for process in processes])
        wait_for(lambda: delivered(app) >= count or _exited(processes), 900, "every delivery recorded", every=0.05)
        elapsed = time.perf_counter() - started
    done = delivered(app)
    if done != count:
        raise RuntimeError(f"only {done} of {count} deliveries were delivered")
    return count / elapsed


def _exited(processes: list[subprocess.Popen[bytes]]) -> bool:
    return any(process.poll() is not None for process in processes)


def start_up_cpu(env: dict[str, str]) -> float:
    """CPU seconds one burst worker takes with nothing to do: starting (imports, the app, RQ's
    registration) and stopping. Every throughput run pays it once per worker, whatever its size."""
    bench_app(env)
    before = rusage_cpu(resource.RUSAGE_CHILDREN)
    for process in start_workers(env, 1, burst=True):
        process.wait()
    return rusage_cpu(resource.RUSAGE_CHILDREN) - before


def wait_for(check: Any, timeout: float, what: str, every: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(every)


def latency_and_fanout(
    env: dict[str, str], receiver: str, *, rate: float, seconds: float, fanout: int, workers: int
) -> tuple[list[float], float]:
    """Milliseconds from publish()'s commit to arrival, at a steady ``rate``; then the seconds until
    one event to ``fanout`` subscriptions is delivered to all. Workers are started and warm."""
    from bench.app import db

    with warm_workers(env, receiver, workers) as (app, _):
        latencies = steady_latencies(app, receiver, rate=rate, seconds=seconds)
        with app.app_context():  # the timed subscription ends; the fan-out's begin
            db.session.execute(sa.text("UPDATE async_event_subscriber SET status = false"))
            db.session.commit()
        subscribe(app, [f"{receiver}/fan/{index}" for index in range(fanout)])
        before = delivered(app)
        started = time.perf_counter()
        publish(app, 1)
        wait_for(lambda: delivered(app) >= before + fanout, 120, "the fan-out")
        return latencies, time.perf_counter() - started


def steady_latency_and_cpu(
    env: dict[str, str], receiver: str, *, rate: float, seconds: float, workers: int, source: Path = ROOT
) -> tuple[list[float], float]:
    """Milliseconds from commit to arrival at a steady ``rate`` (as :func:`latency_and_fanout`), and
    the workers' CPU per event in µs over that run, workers running the package at ``source``."""
    with warm_workers(env, receiver, workers, source) as (app, processes):
        before = sum(process_cpu(process.pid) for process in processes)
        latencies = steady_latencies(app, receiver, rate=rate, seconds=seconds)
        used = sum(process_cpu(process.pid) for process in processes) - before
    return latencies, used / len(latencies) * 1e6


@contextmanager
def warm_workers(
    env: dict[str, str], receiver: str, workers: int, source: Path = ROOT
) -> Iterator[tuple[Flask, list[subprocess.Popen[bytes]]]]:
    """The bench app subscribed to ``receiver``'s ``/timed``, and ``workers`` running and warm."""
    app = bench_app(env)
    subscribe(app, [f"{receiver}/timed"])
    with running_workers(env, workers, source) as processes:
        warm_up(app)
        yield app, processes


def warm_up(app: Flask) -> None:
    """Twenty events through running workers: connections open, code loaded."""
    before = delivered(app)
    publish(app, 20)
    wait_for(lambda: delivered(app) >= before + 20, 60, "the warm-up")


def steady_latencies(app: Flask, receiver: str, *, rate: float, seconds: float) -> list[float]:
    """Milliseconds from publish()'s commit to arrival at ``receiver``'s ``/timed``, for events
    published at a steady ``rate`` for ``seconds`` to running workers."""
    from bench.app import db, events

    requests.delete(f"{receiver}/stats", timeout=5)
    count = int(rate * seconds)
    committed: dict[str, float] = {}
    started = time.perf_counter()
    with app.app_context():
        for index in range(count):
            due = started + index / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            events.publish("bench.created", id=1_000_000 + index)
            db.session.commit()
            committed[str(1_000_000 + index)] = time.time()
    wait_for(lambda: requests.get(f"{receiver}/stats", timeout=5).json()["unique"] >= count, 120, "arrivals")
    arrivals = requests.get(f"{receiver}/arrivals", timeout=5).json()
    return [(arrivals[key] - at) * 1000 for key, at in committed.items()]


def publish_overhead(env: dict[str, str], url: str, requests_each: int, *, worker_here: bool) -> tuple[float, float]:
    """Median milliseconds of a request that stores an order, without and with publishing an event
    (alternating blocks of 100, so drift on a shared machine hits both alike).

    ``worker_here``: a worker runs on this machine and takes the events, its work sharing the two
    cores with the request. Otherwise the workers are elsewhere, as web and worker processes are
    deployed: each request's nudge is let finish and its trigger request taken, untimed, between
    requests, as a waiting worker takes it at once, so that every nudge enqueues a trigger job."""
    from flask_async_events.queues import TRIGGER_REQUESTED
    from flask_async_events.state import get_state

    app = bench_app(env)
    subscribe(app, [url])
    client = app.test_client()
    nudger = get_state(app).nudger
    connection = redis.Redis.from_url(env["BENCH_REDIS_URL"])
    timings: dict[str, list[float]] = {"0": [], "1": []}
    workers: AbstractContextManager[object] = running_workers(env, 1) if worker_here else nullcontext()
    with workers:
        for _ in range(requests_each // 100):
            for flag in ("0", "1"):
                for _ in range(100):
                    if not worker_here:
                        if not nudger.flush(5):
                            raise RuntimeError("a nudge was not sent within 5 s: Redis is too slow to measure this")
                        connection.delete(TRIGGER_REQUESTED)
                    started = time.perf_counter()
                    response = client.post(f"/orders?publish={flag}")
                    timings[flag].append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 201
    return statistics.median(timings["0"]), statistics.median(timings["1"])


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no resident set size for process {pid}")


def memory(env: dict[str, str], url: str, count: int) -> tuple[float, float, float]:
    """The worker's resident set (MB) after 5%, half and all of ``count`` deliveries."""
    app = bench_app(env)
    subscribe(app, [url])
    publish(app, count, per_commit=5000)
    (worker,) = start_workers(env, 1, burst=False)
    marks: list[float] = []
    try:
        for share in (0.05, 0.5, 1.0):
            wait_for(
                lambda share=share: delivered(app) >= count * share, 900, f"{share:.0%} of the deliveries", every=0.5
            )
            marks.append(resident_mb(worker.pid))
    finally:
        worker.terminate()
        worker.wait(60)
    return marks[0], marks[1], marks[2]
