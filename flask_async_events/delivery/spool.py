"""The attempt journal's copy on this host's disk: what outlives Redis losing its data.

A worker writes each journal note to a file of its own before the note goes anywhere else, on the
sending thread itself: one ``write(2)`` into the page cache, which a SIGKILL cannot undo, so an
answer is on disk within microseconds of arriving. The Redis copy, written a moment later by the
journal's thread, is what maintenance on any host reads; this one is what survives when Redis
restarts empty or fails over to a replica that had not received the last notes.

Each process holds an exclusive ``flock`` on its ``<owner>.lock`` for as long as it lives, so a
lock anyone can take names a process that is gone (whatever became of its pid; a child it forked,
such as RQ's scheduler, does not keep the lock). Every worker on the host looks for those once a
second (:func:`revive_lost`) and puts their entries back in Redis, once per Redis lifetime (a
marker key says it was done), for as long as the lost worker's claims may still be settled. The
entries name their delivery's uuid, so an entry can never be taken for another delivery that has
the same row id (another database, or one restored from a backup).

A spool is a few kilobytes: it holds one line per note, and is rewritten with only the attempts
still open once it grows past :data:`ROTATE_BYTES`. A process that stops cleanly removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError

from flask_async_events.config import Settings
from flask_async_events.delivery.types import AttemptKey

log = logging.getLogger("flask_async_events")

Note = Sequence[tuple[AttemptKey, str | None]]  # an entry's new value; None: forget it
FORGET = "-"
ROTATE_BYTES = 1 << 20
KEEP_LOST = 15 * 60  # seconds a lost worker's spool is kept after its last note
REVIVED_KEY = "async_events:revived:{}"  # this Redis has a lost owner's entries
LOCK_SUFFIX = ".lock"
SEGMENT_SUFFIX = ".journal"


_HELD: set[int] = set()  # this process's spool descriptors, none of which a forked child may keep


def _close_held_in_child() -> None:
    """In a forked child (RQ forks its scheduler): close the parent's spool descriptors, so its
    lock is released when the parent dies, whoever it forked."""
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


def _held(fd: int) -> int:
    _HELD.add(fd)
    return fd


def _release(fd: int) -> None:
    _HELD.discard(fd)
    os.close(fd)


def entry_field(key: AttemptKey) -> str:
    """An attempt's field in its process's journal hash in Redis."""
    return f"{key[0]}:{key[1]}"


def spool_directory(settings: Settings) -> Path | None:
    """Where an app's workers keep their spools (None: nowhere): a folder per Redis, so apps
    sharing ``ASYNC_EVENTS_JOURNAL_DIR`` never revive each other's entries."""
    if settings.journal_dir is None:
        return None
    return Path(settings.journal_dir) / hashlib.sha256((settings.redis_url or "").encode()).hexdigest()[:16]


