"""api tokens, subscription owner and deletion

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 12:21:31
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import flask_async_events.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "async_event_api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("resources", sa.Text(), nullable=False),
        sa.Column("created_at", flask_async_events.models.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", flask_async_events.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_async_event_api_token")),
        sa.UniqueConstraint("name", name=op.f("uq_async_event_api_token_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_async_event_api_token_token_hash")),
    )
    op.add_column("async_event_subscriber", sa.Column("owner", sa.String(length=255), nullable=True))
    op.add_column(
        "async_event_subscriber", sa.Column("deleted_at", flask_async_events.models.UTCDateTime(), nullable=True)
    )
    op.create_index(op.f("ix_async_event_subscriber_owner"), "async_event_subscriber", ["owner"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("async_event_subscriber") as batch:  # SQLite rebuilds the table
        batch.drop_index(op.f("ix_async_event_subscriber_owner"))
        batch.drop_column("deleted_at")
        batch.drop_column("owner")
    op.drop_table("async_event_api_token")
