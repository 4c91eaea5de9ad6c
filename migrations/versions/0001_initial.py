"""Initial schema: per-user streams and notifications.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "streams",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("last_seq", _SEQ, nullable=False),
    )
    op.create_table(
        "notifications",
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=False),
        sa.Column("id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("type", sa.String(255), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("publisher", sa.String(255), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=True),
    )
    op.create_index("ix_notifications_id", "notifications", ["id"], unique=True)
    op.create_index(
        "ix_notifications_idempotency",
        "notifications",
        ["publisher", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_index(
        "ix_notifications_unread",
        "notifications",
        ["user_id", "seq"],
        postgresql_where=sa.text("read_at IS NULL"),
        sqlite_where=sa.text("read_at IS NULL"),
    )
    op.create_index("ix_notifications_created_at", "notifications", ["created_at"])


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("streams")
