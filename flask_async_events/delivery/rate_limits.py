"""A subscription's ``rate_limit``, held across every worker by one Lua call per claim in Redis.

The limiter is GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp):
deliveries are spaced ``1 / rate_limit`` seconds apart, with bursts of up to one second's worth
(RQ's scheduler hands parked deliveries back in whole seconds). A delivery over the limit is not
refused but given the next free *slot*: it is parked until then, and its slot is kept for it, so
when it comes back it goes at once; a deep backlog is spaced out in one pass, each delivery parked
once, and nothing spins. The wait is not an attempt and not a failure.

The state is one timestamp and the reserved slots per subscription, under keys with a lifetime.
Losing it (Redis restarted empty) costs at worst a short burst, or a delivery waiting for a second
slot; never a lost or a doubled delivery, which the database decides. A changed ``rate_limit``
starts from fresh keys (the rate is part of their names).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger("flask_async_events")

MICROS = 1_000_000
# A claim takes deliveries up to a second before they are due (deliver.CLOCK_SLACK): a delivery
# back that early for its slot still has it.
EARLY_MICROS = 1_500_000
SLOTS_KEPT_MICROS = 3600 * MICROS  # a slot nobody came back for (a cancelled delivery) is forgotten after this

# KEYS[1]: the theoretical arrival time (µs); KEYS[2]: the reserved slots (delivery id -> µs).
# ARGV: interval µs, burst tolerance µs, how early a slot may be used µs, how long a slot is kept
# µs, then the delivery ids.
# Returns, per delivery id, how many µs it must wait (0: send it now).
GCRA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local early = tonumber(ARGV[3])
local kept = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local waits = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local slot = tonumber(redis.call('ZSCORE', KEYS[2], id))
  if slot and slot <= now + early then
    redis.call('ZREM', KEYS[2], id)
    waits[#waits + 1] = 0
  elseif slot then
    waits[#waits + 1] = slot - now
  else
    local at = tat - tolerance
    if at <= now then
      waits[#waits + 1] = 0
    else
      redis.call('ZADD', KEYS[2], at, id)
      waits[#waits + 1] = at - now
    end
    tat = tat + interval
  end
end
local horizon = tat - now
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor(horizon / 1000) + 60000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - kept)
redis.call('PEXPIRE', KEYS[2], math.floor(horizon / 1000) + 3600000)
return waits
"""


def interval_micros(rate: float) -> int:
    """The spacing of deliveries at ``rate`` per second, in whole microseconds."""
    return max(1, round(MICROS / rate))


def burst_of(rate: float) -> int:
    """How many deliveries may go back to back: one second's worth, at least one."""
    return max(1, math.ceil(rate))


def keys_of(subscription_id: int, rate: float) -> list[str]:
    """The subscription's limiter keys, for this rate (one hash slot, for Redis Cluster)."""
    tag = f"{{{subscription_id}}}:{interval_micros(rate)}"
    return [f"async_events:rate:{tag}", f"async_events:rate-slots:{tag}"]


class RateLimits:
    """Every subscription's limiter, in the app's Redis."""

    def __init__(self, connection: Redis) -> None:
        self._gcra = connection.register_script(GCRA)

    def waits(self, subscription_id: int, rate: float, delivery_ids: Sequence[int]) -> list[float]:
        """Seconds each of ``delivery_ids`` must wait for its slot (0: now), in order. Without
        Redis, every one may go: a burst is better than deliveries held with nobody to release them."""
        if not delivery_ids:
            return []
        interval = interval_micros(rate)
        tolerance = (burst_of(rate) - 1) * interval
        try:
            waits = self._gcra(
                keys=keys_of(subscription_id, rate),
                args=[interval, tolerance, EARLY_MICROS, SLOTS_KEPT_MICROS, *delivery_ids],
            )
        except RedisError as exc:
            log.warning("Could not read the rate limit of subscription %s (%s); sending", subscription_id, exc)
            return [0.0] * len(delivery_ids)
        return [max(0, int(wait)) / MICROS for wait in waits]
