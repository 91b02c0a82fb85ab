"""The benchmark suite (``make bench``): starts its own Redis, database and receiver, measures
flask-async-events and the baselines in the same run, and writes ``bench/RESULTS.md``.

    python -m bench [--events 10000] [--repeat 3] [--database postgresql|sqlite] [--memory 50000] [--rq-jobs 100]

Each throughput of a worker (ours, RQ's, Celery's) is timed from starting its processes, start-up
included, until the last webhook is delivered and, for ours, recorded in the database. A plain
loop times itself from its first POST, so ours is also given from the first webhook's arrival at
the receiver to the last one's: the same span, like for like.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import TypeVar

import redis
import requests

from bench import ours
from bench.common import ROOT, drop_database, free_port, fresh_database, start_redis, wait_until
from bench.cpu import PARTS, THREAD_PARTS, CpuWindow, ThreadSampler
from bench.plain import plain_loop
from flask_async_events.version import __version__

RESULTS = ROOT / "bench" / "RESULTS.md"
BEFORE = [
    "Before (0.1.0 as it was before its libcurl notifier: one worker sending with urllib3's PoolManager,"
    " 20,000 webhooks; py-spy and per-thread CPU timers), about 1,330 µs of worker CPU per webhook:",
    "",
    "| where | µs per webhook |",
    "|---|---|",
    "| sending: `HttpNotifier.notify` (urllib3 ~530, reading the answer 55, signing 34) | ~620 |",
    "| sending: thread-pool bookkeeping and journal notes on the sending threads | ~144 |",
    "| trigger job (SQL and ORM ~136, claim 52, preparing 34, payload JSON 30) | ~250 |",
    "| recording results (`executemany`, a statement per row: 122) | ~150 |",
    "| journal thread (three Redis commands per webhook) | ~104 |",
    "| RQ, per job of 100 (~23 round trips) | ~60 |",
]
T = TypeVar("T")


class Services:
    """Redis and the receiver for the whole run; a fresh database per measurement."""

    def __init__(self, folder: Path, database: str) -> None:
        self.folder = folder
        self.database = database
        self.redis_process, self.redis_url = start_redis(folder)
        port = free_port()
        self.receiver = subprocess.Popen([sys.executable, "-m", "bench.receiver", str(port)], cwd=ROOT)
        self.url = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(f"{self.url}/stats", timeout=1).ok)
        self.runs = 0

    def received(self) -> int:
        return int(requests.get(f"{self.url}/stats", timeout=5).json()["unique"])

    def arrival_rate(self) -> float:
        """Webhooks per second from the first arrival to the last, since the last reset."""
        stats = requests.get(f"{self.url}/stats", timeout=5).json()
        if stats["first"] is None or stats["last"] <= stats["first"]:
            raise RuntimeError(f"the receiver saw {stats['unique']} webhook(s): no span to time")
        return float(stats["unique"]) / (stats["last"] - stats["first"])

    def reset(self) -> None:
        redis.Redis.from_url(self.redis_url).flushall()
        requests.delete(f"{self.url}/stats", timeout=5)

    def with_database(self, measure: Callable[[dict[str, str]], T]) -> T:
        self.reset()
        self.runs += 1
        uri = fresh_database(self.database, self.folder, self.runs)
        try:
            return measure({"BENCH_DATABASE_URI": uri, "BENCH_REDIS_URL": self.redis_url})
        finally:
            drop_database(uri)

    def stop(self) -> None:
        for process in (self.receiver, self.redis_process):
            process.terminate()
            process.wait(10)


def plain(services: Services, count: int, client: str, processes: int, window: CpuWindow) -> float:
    """Requests per second of ``processes`` plain loops sending ``count`` in all."""
    services.reset()
    if processes == 1:
        with window:
            return count / plain_loop(f"{services.url}/hook", count, client)
    command = [sys.executable, "-m", "bench.plain", f"{services.url}/hook", str(count // processes), client]
    with window:
        children = [
            subprocess.Popen([*command, str(index)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
            for index in range(processes)
        ]
        seconds = [float(child.communicate()[0]) for child in children]
    return count // processes * processes / max(seconds)


def rq_default_worker(services: Services, count: int) -> float:
    """One job per webhook on RQ's default (forking) worker."""
    from rq import Queue

    from bench.rq_job import post_webhook

    services.reset()
    queue = Queue("bench", connection=redis.Redis.from_url(services.redis_url))
    for index in range(count):
        queue.enqueue(post_webhook, f"{services.url}/hook", index, result_ttl=0)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "rq.cli", "worker", "--burst", "--quiet", "--url", services.redis_url, "bench"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    elapsed = time.perf_counter() - started
    if services.received() != count:
        raise RuntimeError(f"RQ delivered {services.received()} of {count}")
    return count / elapsed


