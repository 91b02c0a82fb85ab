"""Who owns a subscription, and what an owner may receive.

A subscription made through the REST API belongs to its caller: ``token:<id>`` for a bearer token,
or whatever key the host's ``events.authorize`` hook names. A token-owned subscription (a wildcard,
say) receives only events whose ACL resources its token holds; fan-out reads them from here, so
the trigger job needs nothing of the REST API.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import select

from flask_async_events.models import ApiToken, DbSession

TOKEN_OWNER = "token:"


def owner_resources(session: DbSession, owners: Iterable[str]) -> dict[str, frozenset[str] | None]:
    """For token owners: their resources, or None for an admin token (everything)."""
    ids = [int(owner[len(TOKEN_OWNER) :]) for owner in owners if owner.startswith(TOKEN_OWNER)]
    if not ids:
        return {}
    tokens = session.scalars(select(ApiToken).where(ApiToken.id.in_(ids))).all()
    return {
        f"{TOKEN_OWNER}{token.id}": None if token.is_admin else frozenset(json.loads(token.resources))
        for token in tokens
    }
