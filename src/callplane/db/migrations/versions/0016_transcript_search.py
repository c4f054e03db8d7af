"""transcript search

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 05:30:00

One search document per call, kept by the database itself (triggers), so no write path of the application has to
know about it: the merged transcript's turns, then the call's details (external id, numbers, and the string and
number values of agent, customer and metadata).

Both databases index the same words: maximal runs of letters and digits, lower-cased, no stemming and no stop
words, so "3.5" is the two words 3 and 5 and a phrase means the same words in a row on either database
(core/search/query.py tokenizes queries and finds match times with the same rule).

- PostgreSQL: `call_search` (call_id, account_id, document tsvector) with a GIN index; the `simple` configuration
  over text whose non-alphanumerics were turned into spaces. A PL/pgSQL function rebuilds one call's row.
- SQLite: an FTS5 table `call_search` (unicode61, diacritics kept as PostgreSQL keeps them) whose rowid comes from
  `call_search_rows` (call_id -> integer), so a trigger finds a call's entry by key, not by scanning.

Neither is an ORM model: they are indexes, not data (tests/migrations excludes them from the schema comparison by
the names in core/search/index.py). A later SQLite batch migration that recreates `calls` or `call_transcripts`
drops their triggers with the table: tests/search checks the triggers exist after upgrading to head.
"""

# The SQL below is put together from this file's own constants (column names, trigger row references), no input.
# ruff: noqa: S608

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Columns of `calls` that feed the document; other updates (status, updated_at: several per call) fire nothing.
_CALL_COLUMNS = "account_id, external_id, from_e164, to_e164, contact_e164, agent, customer, metadata"

