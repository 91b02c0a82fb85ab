"""The attempt journal's spool: each worker's notes on local disk, put back in Redis when the worker
is gone and Redis lost them."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flask_async_events.config import load_settings
from flask_async_events.delivery import spool as spool_module
from flask_async_events.delivery.journal import KEY, recall
from flask_async_events.delivery.spool import REVIVED_KEY, Spool, read_entries, revive_lost, spool_directory
from flask_async_events.errors import ConfigError
from flask_async_events.notifiers.base import NotifyResult
from tests.conftest import AppEnv, wait_for
from tests.helpers import Try

ANSWERED = NotifyResult(True, status_code=200, response_data="ok")
# A worker's journal that noted three attempts (one answered, one under way, one forgotten), then hung.
LOST_WORKER = """
import os
import sys
import time
from pathlib import Path
from flask_async_events.delivery.journal import AttemptJournal
from flask_async_events.notifiers.base import NotifyResult
from redis import Redis
from tests.helpers import Try

journal = AttemptJournal(Redis.from_url("unix:///nonexistent.sock"), Path(sys.argv[1]))  # no Redis note arrives
journal.started([Try((1, 1)), Try((2, 1)), Try((3, 1))])
journal.finished([Try((1, 1))], [(NotifyResult(True, status_code=200, response_data="ok"), 12)])
journal.forget([(1, 1), (2, 1), (3, 1)] if sys.argv[2] == "recorded" else [(3, 1)])
if sys.argv[2] == "forked" and os.fork() == 0:  # a child that outlives it, as RQ's scheduler can
    journal.started([Try((4, 1))])  # the child's copy of the journal does nothing to the spool
    journal.close()
    Path(sys.argv[1], "child-done").touch()
    time.sleep(60)
    os._exit(0)
