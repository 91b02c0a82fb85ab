"""web sessions: logins to the admin pages and the portal, ended on the server at logout

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 09:00:00

A session cookie used to carry everything a login needed, so a copy of it kept working after its
owner logged out. Now it carries a random key, and this table says whether that key's session is
still on.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import flask_async_events.models

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "async_event_web_session"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("surface", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("created_at", flask_async_events.models.UTCDateTime(), nullable=False),
        sa.Column("expires_at", flask_async_events.models.UTCDateTime(), nullable=False),
        sa.Column("ended_at", flask_async_events.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_async_event_web_session")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_async_event_web_session_key_hash")),
    )


def downgrade() -> None:
    op.drop_table(TABLE)
