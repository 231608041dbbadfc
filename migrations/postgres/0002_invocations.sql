-- Invocation records: one row per invocation of a script (any trigger), written
-- in batches by the server and pruned in the background (a count per app and an
-- age, see `[records]` in docs/configuration.md).
-- Keep this file in step with migrations/sqlite/0002_invocations.sql.
-- Times are BIGINT milliseconds since the Unix epoch (UTC).

CREATE TABLE invocations (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id             BIGINT  NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    -- No foreign key: a script's records outlive the script until they are pruned.
    script_id          BIGINT  NOT NULL,
    script_name        TEXT    NOT NULL,
    version_id         BIGINT  NOT NULL,
    -- What started it: `http`, `schedule`, `async`...
    "trigger"          TEXT    NOT NULL,
    -- The HTTP status answered (or that an HTTP caller would have got).
    status             INTEGER NOT NULL,
    error_code         TEXT,
    error_message      TEXT,
    request_id         TEXT    NOT NULL,
    started_at         BIGINT  NOT NULL,
    duration_us        BIGINT  NOT NULL,
    fuel_used          BIGINT  NOT NULL,
    fuel_limit         BIGINT  NOT NULL,
    memory_bytes       BIGINT  NOT NULL,
    memory_limit_bytes BIGINT  NOT NULL,
    cold_start         BOOLEAN NOT NULL,
    -- JSON text: [{"level": "print" | "debug", "text": "..."}], bounded by the server.
    output             TEXT    NOT NULL DEFAULT '[]',
    output_truncated   BOOLEAN NOT NULL DEFAULT FALSE
);
-- Newest first per app (ids grow with time), and the same per script.
CREATE INDEX invocations_app_id ON invocations (app_id, id);
CREATE INDEX invocations_app_script_id ON invocations (app_id, script_name, id);
-- Time windows (charts) and pruning by age.
CREATE INDEX invocations_app_started_at ON invocations (app_id, started_at);
CREATE INDEX invocations_started_at ON invocations (started_at);
CREATE INDEX invocations_request_id ON invocations (request_id);
