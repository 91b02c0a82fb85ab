"""The tables. The Magento module's table and column names are kept; the rest make the database
the source of truth: published events (the outbox) and one delivery row per (event, subscription).

The models live on this package's own metadata, so they share the host's session and transaction
but never appear in the host's ``db.metadata`` or its migrations.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    cast,
    func,
    literal_column,
    text,
)
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, scoped_session

TABLE_PREFIX = "async_event"
# How much of a response body an attempt keeps in the log (and in the attempt journal).
RESPONSE_EXCERPT = 8192
BODY_INDEX = "ix_async_event_subscriber_log_body"  # PostgreSQL: the delivered bodies, as JSONB
DEAD_INDEX = "ix_async_event_delivery_dead"  # PostgreSQL: the dead letters, by when they died

# The host's ``db.session`` (a scoped session) or a plain session.
DbSession = Session | scoped_session[Any]

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# Payloads can be large; MySQL's TEXT stops at 64 KiB.
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def utcnow() -> datetime:
    return datetime.now(UTC)


def naive_utc(moment: datetime) -> datetime:
    """``moment`` as stored: naive UTC (an aware one converted, a naive one taken as UTC)."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC (portable across databases) and hands back aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else naive_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if isinstance(value, str):  # SQLite through a raw text column
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value is not None else None


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class DeliveryState:
    """The states of a delivery row."""

    PENDING = "pending"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    DEAD = "dead"
    CANCELLED = "cancelled"

    CLAIMABLE = (PENDING, RETRYING)
    OPEN = (PENDING, DELIVERING, RETRYING)


class Subscription(Base):
    """``async_event_subscriber``: who receives which events, where, and how (the notifier)."""

    __tablename__ = "async_event_subscriber"

    subscription_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_name: Mapped[str] = mapped_column(String(255), index=True)
    recipient_url: Mapped[str] = mapped_column(String(1024))
    verification_token: Mapped[str] = mapped_column(Text)  # encrypted, never returned
    status: Mapped[bool] = mapped_column(Boolean, default=True)
    subscribed_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The Magento module's column is "metadata", a name SQLAlchemy reserves on declarative classes.
    notifier: Mapped[str] = mapped_column("metadata", String(64), default="http")
    store_id: Mapped[int] = mapped_column(Integer, default=0)
    last_success_at: Mapped[datetime | None]
    failing_since: Mapped[datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    # Who created it through the API ("token:<id>", or what the host's authorize hook names); None
    # for subscriptions made in code or on the command line, which only admins see.
    owner: Mapped[str | None] = mapped_column(String(255), index=True)
    deleted_at: Mapped[datetime | None]  # unsubscribed: hidden and disabled, its logs kept
    rate_limit: Mapped[float | None] = mapped_column(Float)  # deliveries per second; None: unlimited
    # Tokens replaced by a rotation, still signing until their time, and extra request headers:
    # encrypted JSON documents (see delivery/credentials.py), NULL when there are none.
    previous_tokens: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[str | None] = mapped_column(Text)
    # A query over each event's name, store and payload (delivery/filters.py); NULL: every event.
    filter: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_async_event_subscriber_status_event_name", "status", "event_name"),)


class Event(Base):
    """``async_event``: a published event, written in the publisher's transaction (the outbox)."""

    __tablename__ = "async_event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    event_name: Mapped[str] = mapped_column(String(255))
    store_id: Mapped[int] = mapped_column(Integer, default=0)
    arguments: Mapped[str] = mapped_column(LongText)  # JSON object
    body: Mapped[str | None] = mapped_column(LongText)  # the exact bytes sent, resolved once
    resolve_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    triggered_at: Mapped[datetime | None] = mapped_column(index=True)
    # The publisher's key: one event per name and key (NULLs never collide); cleared once its
    # window has passed, so the key may be used again.
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    trace_context: Mapped[str | None] = mapped_column(String(512))  # the publisher's traceparent/tracestate (JSON)

    __table_args__ = (UniqueConstraint("event_name", "idempotency_key"),)


class Delivery(Base):
    """``async_event_delivery``: one event to one subscription, its state and its next attempt.

    ``uuid`` is the ``webhook-id`` a receiver sees on every attempt and replay. ``claim_token`` and
    ``lease_until`` fence a batch to the one job that claimed it.
    """

    __tablename__ = "async_event_delivery"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("async_event.id"))
    subscription_id: Mapped[int] = mapped_column(ForeignKey("async_event_subscriber.subscription_id"), index=True)
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)  # every attempt ever made
    round_attempts: Mapped[int] = mapped_column(Integer, default=0)  # since the last (re)start
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claim_token: Mapped[str | None] = mapped_column(String(32), index=True)
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("event_id", "subscription_id"),
        Index("ix_async_event_delivery_state_next_attempt_at", "state", "next_attempt_at"),
        # PostgreSQL: the dead letters, newest first, without reading every dead row (a partial
        # index holds the dead ones only, so other deliveries' updates never touch it).
        Index(DEAD_INDEX, "updated_at", "id", postgresql_where=text("state = 'dead'")).ddl_if(dialect="postgresql"),
    )


