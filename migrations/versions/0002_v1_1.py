"""v1.1 schema: topic and archive state on notifications, topics, revocations, presence.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Only additions: nullable columns and new tables, so an instance of the previous release
keeps working against this schema while a rolling upgrade replaces it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("topic", sa.String(255), nullable=True))
        batch.add_column(sa.Column("archived_at", _TIME, nullable=True))
    op.create_table(
        "topic_subscribers",
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("user_id", sa.String(255), primary_key=True),
    )
    op.create_table(
        "topic_publishes",
        sa.Column("publisher", sa.String(255), primary_key=True),
        sa.Column("idempotency_key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("type", sa.String(255), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_index("ix_topic_publishes_created_at", "topic_publishes", ["created_at"])
    op.create_table(
        "revocations",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("revoked_at", _TIME, nullable=False),
    )
    op.create_table(
        "presence_instances",
        sa.Column("instance_id", sa.String(64), primary_key=True),
        sa.Column("expires_at", _TIME, nullable=False),
    )
    op.create_table(
        "presence",
        sa.Column("instance_id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("connections", sa.Integer(), nullable=False),
    )
    op.create_index("ix_presence_user_id", "presence", ["user_id"])


def downgrade() -> None:
    op.drop_table("presence")
    op.drop_table("presence_instances")
    op.drop_table("revocations")
    op.drop_table("topic_publishes")
    op.drop_table("topic_subscribers")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("archived_at")
        batch.drop_column("topic")
