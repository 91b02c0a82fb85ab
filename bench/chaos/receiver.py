"""A receiver that misbehaves on purpose, on a seeded plan, and writes down every request.

It listens on one port per subscriber (``--listen N`` of them, chosen by the system and written
to ``--ports-file`` as a JSON list), as separate endpoints would. For a
share of requests (``--fault-rate``) it answers 500, answers 429 with ``Retry-After: 1``,
hangs past the sender's timeout and then drops the connection, or resets the connection. A
delivery meets at most three faults, so a sender that retries long enough always gets through.
While the file ``--outage`` names a port, that endpoint answers every request 503 (an outage, which
opens its circuit in the senders).
Every request is appended to ``--log`` as a JSON line: ``{"id", "path", "outcome"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import struct
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("500", "429", "hang", "reset")
MAX_FAULTS_PER_DELIVERY = 3


class Plan:
    """What every port of the receiver shares: the seeded plan, the in-flight count, the log."""

    def __init__(self, seed: int, fault_rate: float, hang_seconds: float, log_path: str, outage: str) -> None:
        self.seed, self.fault_rate, self.hang_seconds, self.outage = seed, fault_rate, hang_seconds, outage
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.log = open(log_path, "a", buffering=1)  # noqa: SIM115 - open for the process's lifetime

    def down(self, port: int) -> bool:
        """Whether the outage file names this port now."""
        try:
            with open(self.outage) as control:
                return control.read().strip() == str(port)
        except FileNotFoundError:
            return False

    def outcome(self, webhook_id: str) -> str:
        with self.lock:
            attempt = self.seen[webhook_id]
            self.seen[webhook_id] += 1
        rng = random.Random(f"{self.seed}:{webhook_id}:{attempt}")
        if attempt < MAX_FAULTS_PER_DELIVERY and rng.random() < self.fault_rate:
            return rng.choice(FAULTS)
        return "200"

    def record(self, webhook_id: str, path: str, outcome: str) -> None:
        line = json.dumps({"id": webhook_id, "path": path, "outcome": outcome, "t": round(time.time(), 3)})
        with self.lock:
            self.log.write(line + "\n")

    def hold(self, delta: int) -> None:
        with self.lock:
            self.in_flight += delta


class ChaosHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ChaosServer

    def do_POST(self) -> None:
        plan = self.server.plan
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        webhook_id = self.headers.get("webhook-id", "")
        outcome = "outage" if plan.down(self.server.server_address[1]) else plan.outcome(webhook_id)
        plan.record(webhook_id, self.path, outcome)
        if outcome == "200":
            self._answer(200, b"ok")
        elif outcome == "500":
            self._answer(500, b"boom")
        elif outcome == "outage":
            self._answer(503, b"down for maintenance")
        elif outcome == "429":
            self._answer(429, b"slow down", b"Retry-After: 1\r\n")
        elif outcome == "hang":
            plan.hold(1)
            time.sleep(plan.hang_seconds)
            plan.hold(-1)
            self.close_connection = True
        else:  # reset: RST instead of an answer
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True

    def do_GET(self) -> None:  # /inflight: how many requests are being held right now
        self._answer(200, str(self.server.plan.in_flight).encode())

    def _answer(self, status: int, body: bytes, extra: bytes = b"") -> None:
        reason = {200: b"OK", 500: b"Internal Server Error", 503: b"Service Unavailable", 429: b"Too Many Requests"}[
            status
        ]
        head = b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\n%s\r\n" % (status, reason, len(body), extra)
        self.wfile.write(head + body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ChaosServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, plan: Plan) -> None:
        super().__init__(("127.0.0.1", port), ChaosHandler)
        self.plan = plan

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A sender that gave up (timed out, or was killed) closes its connection: not news here."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", type=int, required=True, help="how many ports to listen on")
    parser.add_argument("--ports-file", required=True, help="where to write the ports, once listening")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--hang-seconds", type=float, default=1.5)
    parser.add_argument("--log", required=True)
    parser.add_argument("--outage", required=True, help="a file that, while it names a port, takes that endpoint down")
    args = parser.parse_args()
    plan = Plan(args.seed, args.fault_rate, args.hang_seconds, args.log, args.outage)
    servers = [ChaosServer(0, plan) for _ in range(args.listen)]  # the system picks: no port can be taken
    temporary = f"{args.ports_file}.part"
    with open(temporary, "w") as handle:
        json.dump([server.server_address[1] for server in servers], handle)
    os.replace(temporary, args.ports_file)
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
