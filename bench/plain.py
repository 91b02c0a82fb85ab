"""The plain loop: sign and POST ``count`` webhooks in one process, as fast as it can.

python -m bench.plain URL COUNT requests|urllib3   (prints seconds taken)
"""

from __future__ import annotations

import sys
import time

from bench.signed import POSTERS


def plain_loop(url: str, count: int, client: str, prefix: str = "plain") -> float:
    """Seconds to send ``count`` signed POSTs over one kept-alive connection."""
    poster = POSTERS[client]()
    poster.post(url, f"{prefix}_warm")
    started = time.perf_counter()
    for index in range(count):
        poster.post(url, f"{prefix}_{index}")
    return time.perf_counter() - started


if __name__ == "__main__":
    print(
        plain_loop(
            sys.argv[1], int(sys.argv[2]), sys.argv[3], prefix=f"plain{sys.argv[4] if len(sys.argv) > 4 else ''}"
        )
    )
