"""Who is using the shared pages, and how a surface tells them what happened.

The admin pages say things with Flask's ``flash`` (the host's session cookie); the portal, which may
live in another site's iframe, with its own cookie. The shared views only ever call :func:`say`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import g

from flask_async_events.auth import Principal

FORM_EXPIRED = "The form expired or did not come from these pages; reload it and try again."


@dataclass(frozen=True)
class Access:
    """The caller of this request, how to give them a message (``ok`` or ``error``), whether they
    may make subscriptions for any owner (an operator may; a portal user makes their own), and the
    reason a subscription they disable shows."""

    caller: Principal
    say: Callable[[str, str], None]
    disabled_reason: str
    chooses_owner: bool = False


def use(access: Access) -> None:
    """Set by each surface before its request runs."""
    g.async_events_access = access


def current() -> Access:
    access: Access = g.async_events_access
    return access


def caller() -> Principal:
    return current().caller


def say(message: str, category: str = "ok") -> None:
    current().say(message, category)
