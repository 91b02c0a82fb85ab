"""How often a non-admin owner may make the server send something on its behalf at once, from a
web request (a test ping; an example): ``ASYNC_EVENTS_TEST_SENDS_PER_MINUTE`` per owner, counted in
Redis across every web process, in windows of a minute.

A send waits for the endpoint (up to the attempt's deadline) while a web thread waits for it, so an
unbounded number of them would let one owner hold every web thread. Past the rate the request is
refused with :class:`~flask_async_events.errors.RateLimited` and the seconds until the window ends.
With Redis unreachable the send is let through: the count is a guard, not a record.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from flask_async_events.auth import Principal
from flask_async_events.errors import RateLimited
from flask_async_events.state import AppState

log = logging.getLogger("flask_async_events")

WINDOW_MS = 60_000
KEY = "async_events:test_sends:{owner}"
# KEYS[1]: the owner's counter. ARGV[1]: the window in ms. Returns the count and the ms left.
COUNT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('PTTL', KEYS[1])}
"""


def take_test_send(state: AppState, caller: Principal | None) -> None:
    """Count one test send for a non-admin ``caller``; :class:`RateLimited` if its owner had its
    share of this minute (admins, the host's code and operators are not counted)."""
    most = state.settings.test_sends_per_minute
    if caller is None or caller.is_admin or not most:
        return
    try:
        count, left_ms = state.queues.connection.eval(COUNT, 1, KEY.format(owner=caller.owner), WINDOW_MS)
    except RedisError as exc:
        log.warning("Could not count a test send of %s (%s); letting it through", caller.owner, exc)
        return
    if int(count) > most:
        raise RateLimited(
            f"at most {most} test sends a minute per owner (ASYNC_EVENTS_TEST_SENDS_PER_MINUTE); try again shortly",
            retry_after=max(int(left_ms), 0) / 1000,
        )