print(journal.owner, flush=True)
time.sleep(60)
"""


def _lost_worker(folder: Path, mode: str = "lost") -> tuple[subprocess.Popen[str], str]:
    """A worker that journaled attempts and hangs: ``lost`` with two entries open, ``recorded``
    with none, ``forked`` like ``lost`` with a child of its own."""
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-c", LOST_WORKER, str(folder), mode],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    owner = process.stdout.readline().strip()
    process.stdout.close()
    if not owner:
        process.wait(10)
        pytest.fail("the lost worker did not start")
    return process, owner


def test_a_spool_holds_each_open_attempts_latest_note(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "owner")
    spool.write([((1, 1), '{"uuid": "a"}'), ((2, 1), '{"uuid": "b"}')])
    spool.write([((1, 1), '{"uuid": "a", "result": {}}'), ((2, 1), None)])
    with open(tmp_path / "owner.0.journal", "a") as segment:
        segment.write('3 1 {"uuid": "c"')  # a line the kill cut short: no entry
    assert read_entries(tmp_path, "owner") == {(1, 1): '{"uuid": "a", "result": {}}'}
    spool.close()
    assert list(tmp_path.iterdir()) == []  # a clean stop leaves nothing behind


def test_a_growing_spool_is_rewritten_with_only_its_open_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "ROTATE_BYTES", 4096)
    spool = Spool(tmp_path, "owner")
    for delivery in range(1, 2001):
        spool.write([((delivery, 1), '{"uuid": "x"}')])
        if delivery % 100:  # every hundredth stays open
            spool.write([((delivery, 1), None)])
    segments = sorted(path.name for path in tmp_path.glob("owner.*.journal"))
    assert len(segments) == 1 and segments != ["owner.0.journal"]
    assert (tmp_path / segments[0]).stat().st_size < 4096 + 100
    assert set(read_entries(tmp_path, "owner")) == {(delivery, 1) for delivery in range(100, 2001, 100)}
    spool.close()


def _open_in(directory: Path) -> list[str]:
    """The files this process holds open in `directory` or on /dev/full (a count of all descriptors
    would move with sockets other tests leave to the garbage collector)."""
    held = []
    for descriptor in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{descriptor}")
        except OSError:  # the listing's own descriptor, closed by now
            continue
        if target.startswith(str(directory)) or target == "/dev/full":
            held.append(target)
    return sorted(held)


def test_a_spool_that_cannot_write_its_next_segment_keeps_the_last_one_and_leaks_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(spool_module, "ROTATE_BYTES", 4096)
    os.symlink("/dev/full", tmp_path / "owner.1.journal")  # the disk is full when the spool rotates
    assert _open_in(tmp_path) == []
    spool = Spool(tmp_path, "owner")
    with caplog.at_level(logging.WARNING, logger="flask_async_events"):
        for delivery in range(1, 401):
            spool.write([((delivery, 1), '{"uuid": "x"}')])
    assert caplog.text.count("Could not write the attempt journal's spool") == 1
    assert _open_in(tmp_path) == [str(tmp_path / "owner.lock")]  # the lock's, not a segment's
    assert (tmp_path / "owner.0.journal").stat().st_size > 4096  # what it wrote before is there
    (tmp_path / "owner.1.journal").unlink()
    kept = set(read_entries(tmp_path, "owner"))  # every note up to the one past 4 KB
    assert len(kept) > 200 and kept == {(delivery, 1) for delivery in range(1, len(kept) + 1)}
    spool.close()
    assert _open_in(tmp_path) == []


def test_a_redis_that_is_away_leaves_a_lost_workers_spool_for_the_next_look(
    env: AppEnv, spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    process, owner = _lost_worker(spool)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    redis = env.redis.client()
    env.redis.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="flask_async_events"):
            assert revive_lost(redis, spool, journal_key=KEY, ttl=60) == 0
        assert "Could not revive the journal spools of lost workers" in caplog.text
    finally:
        env.redis.start()
    assert revive_lost(redis, spool, journal_key=KEY, ttl=60) == 2
    assert set(recall(redis, owner, [Try((1, 1)), Try((2, 1))])) == {(1, 1), (2, 1)}
    assert revive_lost(redis, spool / "nowhere", journal_key=KEY, ttl=60) == 0  # no spool yet: quietly nothing


def test_a_lost_workers_spool_is_put_back_once_per_redis_lifetime(env: AppEnv, spool: Path) -> None:
    redis = env.redis.client()
    process, owner = _lost_worker(spool)
    try:
        assert revive_lost(redis, spool, journal_key=KEY, ttl=60) == 0  # alive: its lock is held
        assert recall(redis, owner, [Try((1, 1)), Try((2, 1))]) == {}
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    assert revive_lost(redis, spool, journal_key=KEY, ttl=60) == 2
    recalled = recall(redis, owner, [Try((1, 1)), Try((2, 1)), Try((3, 1))])
    assert {key: (entry.result, entry.duration_ms) for key, entry in recalled.items()} == {
        (1, 1): (ANSWERED, 12),  # answered: recorded, not sent again
        (2, 1): (None, None),  # under way: logged as interrupted
    }
    redis.hdel(KEY.format(owner), "1:1")  # recorded by the worker that settled the claim
    assert revive_lost(redis, spool, journal_key=KEY, ttl=60) == 0  # once per Redis lifetime
    assert recall(redis, owner, [Try((1, 1))]) == {}

    redis.flushall()  # Redis restarted empty (this test's own server)
    assert revive_lost(redis, spool, journal_key=KEY, ttl=60) == 2
    assert redis.exists(REVIVED_KEY.format(owner))

    an_hour_ago = time.time() - 3600
    for path in spool.iterdir():
        os.utime(path, (an_hour_ago, an_hour_ago))
    redis.flushall()
    assert revive_lost(redis, spool, journal_key=KEY, ttl=60) == 0  # too old to matter: removed
    assert list(spool.iterdir()) == []


def test_a_lost_worker_is_found_lost_while_a_child_it_forked_lives_on(env: AppEnv, spool: Path) -> None:
    process, owner = _lost_worker(spool, "forked")
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    wait_for(lambda: (spool / "child-done").exists(), timeout=10)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    try:
        assert len(children) == 1 and Path(f"/proc/{children[0]}").exists()  # its child lives on
        redis = env.redis.client()
        assert revive_lost(redis, spool, journal_key=KEY, ttl=60) == 2  # the child does not hold its lock
        assert set(recall(redis, owner, [Try((1, 1)), Try((2, 1)), Try((4, 1))])) == {(1, 1), (2, 1)}
    finally:
        for child in children:
            os.kill(int(child), signal.SIGKILL)


def test_a_lost_workers_spool_with_everything_recorded_is_removed(env: AppEnv, spool: Path) -> None:
    process, _ = _lost_worker(spool, "recorded")
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    assert len(list(spool.iterdir())) == 2  # its lock and its segment
    assert revive_lost(env.redis.client(), spool, journal_key=KEY, ttl=60) == 0
    assert list(spool.iterdir()) == []


def test_the_spool_folder_is_one_per_redis_and_can_be_turned_off(tmp_path: Path) -> None:
    base = {"SECRET_KEY": "k", "ASYNC_EVENTS_JOURNAL_DIR": str(tmp_path)}
    first = spool_directory(load_settings({**base, "ASYNC_EVENTS_REDIS_URL": "redis://one"}))
    second = spool_directory(load_settings({**base, "ASYNC_EVENTS_REDIS_URL": "redis://two"}))
    assert first is not None and second is not None and first != second and first.parent == tmp_path
    assert spool_directory(load_settings({**base, "ASYNC_EVENTS_JOURNAL_DIR": ""})) is None
    default = spool_directory(load_settings({"SECRET_KEY": "k"}))
    assert default is not None and default.parent.name == "flask-async-events"
    with pytest.raises(ConfigError, match="ASYNC_EVENTS_JOURNAL_DIR must be a folder path"):
        load_settings({**base, "ASYNC_EVENTS_JOURNAL_DIR": 5})
