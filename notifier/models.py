"""The schema, as SQLAlchemy Core tables. Alembic migrations in `migrations/` create it.

`streams` holds each user's newest seq: a publish raises it with one
`INSERT .. ON CONFLICT DO UPDATE .. RETURNING` inside the publishing transaction, so the
row lock orders concurrent publishes for one user and seqs commit in order with no gap.
`notifications` is keyed by (user_id, seq), so every inbox read and every replay is one
range scan of the primary key; unread reads use a partial index.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

streams = sa.Table(
    "streams",
    metadata,
    sa.Column("user_id", sa.String(255), primary_key=True),
    sa.Column("last_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("user_id", sa.String(255), primary_key=True),
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("id", sa.Uuid(as_uuid=False), nullable=False),
    sa.Column("type", sa.String(255), nullable=False),
    sa.Column("data", sa.Text(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("publisher", sa.String(255), nullable=True),
    sa.Column("idempotency_key", sa.String(255), nullable=True),
    sa.Column("fingerprint", sa.String(64), nullable=True),
    sa.Index("ix_notifications_id", "id", unique=True),
    sa.Index(
        "ix_notifications_idempotency",
        "publisher",
        "idempotency_key",
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
    ),
    sa.Index(
        "ix_notifications_unread",
        "user_id",
        "seq",
        postgresql_where=sa.text("read_at IS NULL"),
        sqlite_where=sa.text("read_at IS NULL"),
    ),
    sa.Index("ix_notifications_created_at", "created_at"),
)
