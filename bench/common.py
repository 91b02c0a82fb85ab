"""What the benchmarks share: services on loopback and fresh databases."""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


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


def redis_server_command(binary: str, folder: Path, *listen: str) -> list[str]:
    """A redis-server that keeps nothing on disk, its files in ``folder``, listening as ``listen`` says."""
    return [binary, *listen, "--save", "", "--appendonly", "no", "--dir", str(folder), "--loglevel", "warning"]


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server on a unix socket in ``folder``; returns the process and its URL."""
    path = folder / "redis.sock"
    process = subprocess.Popen(
        redis_server_command(
            shutil.which("redis-server") or "redis-server", folder, "--port", "0", "--unixsocket", str(path)
        ),
        stdout=subprocess.DEVNULL,
    )
    wait_until(lambda: redis.Redis(unix_socket_path=str(path)).ping())
    return process, f"unix://{path}"


def database_uri(name: str) -> str:
    """The URI of the PostgreSQL database ``name`` on the benchmarks' server."""
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def _admin() -> sa.Engine:
    return sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")


def fresh_database(kind: str, folder: Path, run: int) -> str:
    """A migrated, empty database for one run."""
    from flask_async_events.migrate import upgrade

    if kind == "sqlite":
        uri = f"sqlite:///{folder}/bench-{run}.sqlite"
    else:
        name = f"fae_bench_{uuid.uuid4().hex[:8]}"
        admin = _admin()
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        uri = database_uri(name)
    engine = sa.create_engine(uri)
    upgrade(engine)
    engine.dispose()
    return uri


def kept_database(name: str) -> str | None:
    """The comment of the PostgreSQL database ``name``, or None if there is none of that name."""
    admin = _admin()
    with admin.connect() as connection:
        row = connection.execute(
            sa.text("SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = :n"),
            {"n": name},
        ).first()
    admin.dispose()
    return None if row is None else str(row[0])


def copy_database(source: str, target: str, comment: str | None = None) -> str:
    """A new PostgreSQL database ``target``, a copy of ``source`` (which nobody may be connected
    to), with ``comment``; returns its URI."""
    admin = _admin()
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{target}" TEMPLATE "{source}"'))
        if comment is not None:
            connection.execute(sa.text(f"COMMENT ON DATABASE \"{target}\" IS '{comment}'"))
    admin.dispose()
    return database_uri(target)


def drop_database(uri: str) -> None:
    if uri.startswith("postgresql"):
        admin = _admin()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{uri.rsplit("/", 1)[1]}" WITH (FORCE)'))
        admin.dispose()


def summary(values: list[float]) -> str:
    return f"{min(values):7.0f} {statistics.median(values):7.0f} {max(values):7.0f}"
