"""The attempt journal: each send's start and outcome, noted in Redis as they happen.

A worker killed after a receiver answered, but before the answer reached the database, would
otherwise have that delivery sent again when its claim is taken over: a duplicate. Results reach the
database in batches, tens to hundreds of milliseconds late under load; a journal note reaches
Redis within a millisecond or so, written by a thread of its own a pipeline at a time.

Maintenance, settling a lost worker's claims, reads the journal first. An outcome found there
is recorded instead of sent again; an attempt that started but never ended is logged as
interrupted (its outcome is unknown) and retried on the schedule, so the attempts a receiver may
have seen have log rows.

The journal's thread also keeps a liveness key for its process. Claim tokens name the process
that holds them, so maintenance settles a lost worker's claims within seconds of its key expiring
(while its journal is fresh), instead of waiting for their lease to end.

The database stays the source of truth. The journal can only save a resend: if Redis is down or
lost its data, or the worker died within the millisecond before its note was written, the
delivery is sent again, as it would be without a journal (at least once). An entry lives from the
start of its attempt until its result is committed.
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from redis import Redis
from redis.exceptions import RedisError

from flask_async_events import redis_connection
from flask_async_events.models import RESPONSE_EXCERPT
from flask_async_events.notifiers.base import NotifyResult

log = logging.getLogger("flask_async_events")

KEY = "async_events:attempt:{}:{}"
ALIVE_KEY = "async_events:alive:{}"
STARTED = "started"
HEARTBEAT = 1.0
ALIVE_TTL = 4  # no heartbeat for this long: the process is gone
OWNER_MARK = "."  # claim tokens are "<owner>.<claim>"; older plain tokens wait for their lease
TIMEOUT = 1.0  # a Redis that hangs holds the journal's thread (and its heartbeat) this long at most
TTL = 24 * 3600  # only a lost worker's entries outlive their record, until another worker reads them
WARN_EVERY = 60.0
WRITE_BATCH = 500
MAX_PENDING = 100_000  # notes waiting for Redis; more are dropped (the journal only saves resends)

AttemptKey = tuple[int, int]  # (delivery id, attempt number)
Note = list[tuple[AttemptKey, str | None]]  # None: forget


@dataclass(frozen=True)
class Staged:
    """What the journal knows of one attempt: its outcome, or None if it never ended."""

    result: NotifyResult | None
    duration_ms: int | None = None


class AttemptJournal:
    """The journal of one worker process. Notes are written by a thread of their own, in order and
    a pipeline at a time, so a send never waits for Redis; nothing here raises."""

    def __init__(self, connection: Redis) -> None:
        self._redis = redis_connection.clone(connection, socket_timeout=TIMEOUT)
        self._notes: queue.SimpleQueue[Note | None] = queue.SimpleQueue()
        self._written = threading.Condition()
        self._pending = 0
        self._warned = 0.0
        self.owner = secrets.token_hex(7)
        self._write([], beat=True)  # alive before the first claim
        self._thread = threading.Thread(target=self._write_loop, name="async-events-journal", daemon=True)
        self._thread.start()

    def claim_token(self) -> str:
        """A new claim token that names this process (32 characters at most)."""
        return f"{self.owner}{OWNER_MARK}{secrets.token_hex(8)}"

    def started(self, attempts: Sequence[AttemptKey]) -> None:
        self._note(attempts, [STARTED] * len(attempts))

    def finished(self, attempts: Sequence[AttemptKey], results: Sequence[tuple[NotifyResult, int]]) -> None:
        entries = []
        for result, duration_ms in results:
            fields = {**asdict(result), "response_data": result.response_data[:RESPONSE_EXCERPT]}
            entries.append(json.dumps({"result": fields, "duration_ms": duration_ms}))
        self._note(attempts, entries)

    def forget(self, attempts: Sequence[AttemptKey]) -> None:
        """Drop the entries of attempts whose result is now in the database (after their notes)."""
        self._note(attempts, [None] * len(attempts))

    def flush(self, timeout: float) -> bool:
        """Wait until every note so far is written (or failed); False on timeout."""
        with self._written:
            return self._written.wait_for(lambda: not self._pending, timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Write what is noted, and say this process is gone (its claims are recorded or handed back)."""
        self.flush(timeout)
        self._notes.put(None)
        self._thread.join(timeout)
        try:
            self._redis.delete(ALIVE_KEY.format(self.owner))
        except RedisError as exc:
            self._warn(exc)
        self._redis.close()

    def _note(self, attempts: Sequence[AttemptKey], values: Sequence[str | None]) -> None:
        if not attempts:
            return
        with self._written:
            if self._pending >= MAX_PENDING:  # Redis hangs: a note is worth less than the memory
                return
            self._pending += 1
        self._notes.put(list(zip(attempts, values, strict=True)))

    def _write_loop(self) -> None:
        beat_at = time.monotonic() + HEARTBEAT
        while True:
            try:
                first = self._notes.get(timeout=max(0.0, beat_at - time.monotonic()))
            except queue.Empty:
                first = []
            if first is None:
                return
            notes = [first] if first else []
            while notes and len(notes) < WRITE_BATCH:
                try:
                    note = self._notes.get_nowait()
                except queue.Empty:
                    break
                if note is None:
                    self._notes.put(None)
                    break
                notes.append(note)
            beat = time.monotonic() >= beat_at
            if beat:
                beat_at = time.monotonic() + HEARTBEAT
            self._write(notes, beat=beat)
            with self._written:
                self._pending -= len(notes)
                self._written.notify_all()

    def _write(self, notes: list[Note], *, beat: bool) -> None:
        pipeline = self._redis.pipeline(transaction=False)
        if beat:
            pipeline.set(ALIVE_KEY.format(self.owner), 1, ex=ALIVE_TTL)
        for note in notes:
            for attempt, value in note:
                key = KEY.format(*attempt)
                if value is None:
                    pipeline.delete(key)
                else:
                    pipeline.set(key, value, ex=TTL)
        try:
            pipeline.execute()
        except RedisError as exc:
            self._warn(exc)

    def _warn(self, exc: RedisError) -> None:
        """Say so once a minute, not once per send, while Redis is away."""
        if time.monotonic() - self._warned > WARN_EVERY:
            self._warned = time.monotonic()
            log.warning("Could not write the attempt journal (%s); a worker lost now would send again", exc)


