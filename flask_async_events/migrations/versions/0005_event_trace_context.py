"""event trace context: the publishing request's W3C trace context, carried to its deliveries

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column without a default: no table rewrite on PostgreSQL or MariaDB, however many rows.
    op.add_column("async_event", sa.Column("trace_context", sa.String(512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("async_event") as batch:  # SQLite rebuilds the table
        batch.drop_column("trace_context")
