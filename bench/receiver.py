"""A fast local receiver for benchmarks: HTTP/1.1 keep-alive, answers 200 to every POST.

It counts what it receives and keeps each message's arrival time by ``webhook-id``:
``GET /stats`` answers ``{"received": n, "unique": u, "first": t, "last": t}`` (the first and last
arrival, seconds since the epoch, null before any), ``GET /arrivals`` the arrival times by
the ``data.id`` of the body (the latency benchmark's clock), ``DELETE /stats`` starts over.

    python -m bench.receiver PORT
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class Tally:
    """What arrived: a count, the distinct webhook ids, and arrival times of timed messages."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received = 0
        self.ids: set[str] = set()
        self.arrivals: dict[str, float] = {}
        self.first: float | None = None
        self.last: float | None = None

    def add(self, webhook_id: str | None, timed_id: str | None) -> None:
        now = time.time()
        with self.lock:
            self.received += 1
            if self.first is None:
                self.first = now
            self.last = now
            if webhook_id:
                self.ids.add(webhook_id)
            if timed_id is not None:
                self.arrivals.setdefault(timed_id, now)

    def stats(self) -> dict[str, float | None]:
        with self.lock:
            return {"received": self.received, "unique": len(self.ids), "first": self.first, "last": self.last}

    def reset(self) -> None:
        with self.lock:
            self.received = 0
            self.ids.clear()
            self.arrivals.clear()
            self.first = self.last = None


TALLY = Tally()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        timed_id = None
        if self.path.startswith("/timed"):
            timed_id = str(json.loads(body)["data"]["id"])
        TALLY.add(self.headers.get("webhook-id"), timed_id)
        self.wfile.write(RESPONSE)  # one send: no Nagle / delayed-ACK stall

    def do_GET(self) -> None:
        if self.path == "/arrivals":
            with TALLY.lock:
                self._json(dict(TALLY.arrivals))
        else:
            self._json(TALLY.stats())

    def do_DELETE(self) -> None:
        TALLY.reset()
        self._json(TALLY.stats())

    def _json(self, value: object) -> None:
        data = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