class DeliveryAttempt(Base):
    """``async_event_subscriber_log``: one row per attempt, append-only."""

    __tablename__ = "async_event_subscriber_log"
    __table_args__ = (
        # PostgreSQL: the payload search finds exact values at a path through this index of the
        # bodies in lower case, by containment (operations/payload_sql.py); the others read them.
        Index(
            BODY_INDEX,
            cast(func.lower(literal_column("serialized_data")), postgresql.JSONB).label("body"),
            postgresql_using="gin",
            postgresql_ops={"body": "jsonb_path_ops"},
        ).ddl_if(dialect="postgresql"),
    )

    log_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), index=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("async_event_subscriber.subscription_id"), index=True)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("async_event_delivery.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    success: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    error_class: Mapped[str | None] = mapped_column(String(255))
    response_data: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    serialized_data: Mapped[str | None] = mapped_column(LongText)


# Upper bounds of the latency histogram, in seconds (Prometheus' ``le``); one more bucket holds the slower.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BUCKET_COLUMNS = tuple(f"bucket_{index:02d}" for index in range(len(LATENCY_BUCKETS) + 1))
STAT_COUNTERS = ("attempts", "timed", "duration_ms_sum", *BUCKET_COLUMNS)


class _AttemptCounts:
    """What the attempt statistics count, per key: attempts, those with a duration, their total
    duration, and how many fell into each latency bucket (not cumulative)."""

    attempts: Mapped[int] = mapped_column(BigInteger, default=0)
    timed: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_ms_sum: Mapped[int] = mapped_column(BigInteger, default=0)
    bucket_00: Mapped[int] = mapped_column(BigInteger, default=0)
    bucket_01: Mapped[int] = mapped_column(BigInteger, default=0)
    bucket_02: Mapped[int] = mapped_column(BigInteger, default=0)
    bucket_03: Mapped[int] = mapped_column(BigInteger, default=0)
    bucket_04: Mapped[int] = mapped_column(BigInteger, default=0)
    bucket_05: Mapped[int] = mapped_column(BigInteger, default=0)
    bucket_06: Mapped[int] = mapped_column(BigInteger, default=0)
    bucket_07: Mapped[int] = mapped_column(BigInteger, default=0)
    bucket_08: Mapped[int] = mapped_column(BigInteger, default=0)
    bucket_09: Mapped[int] = mapped_column(BigInteger, default=0)
    bucket_10: Mapped[int] = mapped_column(BigInteger, default=0)
    bucket_11: Mapped[int] = mapped_column(BigInteger, default=0)
    bucket_12: Mapped[int] = mapped_column(BigInteger, default=0)


class AttemptTotals(_AttemptCounts, Base):
    """``async_event_attempt_totals``: every attempt ever logged, per subscription and outcome,
    counted as it is logged (in the same transaction). The metrics read these few rows, however
    long the log; ``prune`` leaves them, so they only grow, as counters should."""

    __tablename__ = "async_event_attempt_totals"

    subscription_id: Mapped[int] = mapped_column(ForeignKey("async_event_subscriber.subscription_id"), primary_key=True)
    success: Mapped[bool] = mapped_column(Boolean, primary_key=True)


class AttemptHourly(_AttemptCounts, Base):
    """``async_event_attempt_hourly``: the same counts per hour (UTC, the hour's start), for charts;
    ``prune`` keeps at least the last 8 days of them."""

    __tablename__ = "async_event_attempt_hourly"

    hour: Mapped[datetime] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("async_event_subscriber.subscription_id"), primary_key=True)
    success: Mapped[bool] = mapped_column(Boolean, primary_key=True)


class ApiToken(Base):
    """``async_event_api_token``: a bearer token for the REST API, stored as a SHA-256 hash."""

    __tablename__ = "async_event_api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    resources: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of ACL resources
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class WebSession(Base):
    """``async_event_web_session``: a login to the admin pages or the portal. Its cookie holds a
    random key whose SHA-256 is stored here, and every request looks it up, so a logout (or its
    expiry) ends it on the server: a copy of the cookie taken before then opens nothing after."""

    __tablename__ = "async_event_web_session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    surface: Mapped[str] = mapped_column(String(16))  # admin or portal
    owner: Mapped[str] = mapped_column(String(255))
    token_id: Mapped[int | None] = mapped_column(Integer)  # the API token logged in with; None for a portal link
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


def include_in_migrations(name: str | None, type_: str, parent_names: Any = None) -> bool:
    """An Alembic ``include_name`` hook for the *host's* migrations: leave this package's tables out.

    ``Migrate(app, db, include_name=lambda *a: include_in_migrations(*a))`` stops the host's
    autogenerate from proposing to drop them.
    """
    return not (type_ == "table" and name is not None and name.startswith(TABLE_PREFIX))
