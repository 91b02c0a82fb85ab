"""A Redis master, one replica and three sentinels on loopback, as real processes, for the failover
test and the chaos harness: :meth:`SentinelGroup.fail_over` kills the master and waits until the
sentinels have promoted the replica."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import redis

from bench.common import redis_server_command

SERVICE = "async-events"
DOWN_AFTER_MS = 1000  # the sentinels call a silent master down after this long


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


class SentinelGroup:
    """The processes of one Sentinel-managed Redis service, in ``folder``; :attr:`url` reaches it."""

    def __init__(self, folder: Path, sentinels: int = 3) -> None:
        self.folder = folder
        self.binary = shutil.which("redis-server") or "redis-server"
        self.master_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.servers: dict[int, subprocess.Popen[bytes]] = {}
        self.sentinels: list[subprocess.Popen[bytes]] = []
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        self.url = f"redis+sentinel://{hosts}/{SERVICE}"

    def start(self) -> None:
        self._server(self.master_port)
        self._server(self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
        replica = redis.Redis(port=self.replica_port)
        _wait(lambda: replica.info("replication").get("master_link_status") == "up", "the replica did not sync")
        for port in self.sentinel_ports:
            config = self.folder / f"sentinel-{port}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.folder}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self.sentinels.append(subprocess.Popen([self.binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL))
        for port in self.sentinel_ports:  # every sentinel knows the replica and the other sentinels
            _wait(partial(self._knows_everyone, port), "the sentinels did not find each other")

    def _knows_everyone(self, port: int) -> bool:
        state = cast(dict[str, Any], redis.Redis(port=port).sentinel_master(SERVICE))
        return bool(state["num-slaves"] >= 1 and state["num-other-sentinels"] >= len(self.sentinel_ports) - 1)

    def _server(self, port: int, *extra: str) -> None:
        self.servers[port] = subprocess.Popen(
            redis_server_command(self.binary, self.folder, "--port", str(port), "--bind", "127.0.0.1", *extra),
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=port)
        _wait(client.ping, f"redis-server on port {port} did not start")

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
        for port in (self.master_port, self.replica_port):
            if port not in self.servers:
                self._server(port, "--replicaof", "127.0.0.1", str(self.master()))

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
