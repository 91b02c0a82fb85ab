"""What one outcome says about its endpoint: the one classification that a subscription's health
(its failure count, auto-disable), its endpoint's circuit and the operational events all read.

Blame goes to the party at fault. A payload that did not resolve is the host's code failing, a
missing notifier or an undecryptable secret is this server's configuration, a cancelled delivery
or an attempt cut short by a lost worker is nobody's: none of them counts against the endpoint,
however often it happens.
"""

from __future__ import annotations

from enum import Enum

from flask_async_events.delivery.attempt import UNSENDABLE
from flask_async_events.delivery.types import Outcome

RESOLVE_ERROR = "ResolveError"  # the event's service raised: the host's code, not the endpoint
FORBIDDEN_ADDRESS = "ForbiddenAddress"  # the SSRF policy refused the address it resolves to
NOT_THE_ENDPOINTS = UNSENDABLE | {RESOLVE_ERROR}


class Said(Enum):
    """What an attempt said about its endpoint."""

    SUCCEEDED = "succeeded"  # it took the delivery (2xx)
    REFUSED = "refused"  # it answered, and refused it for good (a 4xx, a redirect, 410)
    FAILED = "failed"  # it did not answer as it should: 5xx, 429, a timeout, a connection refused or reset
    UNREACHABLE = "unreachable"  # its address is one the SSRF policy forbids: nothing was sent
    NOT_THE_ENDPOINT = "not the endpoint"  # the host's or this server's doing, or nobody's

    @property
    def against_subscription(self) -> bool:
        """Whether it counts toward the subscription's failures (and its auto-disable)."""
        return self in (Said.REFUSED, Said.FAILED, Said.UNREACHABLE)

    @property
    def answered(self) -> bool:
        """Whether the endpoint answered: its circuit closes."""
        return self in (Said.SUCCEEDED, Said.REFUSED)

    @property
    def down(self) -> bool:
        """Whether the endpoint failed to answer: a failure its circuit counts."""
        return self is Said.FAILED


def said(outcome: Outcome) -> Said:
    """The one classification of an outcome."""
    result = outcome.result
    if outcome.cancelled or outcome.interrupted or result.error_class in NOT_THE_ENDPOINTS:
        return Said.NOT_THE_ENDPOINT
    if result.success:
        return Said.SUCCEEDED
    if result.error_class == FORBIDDEN_ADDRESS:
        return Said.UNREACHABLE
    return Said.FAILED if result.retryable else Said.REFUSED
