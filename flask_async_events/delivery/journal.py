"""The attempt journal: each send's start and outcome, noted in Redis as they happen.

A worker killed after a receiver answered, but before the answer reached the database, would
otherwise have that delivery sent again when its claim is taken over: a duplicate. Results reach the
database in batches, tens to hundreds of milliseconds late under load; a journal note reaches
Redis within a millisecond or so, written by a thread of its own a pipeline at a time. Each process
keeps its entries in one hash of its own (a field per attempt), so a write is a few commands
however many notes it carries, and whoever settles a claim knows where to look: the claim token
names the process.

Maintenance, settling a lost worker's claims, reads the journal first. An outcome found there
is recorded instead of sent again; an attempt that started but never ended is logged as
interrupted (its outcome is unknown) and retried on the schedule, so the attempts a receiver may
have seen have log rows.

The journal's thread also keeps a liveness key for its process. Claim tokens name the process
that holds them, so maintenance settles a lost worker's claims within seconds of its key expiring
(while its journal is fresh), instead of waiting for their lease to end.

Each note is first written to the process's spool on this host's disk
(:mod:`flask_async_events.delivery.spool`), on the sending thread, before the Redis copy: when Redis
restarts empty or fails over to a replica that missed the last notes, the workers on the host put a
lost worker's entries back. Every entry names its delivery's uuid, and one is only ever used for
the delivery it names.

The database stays the source of truth. The journal can only save a resend: if neither copy has
a note (the worker died in the microseconds between an answer and its note, or its host went with
Redis), the delivery is sent again, as it would be without a journal (at least once). An entry
lives from the start of its attempt until its result is committed.
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from flask_async_events import redis_connection
from flask_async_events.delivery.spool import KEEP_LOST, Note, Spool, entry_field, revive_lost
from flask_async_events.delivery.types import AttemptKey
from flask_async_events.models import RESPONSE_EXCERPT
from flask_async_events.notifiers.base import NotifyResult
from flask_async_events.threads import start_thread

log = logging.getLogger("flask_async_events")

KEY = "async_events:journal:{}"  # a hash per process: a field per attempt (spool.entry_field)
ALIVE_KEY = "async_events:alive:{}"
HEARTBEAT = 1.0
ALIVE_TTL = 4  # no heartbeat for this long: the process is gone
OWNER_MARK = "."  # claim tokens are "<owner>.<claim>"; older plain tokens wait for their lease
TIMEOUT = 1.0  # a Redis that hangs holds the journal's thread (and its heartbeat) twice this at most
# One immediate retry (a connection Redis dropped when it restarted), none of the client's backoffs,
# which would hold up the heartbeat for seconds: notes Redis refused are sent again with the next write.
RETRY = Retry(NoBackoff(), 1)
TTL = 24 * 3600  # a lost worker's hash outlives its last note by this, until another worker reads it
WARN_EVERY = 60.0
WRITE_BATCH = 500
# After a write, the thread waits this long for more notes: a note written alone costs a pipeline's
# round trip and bookkeeping, a third of a sending worker's journal CPU. The spool has each note at once.
LINGER = 0.002
MAX_PENDING = 100_000  # notes waiting for Redis; more are dropped (the journal only saves resends)


class Attempted(Protocol):
    """One attempt as the journal names it: its key, and the uuid of its delivery."""

    @property
    def attempt_key(self) -> AttemptKey: ...

    @property
    def uuid(self) -> str: ...


@dataclass(frozen=True)
class Staged:
    """What the journal knows of one attempt of the delivery ``uuid``: its outcome, or None if it
    never ended."""

    uuid: str
    result: NotifyResult | None
    duration_ms: int | None = None


class AttemptJournal:
    """The journal of one worker process. Notes are written by a thread of their own, in order and
    a pipeline at a time, so a send never waits for Redis; nothing here raises once it is made.
    With a ``spool`` folder, each note is also written there first, at once (see
    :mod:`flask_async_events.delivery.spool`)."""

    def __init__(self, connection: Redis, spool: Path | None = None) -> None:
        self._redis = redis_connection.clone(connection, socket_timeout=TIMEOUT, retry=RETRY)
        self._notes: queue.SimpleQueue[Note | None] = queue.SimpleQueue()
        self._written = threading.Condition()
        self._pending = 0
        self._warned = 0.0
        self.owner = secrets.token_hex(7)
        self._spool_folder, self._spool = spool, None
        if spool is not None:
            try:
                self._spool = Spool(spool, self.owner)
            except OSError as exc:
                self._spool_folder = None
                log.warning("Could not open the journal's spool in %s (%s); journaling to Redis only", spool, exc)
        self._write([], beat=True)  # alive before the first claim
        self._thread = start_thread(self._write_loop, "journal")

    def claim_token(self) -> str:
        """A new claim token that names this process."""
        return claim_token_of(self.owner)

    def started(self, attempts: Sequence[Attempted]) -> None:
        self._note([(a.attempt_key, f'{{"uuid": "{a.uuid}"}}') for a in attempts])  # a uuid is hex

    def finished(self, attempts: Sequence[Attempted], results: Sequence[tuple[NotifyResult, int]]) -> None:
        entries = []
        for attempt, (result, duration_ms) in zip(attempts, results, strict=True):
            fields = {**vars(result), "response_data": result.response_data[:RESPONSE_EXCERPT]}  # asdict copies deep
            entry = {"uuid": attempt.uuid, "result": fields, "duration_ms": duration_ms}
            entries.append((attempt.attempt_key, json.dumps(entry)))
        self._note(entries)

    def forget(self, attempts: Sequence[AttemptKey]) -> None:
        """Drop the entries of attempts whose result is now in the database (after their notes)."""
        self._note([(attempt, None) for attempt in attempts])

    def flush(self, timeout: float) -> bool:
        """Wait until every note so far is written (or failed); False on timeout."""
        with self._written:
            return self._written.wait_for(lambda: not self._pending, timeout)

    def close(self, timeout: float = 2.0, *, drained: bool = True) -> None:
        """Write what is noted, and say this process is gone. ``drained``: its claims are recorded
        or handed back, so its spool goes too; otherwise the spool stays for the workers of this
        host to put back, as a lost worker's would."""
        self.flush(timeout)
        self._notes.put(None)
        self._thread.join(timeout)
        try:
            self._redis.delete(ALIVE_KEY.format(self.owner))
        except RedisError as exc:
            self._warn(exc)
        self._redis.close()
        if self._spool is not None:
            self._spool.close(remove=drained)

    def _note(self, note: Note) -> None:
        if not note:
            return
        if self._spool is not None:
            self._spool.write(note)
        with self._written:
            if self._pending >= MAX_PENDING:  # Redis hangs: a note is worth less than the memory
                return
            self._pending += 1
        self._notes.put(note)

    def _write_loop(self) -> None:
        beat_at = time.monotonic() + HEARTBEAT
        unsent: list[Note] = []  # what Redis refused, sent again first with the next write
        while (notes := self._next_notes(beat_at)) is not None:
            beat = time.monotonic() >= beat_at
            if beat:
                beat_at = time.monotonic() + HEARTBEAT
            unsent = self._flush(unsent, notes, beat=beat)
            if notes:
                time.sleep(LINGER)  # what is noted meanwhile goes in the next write, together

    def _next_notes(self, beat_at: float) -> list[Note] | None:
        """The notes waiting, up to a write's worth, the first awaited until the next heartbeat is
        due (then none); None once the journal closes."""
        try:
            first = self._notes.get(timeout=max(0.0, beat_at - time.monotonic()))
        except queue.Empty:
            return []
        if first is None:
            return None
        notes = [first]
        while len(notes) < WRITE_BATCH:
            try:
                note = self._notes.get_nowait()
            except queue.Empty:
                break
            if note is None:
                self._notes.put(None)  # closing: the loop ends after this write
                break
            notes.append(note)
        return notes

    def _flush(self, unsent: list[Note], notes: list[Note], *, beat: bool) -> list[Note]:
        """Write what Redis refused before, then ``notes``; return what it refuses now (the latest
        :data:`MAX_PENDING`, for the next write). A heartbeat that Redis takes also revives the spools
        of this host's lost workers."""
        written = self._write([*unsent, *notes], beat=beat)
        if written and beat and self._spool_folder is not None:
            revive(self._redis, self._spool_folder)
        with self._written:
            self._pending -= len(notes)
            self._written.notify_all()
        return [] if written else [*unsent, *notes][-MAX_PENDING:]

    def _write(self, notes: list[Note], *, beat: bool) -> bool:
        """Send ``notes`` (and the heartbeat) in one pipeline of a few commands, each attempt's
        latest note only; False if Redis did not take them."""
        latest = _latest(notes)
        forgotten = [field for field, value in latest.items() if value is None]
        key = KEY.format(self.owner)
        pipeline = self._redis.pipeline(transaction=False)
        if beat:
            pipeline.set(ALIVE_KEY.format(self.owner), 1, ex=ALIVE_TTL)
        if forgotten:
            pipeline.hdel(key, *forgotten)
        if len(forgotten) < len(latest):
            pipeline.hset(key, mapping={field: value for field, value in latest.items() if value is not None})
            pipeline.expire(key, TTL)
        try:
            pipeline.execute()
        except RedisError as exc:
            self._warn(exc)
            return False
        return True

    def _warn(self, exc: RedisError) -> None:
        """Say so once a minute, not once per send, while Redis is away."""
        if time.monotonic() - self._warned > WARN_EVERY:
            self._warned = time.monotonic()
            log.warning("Could not write the attempt journal (%s); a worker lost now would send again", exc)


