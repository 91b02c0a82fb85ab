"""``python -m bench.chaos``: seeded fault-injection runs, and a table of what held.

    python -m bench.chaos [--runs 5] [--events 10000] [--workers 3] [--seed 1] [--sentinel]

With ``--sentinel``, Redis is a master, a replica and three sentinels, and the mid-run Redis fault is a
failover (the master killed; writes it had not yet replicated are lost with it).

Exits non-zero if any run lost, misrouted or left a delivery pending, or duplicated more than
0.5% of deliveries.
"""

from __future__ import annotations

import argparse
import sys

from bench.chaos.harness import ChaosConfig, Report, run

DUPLICATE_LIMIT = 0.005


def table(reports: list[Report]) -> str:
    lines = [
        "| seed | events | deliveries expected | delivered | lost | misrouted | pending | duplicates (rate) "
        "| requests | unlogged attempts | worker kills | circuits opened | drain after last fault | run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        lines.append(
            f"| {r.seed} | {r.events} | {r.expected} | {r.delivered} | {r.lost} | {r.misrouted} | {r.pending} "
            f"| {r.duplicates} ({r.duplicate_rate:.3%}) | {r.requests} | {r.unlogged_attempts} | {r.kills} "
            f"| {r.circuit_openings} | {r.drain_seconds:.1f} s | {r.elapsed:.0f} s |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1, help="the first seed; runs use seed, seed+1, ...")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--rate", type=float, default=250.0)
    parser.add_argument("--sentinel", action="store_true", help="Redis behind Sentinel; a failover mid-run")
    args = parser.parse_args()
    reports = []
    for seed in range(args.seed, args.seed + args.runs):
        config = ChaosConfig(
            seed=seed, events=args.events, workers=args.workers, rate=args.rate, sentinel=args.sentinel
        )
        report = run(config)
        reports.append(report)
        print(f"seed {seed}: {'ok' if report.ok else 'FAILED'}; " + "; ".join(report.faults), flush=True)
    print()
    print(table(reports))
    failed = [r for r in reports if not r.ok or r.duplicate_rate > DUPLICATE_LIMIT]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
