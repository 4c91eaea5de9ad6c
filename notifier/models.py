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
    # Room on each page for the counter's next version: a HOT update (migration 0004).
    postgresql_with={"fillfactor": 50},
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
    sa.Column("topic", sa.String(255), nullable=True),
    sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
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

topic_subscribers = sa.Table(
    "topic_subscribers",
    metadata,
    sa.Column("topic", sa.String(255), primary_key=True),
    sa.Column("user_id", sa.String(255), primary_key=True),
)

# The answer of a topic publish with an Idempotency-Key: the key cannot live on the
# notifications rows (a publish makes one per recipient, and none for an empty topic).
topic_publishes = sa.Table(
    "topic_publishes",
    metadata,
    sa.Column("publisher", sa.String(255), primary_key=True),
    sa.Column("idempotency_key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("topic", sa.String(255), nullable=False),
    sa.Column("type", sa.String(255), nullable=False),
    sa.Column("recipients", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_topic_publishes_created_at", "created_at"),
)

# "Log out everywhere": tokens of the user issued at or before `revoked_at` are refused.
revocations = sa.Table(
    "revocations",
    metadata,
    sa.Column("user_id", sa.String(255), primary_key=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
)

# Presence: each instance's per-user stream counts, flushed on a short clock, counted
# only while the instance's heartbeat (`expires_at`) is in the future.
presence_instances = sa.Table(
    "presence_instances",
    metadata,
    sa.Column("instance_id", sa.String(64), primary_key=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

presence = sa.Table(
    "presence",
    metadata,
    sa.Column("instance_id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(255), primary_key=True),
    sa.Column("connections", sa.Integer(), nullable=False),
    sa.Index("ix_presence_user_id", "user_id"),
)
