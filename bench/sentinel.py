"""A Redis master, one replica and three sentinels on loopback, as real processes, for the failover
test and the chaos harness: :meth:`SentinelGroup.fail_over` kills the master and waits until the
sentinels have promoted the replica."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import redis

from bench.common import free_port, redis_server_command

SERVICE = "async-events"
DOWN_AFTER_MS = 1000  # the sentinels call a silent master down after this long
ATTEMPTS = 3  # ports tried per process


def _wait(check: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} within {timeout:.0f}s")


def _answers_or_exited(process: subprocess.Popen[bytes], port: int) -> bool:
    return process.poll() is not None or bool(redis.Redis(port=port).ping())


class SentinelGroup:
    """The processes of one Sentinel-managed Redis service, in ``folder``; :attr:`url` reaches it once started."""

    def __init__(self, folder: Path, sentinels: int = 3) -> None:
        self.folder = folder
        self.binary = shutil.which("redis-server") or "redis-server"
        self.count = sentinels
        self.master_port = self.replica_port = 0
        self.sentinel_ports: list[int] = []
        self.servers: dict[int, subprocess.Popen[bytes]] = {}
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def start(self) -> None:
        self.master_port = self._server()
        self.replica_port = self._server("--replicaof", "127.0.0.1", str(self.master_port))
        replica = redis.Redis(port=self.replica_port)
        _wait(lambda: replica.info("replication").get("master_link_status") == "up", "the replica did not sync")
        for _ in range(self.count):
            port, process = self._listening("sentinel", self._sentinel_command)
            self.sentinel_ports.append(port)
            self.sentinels.append(process)
        for port in self.sentinel_ports:  # every sentinel knows the replica and the other sentinels
            try:
                _wait(partial(self._knows_everyone, port), f"the sentinel on port {port} did not find the others", 30)
            except RuntimeError as error:
                raise RuntimeError(f"{error}; the end of its log:\n{self._tail(port)}") from None

    def _sentinel_command(self, port: int) -> list[str]:
        config = self.folder / f"sentinel-{port}.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.folder}\nlogfile {self._log(port)}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        return [self.binary, str(config), "--sentinel"]

    def _knows_everyone(self, port: int) -> bool:
        state = cast(dict[str, Any], redis.Redis(port=port).sentinel_master(SERVICE))
        return bool(state["num-slaves"] >= 1 and state["num-other-sentinels"] >= self.count - 1)

    def _server(self, *extra: str, port: int = 0) -> int:
        def command(port: int) -> list[str]:
            listen = ("--port", str(port), "--bind", "127.0.0.1", "--logfile", str(self._log(port)))
            # A replica that (re)joins syncs at once, not after the default five seconds' wait for company.
            return redis_server_command(self.binary, self.folder, *listen, "--repl-diskless-sync-delay", "0", *extra)

        port, process = self._listening("redis-server", command, port)
        self.servers[port] = process
        return port

    def _listening(
        self, what: str, command: Callable[[int], list[str]], port: int = 0
    ) -> tuple[int, subprocess.Popen[bytes]]:
        """Start ``command`` on ``port`` (or a free one) and wait until it answers; a port taken in the
        meantime by another process (the server exits at once) is given up for a fresh one."""
        for _ in range(ATTEMPTS):
            port = port or free_port()
            process = subprocess.Popen(command(port), stdout=subprocess.DEVNULL)
            _wait(partial(_answers_or_exited, process, port), f"{what} on port {port} did not start")
            if process.poll() is None:
                return port, process
            port = 0
        raise RuntimeError(f"{what} found no free port in {ATTEMPTS} tries; its log: {self._log(port)}")

    def _log(self, port: int) -> Path:
        return self.folder / f"redis-{port}.log"

    def _tail(self, port: int, lines: int = 20) -> str:
        log = self._log(port)
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"

    def master(self) -> int:
        """The port the sentinels name as the master now."""
        address = redis.Redis(port=self.sentinel_ports[0]).sentinel_get_master_addr_by_name(SERVICE)
        return int(cast(tuple[str, int], address)[1])

    def fail_over(self, timeout: float = 30.0) -> float:
        """Kill the master; return the monotonic time at which the sentinels named the new one."""
        old = self.master()
        process = self.servers.pop(old)
        process.kill()
        process.wait(10)
        _wait(lambda: self.master() != old, "the sentinels promoted no replica", timeout)
        promoted = time.monotonic()
        new = redis.Redis(port=self.master())
        _wait(lambda: new.info("replication")["role"] == "master", "the new master did not take the role", timeout)
        return promoted

    def rejoin(self) -> None:
        """Start the killed server again as a replica of the current master (as an operator would)."""
        killed = next(port for port in (self.master_port, self.replica_port) if port not in self.servers)
        self._server("--replicaof", "127.0.0.1", str(self.master()), port=killed)

    def stop(self) -> None:
        for process in [*self.sentinels, *self.servers.values()]:
            process.terminate()
        for process in [*self.sentinels, *self.servers.values()]:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.sentinels.clear()
        self.servers.clear()
