"""What the benchmarks share: services on loopback, fresh databases, publishing, timing a worker."""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SECRET = "whsec_YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldA=="


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], object], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise RuntimeError("service did not start")


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server on a unix socket in ``folder``; returns the process and its URL."""
    path = folder / "redis.sock"
    process = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            "0",
            "--unixsocket",
            str(path),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
    )
    wait_until(lambda: redis.Redis(unix_socket_path=str(path)).ping())
    return process, f"unix://{path}"


def fresh_database(kind: str, folder: Path, run: int) -> str:
    """A migrated, empty database for one run."""
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


def publish_and_deliver(env: dict[str, str], recipient: str, count: int, metadata: str = "http") -> float:
    """Subscribe ``recipient``, publish ``count`` events, run one burst worker; deliveries per second."""
    sys.path.insert(0, str(ROOT))
    os.environ.update(env)
    from bench.app import create_app, db, events
    from flask_async_events.models import Delivery, DeliveryState

    app = create_app()
    with app.app_context():
        events.subscribe("bench.created", recipient, verification_token=SECRET, metadata=metadata)
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


def summary(values: list[float]) -> str:
    return f"{min(values):7.0f} {statistics.median(values):7.0f} {max(values):7.0f}"