_POSTGRES_UP = [
    """
    CREATE TABLE call_search (
        call_id VARCHAR(36) NOT NULL,
        account_id VARCHAR(36) NOT NULL,
        document TSVECTOR NOT NULL,
        CONSTRAINT pk_call_search PRIMARY KEY (call_id),
        CONSTRAINT fk_call_search_call_id_calls FOREIGN KEY (call_id) REFERENCES calls (id) ON DELETE CASCADE
    )
    """,
    "CREATE INDEX ix_call_search_document ON call_search USING gin (document)",
    # The word rule shared with SQLite's unicode61 tokenizer and core/search/query.py (see the module docstring).
    """
    CREATE FUNCTION callplane_search_words(value TEXT) RETURNS TEXT
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT regexp_replace(lower(coalesce(value, '')), '[^[:alnum:]]+', ' ', 'g') $$
    """,
    # json -> text fails on a \u0000 escape (text cannot hold NUL): that part is left out, the write goes on.
    """
    CREATE FUNCTION callplane_search_turns(transcript JSON) RETURNS TEXT
    LANGUAGE plpgsql IMMUTABLE
    AS $$
    BEGIN
        IF json_typeof(transcript -> 'turns') IS DISTINCT FROM 'array' THEN
            RETURN NULL;
        END IF;
        RETURN (
            SELECT string_agg(turn ->> 'text', ' ' ORDER BY position)
            FROM json_array_elements(transcript -> 'turns') WITH ORDINALITY AS turns (turn, position)
            WHERE json_typeof(turn) = 'object'
        );
    EXCEPTION WHEN untranslatable_character THEN
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE FUNCTION callplane_search_values(value JSON) RETURNS TEXT
    LANGUAGE plpgsql IMMUTABLE
    AS $$
    BEGIN
        RETURN (
            SELECT string_agg(item #>> '{}', ' ')
            FROM jsonb_path_query(value::jsonb, 'strict $.**') AS item
            WHERE jsonb_typeof(item) IN ('string', 'number')
        );
    EXCEPTION WHEN untranslatable_character THEN
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE FUNCTION callplane_search_document(
        transcript JSON, external_id TEXT, from_e164 TEXT, to_e164 TEXT, contact_e164 TEXT,
        agent JSON, customer JSON, metadata JSON
    ) RETURNS TSVECTOR
    LANGUAGE sql IMMUTABLE
    AS $$
        SELECT to_tsvector('simple', callplane_search_words(callplane_search_turns(transcript)))
            || to_tsvector('simple', callplane_search_words(concat_ws(' ',
                external_id, from_e164, to_e164, contact_e164, callplane_search_values(agent),
                callplane_search_values(customer), callplane_search_values(metadata))))
    $$
    """,
    """
    CREATE FUNCTION callplane_search_refresh(target VARCHAR) RETURNS VOID
    LANGUAGE plpgsql
    AS $$
    BEGIN
        INSERT INTO call_search (call_id, account_id, document)
        SELECT c.id, c.account_id, callplane_search_document(
            t.transcript, c.external_id, c.from_e164, c.to_e164, c.contact_e164, c.agent, c.customer, c.metadata)
        FROM calls AS c LEFT JOIN call_transcripts AS t ON t.call_id = c.id
        WHERE c.id = target
        ON CONFLICT (call_id) DO UPDATE SET account_id = excluded.account_id, document = excluded.document;
    END
    $$
    """,
    """
    CREATE FUNCTION callplane_search_call_changed() RETURNS TRIGGER
    LANGUAGE plpgsql
    AS $$
    BEGIN
        PERFORM callplane_search_refresh(NEW.id);
        RETURN NULL;
    END
    $$
    """,
    f"""
    CREATE TRIGGER call_search_call_changed AFTER INSERT OR UPDATE OF {_CALL_COLUMNS} ON calls
    FOR EACH ROW EXECUTE FUNCTION callplane_search_call_changed()
    """,
    # A deleted call takes its row with it (the foreign key); a deleted transcript leaves the call's details.
    """
    CREATE FUNCTION callplane_search_transcript_changed() RETURNS TRIGGER
    LANGUAGE plpgsql
    AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            PERFORM callplane_search_refresh(OLD.call_id);
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') AND (TG_OP = 'INSERT' OR NEW.call_id <> OLD.call_id) THEN
            PERFORM callplane_search_refresh(NEW.call_id);
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER call_search_transcript_changed AFTER INSERT OR DELETE OR UPDATE OF call_id, transcript
    ON call_transcripts FOR EACH ROW EXECUTE FUNCTION callplane_search_transcript_changed()
    """,
    # Backfill in one statement (the same function as the triggers).
    """
    INSERT INTO call_search (call_id, account_id, document)
    SELECT c.id, c.account_id, callplane_search_document(
        t.transcript, c.external_id, c.from_e164, c.to_e164, c.contact_e164, c.agent, c.customer, c.metadata)
    FROM calls AS c LEFT JOIN call_transcripts AS t ON t.call_id = c.id
    """,
]

_POSTGRES_DOWN = [
    "DROP TRIGGER call_search_transcript_changed ON call_transcripts",
    "DROP TRIGGER call_search_call_changed ON calls",
    "DROP FUNCTION callplane_search_transcript_changed()",
    "DROP FUNCTION callplane_search_call_changed()",
    "DROP FUNCTION callplane_search_refresh(VARCHAR)",
    "DROP FUNCTION callplane_search_document(JSON, TEXT, TEXT, TEXT, TEXT, JSON, JSON, JSON)",
    "DROP FUNCTION callplane_search_values(JSON)",
    "DROP FUNCTION callplane_search_turns(JSON)",
    "DROP FUNCTION callplane_search_words(TEXT)",
    "DROP TABLE call_search",
]


def _sqlite_json_values(column: str) -> str:
    """The string and number leaves of a JSON column, space-separated (invalid JSON counts as empty)."""
    return (
        f"(SELECT group_concat(leaf.atom, ' ') FROM json_tree(CASE WHEN json_valid({column}) THEN {column} "
        f"ELSE '{{}}' END) AS leaf WHERE leaf.type IN ('text', 'integer', 'real'))"
    )


