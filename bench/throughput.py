"""Delivery throughput of one worker process against a local receiver, with a plain signed-POST
loop measured in the same run as the baseline (the most one Python process can send at all).

    python -m bench.throughput [--events 5000] [--repeat 3] [--database sqlite|postgresql]

Each run: publish N events (one subscription), start ``flask async-events worker --burst`` and
time until every delivery is recorded as delivered in the database.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis
import requests
import sqlalchemy as sa

from flask_async_events.signing import legacy_signature, signing_key, standard_signature

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SECRET = "whsec_YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldA=="


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], object], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise RuntimeError("service did not start")


def plain_loop(url: str, count: int, body: bytes) -> float:
    """Sign and POST ``count`` bodies over one kept-alive session; return requests per second."""
    session = requests.Session()
    key = signing_key(SECRET)
    started = time.perf_counter()
    for index in range(count):
        msg_id = f"msg_{index}"
        stamp = int(time.time())
        response = session.post(
            url,
            data=body,
            headers={
                "Content-Type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": standard_signature([key], msg_id, stamp, body),
                "x-magento-signature": legacy_signature(key, body),
            },
            timeout=(5, 15),
        )
        response.raise_for_status()
    return count / (time.perf_counter() - started)


def one_run(env: dict[str, str], database_uri: str, url: str, count: int) -> float:
    """Publish ``count`` events, run one burst worker, return deliveries per second."""
    sys.path.insert(0, str(ROOT))
    from bench.app import create_app, db, events
    from flask_async_events.models import Delivery, DeliveryState

    os.environ.update(env)
    app = create_app()
    with app.app_context():
        events.subscribe("bench.created", url, verification_token=SECRET)
        db.session.commit()
        for start in range(0, count, 500):
            for index in range(start, min(start + 500, count)):
                events.publish("bench.created", id=index)
            db.session.commit()
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "bench.app:create_app",
            "async-events",
            "worker",
            "--burst",
            "--logging-level",
            "WARNING",
        ],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        check=True,
    )
    elapsed = time.perf_counter() - started
    with app.app_context():
        delivered = db.session.scalar(sa.select(sa.func.count()).where(Delivery.state == DeliveryState.DELIVERED))
        db.engine.dispose()
    if delivered != count:
        raise RuntimeError(f"only {delivered} of {count} deliveries were delivered")
    return count / elapsed


def fresh_database(kind: str, folder: Path, run: int) -> str:
    from flask_async_events.migrate import upgrade

    if kind == "sqlite":
        uri = f"sqlite:///{folder}/bench-{run}.sqlite"
    else:
        name = f"fae_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        uri = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    engine = sa.create_engine(uri)
    upgrade(engine)
    engine.dispose()
    return uri


def drop_database(uri: str) -> None:
    if uri.startswith("postgresql"):
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{uri.rsplit("/", 1)[1]}" WITH (FORCE)'))
        admin.dispose()


def summary(values: list[float]) -> str:
    return f"{min(values):7.0f} {statistics.median(values):7.0f} {max(values):7.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="fae-bench-"))
    redis_socket = folder / "redis.sock"
    redis_binary = shutil.which("redis-server") or "redis-server"
    services = [
        subprocess.Popen(
            [
                redis_binary,
                "--port",
                "0",
                "--unixsocket",
                str(redis_socket),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
            ],
            stdout=subprocess.DEVNULL,
        ),
    ]
    port = free_port()
    services.append(subprocess.Popen([sys.executable, "-m", "bench.receiver", str(port)], cwd=ROOT))
    url = f"http://127.0.0.1:{port}/hook"
    try:
        wait_until(lambda: redis.Redis(unix_socket_path=str(redis_socket)).ping())
        wait_until(lambda: requests.post(url, data=b"{}", timeout=1).ok)
        body = b'{"data":{"id":1,"padding":"' + b"x" * 1000 + b'"}}'
        baseline: list[float] = []
        ours: list[float] = []
        for run in range(args.repeat):
            baseline.append(plain_loop(url, args.events, body))
            redis.Redis(unix_socket_path=str(redis_socket)).flushall()
            uri = fresh_database(args.database, folder, run)
            env = {"BENCH_DATABASE_URI": uri, "BENCH_REDIS_URL": f"unix://{redis_socket}"}
            try:
                ours.append(one_run(env, uri, url, args.events))
            finally:
                drop_database(uri)
            print(f"run {run + 1}: plain loop {baseline[-1]:.0f}/s, one worker {ours[-1]:.0f}/s", flush=True)
        print(f"\n{args.events} events, 1 subscription each, {args.database}, {args.repeat} runs (min / median / max)")
        print(f"  plain signed-POST loop, 1 process  {summary(baseline)}  requests/s")
        print(f"  flask-async-events, 1 worker       {summary(ours)}  deliveries/s")
        print(f"  ratio (median)                     {statistics.median(ours) / statistics.median(baseline):.2f}")
    finally:
        for service in services:
            service.terminate()
            service.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