class Spool:
    """The journal file of one worker process. Writes are atomic appends under a lock; nothing
    here raises once the spool is open: a disk that fails turns it off, with a warning. A forked
    child has none of it: its copy does nothing."""

    def __init__(self, directory: Path, owner: str) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._directory, self._owner, self._pid = directory, owner, os.getpid()
        self._lock_fd = _held(os.open(directory / f"{owner}{LOCK_SUFFIX}", os.O_CREAT | os.O_RDWR, 0o600))
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._mutex = threading.Lock()
        self._open: dict[AttemptKey, str] = {}  # each unforgotten entry's latest value
        self._generation = 0
        self._fd: int | None = self._new_segment()
        self._size = 0

    def write(self, note: Note) -> None:
        if self._pid != os.getpid():
            return
        data = "".join(_line(key, value) for key, value in note).encode()
        with self._mutex:
            if self._fd is None:
                return
            for key, value in note:
                if value is None:
                    self._open.pop(key, None)
                else:
                    self._open[key] = value
            try:
                _write_all(self._fd, data)
                self._size += len(data)
                if self._size > ROTATE_BYTES:
                    self._rotate()
            except OSError as exc:
                log.warning("Could not write the attempt journal's spool in %s (%s); turned off", self._directory, exc)
                if self._fd is not None:
                    _release(self._fd)
                    self._fd = None

    def close(self, *, remove: bool = True) -> None:
        """Close the spool, and ``remove`` it: this process stopped cleanly, every claim recorded
        or handed back. Kept, its lock released, it is a lost worker's spool like any other."""
        if self._pid != os.getpid():
            return
        with self._mutex:
            if self._fd is not None:
                _release(self._fd)
                self._fd = None
            if remove:
                _remove(_spools(self._directory).get(self._owner, []), self._directory / f"{self._owner}{LOCK_SUFFIX}")
            _release(self._lock_fd)

    def _segment_path(self, generation: int) -> Path:
        return self._directory / f"{self._owner}.{generation}{SEGMENT_SUFFIX}"

    def _new_segment(self) -> int:
        return _held(os.open(self._segment_path(self._generation), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600))

    def _rotate(self) -> None:
        """Start a segment holding only the open entries, then drop the old one: a kill between
        the two leaves both, and reading them in order gives the same answer. If the new one
        cannot be written, the old one stays as it is (and the spool is turned off)."""
        old_fd, old_path = self._fd, self._segment_path(self._generation)
        assert old_fd is not None
        self._generation += 1
        self._fd = None
        try:
            self._fd = self._new_segment()
            data = "".join(_line(key, value) for key, value in self._open.items()).encode()
            _write_all(self._fd, data)
        finally:
            _release(old_fd)
        self._size = len(data)
        old_path.unlink(missing_ok=True)


def _write_all(fd: int, data: bytes) -> None:
    """One append of ``data``; a short one (the disk is full) is an error, not half a line."""
    if os.write(fd, data) != len(data):
        raise OSError(f"wrote less than {len(data)} bytes")


def _line(key: AttemptKey, value: str | None) -> str:
    return f"{key[0]} {key[1]} {FORGET if value is None else value}\n"


def _spools(directory: Path) -> dict[str, list[Path]]:
    """Each owner's segments in ``directory``, oldest first."""
    return _listing(directory)[0]


def _listing(directory: Path) -> tuple[dict[str, list[Path]], set[str]]:
    """One listing of ``directory``: each owner's segments, oldest first, and the owners with a lock
    file."""
    found: dict[str, list[tuple[int, Path]]] = {}
    locked = set()
    for name in os.listdir(directory):
        if name.endswith(LOCK_SUFFIX):
            locked.add(name[: -len(LOCK_SUFFIX)])
            continue
        if not name.endswith(SEGMENT_SUFFIX):
            continue
        owner, dot, generation = name[: -len(SEGMENT_SUFFIX)].rpartition(".")
        if dot and generation.isdigit():
            found.setdefault(owner, []).append((int(generation), directory / name))
    return {owner: [path for _, path in sorted(segments)] for owner, segments in found.items()}, locked


def read_entries(directory: Path, owner: str) -> dict[AttemptKey, str]:
    """The open entries of an owner's spool: each attempt's latest note, forgotten ones left out."""
    return _read(_spools(directory).get(owner, []))


def _read(segments: list[Path]) -> dict[AttemptKey, str]:
    """The open entries of a spool's ``segments``. A line cut short by a kill (no newline yet) is
    not an entry."""
    entries: dict[AttemptKey, str] = {}
    for path in segments:
        for line in _whole_lines(path):
            delivery, _, rest = line.partition(" ")
            attempt, _, value = rest.partition(" ")
            if not (delivery.isdigit() and attempt.isdigit() and value):
                continue
            key = (int(delivery), int(attempt))
            if value == FORGET:
                entries.pop(key, None)
            else:
                entries[key] = value
    return entries


def _remove(segments: list[Path], lock_path: Path) -> None:
    """Remove a lost worker's spool (while holding its lock)."""
    for path in segments:
        path.unlink(missing_ok=True)
    lock_path.unlink(missing_ok=True)


