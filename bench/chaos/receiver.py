"""A receiver that misbehaves on purpose, on a seeded plan, and writes down every request.

For a share of requests (``--fault-rate``) it answers 500, answers 429 with ``Retry-After: 1``,
hangs past the sender's timeout and then drops the connection, or resets the connection. A
delivery meets at most three faults, so a sender that retries long enough always gets through.
Every request is appended to ``--log`` as a JSON line: ``{"id", "path", "outcome"}``.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("500", "429", "hang", "reset")
MAX_FAULTS_PER_DELIVERY = 3


class ChaosHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ChaosServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        webhook_id = self.headers.get("webhook-id", "")
        outcome = self.server.plan(webhook_id)
        self.server.record(webhook_id, self.path, outcome)
        if outcome == "200":
            self._answer(200, b"ok")
        elif outcome == "500":
            self._answer(500, b"boom")
        elif outcome == "429":
            self._answer(429, b"slow down", b"Retry-After: 1\r\n")
        elif outcome == "hang":
            with self.server.in_flight_lock:
                self.server.in_flight += 1
            time.sleep(self.server.hang_seconds)
            with self.server.in_flight_lock:
                self.server.in_flight -= 1
            self.close_connection = True
        else:  # reset: RST instead of an answer
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True

    def do_GET(self) -> None:  # /inflight: how many requests are being held right now
        with self.server.in_flight_lock:
            body = str(self.server.in_flight).encode()
        self._answer(200, body)

    def _answer(self, status: int, body: bytes, extra: bytes = b"") -> None:
        reason = {200: b"OK", 500: b"Internal Server Error", 429: b"Too Many Requests"}[status]
        head = b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\n%s\r\n" % (status, reason, len(body), extra)
        self.wfile.write(head + body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ChaosServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, seed: int, fault_rate: float, hang_seconds: float, log_path: str) -> None:
        super().__init__(("127.0.0.1", port), ChaosHandler)
        self.seed, self.fault_rate, self.hang_seconds = seed, fault_rate, hang_seconds
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.in_flight_lock = threading.Lock()
        self.log = open(log_path, "a", buffering=1)  # noqa: SIM115 - open for the server's lifetime

    def plan(self, webhook_id: str) -> str:
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--hang-seconds", type=float, default=3.0)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    ChaosServer(args.port, args.seed, args.fault_rate, args.hang_seconds, args.log).serve_forever()


if __name__ == "__main__":
    main()
