"""Worker throughput, or latency, of several revisions of the package, measured alternately in one run.

    python -m bench.compare [--workers 1] [--events 10000] [--rounds 3] REV [REV ...]
    python -m bench.compare --latency 200 [--seconds 10] [--workers 2] [--rounds 3] REV [REV ...]

Each revision is checked out into a temporary git worktree; every round runs a plain urllib3 loop
(the baseline) and then each revision's workers (as ``make bench`` runs them), in a rotating
order, so that drift on a shared machine hits them alike. Reported per revision: webhooks per
second from the first arrival at the receiver to the last (as ``make bench`` gives them), the
median's ratio to the plain loop, and the workers' CPU per webhook by thread. The events are
published, and the tables made, by the checkout this runs from: the revisions must share its tables.

With ``--latency RATE``: events published one per commit at that rate to running workers of each
revision in turn (no plain loop); reported per revision: the p50 and p99 from commit to arrival
over all rounds, each round's p99, and the workers' CPU per event.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from bench import ours
from bench.__main__ import Services, medians, percentile, plain, spread
from bench.common import ROOT
from bench.cpu import THREAD_PARTS, CpuWindow, ThreadSampler


@contextmanager
def worktrees(revisions: list[str], folder: Path) -> Iterator[dict[str, Path]]:
    """A detached git worktree of each revision, removed afterwards."""
    made: dict[str, Path] = {}
    try:
        for index, revision in enumerate(revisions):
            path = folder / f"rev{index}"
            added = subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(path), revision], cwd=ROOT)
            if added.returncode:
                raise SystemExit(f"Could not check out {revision!r} (git said why above): name a commit, branch or tag")
            made[revision] = path
        yield made
    finally:
        for path in made.values():
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)


def rotated(revisions: list[str], round_index: int) -> list[str]:
    """The revisions in this round's order: each starts a round in turn, so drift hits them alike."""
    shift = round_index % len(revisions)
    return revisions[shift:] + revisions[:shift]


def compare_latency(args: argparse.Namespace, services: Services, sources: dict[str, Path]) -> None:
    """Alternating steady-rate runs of each revision; prints a table of their latencies and CPU."""
    latencies: dict[str, list[list[float]]] = {revision: [] for revision in args.revisions}
    cpu: dict[str, list[float]] = {revision: [] for revision in args.revisions}
    for round_index in range(args.rounds):
        for revision in rotated(args.revisions, round_index):
            timed, used = services.with_database(
                partial(
                    ours.steady_latency_and_cpu,
                    receiver=services.url,
                    rate=args.latency,
                    seconds=args.seconds,
                    workers=args.workers,
                    source=sources[revision],
                )
            )
            latencies[revision].append(timed)
            cpu[revision].append(used)
            print(
                f"round {round_index + 1}: {revision} p50 {percentile(timed, 0.5):.1f} ms, "
                f"p99 {percentile(timed, 0.99):.1f} ms, {used:,.0f} µs of CPU per event",
                flush=True,
            )
    print(f"\n{args.workers} worker(s), {args.latency:.0f} events/s for {args.seconds:.0f} s, {args.rounds} rounds")
    print("| revision | p50, ms | p99, ms | p99 of each round, min / median / max | workers' CPU per event, µs |")
    print("|---|---|---|---|---|")
    for revision, runs in latencies.items():
        pooled = [value for run in runs for value in run]
        print(
            f"| {revision} | {percentile(pooled, 0.5):.1f} | {percentile(pooled, 0.99):.1f} "
            f"| {spread([percentile(run, 0.99) for run in runs], 1)} | {statistics.median(cpu[revision]):,.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revisions", nargs="+", help="git revisions (commits, branches, tags)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=float, metavar="RATE", help="compare latency at RATE events/s instead")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each latency run")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="fae-compare-"))
    services = Services(folder, "postgresql")
    rates: dict[str, list[float]] = {revision: [] for revision in args.revisions}
    baseline: list[float] = []
    by_thread: dict[str, list[tuple[float, ...]]] = {revision: [] for revision in args.revisions}
    try:
        with worktrees(args.revisions, folder) as sources:
            if args.latency:
                compare_latency(args, services, sources)
                return
            for round_index in range(args.rounds):
                window = CpuWindow(services.receiver.pid, services.redis_process.pid, in_process=args.workers == 1)
                baseline.append(plain(services, args.events, "urllib3", args.workers, window))
                print(f"round {round_index + 1}: plain loop {baseline[-1]:,.0f}/s", flush=True)
                for revision in rotated(args.revisions, round_index):
                    threads = ThreadSampler()
                    services.with_database(
                        partial(
                            ours.throughput,
                            url=f"{services.url}/hook",
                            count=args.events,
                            workers=args.workers,
                            threads=threads,
                            source=sources[revision],
                        )
                    )
                    rates[revision].append(services.arrival_rate())
                    by_thread[revision].append(threads.per_webhook(args.events))
                    print(f"round {round_index + 1}: {revision} {rates[revision][-1]:,.0f}/s", flush=True)
    finally:
        services.stop()
        shutil.rmtree(folder, ignore_errors=True)
    loop = statistics.median(baseline)
    print(f"\n{args.workers} worker(s), {args.events:,} webhooks, {args.rounds} rounds; plain loop {loop:,.0f}/s")
    print(f"| revision | first arrival to last, per second | vs the loop | {' | '.join(THREAD_PARTS)} | total |")
    print("|---|---|---|" + "---|" * (len(THREAD_PARTS) + 1))
    for revision, values in rates.items():
        ratio = statistics.median(values) / loop
        print(f"| {revision} | {spread(values)} | {ratio:.2f}x | {medians(by_thread[revision])} |")


if __name__ == "__main__":
    main()
