"""The RQ baseline's job: one signed POST per job, as a plain RQ application would do it."""

from __future__ import annotations

from bench.signed import RequestsPoster

_poster: RequestsPoster | None = None


def post_webhook(url: str, index: int) -> None:
    global _poster
    if _poster is None:
        _poster = RequestsPoster()
    _poster.post(url, f"rq_{index}")
