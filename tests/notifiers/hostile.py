"""Receivers that misbehave on purpose, on raw sockets on loopback, each on a port of its own.

Every connection is handled on a thread that ends by itself: the longest behaviour lasts
:data:`LONGEST` seconds, and a client that goes away ends it at once.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

LONGEST = 20.0  # seconds any one behaviour may go on for
# Called with the connection and the request's number on it; True: read the next request.
Behaviour = Callable[[socket.socket, int], bool | None]


def _until(seconds: float) -> Iterator[None]:
    """Yield every so often until ``seconds`` have passed (never longer than LONGEST)."""
    end = time.monotonic() + min(seconds, LONGEST)
    while time.monotonic() < end:
        yield


def drip_headers(conn: socket.socket, number: int) -> None:
    """A status line, then a byte of a header every 0.2 s."""
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for _ in _until(LONGEST):
        conn.sendall(b"X")
        time.sleep(0.2)


def drip_body(conn: socket.socket, number: int) -> None:
    """Headers promising a body, then a byte of it every 0.2 s."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    for _ in _until(LONGEST):
        conn.sendall(b"x")
        time.sleep(0.2)


def never_answer(conn: socket.socket, number: int) -> None:
    """Reads the request and says nothing."""
    for _ in _until(LONGEST):
        time.sleep(0.2)


def garbage(conn: socket.socket, number: int) -> None:
    """Bytes that are not HTTP."""
    conn.sendall(b"\x00\xffSSH-2.0-not-http\r\n\r\n" * 50)


def huge_body(conn: socket.socket, number: int) -> None:
    """A 200 with a 300 MB body, sent as fast as the client takes it."""
    size = 300 * 1024 * 1024
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % size)
    chunk = b"y" * 65536
    for _ in range(size // len(chunk)):
        conn.sendall(chunk)


def endless_chunks(conn: socket.socket, number: int) -> None:
    """A 200 with a chunked body that never ends."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"z" * 65536)
    for _ in _until(LONGEST):
        conn.sendall(chunk)


def healthy(conn: socket.socket, number: int) -> bool:
    """A 200 at once; the connection is kept alive for the next request."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    return True


def hang_up_on_the_second(conn: socket.socket, number: int) -> bool:
    """A 200 for a connection's first request; its second is read, then the connection closed."""
    if number == 1:
        return healthy(conn, number)
    return False


def _read_request(conn: socket.socket) -> bool:
    """Read one request (headers and a Content-Length body); False once the client has gone."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        body += chunk
    return True


class HostileServer:
    """A listening socket on ``host`` that answers each request with ``behaviour``; ``requests``
    counts them."""

    def __init__(self, behaviour: Behaviour, host: str = "127.0.0.1") -> None:
        self.behaviour = behaviour
        self.listener = socket.create_server((host, 0))
        self.url = f"http://{host}:{self.listener.getsockname()[1]}/hook"
        self.requests = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                number = 0
                while _read_request(conn):
                    number += 1
                    with self._lock:
                        self.requests += 1
                    if not self.behaviour(conn, number):
                        return
            except OSError:  # the client hung up: that is what a deadline does
                pass

    def close(self) -> None:
        self.listener.close()


@contextmanager
def hostile(*behaviours: Behaviour, host: str = "127.0.0.1") -> Iterator[list[HostileServer]]:
    """Servers for ``behaviours``, closed afterwards."""
    servers = [HostileServer(behaviour, host) for behaviour in behaviours]
    try:
        yield servers
    finally:
        for server in servers:
            server.close()