# The turns' text, then the call's details: the same document as callplane_search_document on PostgreSQL
# (FTS5's unicode61 tokenizer splits and folds the words, so no word rule is applied here).
_SQLITE_DOCUMENT = (
    "coalesce((SELECT group_concat(json_extract(turn.value, '$.text'), ' ') "
    "FROM json_each(CASE WHEN json_valid(t.transcript) THEN t.transcript ELSE '{}' END, '$.turns') AS turn "
    "WHERE turn.type = 'object'), '') || ' ' || "
    + " || ' ' || ".join(
        f"coalesce({part}, '')"
        for part in (
            "c.external_id",
            "c.from_e164",
            "c.to_e164",
            "c.contact_e164",
            _sqlite_json_values("c.agent"),
            _sqlite_json_values("c.customer"),
            _sqlite_json_values("c.metadata"),
        )
    )
)


def _sqlite_forget(call_id: str) -> str:
    return f"DELETE FROM call_search WHERE rowid = (SELECT id FROM call_search_rows WHERE call_id = {call_id});"


def _sqlite_refresh(call_id: str) -> str:
    """Trigger statements that rebuild one call's entry (nothing when the call is gone)."""
    return f"""
        {_sqlite_forget(call_id)}
        INSERT OR IGNORE INTO call_search_rows (call_id) SELECT id FROM calls WHERE id = {call_id};
        INSERT INTO call_search (rowid, call_id, document)
        SELECT r.id, c.id, {_SQLITE_DOCUMENT}
        FROM calls AS c JOIN call_search_rows AS r ON r.call_id = c.id
        LEFT JOIN call_transcripts AS t ON t.call_id = c.id
        WHERE c.id = {call_id};
    """


_SQLITE_UP = [
    """
    CREATE TABLE call_search_rows (
        id INTEGER NOT NULL,
        call_id VARCHAR(36) NOT NULL,
        CONSTRAINT pk_call_search_rows PRIMARY KEY (id),
        CONSTRAINT uq_call_search_rows_call_id UNIQUE (call_id)
    )
    """,
    "CREATE VIRTUAL TABLE call_search USING fts5(call_id UNINDEXED, document, "
    "tokenize = 'unicode61 remove_diacritics 0')",
    f"CREATE TRIGGER call_search_call_inserted AFTER INSERT ON calls BEGIN {_sqlite_refresh('new.id')} END",
    f"CREATE TRIGGER call_search_call_updated AFTER UPDATE OF {_CALL_COLUMNS} ON calls "
    f"BEGIN {_sqlite_refresh('new.id')} END",
    f"""
    CREATE TRIGGER call_search_call_deleted AFTER DELETE ON calls BEGIN
        {_sqlite_forget("old.id")}
        DELETE FROM call_search_rows WHERE call_id = old.id;
    END
    """,
    f"CREATE TRIGGER call_search_transcript_inserted AFTER INSERT ON call_transcripts "
    f"BEGIN {_sqlite_refresh('new.call_id')} END",
    f"CREATE TRIGGER call_search_transcript_updated AFTER UPDATE OF call_id, transcript ON call_transcripts "
    f"BEGIN {_sqlite_refresh('old.call_id')} {_sqlite_refresh('new.call_id')} END",
    f"CREATE TRIGGER call_search_transcript_deleted AFTER DELETE ON call_transcripts "
    f"BEGIN {_sqlite_refresh('old.call_id')} END",
    "INSERT INTO call_search_rows (call_id) SELECT id FROM calls ORDER BY received_at, id",
    f"""
    INSERT INTO call_search (rowid, call_id, document)
    SELECT r.id, c.id, {_SQLITE_DOCUMENT}
    FROM calls AS c JOIN call_search_rows AS r ON r.call_id = c.id
    LEFT JOIN call_transcripts AS t ON t.call_id = c.id
    """,
]

_SQLITE_TRIGGERS = (
    "call_search_call_inserted",
    "call_search_call_updated",
    "call_search_call_deleted",
    "call_search_transcript_inserted",
    "call_search_transcript_updated",
    "call_search_transcript_deleted",
)


def upgrade() -> None:
    statements = _POSTGRES_UP if op.get_bind().dialect.name == "postgresql" else _SQLITE_UP
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        statements = _POSTGRES_DOWN
    else:
        statements = [f"DROP TRIGGER {name}" for name in _SQLITE_TRIGGERS]
        statements += ["DROP TABLE call_search", "DROP TABLE call_search_rows"]
    for statement in statements:
        op.execute(statement)
