-- Invocation records in chunks: one row holds up to 256 records of one app,
-- written together in one batch, as a JSON array of positional records
-- (the layout is documented in docs/store.md and decoded only by
-- crates/manager-core/src/store/invocations.rs). A row per record cost each
-- invocation a table insert and four index inserts; a chunk costs about one
-- per batch, and queries decode the few chunks they read.
-- Keep this file in step with migrations/sqlite/0006_invocation_chunks.sql.

-- The last record id handed out; ids are never reused, even when every
-- record has been pruned (live tails and page cursors rely on that). A
-- batch takes its ids with one UPDATE, whose row lock also keeps two
-- writers' ranges apart.
CREATE TABLE invocation_ids (
    last_id BIGINT NOT NULL
);
INSERT INTO invocation_ids (last_id)
SELECT GREATEST(
    (SELECT last_value FROM pg_sequences
     WHERE schemaname = current_schema() AND sequencename = 'invocations_id_seq'),
    COALESCE((SELECT MAX(id) FROM invocations), 0),
    0);

CREATE TABLE invocation_chunks (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id            BIGINT  NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    -- The lowest and highest record id in the chunk; an app's chunks never
    -- overlap, so they order its records.
    first_id          BIGINT  NOT NULL,
    last_id           BIGINT  NOT NULL,
    -- The earliest and latest start (milliseconds since the Unix epoch, UTC).
    oldest_started_at BIGINT  NOT NULL,
    newest_started_at BIGINT  NOT NULL,
    record_count      INTEGER NOT NULL,
    -- JSON text: [[id, script_id, script_name, ...], ...], oldest first.
    records           TEXT    NOT NULL
);
CREATE INDEX invocation_chunks_app_last_id ON invocation_chunks (app_id, last_id);

-- Every earlier record becomes a chunk of one.
INSERT INTO invocation_chunks (app_id, first_id, last_id, oldest_started_at, newest_started_at,
                               record_count, records)
SELECT app_id, id, id, started_at, started_at, 1,
       json_build_array(json_build_array(id, script_id, script_name, version_id, "trigger", status,
                                         error_code, error_message, request_id, started_at,
                                         duration_us, fuel_used, fuel_limit, memory_bytes,
                                         memory_limit_bytes, cold_start, output::json,
                                         output_truncated))::text
FROM invocations
ORDER BY id;

DROP TABLE invocations;
