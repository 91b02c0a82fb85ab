"""``python -m bench.chaos``: seeded fault-injection runs, and a table of what held.

    python -m bench.chaos [--profile default|harsh|bursts] [--runs N] [--events N] [--workers 3] [--seed 1]
                          [--sentinel] [--no-spool]

The default profile kills a worker every 2 to 6 s while 10,000 events are published at 250/s. The harsh
one kills a worker every 1.5 to 3.5 s while 600 events are published at 20/s (30 s of faults), over 10
seeds; both restart Redis empty once (or fail over, with ``--sentinel``), drop every database
connection once and take one endpoint down for 8 s. The bursts profile publishes 600 events in bursts
of 25 every 0.2 s to three subscriptions of one receiver host, with a retry schedule of
1,1,2,2,3,3,5,5,8,8 s, kills a worker every 1.5 to 3.5 s while publishing and restarts Redis empty
half-way (down 2 s), over 10 seeds; each run must drain within 20 s of its last fault.

With ``--sentinel``, Redis is a master, a replica and three sentinels, and the mid-run Redis fault is a
failover (the master killed; writes it had not yet replicated are lost with it).

With ``--no-spool``, the workers keep the attempt journal in Redis only (``ASYNC_EVENTS_JOURNAL_DIR``
empty), as before it was also written to disk: the comparison for what the spool saves.

Exits non-zero if any run lost, misrouted or left a delivery pending, duplicated more than 0.5% of
deliveries, duplicated one after neither an interrupted attempt (in flight at a kill) nor a timed-out
one (a 200 that came after the deadline), or drained later than its profile allows.
"""

from __future__ import annotations

import argparse
import sys

from bench.chaos.harness import PROFILES, Report, run

DUPLICATE_LIMIT = 0.005


def table(reports: list[Report]) -> str:
    lines = [
        "| seed | events | deliveries expected | delivered | lost | misrouted | pending | duplicates (rate) "
        "| of them after an interrupted attempt | after neither that nor a timeout | requests | unlogged attempts "
        "| worker kills | circuits opened | drain after last fault | run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        lines.append(
            f"| {r.seed} | {r.events} | {r.expected} | {r.delivered} | {r.lost} | {r.misrouted} | {r.pending} "
            f"| {r.duplicates} ({r.duplicate_rate:.3%}) | {r.duplicates_interrupted} | {r.duplicates_unexplained} "
            f"| {r.requests} "
            f"| {r.unlogged_attempts} | {r.kills} "
            f"| {r.circuit_openings} | {r.drain_seconds:.1f} s | {r.elapsed:.0f} s |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default")
    parser.add_argument("--runs", type=int, help="seeded runs (default: the profile's)")
    parser.add_argument("--seed", type=int, default=1, help="the first seed; runs use seed, seed+1, ...")
    parser.add_argument("--events", type=int, help="events per run (default: the profile's)")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--rate", type=float, help="events published per second (default: the profile's)")
    parser.add_argument("--sentinel", action="store_true", help="Redis behind Sentinel; a failover mid-run")
    parser.add_argument(
        "--no-spool", action="store_true", help="the attempt journal in Redis only (ASYNC_EVENTS_JOURNAL_DIR empty)"
    )
    args = parser.parse_args()
    reports = []
    profile = PROFILES[args.profile]
    for seed in range(args.seed, args.seed + (args.runs or profile.runs)):
        config = profile.config(
            seed,
            events=args.events,
            workers=args.workers,
            rate=args.rate,
            sentinel=args.sentinel,
            spool=not args.no_spool,
        )
        report = run(config)
        reports.append(report)
        print(f"seed {seed}: {'ok' if report.ok else 'FAILED'}; " + "; ".join(report.faults), flush=True)
    print()
    print(table(reports))
    failed = [
        r
        for r in reports
        if not r.ok
        or r.duplicate_rate > DUPLICATE_LIMIT
        or r.duplicates_unexplained
        or (profile.drain_limit is not None and r.drain_seconds > profile.drain_limit)
    ]
    if profile.drain_limit is not None:
        slowest = max(r.drain_seconds for r in reports)
        print(f"\nslowest drain after the last fault: {slowest:.1f} s (limit {profile.drain_limit:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
