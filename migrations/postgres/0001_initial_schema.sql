-- PiCloud control-plane schema, PostgreSQL flavour.
-- Keep this file in step with migrations/sqlite/0001_initial_schema.sql: the
-- same tables, columns, constraint names and rules on both backends.
-- Times are BIGINT milliseconds since the Unix epoch (UTC) on both backends.
-- A released migration is never edited: change the schema with a new file.

CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      TEXT    NOT NULL,
    email         TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    instance_role TEXT    NOT NULL CHECK (instance_role IN ('owner', 'admin', 'member')),
    active        BOOLEAN NOT NULL DEFAULT TRUE,
    created_at    BIGINT  NOT NULL
);
CREATE UNIQUE INDEX users_username_unique ON users (username);
-- E-mail addresses are unique regardless of case.
CREATE UNIQUE INDEX users_email_unique ON users (lower(email));

CREATE TABLE sessions (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash TEXT   NOT NULL,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX sessions_token_hash_unique ON sessions (token_hash);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE api_tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT   NOT NULL,
    token_hash   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE UNIQUE INDEX api_tokens_token_hash_unique ON api_tokens (token_hash);
CREATE INDEX api_tokens_user_id ON api_tokens (user_id);

CREATE TABLE apps (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug       TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    settings   JSONB  NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX apps_slug_unique ON apps (slug);

CREATE TABLE app_members (
    app_id    BIGINT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id   BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role      TEXT   NOT NULL CHECK (role IN ('viewer', 'editor', 'app_admin')),
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, user_id)
);
CREATE INDEX app_members_user_id ON app_members (user_id);

CREATE TABLE scripts (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id            BIGINT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name              TEXT   NOT NULL,
    -- Foreign key added below, once script_versions exists.
    active_version_id BIGINT,
    created_at        BIGINT NOT NULL
);
CREATE UNIQUE INDEX scripts_app_name_unique ON scripts (app_id, name);

-- Immutable: rows are inserted by a deploy and only ever deleted with their
-- script (a trigger below refuses every UPDATE).
CREATE TABLE script_versions (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    script_id  BIGINT NOT NULL REFERENCES scripts (id) ON DELETE CASCADE,
    number     BIGINT NOT NULL CHECK (number >= 1),
    source     TEXT   NOT NULL,
    hash       TEXT   NOT NULL,
    author_id  BIGINT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX script_versions_script_number_unique ON script_versions (script_id, number);

ALTER TABLE scripts
    ADD CONSTRAINT scripts_active_version_fk
    FOREIGN KEY (active_version_id) REFERENCES script_versions (id) ON DELETE SET NULL;

CREATE TABLE domains (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id     BIGINT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    -- Stored lower-case, without a port.
    host       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX domains_host_unique ON domains (host);
CREATE INDEX domains_app_id ON domains (app_id);

-- Append-only: a trigger below refuses every UPDATE and DELETE.
CREATE TABLE audit_log (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor_id     BIGINT REFERENCES users (id),
    action       TEXT   NOT NULL,
    target       TEXT   NOT NULL,
    state_before JSONB,
    state_after  JSONB,
    created_at   BIGINT NOT NULL
);

CREATE FUNCTION picloud_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rows of % cannot be changed', TG_TABLE_NAME;
END;
$$;

CREATE TRIGGER script_versions_immutable
    BEFORE UPDATE ON script_versions
    FOR EACH ROW EXECUTE FUNCTION picloud_refuse_change();

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION picloud_refuse_change();
