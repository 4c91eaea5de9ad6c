"""notifier_publish(): publishing from a backend's own transaction (PostgreSQL only).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Creates the table `sql_publish_settings` (the `NOTIFIER_MAX_PAYLOAD_BYTES` the instances
run with, which `serve` records at start-up: the function cannot read their environment)
and the function `notifier_publish(user_id, type, data, idempotency_key)`, documented in
docs/sql-publish.md. On SQLite there is nothing to create: it has no functions, and no
other process can share its transactions.

The function's text is frozen here, like any migration. It writes the WebSocket frame it
announces with the expression of `notifier.wire.notification.FRAME_SQL` as it is for this
revision; tests/store/test_sql_publish.py holds that frame equal, byte for byte, to the
one replay reads. A later change to the Notification's fields must come with a migration
that re-creates the function (CREATE OR REPLACE with the new expression): that test
fails until it does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SETTINGS = (
    """CREATE TABLE sql_publish_settings (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    max_payload_bytes bigint NOT NULL CHECK (max_payload_bytes > 0),
    updated_at timestamptz NOT NULL DEFAULT now()
)""",
    "INSERT INTO sql_publish_settings (max_payload_bytes) VALUES (65536)",
)

# `data` is stored as compact JSON, like the HTTP routes store it, and measured against
# the limit in that form. PostgreSQL writes jsonb as text with one space after each ':'
# and ',' between tokens, and no other whitespace outside strings; the function drops
# the spaces outside strings (a recursive serializer in SQL was 40 times slower, a
# regular expression twice). The key order is jsonb's own (shorter keys first): JSON all
# the same, and what replay sends too, since it embeds the stored text.
#
# Idempotency: publisher 'sql', the unique index on (publisher, idempotency_key), and a
# SHA-256 fingerprint like the HTTP routes' (whose canonical form, orjson's sorted keys
# and float notation, cannot be written in SQL): here of the jsonb text of
# [user_id, type, data], which is canonical for jsonb values. Only this function writes
# keys of publisher 'sql' (`NOTIFIER_API_KEYS` refuses that name), so the two forms never
# meet. A transaction-scoped advisory lock on the key makes a concurrent call with the
# same key wait for the first to commit or roll back, and then find its original.
#
# The frame is `FRAME_SQL` over the inserted row; the announcement is the postgres bus's
# packed form (`{"o": origin, "a": [announcement]}`, origin "sql", which no instance
# has), without its frame when the payload would reach PostgreSQL's 8000-byte limit (the
# receiver then reads the row). NOTIFY is transactional: it leaves at commit, or never.
_FUNCTION = r"""
CREATE FUNCTION notifier_publish(
    user_id text, type text, data jsonb, idempotency_key text DEFAULT NULL
) RETURNS TABLE (id uuid, seq bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = @SCHEMA@, pg_temp
AS $function$
#variable_conflict use_column
DECLARE
    p_user text := notifier_publish.user_id;
    p_type text := notifier_publish.type;
    p_data jsonb := notifier_publish.data;
    p_key text := notifier_publish.idempotency_key;
    v_limit bigint;
    v_text text;
    v_print text;
    v_found record;
    v_id uuid;
    v_seq bigint;
    v_now timestamptz;
    v_frame text;
    v_head text;
    v_payload text;
BEGIN
    IF p_user IS NULL OR char_length(p_user) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'notifier_publish: user_id must be 1..255 characters'
            USING ERRCODE = '22023';
    END IF;
    IF p_type IS NULL OR char_length(p_type) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'notifier_publish: type must be 1..255 characters'
            USING ERRCODE = '22023';
    END IF;
    IF p_key IS NOT NULL AND char_length(p_key) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'notifier_publish: idempotency_key must be 1..255 characters or NULL'
            USING ERRCODE = '22023';
    END IF;
    IF p_data IS NULL OR jsonb_typeof(p_data) <> 'object' THEN
        RAISE EXCEPTION 'notifier_publish: data must be a JSON object'
            USING ERRCODE = '22023';
    END IF;
    -- HTTP's bounds on `data` (notifier/api/body.py, check_data): at most 64 levels of
    -- objects and arrays, `data` itself included (level 0 of the path is `data`), and no
    -- integer outside -2^63..2^64-1. jsonb keeps numbers exact but not how they were
    -- written, so any number beyond that range counts, `1e300` included.
    IF jsonb_path_exists(p_data,
            'strict $.**{64 to last} ? (@.type() == "object" || @.type() == "array")') THEN
        RAISE EXCEPTION 'notifier_publish: data is nested more than 64 levels deep'
            USING ERRCODE = '22023';
    END IF;
    IF jsonb_path_exists(p_data, 'strict $.** ? (@.type() == "number" && '
            '(@ > 18446744073709551615 || @ < -9223372036854775808))') THEN
        RAISE EXCEPTION 'notifier_publish: data holds an integer beyond 64 bits'
            USING ERRCODE = '22023';
    END IF;
    -- Compact JSON (see above): escaped backslashes and quotes set aside as control
    -- characters (which jsonb's text always escapes), every '"' is then a string's
    -- edge, and the odd pieces, outside strings, lose their spaces.
    SELECT replace(replace(
            string_agg(CASE WHEN o % 2 = 1 THEN replace(piece, ' ', '') ELSE piece END,
                       '"' ORDER BY o),
            chr(2), E'\\"'), chr(1), E'\\\\')
        INTO v_text
        FROM unnest(string_to_array(
            replace(replace(p_data::text, E'\\\\', chr(1)), E'\\"', chr(2)), '"'
        )) WITH ORDINALITY AS u(piece, o);
    SELECT s.max_payload_bytes INTO v_limit FROM sql_publish_settings s;
    v_limit := COALESCE(v_limit, 65536);
    IF octet_length(v_text) > v_limit THEN
        RAISE EXCEPTION 'notifier_publish: data is % bytes, over the %-byte limit',
            octet_length(v_text), v_limit
            USING ERRCODE = '22023';
    END IF;

    IF p_key IS NOT NULL THEN
        v_print := encode(
            sha256(convert_to(jsonb_build_array(p_user, p_type, p_data)::text, 'UTF8')), 'hex'
        );
        PERFORM pg_advisory_xact_lock(1852798060, hashtext(p_key));
        SELECT n.id, n.seq, n.fingerprint INTO v_found
            FROM notifications n
            WHERE n.publisher = 'sql' AND n.idempotency_key = p_key;
        IF FOUND THEN
            IF v_found.fingerprint IS DISTINCT FROM v_print THEN
                RAISE EXCEPTION 'notifier_publish: idempotency_key % was already used with '
                    'another user_id, type or data', quote_literal(p_key)
                    USING ERRCODE = '23505', CONSTRAINT = 'ix_notifications_idempotency';
            END IF;
            id := v_found.id;
            seq := v_found.seq;
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;

    -- The same counter as every publish: this row stays locked until the caller's
    -- transaction ends, which orders concurrent publishes for the user by commit.
    INSERT INTO streams AS s (user_id, last_seq) VALUES (p_user, 1)
        ON CONFLICT (user_id) DO UPDATE SET last_seq = s.last_seq + 1
        RETURNING s.last_seq INTO v_seq;
    v_id := gen_random_uuid();
    v_now := clock_timestamp();
    INSERT INTO notifications
        (id, user_id, seq, type, data, created_at, publisher, idempotency_key, fingerprint)
        VALUES (v_id, p_user, v_seq, p_type, v_text, v_now, 'sql', p_key, v_print)
        RETURNING @FRAME@ INTO v_frame;

    v_head := '{"o":"sql","a":[{"u":' || to_json(p_user)::text || ',"s":' || v_seq
        || ',"t":' || extract(epoch FROM v_now)::text;
    v_payload := v_head || ',"f":' || to_json(v_frame)::text || '}]}';
    IF octet_length(v_payload) >= 7900 THEN
        v_payload := v_head || '}]}';
    END IF;
    PERFORM pg_notify('notifier', v_payload);

    id := v_id;
    seq := v_seq;
    RETURN NEXT;
END
$function$
"""
_REVOKE = "REVOKE ALL ON FUNCTION notifier_publish(text, text, jsonb, text) FROM PUBLIC"

# `notifier.wire.notification.FRAME_SQL` at revision 0002's fields.
_FRAME = (
    """'{"type":"notification","notification":{"id":"' || id::text || '","user_id":' """
    """|| to_json(user_id)::text || ',"seq":' || seq::text || ',"type":' """
    """|| to_json(type)::text || ',"data":' || data || ',"created_at":"' """
    """|| to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') """
    """|| '","read_at":' || COALESCE('"' || to_char(read_at AT TIME ZONE 'UTC', """
    """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"', 'null') || ',"topic":' """
    """|| COALESCE(to_json(topic)::text, 'null') || ',"archived_at":' """
    """|| COALESCE('"' || to_char(archived_at AT TIME ZONE 'UTC', """
    """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"', 'null') || '}}'"""
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    schema = bind.execute(sa.text("SELECT quote_ident(current_schema())")).scalar_one()
    function = _FUNCTION.replace("@SCHEMA@", schema).replace("@FRAME@", _FRAME)
    # One statement per call (asyncpg prepares each), and no bind-parameter parsing of
    # the function's text.
    for statement in (*_SETTINGS, function, _REVOKE):
        bind.exec_driver_sql(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    bind.exec_driver_sql("DROP FUNCTION IF EXISTS notifier_publish(text, text, jsonb, text)")
    bind.exec_driver_sql("DROP TABLE IF EXISTS sql_publish_settings")