def _latest(notes: list[Note]) -> dict[str, str | None]:
    """Each attempt's latest entry among ``notes``, by journal field (None: forget it)."""
    return {entry_field(attempt): value for note in notes for attempt, value in note}


def revive(connection: Redis, folder: Path) -> None:
    """Put back in Redis the entries this host's lost workers have in their spools (see
    :func:`~flask_async_events.delivery.spool.revive_lost`)."""
    revive_lost(connection, folder, journal_key=KEY, ttl=KEEP_LOST)


def _staged(value: bytes | str) -> Staged | None:
    """An entry as it was written, or None for one this version cannot read (made by another)."""
    try:
        entry = json.loads(value)
        result = entry.get("result")
        return Staged(entry["uuid"], None if result is None else NotifyResult(**result), entry.get("duration_ms"))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def recall(connection: Redis, owner: str, attempts: Sequence[Attempted]) -> dict[AttemptKey, Staged]:
    """The entries ``owner`` (the process that held the claims) journaled for ``attempts``: those
    that name the attempt's delivery."""
    if not attempts:
        return {}
    values = connection.hmget(KEY.format(owner), [entry_field(attempt.attempt_key) for attempt in attempts])
    found = {}
    for attempt, value in zip(attempts, values, strict=True):
        staged = None if value is None else _staged(value)
        if staged is not None and staged.uuid == attempt.uuid:
            found[attempt.attempt_key] = staged
    return found


def forget(connection: Redis, owner: str, attempts: Sequence[AttemptKey]) -> None:
    """Drop the entries ``owner`` journaled for ``attempts`` now (their results are in the database)."""
    if attempts:
        connection.hdel(KEY.format(owner), *[entry_field(attempt) for attempt in attempts])


def claim_token_of(owner: str) -> str:
    """A new claim token that names ``owner``, the process whose journal has the claim's
    attempts (32 characters at most)."""
    return f"{owner}{OWNER_MARK}{secrets.token_hex(8)}"


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