def _staged(value: bytes | str) -> Staged:
    if value in (STARTED, STARTED.encode()):
        return Staged(None)
    entry = json.loads(value)
    return Staged(NotifyResult(**entry["result"]), entry["duration_ms"])


def recall(connection: Redis, attempts: Sequence[AttemptKey]) -> dict[AttemptKey, Staged]:
    """The journal's entries for ``attempts``, those it has."""
    if not attempts:
        return {}
    values = connection.mget([KEY.format(*attempt) for attempt in attempts])
    return {attempt: _staged(value) for attempt, value in zip(attempts, values, strict=True) if value is not None}


def forget(connection: Redis, attempts: Sequence[AttemptKey]) -> None:
    """Drop entries now (their results are in the database); those left expire by themselves."""
    if attempts:
        connection.delete(*[KEY.format(*attempt) for attempt in attempts])


def claim_owner(token: str) -> str | None:
    """The process a claim token names, if it names one."""
    owner, mark, _ = token.partition(OWNER_MARK)
    return owner if mark else None


def lost_owners(connection: Redis, owners: Iterable[str]) -> set[str]:
    """The processes among ``owners`` whose liveness key has expired."""
    candidates = sorted(owners)
    if not candidates:
        return set()
    alive = connection.mget([ALIVE_KEY.format(owner) for owner in candidates])
    return {owner for owner, value in zip(candidates, alive, strict=True) if value is None}