def celery_prefork(services: Services, count: int, processes: int) -> float:
    """One task per webhook on Celery's prefork pool, Redis as the broker."""
    broker = services.redis_url.replace("unix://", "redis+socket://")
    os.environ["BENCH_CELERY_BROKER"] = broker
    from bench.celery_tasks import post_webhook

    services.reset()
    for index in range(count):
        post_webhook.apply_async((f"{services.url}/hook", index))
    started = time.perf_counter()
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "bench.celery_tasks", "worker"),
            *("-c", str(processes), "-P", "prefork", "--loglevel", "WARNING"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
    )
    try:
        ours.wait_for(lambda: services.received() >= count, 600, "Celery's deliveries", every=0.02)
        elapsed = time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait(30)
    return count / elapsed


def spread(values: list[float], digits: int = 0) -> str:
    """min / median / max."""
    return " / ".join(f"{value:,.{digits}f}" for value in (min(values), statistics.median(values), max(values)))


def medians(uses: list[tuple[float, ...]]) -> str:
    """The median of each column of ``uses``, as table cells."""
    return " | ".join(f"{statistics.median(column):,.0f}" for column in zip(*uses, strict=True))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


@dataclass
class Results:
    """What the runs measured, kept for the report."""

    rates: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[tuple[float, ...]]] = field(default_factory=dict)
    by_thread: dict[str, list[tuple[float, ...]]] = field(default_factory=dict)
    start_ups: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    fanouts: list[float] = field(default_factory=list)
    overheads: dict[bool, list[tuple[float, float]]] = field(default_factory=lambda: {False: [], True: []})
    memory: tuple[float, float, float] | None = None


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--rq-jobs", type=int, default=100, help="jobs for RQ's forking worker (10 to 25/s)")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second in the latency run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency run")
    parser.add_argument("--fanout", type=int, default=1000)
    parser.add_argument("--memory", type=int, default=50_000, help="deliveries in the memory run (0: skip)")
    return parser.parse_args()


