"""The attempt journal: each attempt noted in Redis (and in its spool on disk) before and after its
send, so that a lost worker's answers are recorded, never sent again."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from flask_async_events.delivery import journal as journal_module
from flask_async_events.delivery.journal import KEY, AttemptJournal, Staged, recall, revive
from flask_async_events.delivery.spool import Spool, read_entries, revive_lost
from flask_async_events.notifiers.base import NotifyResult
from tests.conftest import AppEnv, wait_for
from tests.helpers import Try

ANSWERED = NotifyResult(True, status_code=200, response_data="ok")


def test_the_journal_notes_attempts_and_never_fails_a_send(env: AppEnv, caplog: pytest.LogCaptureFixture) -> None:
    redis = env.redis.client()
    journal = AttemptJournal(redis)
    journal.started([Try((1, 1)), Try((2, 1))])
    journal.finished([Try((2, 1))], [(ANSWERED, 12)])
    assert journal.flush(5)
    uuid = Try((1, 1)).uuid
    expected = {(1, 1): Staged(uuid, None), (2, 1): Staged(uuid, ANSWERED, 12)}
    assert recall(redis, journal.owner, [Try((1, 1)), Try((2, 1)), Try((3, 1))]) == expected
    assert recall(redis, journal.owner, [Try((2, 1), uuid="another")]) == {}  # only for the delivery it names
    assert recall(redis, "another-worker", [Try((2, 1))]) == {}  # only for a claim of the process that wrote it
    journal.forget([(1, 1), (2, 1)])
    assert journal.flush(5)
    assert recall(redis, journal.owner, [Try((1, 1)), Try((2, 1))]) == {}
    env.redis.stop()
    try:
        journal.started([Try((4, 1))])
        journal.finished([Try((4, 1))], [(ANSWERED, 3)])
        journal.started([Try((5, 1))])
        journal.forget([(5, 1)])
        assert journal.flush(5)  # written off, not stuck
    finally:
        env.redis.start()
    assert caplog.text.count("Could not write the attempt journal") == 1  # once a minute, not per note
    # Kept and sent again once Redis is back (here with the next heartbeat).
    wait_for(
        lambda: recall(redis, journal.owner, [Try((4, 1))]) == {(4, 1): Staged(Try((4, 1)).uuid, ANSWERED, 3)},
        timeout=5,
    )
    assert redis.hkeys(KEY.format(journal.owner)) == [b"4:1"]  # each attempt's latest note only
    journal.close()


def test_the_journal_drops_notes_rather_than_memory_while_redis_hangs(
    env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setattr(journal_module, "MAX_PENDING", 2)
    journal = AttemptJournal(env.redis.client())
    writing, hung = threading.Event(), threading.Event()
    write = journal._write

    def hanging_write(*args: Any, **kwargs: Any) -> None:
        writing.set()
        hung.wait(10)  # Redis does not answer
        write(*args, **kwargs)

    monkeypatch.setattr(journal, "_write", hanging_write)
    journal.started([Try((1, 1))])
    assert writing.wait(5)  # the writer holds the first note
    journal.started([Try((2, 1))])
    journal.started([Try((3, 1))])  # one note too many: dropped
    hung.set()
    assert journal.flush(5)
    recalled = recall(env.redis.client(), journal.owner, [Try((1, 1)), Try((2, 1)), Try((3, 1))])
    assert set(recalled) == {(1, 1), (2, 1)}
    journal.close()


def test_a_journal_writes_its_spool_before_redis_and_removes_it_when_closed(env: AppEnv, spool: Path) -> None:
    redis = env.redis.client()
    journal = AttemptJournal(redis, spool)
    env.redis.stop()
    try:
        journal.started([Try((7, 2))])
        journal.finished([Try((7, 2))], [(ANSWERED, 5)])
        assert journal.flush(5)  # Redis is away: the spool has the note all the same
        [entry] = read_entries(spool, journal.owner).values()
        assert '"status_code": 200' in entry
    finally:
        env.redis.start()
    journal.forget([(7, 2)])
    assert read_entries(spool, journal.owner) == {}
    journal.close()
    assert list(spool.iterdir()) == []
    revive(redis, spool)  # nothing of a cleanly stopped journal to put back
    assert redis.keys("async_events:journal:*") == []


def test_a_journal_closed_before_its_sends_ended_leaves_its_spool_for_the_host(env: AppEnv, spool: Path) -> None:
    redis = env.redis.client()
    journal = AttemptJournal(redis, spool)
    journal.started([Try((9, 1))])
    journal.close(drained=False)  # a worker that stopped with a send still in flight
    redis.flushall()  # and Redis restarted empty (this test's own server)
    assert revive_lost(redis, spool, journal_key=KEY, ttl=60) == 1
    assert set(recall(redis, journal.owner, [Try((9, 1))])) == {(9, 1)}


def test_a_failing_disk_turns_the_spool_off_and_the_journal_goes_on(
    env: AppEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis = env.redis.client()
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="flask_async_events"):
        journal = AttemptJournal(redis, blocked / "spool")
    assert "Could not open the journal's spool" in caplog.text
    journal.started([Try((1, 1))])
    assert journal.flush(5) and set(recall(redis, journal.owner, [Try((1, 1))])) == {(1, 1)}
    journal.close()

    full = tmp_path / "full"
    full.mkdir()
    os.symlink("/dev/full", full / "owner.0.journal")  # every write fails: no space left
    spool = Spool(full, "owner")
    with caplog.at_level(logging.WARNING, logger="flask_async_events"):
        spool.write([((1, 1), '{"uuid": "a"}')])
        spool.write([((2, 1), '{"uuid": "b"}')])
    assert caplog.text.count("Could not write the attempt journal's spool") == 1
    spool.close()
