"""What the benchmarks share: services on loopback and fresh databases."""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


def database_name(uri: str) -> str:
    return uri.rsplit("/", 1)[1]


@contextmanager
def admin_connection() -> Iterator[sa.Connection]:
    """A connection to the benchmarks' PostgreSQL server, outside any transaction (``CREATE DATABASE``
    and ``DROP DATABASE`` cannot run in one)."""
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            yield connection
    finally:
        admin.dispose()


def migrated(uri: str) -> str:
    """``uri``, its database brought up to this package's head revision."""
    from flask_async_events.migrate import upgrade

    engine = sa.create_engine(uri)
    upgrade(engine)
    engine.dispose()
    return uri


def create_database(name: str) -> str:
    """A new, migrated PostgreSQL database ``name``; returns its URI."""
    with admin_connection() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return migrated(database_uri(name))


def fresh_database(kind: str, folder: Path, run: int) -> str:
    """A migrated, empty database for one run."""
    if kind == "sqlite":
        return migrated(f"sqlite:///{folder}/bench-{run}.sqlite")
    return create_database(f"fae_bench_{uuid.uuid4().hex[:8]}")


def kept_database(name: str) -> str | None:
    """The comment of the PostgreSQL database ``name``: None if there is none of that name, or if it
    has no comment (it was being made when its run stopped)."""
    with admin_connection() as connection:
        comment = connection.execute(
            sa.text("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = :n"), {"n": name}
        ).scalar()
    return str(comment) if comment else None


def copy_database(source: str, target: str, comment: str | None = None) -> str:
    """A new PostgreSQL database ``target``, a copy of ``source`` (which nobody may be connected
    to), with ``comment``; returns its URI."""
    with admin_connection() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{target}" TEMPLATE "{source}"'))
        if comment is not None:
            quoted = comment.replace("'", "''")
            connection.execute(sa.text(f"COMMENT ON DATABASE \"{target}\" IS '{quoted}'"))
    return database_uri(target)


def drop_database(uri: str) -> None:
    if uri.startswith("postgresql"):
        with admin_connection() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{database_name(uri)}" WITH (FORCE)'))


def summary(values: list[float]) -> str:
    return f"{min(values):7.0f} {statistics.median(values):7.0f} {max(values):7.0f}"