class Bench:
    """One benchmark session: its services, its arguments and what it measured so far."""

    def __init__(self, args: argparse.Namespace, services: Services) -> None:
        self.args, self.services, self.results = args, services, Results()

    def round(self) -> None:
        """One round of every measurement."""
        args, services = self.args, self.services
        for client in ("requests", "urllib3"):
            for processes in (1, 2):
                self.measure(
                    f"plain loop, {client}, {processes} process{'es' if processes > 1 else ''}",
                    partial(plain, services, args.events, client, processes),
                    in_process=processes == 1,
                )
        self.measure("RQ default worker, 1 job per webhook", lambda _: rq_default_worker(services, args.rq_jobs))
        self.measure(
            "Celery, 2 prefork processes, 1 task per webhook", lambda _: celery_prefork(services, args.events, 2)
        )
        for workers in (1, 2):
            name = f"flask-async-events, {workers} worker{'s' if workers > 1 else ''}"
            self.measure(name, self.ours(name, workers))
        self.results.start_ups.append(services.with_database(ours.start_up_cpu))
        print(f"  a worker's start and stop with nothing to do: {self.results.start_ups[-1]:.2f} s of CPU", flush=True)
        name = "flask-async-events, 2 workers, journal not spooled to disk"
        self.measure(name, self.ours(name, 2, spool=False))
        self.latency_and_fanout()
        self.publish_overhead()

    def ours(self, name: str, workers: int, *, spool: bool = True) -> Callable[[CpuWindow], float]:
        """Our throughput with ``workers``, its CPU by thread noted (and with ``spool``, the rate
        from the first arrival to the last)."""
        url = f"{self.services.url}/hook"
        journal = {} if spool else {"BENCH_JOURNAL_DIR": ""}  # the attempt journal in Redis only
        events = self.args.events

        def run(window: CpuWindow) -> float:
            threads = ThreadSampler()
            rate = self.services.with_database(
                lambda env: ours.throughput({**env, **journal}, url, events, workers, window, threads=threads)
            )
            self.results.by_thread.setdefault(name, []).append(threads.per_webhook(events))
            if spool:
                self.results.rates.setdefault(f"{name}, first arrival to last", []).append(self.services.arrival_rate())
            return rate

        return run

    def measure(self, name: str, run: Callable[[CpuWindow], float], *, in_process: bool = False) -> None:
        """One throughput and the CPU it took."""
        window = CpuWindow(self.services.receiver.pid, self.services.redis_process.pid, in_process=in_process)
        values = self.results.rates.setdefault(name, [])  # before the run's own rows
        value = run(window)
        values.append(value)
        if window.use is not None:
            self.results.cpu.setdefault(name, []).append(window.use.per_webhook(self.args.events))
        print(f"  {name}: {value:,.0f}/s", flush=True)

    def latency_and_fanout(self) -> None:
        args, services = self.args, self.services
        timed, fanout = services.with_database(
            lambda env: ours.latency_and_fanout(
                env, services.url, rate=args.rate, seconds=args.seconds, fanout=args.fanout, workers=2
            )
        )
        self.results.latencies.extend(timed)
        self.results.fanouts.append(fanout)
        print(f"  latency p50 {percentile(timed, 0.5):.1f} ms, p99 {percentile(timed, 0.99):.1f} ms", flush=True)
        print(f"  fan-out to {args.fanout}: {fanout:.2f} s", flush=True)

    def publish_overhead(self) -> None:
        for worker_here in (False, True):
            hook = f"{self.services.url}/hook"
            overhead = self.services.with_database(
                partial(ours.publish_overhead, url=hook, requests_each=2000, worker_here=worker_here)
            )
            self.results.overheads[worker_here].append(overhead)
            where = "a worker on these cores" if worker_here else "workers elsewhere"
            print(f"  request without / with publish, {where}: {overhead[0]:.2f} / {overhead[1]:.2f} ms")

    def memory(self) -> None:
        if self.args.memory:
            print(f"memory over {self.args.memory:,} deliveries", flush=True)
            url = f"{self.services.url}/hook"
            self.results.memory = self.services.with_database(lambda env: ours.memory(env, url, self.args.memory))
            print(f"  resident set {self.results.memory} MB", flush=True)


def main() -> None:
    args = _arguments()
    folder = Path(tempfile.mkdtemp(prefix="fae-bench-"))
    services = Services(folder, args.database)
    began = time.monotonic()
    bench = Bench(args, services)
    try:
        for run in range(args.repeat):
            print(f"run {run + 1} of {args.repeat}", flush=True)
            bench.round()
        bench.memory()
    finally:
        services.stop()
        shutil.rmtree(folder, ignore_errors=True)
    report = render(args, bench.results, time.monotonic() - began)
    RESULTS.write_text(report)
    print(report)


def render(args: argparse.Namespace, results: Results, elapsed: float) -> str:
    """The report: the setting, then each section."""
    lines = [
        *_setting(args, elapsed),
        *_throughput(args, results.rates),
        *_cpu(args, results),
        *_latency(args, results),
    ]
    return "\n".join(lines) + "\n"


def _setting(args: argparse.Namespace, elapsed: float) -> list[str]:
    return [
        "# Benchmark results",
        "",
        f"Written by `python -m bench --events {args.events} --repeat {args.repeat} --database {args.database}"
        f" --memory {args.memory}` (`make bench`) in {elapsed / 60:.1f} minutes.",
        "",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()},"
        f" Python {platform.python_version()}",
        f"- Versions: flask-async-events {__version__}, rq {version('rq')},"
        f" celery {version('celery')}, redis-py {version('redis')}, SQLAlchemy {version('sqlalchemy')},"
        f" pycurl {version('pycurl')}, urllib3 {version('urllib3')}, requests {version('requests')}",
        f"- Database: {args.database}; Redis: its own redis-server on a unix socket; receiver: a threaded"
        " Python HTTP/1.1 server on loopback (keep-alive). Each webhook is a signed POST of a 1 KB JSON body.",
    ]


