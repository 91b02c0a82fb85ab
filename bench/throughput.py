"""Delivery throughput of one worker process against a local receiver, with a plain signed-POST
loop measured in the same run as the baseline (the most one Python process can send at all).

    python -m bench.throughput [--events 5000] [--repeat 3] [--database sqlite|postgresql]

Each run: publish N events (one subscription), start ``flask async-events worker --burst`` and
time until every delivery is recorded as delivered in the database.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import requests

from bench.common import (
    ROOT,
    SECRET,
    drop_database,
    free_port,
    fresh_database,
    publish_and_deliver,
    start_redis,
    summary,
    wait_until,
)
from flask_async_events.signing import legacy_signature, signing_key, standard_signature


def plain_loop(url: str, count: int, body: bytes) -> float:
    """Sign and POST ``count`` bodies over one kept-alive session; return requests per second."""
    session = requests.Session()
    key = signing_key(SECRET)
    started = time.perf_counter()
    for index in range(count):
        msg_id = f"msg_{index}"
        stamp = int(time.time())
        response = session.post(
            url,
            data=body,
            headers={
                "Content-Type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": standard_signature([key], msg_id, stamp, body),
                "x-magento-signature": legacy_signature(key, body),
            },
            timeout=(5, 15),
        )
        response.raise_for_status()
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="fae-bench-"))
    redis_process, redis_url = start_redis(folder)
    services: list[subprocess.Popen[bytes]] = [redis_process]
    port = free_port()
    services.append(subprocess.Popen([sys.executable, "-m", "bench.receiver", str(port)], cwd=ROOT))
    url = f"http://127.0.0.1:{port}/hook"
    try:
        wait_until(lambda: requests.post(url, data=b"{}", timeout=1).ok)
        body = b'{"data":{"id":1,"padding":"' + b"x" * 1000 + b'"}}'
        baseline: list[float] = []
        ours: list[float] = []
        for run in range(args.repeat):
            baseline.append(plain_loop(url, args.events, body))
            redis.Redis.from_url(redis_url).flushall()
            uri = fresh_database(args.database, folder, run)
            env = {"BENCH_DATABASE_URI": uri, "BENCH_REDIS_URL": redis_url}
            try:
                ours.append(publish_and_deliver(env, url, args.events))
            finally:
                drop_database(uri)
            print(f"run {run + 1}: plain loop {baseline[-1]:.0f}/s, one worker {ours[-1]:.0f}/s", flush=True)
        print(f"\n{args.events} events, 1 subscription each, {args.database}, {args.repeat} runs (min / median / max)")
        print(f"  plain signed-POST loop, 1 process  {summary(baseline)}  requests/s")
        print(f"  flask-async-events, 1 worker       {summary(ours)}  deliveries/s")
        print(f"  ratio (median)                     {statistics.median(ours) / statistics.median(baseline):.2f}")
    finally:
        for service in services:
            service.terminate()
            service.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
