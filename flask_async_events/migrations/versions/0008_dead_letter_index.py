"""dead-letter index: the dead deliveries by the time they died, in a partial index (PostgreSQL)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 15:00:00

The dead-letter list (newest first) read every dead row to sort them: 0.3 s with 50,000 of them
among 2.5 million deliveries. The index holds the dead ones only, so the updates of every other
delivery never touch it. MySQL and MariaDB have no partial indexes, and SQLite's planner takes
one only once the database was analyzed: there the list sorts as before. The upgrade holds
writes to the delivery table while it reads it once (under a second per million deliveries;
results recorded meanwhile wait, none is lost).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_async_event_delivery_dead"
DEAD = sa.text("state = 'dead'")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(INDEX, "async_event_delivery", ["updated_at", "id"], postgresql_where=DEAD)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(INDEX, table_name="async_event_delivery")
