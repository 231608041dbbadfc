-- Triggers beyond HTTP: cron schedules and durable asynchronous invocations.
-- Keep this file in step with migrations/postgres/0003_triggers.sql.
-- Times are INTEGER milliseconds since the Unix epoch (UTC); JSON is TEXT on
-- both backends for these tables (it is only ever read back whole).

CREATE TABLE schedules (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id      INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    script_id   INTEGER NOT NULL REFERENCES scripts (id) ON DELETE CASCADE,
    -- A five-field cron expression or an `@hourly`-style shortcut.
    cron        TEXT    NOT NULL,
    -- An IANA time zone name the expression is evaluated in.
    timezone    TEXT    NOT NULL DEFAULT 'UTC',
    -- JSON text given to the script as the request body, or NULL for none.
    payload     TEXT,
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    -- The next tick. A node runs a tick only after moving this forward with a
    -- compare-and-set, so each tick runs exactly once across nodes.
    next_run_at INTEGER NOT NULL,
    last_run_at INTEGER,
    created_at  INTEGER NOT NULL,
    created_by  INTEGER REFERENCES users (id)
);
CREATE INDEX schedules_app_id ON schedules (app_id);
CREATE INDEX schedules_script_id ON schedules (script_id);
CREATE INDEX schedules_next_run_at ON schedules (next_run_at);

CREATE TABLE async_invocations (
    -- A UUID, given to the caller in the 202 answer.
    id              TEXT    PRIMARY KEY,
    app_id          INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    script_id       INTEGER NOT NULL REFERENCES scripts (id) ON DELETE CASCADE,
    request_id      TEXT    NOT NULL,
    method          TEXT    NOT NULL,
    path            TEXT    NOT NULL,
    subpath         TEXT    NOT NULL DEFAULT '',
    -- JSON arrays of [name, value] pairs.
    query           TEXT    NOT NULL DEFAULT '[]',
    headers         TEXT    NOT NULL DEFAULT '[]',
    body            BLOB    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL CHECK (max_attempts >= 1),
    next_attempt_at INTEGER NOT NULL,
    -- The worker holding the job and until when; a lease past its end is
    -- taken over by another worker (the holder crashed).
    locked_by       TEXT,
    locked_until    INTEGER,
    result_status   INTEGER,
    result_headers  TEXT,
    result_body     BLOB,
    error           TEXT,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER
);
CREATE INDEX async_invocations_app_id ON async_invocations (app_id);
CREATE INDEX async_invocations_script_id ON async_invocations (script_id);
CREATE INDEX async_invocations_pending ON async_invocations (status, next_attempt_at);
