"""What only workers run: the RQ worker (:mod:`.rq_worker`), the scheduler that starts delayed
retries (:mod:`.scheduler`), and maintenance (:mod:`.maintenance`), which puts back into Redis
what the database says is due, and settles the claims of workers that are gone
(:mod:`.recovery`)."""

from flask_async_events.worker.rq_worker import AsyncEventsWorker, run_worker

__all__ = ["AsyncEventsWorker", "run_worker"]
