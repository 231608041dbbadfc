-- The data side of the script runtime: per-app key-value entries, variables,
-- encrypted secrets and the outbound-HTTP allow-list.
-- Keep this file in step with migrations/sqlite/0004_runtime_data.sql.

-- One row per live (or not yet purged) key of an app. `value` is the JSON
-- text of the value; `size` is the bytes of key plus value, which the quotas
-- count. Keys use the "C" collation (byte-wise, like SQLite's BINARY), so
-- prefix ranges and paging agree on both backends.
CREATE TABLE kv_entries (
    app_id     BIGINT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    key        TEXT   COLLATE "C" NOT NULL,
    value      TEXT   NOT NULL,
    size       BIGINT NOT NULL CHECK (size >= 0),
    expires_at BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, key)
);
CREATE INDEX kv_entries_expires_at ON kv_entries (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE app_vars (
    app_id     BIGINT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name       TEXT   NOT NULL,
    value      TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by BIGINT REFERENCES users (id),
    PRIMARY KEY (app_id, name)
);

-- `ciphertext` is XChaCha20-Poly1305 under the instance's secrets key, with the
-- app id and the name as associated data: a row copied to another app or name
-- does not decrypt.
CREATE TABLE app_secrets (
    app_id     BIGINT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name       TEXT   NOT NULL,
    nonce      BYTEA  NOT NULL,
    ciphertext BYTEA  NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by BIGINT REFERENCES users (id),
    PRIMARY KEY (app_id, name)
);

-- Host patterns a script of the app may call: `api.example.com`,
-- `*.example.com`, `127.0.0.1:8080`; stored lower-case.
CREATE TABLE app_http_allow (
    app_id     BIGINT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    host       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, host)
);
