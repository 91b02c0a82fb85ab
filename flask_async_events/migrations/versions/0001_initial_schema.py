"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 11:52:36.463302
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import flask_async_events.models

# Payloads can be large; MySQL's TEXT stops at 64 KiB.
LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "async_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("event_name", sa.String(length=255), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("arguments", LONG_TEXT, nullable=False),
        sa.Column("body", LONG_TEXT, nullable=True),
        sa.Column("resolve_error", sa.Text(), nullable=True),
        sa.Column("created_at", flask_async_events.models.UTCDateTime(), nullable=False),
        sa.Column("triggered_at", flask_async_events.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_async_event")),
        sa.UniqueConstraint("uuid", name=op.f("uq_async_event_uuid")),
    )
    op.create_index(op.f("ix_async_event_triggered_at"), "async_event", ["triggered_at"], unique=False)
    op.create_table(
        "async_event_subscriber",
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("event_name", sa.String(length=255), nullable=False),
        sa.Column("recipient_url", sa.String(length=1024), nullable=False),
        sa.Column("verification_token", sa.Text(), nullable=False),
        sa.Column("status", sa.Boolean(), nullable=False),
        sa.Column("subscribed_at", flask_async_events.models.UTCDateTime(), nullable=False),
        sa.Column("modified", flask_async_events.models.UTCDateTime(), nullable=False),
        sa.Column("metadata", sa.String(length=64), nullable=False),
        sa.Column("store_id", sa.Integer(), nullable=False),
        sa.Column("last_success_at", flask_async_events.models.UTCDateTime(), nullable=True),
        sa.Column("failing_since", flask_async_events.models.UTCDateTime(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("subscription_id", name=op.f("pk_async_event_subscriber")),
    )
    op.create_index(
        op.f("ix_async_event_subscriber_event_name"), "async_event_subscriber", ["event_name"], unique=False
    )
    op.create_index(
        "ix_async_event_subscriber_status_event_name", "async_event_subscriber", ["status", "event_name"], unique=False
    )
    op.create_table(
        "async_event_delivery",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("round_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", flask_async_events.models.UTCDateTime(), nullable=False),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("lease_until", flask_async_events.models.UTCDateTime(), nullable=True),
        sa.Column("created_at", flask_async_events.models.UTCDateTime(), nullable=False),
        sa.Column("updated_at", flask_async_events.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["async_event.id"], name=op.f("fk_async_event_delivery_event_id_async_event")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["async_event_subscriber.subscription_id"],
            name=op.f("fk_async_event_delivery_subscription_id_async_event_subscriber"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_async_event_delivery")),
        sa.UniqueConstraint(
            "event_id", "subscription_id", name=op.f("uq_async_event_delivery_event_id_subscription_id")
        ),
        sa.UniqueConstraint("uuid", name=op.f("uq_async_event_delivery_uuid")),
    )
    op.create_index(op.f("ix_async_event_delivery_claim_token"), "async_event_delivery", ["claim_token"], unique=False)
    op.create_index(
        "ix_async_event_delivery_state_next_attempt_at",
        "async_event_delivery",
        ["state", "next_attempt_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_async_event_delivery_subscription_id"), "async_event_delivery", ["subscription_id"], unique=False
    )
    op.create_table(
        "async_event_subscriber_log",
        sa.Column("log_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("error_class", sa.String(length=255), nullable=True),
        sa.Column("response_data", sa.Text(), nullable=False),
        sa.Column("created", flask_async_events.models.UTCDateTime(), nullable=False),
        sa.Column("serialized_data", LONG_TEXT, nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["async_event_delivery.id"],
            name=op.f("fk_async_event_subscriber_log_delivery_id_async_event_delivery"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["async_event_subscriber.subscription_id"],
            name=op.f("fk_async_event_subscriber_log_subscription_id_async_event_subscriber"),
        ),
        sa.PrimaryKeyConstraint("log_id", name=op.f("pk_async_event_subscriber_log")),
    )
    op.create_index(
        op.f("ix_async_event_subscriber_log_created"), "async_event_subscriber_log", ["created"], unique=False
    )
    op.create_index(
        op.f("ix_async_event_subscriber_log_delivery_id"), "async_event_subscriber_log", ["delivery_id"], unique=False
    )
    op.create_index(
        op.f("ix_async_event_subscriber_log_subscription_id"),
        "async_event_subscriber_log",
        ["subscription_id"],
        unique=False,
    )
    op.create_index(op.f("ix_async_event_subscriber_log_uuid"), "async_event_subscriber_log", ["uuid"], unique=False)


def downgrade() -> None:
    # Dropping a table drops its indexes; MySQL refuses to drop an index a foreign key needs first.
    op.drop_table("async_event_subscriber_log")
    op.drop_table("async_event_delivery")
    op.drop_table("async_event_subscriber")
    op.drop_table("async_event")
