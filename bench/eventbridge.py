"""EventBridge delivery rate against moto in server mode, with PutEvents batches of 10 and of 1.

    python -m bench.eventbridge [--events 2000] [--repeat 3]

moto runs on loopback; boto3 gets dummy credentials and never reaches for a cloud endpoint.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3
import redis
import requests

from bench.common import drop_database, free_port, fresh_database, start_redis, summary, wait_until
from bench.ours import throughput

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.update(AWS_ENV)

    folder = Path(tempfile.mkdtemp(prefix="fae-bench-eb-"))
    redis_process, redis_url = start_redis(folder)
    port = free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    moto_url = f"http://127.0.0.1:{port}"
    rates: dict[int, list[float]] = {10: [], 1: []}
    try:
        wait_until(lambda: requests.get(f"{moto_url}/moto-api/", timeout=1).ok)
        for run in range(args.repeat):
            for batch_size in rates:
                requests.post(f"{moto_url}/moto-api/reset", timeout=5)
                boto3.session.Session().client("events", endpoint_url=moto_url).create_event_bus(Name="bench")
                redis.Redis.from_url(redis_url).flushall()
                uri = fresh_database("sqlite", folder, run * 100 + batch_size)
                env = {
                    "BENCH_DATABASE_URI": uri,
                    "BENCH_REDIS_URL": redis_url,
                    "BENCH_EVENTBRIDGE_URL": moto_url,
                    "BENCH_EVENTBRIDGE_BATCH_SIZE": str(batch_size),
                }
                try:
                    rates[batch_size].append(throughput(env, "bench", args.events, 1, metadata="eventbridge"))
                finally:
                    drop_database(uri)
                print(
                    f"run {run + 1}, batches of {batch_size:>2}: {rates[batch_size][-1]:.0f} deliveries/s", flush=True
                )
        print(f"\n{args.events} events to one EventBridge bus on moto, {args.repeat} runs (min / median / max)")
        print(f"  PutEvents batches of 10  {summary(rates[10])}  deliveries/s")
        print(f"  PutEvents batches of 1   {summary(rates[1])}  deliveries/s")
        print(f"  ratio (median)           {statistics.median(rates[10]) / statistics.median(rates[1]):.2f}")
    finally:
        for process in (moto, redis_process):
            process.terminate()
            process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
