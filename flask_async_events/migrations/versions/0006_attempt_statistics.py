"""attempt statistics: totals per subscription and outcome, and the same per hour, counted from the log

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 19:30:00

The upgrade fills both tables from the attempt log in two INSERT ... SELECT statements (the hourly
one from the last 8 days only): one pass over the log, about 10 s per million rows on PostgreSQL.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
BUCKETS = [f"bucket_{index:02d}" for index in range(len(BOUNDS_MS) + 1)]
COUNTERS = ["attempts", "timed", "duration_ms_sum", *BUCKETS]
HOURLY_DAYS = 8
SUBSCRIBER = "async_event_subscriber.subscription_id"


def _counters() -> list[sa.Column]:
    return [sa.Column(name, sa.BigInteger(), nullable=False, server_default="0") for name in COUNTERS]


def upgrade() -> None:
    op.create_table(
        "async_event_attempt_totals",
        sa.Column("subscription_id", sa.Integer(), sa.ForeignKey(SUBSCRIBER), primary_key=True),
        sa.Column("success", sa.Boolean(), primary_key=True),
        *_counters(),
    )
    op.create_table(
        "async_event_attempt_hourly",
        sa.Column("hour", sa.DateTime(), primary_key=True),
        sa.Column("subscription_id", sa.Integer(), sa.ForeignKey(SUBSCRIBER), primary_key=True),
        sa.Column("success", sa.Boolean(), primary_key=True),
        *_counters(),
    )
    _fill()


def _fill() -> None:
    """Count what the log holds already."""
    bind = op.get_bind()
    log = sa.table(
        "async_event_subscriber_log",
        sa.column("subscription_id"),
        sa.column("success"),
        sa.column("duration_ms"),
        sa.column("created"),
    )
    duration = log.c.duration_ms
    buckets = []
    for index, name in enumerate(BUCKETS):
        low = BOUNDS_MS[index - 1] if index else None
        high = BOUNDS_MS[index] if index < len(BOUNDS_MS) else None
        condition = sa.and_(
            *([duration > low] if low is not None else []), *([duration <= high] if high is not None else [])
        )
        buckets.append(sa.func.sum(sa.case((sa.and_(duration.is_not(None), condition), 1), else_=0)).label(name))
    counts = [
        sa.func.count().label("attempts"),
        sa.func.count(duration).label("timed"),
        sa.func.coalesce(sa.func.sum(duration), 0).label("duration_ms_sum"),
        *buckets,
    ]
    dialect = bind.dialect.name
    if dialect == "postgresql":
        hour = sa.func.date_trunc("hour", log.c.created)
    elif dialect == "sqlite":
        hour = sa.func.strftime("%Y-%m-%d %H:00:00.000000", log.c.created)
    else:
        hour = sa.func.date_format(log.c.created, "%Y-%m-%d %H:00:00")
    totals = sa.table(
        "async_event_attempt_totals", *(sa.column(name) for name in ["subscription_id", "success", *COUNTERS])
    )
    hourly = sa.table(
        "async_event_attempt_hourly", *(sa.column(name) for name in ["hour", "subscription_id", "success", *COUNTERS])
    )
    by_outcome = sa.select(log.c.subscription_id, log.c.success, *counts).group_by(log.c.subscription_id, log.c.success)
    bind.execute(totals.insert().from_select(["subscription_id", "success", *COUNTERS], by_outcome))
    since = (datetime.now(UTC) - timedelta(days=HOURLY_DAYS)).replace(tzinfo=None)
    per_hour = (
        sa.select(hour.label("hour"), log.c.subscription_id, log.c.success, *counts)
        .where(log.c.created >= since)
        .group_by(hour, log.c.subscription_id, log.c.success)
    )
    bind.execute(hourly.insert().from_select(["hour", "subscription_id", "success", *COUNTERS], per_hour))


def downgrade() -> None:
    op.drop_table("async_event_attempt_hourly")
    op.drop_table("async_event_attempt_totals")