def _whole_lines(path: Path) -> Iterator[str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    for line in data.split(b"\n")[:-1]:
        yield line.decode("utf-8", "replace")


def revive_lost(connection: Redis, directory: Path, *, journal_key: str, ttl: int) -> int:
    """Put the entries of this host's lost workers back in Redis, in the hash ``journal_key`` names
    for each (Redis lost
    them, or the worker died before its thread wrote them), once per Redis lifetime; drop spools
    older than :data:`KEEP_LOST`. A live process's spool is locked, this one's too. One listing of
    the folder and one round trip when nothing is to be put back. Return how many entries were
    written."""
    try:
        segments, locked = _listing(directory)
    except FileNotFoundError:
        return 0  # no worker of this host has had a spool
    held: dict[str, int] = {}  # lost owners whose lock we hold
    try:
        for owner in locked & segments.keys():
            fd = _lock_if_lost(directory / f"{owner}{LOCK_SUFFIX}")
            if fd is not None:
                held[owner] = fd
        return _revive(connection, directory, {owner: segments[owner] for owner in held}, journal_key, ttl)
    except (OSError, RedisError) as exc:
        log.warning("Could not revive the journal spools of lost workers in %s (%s)", directory, exc)
        return 0
    finally:
        for fd in held.values():
            _release(fd)  # releases the lock


def _lock_if_lost(lock_path: Path) -> int | None:
    """A descriptor holding the lock of a spool whose process is gone; None if it is alive (or
    stopped cleanly just now). A spool with no segment yet is a process too new to have locked
    its file: :func:`revive_lost` only looks at owners with segments."""
    try:
        fd = _held(os.open(lock_path, os.O_RDWR))
    except FileNotFoundError:
        return None  # its process stopped cleanly just now
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _release(fd)
        return None  # its process is alive
    if not lock_path.exists():  # removed by its process as it stopped, before we had the lock
        _release(fd)
        return None
    return fd


def _revive(connection: Redis, directory: Path, lost: dict[str, list[Path]], journal_key: str, ttl: int) -> int:
    """Revive the spools of ``lost`` owners (their locks held) that this Redis has not had yet."""
    recent = _recent(directory, lost)
    if not recent:
        return 0
    markers = connection.mget([REVIVED_KEY.format(owner) for owner in recent])
    pipeline = connection.pipeline(transaction=False)
    revived = {}
    for (owner, segments), marker in zip(recent.items(), markers, strict=True):
        if marker is not None:
            continue  # this Redis has it already
        entries = _read(segments)
        if not entries:  # every attempt it noted was recorded: nothing to keep
            _remove(segments, directory / f"{owner}{LOCK_SUFFIX}")
            continue
        _put_back(pipeline, owner, journal_key.format(owner), entries, ttl)
        revived[owner] = len(entries)
    if revived:
        pipeline.execute()
    for owner, count in revived.items():
        log.warning("Revived %d attempt journal entry(ies) of lost worker %s", count, owner)
    return sum(revived.values())


def _put_back(pipeline: Pipeline, owner: str, key: str, entries: dict[AttemptKey, str], ttl: int) -> None:
    """Queue on ``pipeline`` the writes that put a lost owner's entries back in its journal, and
    mark it revived (so a later maintenance does not revive it again)."""
    pipeline.hset(key, mapping={entry_field(attempt): value for attempt, value in entries.items()})
    pipeline.expire(key, ttl)
    pipeline.set(REVIVED_KEY.format(owner), 1, ex=KEEP_LOST)


def _recent(directory: Path, lost: dict[str, list[Path]]) -> dict[str, list[Path]]:
    """The lost owners whose spool was written within :data:`KEEP_LOST`; older ones are removed."""
    recent = {}
    for owner, segments in lost.items():
        if time.time() - max(path.stat().st_mtime for path in segments) > KEEP_LOST:
            _remove(segments, directory / f"{owner}{LOCK_SUFFIX}")
        else:
            recent[owner] = segments
    return recent