def _throughput(args: argparse.Namespace, rates: dict[str, list[float]]) -> list[str]:
    median = {name: statistics.median(values) for name, values in rates.items()}
    ours_two = median["flask-async-events, 2 workers"]
    lines = [
        "",
        f"## Throughput ({args.events:,} webhooks; RQ's forking worker: {args.rq_jobs}), per second",
        "",
        "| contender | min / median / max | ours (2 workers) is |",
        "|---|---|---|",
    ]
    for name, values in rates.items():
        lines.append(f"| {name} | {spread(values)} | {ours_two / median[name]:.2f}x |")
    sending = median["flask-async-events, 2 workers, first arrival to last"]
    sending_one = median["flask-async-events, 1 worker, first arrival to last"]
    lines += [
        "",
        "The plain loops are timed from their first POST to their last answer; like for like, two of our"
        f" workers send {sending:,.0f} webhooks/s from the first arrival to the last,"
        f" {sending / median['plain loop, urllib3, 2 processes']:.2f}x two urllib3 loops and"
        f" {sending_one / median['plain loop, urllib3, 1 process']:.2f}x"
        " for one worker against one loop. The rows without it include each worker's start-up.",
    ]
    return lines


def _cpu(args: argparse.Namespace, results: Results) -> list[str]:
    lines = [
        "",
        "## Where the CPU goes (µs of CPU per webhook, median of the runs)",
        "",
        "Measured over each timed run: the senders' own processes, the receiver's and Redis's, and the"
        " rest of the machine's busy time (`/proc/stat`), which is PostgreSQL above all (`bench/cpu.py`).",
        "",
        f"| contender | {' | '.join(PARTS)} | total |",
        "|---|" + "---|" * (len(PARTS) + 1),
    ]
    for name, uses in results.cpu.items():
        lines.append(f"| {name} | {medians(uses)} |")
    lines += [
        "",
        "## Where a worker's CPU goes, by thread (µs of CPU per webhook, median of the runs)",
        "",
        "Each worker thread's CPU time, read from `/proc` every 0.1 s while the workers run; the package"
        " names its threads in the operating system (`ae-send_N`, `ae-record`, `ae-journal`), and the"
        " main thread runs RQ and the jobs. libcurl's work is the sending threads'.",
        "",
        f"| contender | {' | '.join(THREAD_PARTS)} | total |",
        "|---|" + "---|" * (len(THREAD_PARTS) + 1),
    ]
    for name, uses in results.by_thread.items():
        lines.append(f"| {name} | {medians(uses)} |")
    start_up = statistics.median(results.start_ups)
    lines += [
        "",
        f"Of that, a worker's start and stop (a burst worker with nothing to do: imports, the app, RQ's"
        f" registration) took {spread(results.start_ups, 2)} s of CPU, almost all in the main thread: at"
        f" {args.events:,} webhooks, {start_up / args.events * 1e6:.0f} µs per webhook for one worker and"
        f" {2 * start_up / args.events * 1e6:.0f} µs for two.",
        "",
        *BEFORE,
    ]
    return lines


def _latency(args: argparse.Namespace, results: Results) -> list[str]:
    latencies, overheads = results.latencies, results.overheads
    p50, p95, p99 = (percentile(latencies, share) for share in (0.5, 0.95, 0.99))
    lines = [
        "",
        "## Latency, fan-out, publish overhead, memory",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        f"| publish() commit to arrival at {args.rate:.0f} events/s, 2 workers ({len(latencies):,} events)"
        f" | p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms | p99 < 50 ms |",
        f"| one event to {args.fanout:,} subscriptions, until all are recorded delivered"
        f" | {spread(results.fanouts, 2)} s | < 2 s |",
        *(
            f"| a request that stores a row, without / with publish() (median), {where}"
            f" | {' ; '.join(f'{a:.2f} / {b:.2f} ms' for a, b in overheads[worker_here])}"
            f" (adds {statistics.median(b - a for a, b in overheads[worker_here]):.2f} ms) | {target} |"
            for worker_here, where, target in (
                (
                    False,
                    "workers elsewhere (every nudge enqueues a trigger job, as one a worker takes at once)",
                    "adds < 0.5 ms",
                ),
                (
                    True,
                    "a worker on the same two cores taking the events",
                    "none: the worker's own work, shown for what sharing two cores costs",
                ),
            )
        ),
    ]
    if results.memory is not None:
        start, middle, end = results.memory
        lines.append(
            f"| worker resident set over {args.memory:,} deliveries (at 5% / 50% / 100%)"
            f" | {start:.0f} / {middle:.0f} / {end:.0f} MB (end {100 * (end / middle - 1):+.1f}% of middle)"
            " | end within 10% of middle |"
        )
    return lines


if __name__ == "__main__":
    main()
