"""The short chaos run (1,000 events x 3 subscriptions) that ``make test`` includes; ``make chaos``
runs the long one. It needs PostgreSQL (several worker processes, dropped connections), so it
runs in the PostgreSQL pass of the suite."""

from __future__ import annotations

import pytest

from bench.chaos.harness import ChaosConfig, run
from tests.conftest import DB_BACKEND, IN_CI, SERVER_URIS, _server_available

pytestmark = pytest.mark.skipif(
    DB_BACKEND != "postgresql", reason="the chaos run uses PostgreSQL; it runs in that pass"
)


@pytest.mark.timeout(600)
def test_no_event_is_lost_under_faults() -> None:
    if not _server_available(SERVER_URIS["postgresql"]):
        if IN_CI:
            pytest.fail("PostgreSQL is not reachable and CI=true requires the chaos run")
        pytest.skip("PostgreSQL is not reachable")
    report = run(ChaosConfig(seed=7, events=1000, workers=2, rate=200, kill_every=1.5, drain_timeout=240))
    assert report.kills >= 2 and any("restart-redis-empty" in fault for fault in report.faults)
    assert report.lost == 0, report
    assert report.misrouted == 0 and report.pending == 0 and report.not_received == 0, report
    # A killed worker's answered attempts are recorded from its journal, not sent again; what is
    # sent twice (same webhook-id) is what was in flight at a kill, or whose journal Redis lost when
    # it restarted empty. This short run kills a worker 0.8 s before Redis goes down, too soon for
    # its journal to be read first: its unrecorded attempts are sent again and, if they were in
    # flight, left unlogged (measured 0 to 2.8% duplicates, 0.2 to 3.1% unlogged attempts).
    assert report.duplicate_rate < 0.05, report
    assert report.unlogged_attempts < 0.05 * report.requests, report
    assert report.expected == report.events * 3 and report.events >= 1000
