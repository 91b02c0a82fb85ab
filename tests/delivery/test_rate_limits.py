"""Rate limits: the limiter's slots in a real Redis, and a limited subscriber held to its rate by two
worker processes while an unlimited one is not slowed."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from flask_async_events.delivery.rate_limits import RateLimits, burst_of, interval_micros, keys_of
from tests.conftest import AppEnv, Receiver, RedisServer, WorkerProcess, wait_for
from tests.helpers import deliveries, place_order, subscribe


@pytest.fixture
def limits(clean_redis: RedisServer) -> RateLimits:
    return RateLimits(clean_redis.client())


def test_a_burst_of_one_seconds_worth_goes_and_the_rest_get_slots_spaced_by_the_rate(limits: RateLimits) -> None:
    waits = limits.waits(7, 5.0, list(range(1, 13)))
    assert waits[:5] == [0.0] * 5  # one second's worth at once
    later = waits[5:]
    assert later[0] == pytest.approx(0.2, abs=0.05)
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(later)]
    assert gaps == [0.2] * 6  # then one every 1/5 s, each its own slot


def test_a_delivery_back_for_its_slot_goes_and_asking_early_keeps_its_place(limits: RateLimits) -> None:
    waits = limits.waits(7, 2.0, [1, 2, 3, 4, 5, 6])
    assert waits[:2] == [0.0, 0.0]
    slot_of_6 = waits[5]
    assert slot_of_6 > 1.5  # 6 is two seconds out: too early to go, even with the claim's slack
    again = limits.waits(7, 2.0, [6])[0]
    assert 0 < again <= slot_of_6  # asked again early: the same slot, not a new one at the back
    time.sleep(max(0.0, again - 1.5) + 0.05)  # within a claim's slack of its slot
    assert limits.waits(7, 2.0, [6]) == [0.0]
    assert limits.waits(7, 2.0, [6])[0] > 0  # its slot was used: asking once more is a new delivery


def test_subscriptions_and_rates_have_separate_limiters(limits: RateLimits) -> None:
    assert limits.waits(1, 1.0, [1, 2])[1] > 0
    assert limits.waits(2, 1.0, [3]) == [0.0]  # another subscription is not held by the first's
    assert limits.waits(1, 3.0, [4, 5, 6]) == [0.0] * 3  # a changed rate starts afresh
    assert keys_of(1, 1.0) != keys_of(1, 3.0)
    assert burst_of(0.5) == 1 and burst_of(5) == 5 and burst_of(2.5) == 3
    assert interval_micros(4) == 250_000 and interval_micros(10_000) == 100


def test_losing_the_limiter_state_only_gives_a_fresh_slot(limits: RateLimits, clean_redis: RedisServer) -> None:
    waits = limits.waits(9, 1.0, [1, 2, 3])
    assert waits[0] == 0 and waits[2] > waits[1] > 0
    clean_redis.client().delete(*keys_of(9, 1.0))  # as if Redis restarted empty
    assert limits.waits(9, 1.0, [2, 3])[0] == 0.0  # waiting ones come back to a fresh limiter: nothing lost


def test_without_redis_every_delivery_may_go(caplog: pytest.LogCaptureFixture) -> None:
    gone = RateLimits(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)))
    assert gone.waits(1, 1.0, [1, 2, 3]) == [0.0, 0.0, 0.0]  # a burst, never deliveries held by nobody
    assert "Could not read the rate limit of subscription 1" in caplog.text


@pytest.mark.one_database
def test_a_rate_limit_holds_across_two_workers_and_does_not_slow_others(
    env: AppEnv, receiver: Receiver, worker_process: Callable[..., WorkerProcess]
) -> None:
    app = env.app()
    limited_id = subscribe(app, receiver.respond("/limited"), rate_limit=5)
    subscribe(app, receiver.respond("/free"))
    worker_process()
    worker_process()
    for _ in range(150):
        place_order(app)
    published = time.time()
    wait_for(lambda: len(receiver.at("/limited")) >= 110, timeout=60)
    free = receiver.at("/free")
    assert len(free) == 150 and free[-1].at - published < 10  # the unlimited one was not held up
    arrivals = [request.at for request in receiver.at("/limited")]
    in_20_s = sum(1 for at in arrivals if at < arrivals[0] + 20)
    assert 90 <= in_20_s <= 110  # 5 per second within 10%, across both workers
    limited = [d for d in deliveries(app) if d.state == "delivered" and d.subscription_id == limited_id]
    assert limited and all(d.attempt_count == 1 for d in limited)  # waiting for a slot is not an attempt
