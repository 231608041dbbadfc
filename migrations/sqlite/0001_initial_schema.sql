-- PiCloud control-plane schema, SQLite flavour.
-- Keep this file in step with migrations/postgres/0001_initial_schema.sql: the
-- same tables, columns, constraint names and rules on both backends.
-- Times are INTEGER milliseconds since the Unix epoch (UTC) on both backends;
-- JSON columns are TEXT here and JSONB there.
-- A released migration is never edited: change the schema with a new file.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL,
    email         TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    instance_role TEXT    NOT NULL CHECK (instance_role IN ('owner', 'admin', 'member')),
    active        BOOLEAN NOT NULL DEFAULT TRUE,
    created_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX users_username_unique ON users (username);
-- E-mail addresses are unique regardless of case.
CREATE UNIQUE INDEX users_email_unique ON users (lower(email));

CREATE TABLE sessions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash TEXT    NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX sessions_token_hash_unique ON sessions (token_hash);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE UNIQUE INDEX api_tokens_token_hash_unique ON api_tokens (token_hash);
CREATE INDEX api_tokens_user_id ON api_tokens (user_id);

CREATE TABLE apps (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    slug       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    settings   TEXT    NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX apps_slug_unique ON apps (slug);

CREATE TABLE app_members (
    app_id    INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role      TEXT    NOT NULL CHECK (role IN ('viewer', 'editor', 'app_admin')),
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, user_id)
);
CREATE INDEX app_members_user_id ON app_members (user_id);

CREATE TABLE scripts (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id            INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name              TEXT    NOT NULL,
    -- SQLite accepts a reference to a table created further down.
    active_version_id INTEGER REFERENCES script_versions (id) ON DELETE SET NULL,
    created_at        INTEGER NOT NULL
);
CREATE UNIQUE INDEX scripts_app_name_unique ON scripts (app_id, name);

-- Immutable: rows are inserted by a deploy and only ever deleted with their
-- script (a trigger below refuses every UPDATE).
CREATE TABLE script_versions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    script_id  INTEGER NOT NULL REFERENCES scripts (id) ON DELETE CASCADE,
    number     INTEGER NOT NULL CHECK (number >= 1),
    source     TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    author_id  INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX script_versions_script_number_unique ON script_versions (script_id, number);

CREATE TABLE domains (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id     INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    -- Stored lower-case, without a port.
    host       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX domains_host_unique ON domains (host);
CREATE INDEX domains_app_id ON domains (app_id);

-- Append-only: triggers below refuse every UPDATE and DELETE.
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    actor_id     INTEGER REFERENCES users (id),
    action       TEXT    NOT NULL,
    target       TEXT    NOT NULL,
    state_before TEXT,
    state_after  TEXT,
    created_at   INTEGER NOT NULL
);

CREATE TRIGGER script_versions_immutable
    BEFORE UPDATE ON script_versions
BEGIN
    SELECT RAISE(ABORT, 'rows of script_versions cannot be changed');
END;

CREATE TRIGGER audit_log_append_only_update
    BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'rows of audit_log cannot be changed');
END;

CREATE TRIGGER audit_log_append_only_delete
    BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'rows of audit_log cannot be changed');
END;
