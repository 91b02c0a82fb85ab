"""The retry schedule: the Magento module's delays, jitter, and Retry-After as a floor with a cap."""

from __future__ import annotations

from flask_async_events.delivery.retry import next_delay


def test_the_magento_schedule_gives_six_attempts() -> None:
    schedule = (1, 4, 9, 16, 25)
    assert [next_delay(schedule, attempt) for attempt in range(1, 7)] == [1, 4, 9, 16, 25, None]


def test_jitter_stays_within_its_fraction() -> None:
    delays = {next_delay((100,), 1, jitter=0.1) for _ in range(200)}
    assert all(90 <= delay <= 110 for delay in delays if delay is not None)
    assert len(delays) > 1


def test_retry_after_is_a_floor_with_a_cap() -> None:
    assert next_delay((1,), 1, retry_after=30) == 30
    assert next_delay((60,), 1, retry_after=5) == 60
    assert next_delay((1,), 1, retry_after=10_000, retry_after_max=600) == 600
