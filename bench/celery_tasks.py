"""The Celery baseline: one task per signed POST, Redis as the broker, no result backend.

celery -A bench.celery_tasks worker -c 2 -P prefork
"""

from __future__ import annotations

import os

from celery import Celery

from bench.signed import RequestsPoster

app = Celery("bench", broker=os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/0"))
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
_poster: RequestsPoster | None = None


@app.task(name="bench.post_webhook")
def post_webhook(url: str, index: int) -> None:
    global _poster
    if _poster is None:
        _poster = RequestsPoster()
    _poster.post(url, f"celery_{index}")
