"""subscriber controls: previous signing tokens, extra headers, filters, idempotency keys

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("async_event_subscriber", sa.Column("previous_tokens", sa.Text(), nullable=True))
    op.add_column("async_event_subscriber", sa.Column("headers", sa.Text(), nullable=True))
    op.add_column("async_event_subscriber", sa.Column("filter", sa.Text(), nullable=True))
    with op.batch_alter_table("async_event") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(255), nullable=True))
        batch.create_unique_constraint("uq_async_event_event_name_idempotency_key", ["event_name", "idempotency_key"])


def downgrade() -> None:
    with op.batch_alter_table("async_event") as batch:
        batch.drop_constraint("uq_async_event_event_name_idempotency_key", type_="unique")
        batch.drop_column("idempotency_key")
    with op.batch_alter_table("async_event_subscriber") as batch:  # SQLite rebuilds the table
        batch.drop_column("filter")
        batch.drop_column("headers")
        batch.drop_column("previous_tokens")
