//! The data side of the script runtime: each app's key-value store, its
//! variables, its encrypted secrets and its outbound-HTTP allow-list.
//!
//! **Every query names the app by id**: a script reaches these through host
//! functions that bind its own app, so no key, name or pattern can reach
//! another app's rows. Key-value writes check the app's [`KvQuota`] inside the
//! write's own transaction, with the app's row locked on PostgreSQL (SQLite's
//! `BEGIN IMMEDIATE` already serialises writers), so concurrent writers cannot
//! overshoot a quota together and a refused write leaves nothing behind.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::Serialize;
use serde_json::{Value, json};

use super::{on_pool, write_transaction};
use crate::Store;
use crate::error::{StoreError, StoreResult};
use crate::model::{AppId, NewAuditEntry, Timestamp, UserId};
use crate::store::Backend;
pub use picloud_shared::HttpAllowPattern;

/// The most entries one [`Store::kv_list`] page holds.
pub const MAX_KV_PAGE: u32 = 1000;
/// The longest variable value, in bytes.
pub const MAX_VAR_VALUE_BYTES: usize = 4 * 1024;
/// The longest secret value, in bytes.
pub const MAX_SECRET_VALUE_BYTES: usize = 32 * 1024;
/// The most host patterns an app's allow-list holds.
pub const MAX_HTTP_ALLOW_HOSTS: usize = 100;

/// The limits of one app's key-value store. Sizes count the UTF-8 bytes of the
/// key plus those of the value's JSON text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvQuota {
    /// The most keys an app may hold. Default 10 000.
    pub max_keys: u64,
    /// The largest value (its JSON text), in bytes. Default 64 KiB.
    pub max_value_bytes: u64,
    /// The most bytes (keys plus values) an app may hold. Default 10 MiB.
    pub max_total_bytes: u64,
    /// The longest key, in bytes. Default 512.
    pub max_key_bytes: u64,
}

impl Default for KvQuota {
    fn default() -> Self {
        KvQuota {
            max_keys: 10_000,
            max_value_bytes: 64 * 1024,
            max_total_bytes: 10 * 1024 * 1024,
            max_key_bytes: 512,
        }
    }
}

/// One key-value entry as listed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Value,
    /// When the entry expires, in milliseconds since the Unix epoch; `None`
    /// for never.
    pub expires_at: Option<i64>,
}

/// One page of [`Store::kv_list`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KvPage {
    /// The entries, by key (byte-wise).
    pub entries: Vec<KvEntry>,
    /// The key to pass as `after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// How much of its key-value quota an app uses (expired entries not counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct KvUsage {
    /// Live keys.
    pub keys: u64,
    /// Bytes of live keys plus values.
    pub bytes: u64,
}

/// An app variable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AppVar {
    /// Its name, `[A-Za-z_][A-Za-z0-9_]{0,63}`.
    pub name: String,
    /// Its value, at most [`MAX_VAR_VALUE_BYTES`].
    pub value: String,
    /// When it was last set.
    pub updated_at: Timestamp,
    /// Who set it last.
    pub updated_by: Option<UserId>,
}

/// What may be known of a secret without the key: never its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SecretInfo {
    /// Its name, `[A-Za-z_][A-Za-z0-9_]{0,63}`.
    pub name: String,
    /// When it was last set.
    pub updated_at: Timestamp,
}

/// The instance's 32-byte key that encrypts app secrets at rest.
///
/// Its `Debug` form never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("SecretKey(<redacted>)")
    }
}

/// Why a text is not a secrets key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the secrets key must be 32 bytes written as 64 hexadecimal digits or in base64 \
     (44 characters); generate one with `openssl rand -base64 32`"
)]
pub struct InvalidSecretKey;

impl SecretKey {
    /// The key written as 64 hexadecimal digits or as standard base64 (with or
    /// without padding); surrounding white space is ignored.
    pub fn from_text(text: &str) -> Result<Self, InvalidSecretKey> {
        use base64::Engine as _;
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| InvalidSecretKey)?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
                .map_err(|_| InvalidSecretKey)?
        };
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| InvalidSecretKey)?;
        Ok(SecretKey(bytes))
    }

    /// The key made of these bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(bytes)
    }

    /// A fresh random key from the operating system's secure source.
    pub fn generate() -> Self {
        let mut bytes = [0_u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        SecretKey(bytes)
    }

    /// The key in standard base64, as [`SecretKey::from_text`] reads it (for
    /// writing the key file; never log it).
    pub fn to_base64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0.into())
    }
}

/// The associated data that binds a secret's ciphertext to its app and name.
fn secret_aad(app: AppId, name: &str) -> Vec<u8> {
    format!("picloud-secret-v1\0{app}\0{name}").into_bytes()
}

/// Checks a variable or secret name against `[A-Za-z_][A-Za-z0-9_]{0,63}`.
pub fn validate_config_name(name: &str) -> StoreResult<()> {
    let mut characters = name.chars();
    let first_is_right = characters
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_');
    if first_is_right
        && name.len() <= 64
        && characters.all(|character| character.is_ascii_alphanumeric() || character == '_')
    {
        Ok(())
    } else {
        Err(StoreError::invalid(
            "name",
            format!(
                "`{}` must be 1 to 64 characters of A-Z, a-z, 0-9 and '_', not starting with a digit",
                name.escape_debug()
            ),
        ))
    }
}

/// Checks a key-value key: 1 to `quota.max_key_bytes` bytes of UTF-8 without
/// control characters.
pub fn validate_kv_key(key: &str, quota: &KvQuota) -> StoreResult<()> {
    if key.is_empty() {
        return Err(StoreError::invalid("key", "a key cannot be empty"));
    }
    if key.len() as u64 > quota.max_key_bytes {
        return Err(StoreError::QuotaExceeded {
            what: "key size in bytes",
            limit: quota.max_key_bytes,
        });
    }
    if key.chars().any(char::is_control) {
        return Err(StoreError::invalid(
            "key",
            "a key cannot hold control characters (NUL, newlines, ...)",
        ));
    }
    Ok(())
}

/// The smallest string greater than every string that starts with `prefix`
/// (in byte-wise UTF-8 order, which is code point order), or `None` if there
/// is none.
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut characters: Vec<char> = prefix.chars().collect();
    while let Some(last) = characters.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(successor) = char::from_u32(next) {
            characters.push(successor);
            return Some(characters.into_iter().collect());
        }
    }
    None
}

/// Inserts `$entry` (a [`NewAuditEntry`]) into the audit log inside `$transaction`.
macro_rules! append_audit_in {
    ($transaction:ident, $entry:expr) => {{
        let entry: &NewAuditEntry = $entry;
        sqlx::query(
            "INSERT INTO audit_log (actor_id, action, target, state_before, state_after, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(entry.actor_id)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(entry.before.as_ref())
        .bind(entry.after.as_ref())
        .bind(Timestamp::now())
        .execute(&mut *$transaction)
        .await?;
    }};
}

/// Reads the app's slug inside `$transaction`, locking the app's row on
/// PostgreSQL (`$lock`), or returns [`StoreError::NotFound`] early.
macro_rules! lock_app_in {
    ($transaction:ident, $lock:expr, $app:expr) => {{
        let app: AppId = $app;
        let sql = format!("SELECT slug FROM apps WHERE id = $1{}", $lock);
        let slug: String = sqlx::query_scalar(&sql)
            .bind(app)
            .fetch_optional(&mut *$transaction)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("app {app}")))?;
        slug
    }};
}

/// One key-value write, checked against the quota inside its transaction.
enum KvWrite<'a> {
    Set {
        value: &'a Value,
        expires_at: Option<i64>,
    },
    Increment {
        by: i64,
    },
}

impl Store {
    /// ` FOR NO KEY UPDATE` on PostgreSQL: locks an app's row against other
    /// runtime-data writers without blocking inserts that merely reference it.
    fn app_lock_clause(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR NO KEY UPDATE",
        }
    }

    /// The value of `key` in `app`'s store, or `None` if it is missing or
    /// expired at `now_ms`.
    pub async fn kv_get(&self, app: AppId, key: &str, now_ms: i64) -> StoreResult<Option<Value>> {
        let text: Option<String> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT value FROM kv_entries WHERE app_id = $1 AND key = $2 \
                 AND (expires_at IS NULL OR expires_at > $3)",
            )
            .bind(app)
            .bind(key)
            .bind(now_ms)
            .fetch_optional(pool)
            .await?
        });
        text.map(|text| parse_stored_value(&text)).transpose()
    }

    /// Sets `key` in `app`'s store to `value`, expiring `ttl_ms` after
    /// `now_ms` if given (`None` keeps it until deleted).
    ///
    /// Fails with [`StoreError::QuotaExceeded`] if the key, the value, the
    /// key count or the app's total would exceed `quota` (nothing is
    /// written), [`StoreError::Invalid`] on a bad key or a zero TTL, and
    /// [`StoreError::NotFound`] if the app does not exist.
    pub async fn kv_set(
        &self,
        app: AppId,
        key: &str,
        value: &Value,
        ttl_ms: Option<u64>,
        now_ms: i64,
        quota: &KvQuota,
    ) -> StoreResult<()> {
        let expires_at = match ttl_ms {
            Some(0) => {
                return Err(StoreError::invalid(
                    "ttl",
                    "a time-to-live must be at least 1 ms",
                ));
            }
            Some(ttl) => Some(now_ms.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX))),
            None => None,
        };
        self.kv_write(app, key, KvWrite::Set { value, expires_at }, now_ms, quota)
            .await
            .map(|_| ())
    }

    /// Adds `by` to the integer at `key` (a missing or expired key counts as
    /// 0) and returns the new value; an existing time-to-live is kept.
    /// Atomic: concurrent increments never lose an update.
    ///
    /// Fails with [`StoreError::Invalid`] (field `value`) if the stored value
    /// is not an integer or the sum overflows, and like [`Store::kv_set`] on
    /// quotas.
    pub async fn kv_increment(
        &self,
        app: AppId,
        key: &str,
        by: i64,
        now_ms: i64,
        quota: &KvQuota,
    ) -> StoreResult<i64> {
        self.kv_write(app, key, KvWrite::Increment { by }, now_ms, quota)
            .await
    }

    async fn kv_write(
        &self,
        app: AppId,
        key: &str,
        write: KvWrite<'_>,
        now_ms: i64,
        quota: &KvQuota,
    ) -> StoreResult<i64> {
        validate_kv_key(key, quota)?;
        if let KvWrite::Set { value, .. } = &write {
            // Refuse an oversized value before taking any lock.
            check_value_size(&value.to_string(), quota)?;
        }
        let lock = self.app_lock_clause();
        let result = write_transaction!(self, transaction => {
            let _slug = lock_app_in!(transaction, lock, app);
            // Expired entries of this app go first, so they count against
            // nothing and an expired counter starts again from 0.
            sqlx::query(
                "DELETE FROM kv_entries WHERE app_id = $1 AND expires_at IS NOT NULL \
                 AND expires_at <= $2",
            )
            .bind(app)
            .bind(now_ms)
            .execute(&mut *transaction)
            .await?;
            let existing: Option<(String, i64, Option<i64>)> = sqlx::query_as(
                "SELECT value, size, expires_at FROM kv_entries WHERE app_id = $1 AND key = $2",
            )
            .bind(app)
            .bind(key)
            .fetch_optional(&mut *transaction)
            .await?;
            let (text, expires_at, result) = match write {
                KvWrite::Set { value, expires_at } => (value.to_string(), expires_at, 0),
                KvWrite::Increment { by } => {
                    let current = match &existing {
                        None => 0,
                        Some((text, _, _)) => parse_stored_value(text)?.as_i64().ok_or_else(|| {
                            StoreError::invalid(
                                "value",
                                format!("the value of `{}` is not an integer", key.escape_debug()),
                            )
                        })?,
                    };
                    let sum = current.checked_add(by).ok_or_else(|| {
                        StoreError::invalid("value", "the increment overflows a 64-bit integer")
                    })?;
                    (sum.to_string(), existing.as_ref().and_then(|(_, _, expires)| *expires), sum)
                }
            };
            check_value_size(&text, quota)?;
            let new_size = (key.len() + text.len()) as i64;
            let (count, total): (i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM kv_entries \
                 WHERE app_id = $1",
            )
            .bind(app)
            .fetch_one(&mut *transaction)
            .await?;
            let old_size = existing.as_ref().map_or(0, |(_, size, _)| *size);
            let new_count = count + i64::from(existing.is_none());
            if new_count as u64 > quota.max_keys {
                return Err(StoreError::QuotaExceeded {
                    what: "key count",
                    limit: quota.max_keys,
                });
            }
            if (total - old_size + new_size) as u64 > quota.max_total_bytes {
                return Err(StoreError::QuotaExceeded {
                    what: "total bytes of keys and values",
                    limit: quota.max_total_bytes,
                });
            }
            sqlx::query(
                "INSERT INTO kv_entries (app_id, key, value, size, expires_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (app_id, key) DO UPDATE SET value = excluded.value, \
                 size = excluded.size, expires_at = excluded.expires_at, \
                 updated_at = excluded.updated_at",
            )
            .bind(app)
            .bind(key)
            .bind(&text)
            .bind(new_size)
            .bind(expires_at)
            .bind(now_ms)
            .execute(&mut *transaction)
            .await?;
            result
        });
        Ok(result)
    }

    /// Deletes `key` from `app`'s store; `true` if it was there.
    pub async fn kv_delete(&self, app: AppId, key: &str) -> StoreResult<bool> {
        let rows = on_pool!(self, pool => {
            sqlx::query("DELETE FROM kv_entries WHERE app_id = $1 AND key = $2")
                .bind(app)
                .bind(key)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(rows > 0)
    }

    /// The live entries of `app` whose key starts with `prefix` (taken
    /// literally: `%` and `_` are ordinary characters), by key, after the key
    /// `after` if given, at most `limit` (clamped to 1..=[`MAX_KV_PAGE`]).
    pub async fn kv_list(
        &self,
        app: AppId,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
        now_ms: i64,
    ) -> StoreResult<KvPage> {
        let limit = limit.clamp(1, MAX_KV_PAGE) as usize;
        // Paging: start after `after` if it lies inside the prefix's range.
        let lower = match after {
            Some(after) if after >= prefix => after,
            _ => prefix,
        };
        let lower_is_exclusive = after.is_some_and(|after| after >= prefix);
        let upper = prefix_successor(prefix);
        let sql = format!(
            "SELECT key, value, expires_at FROM kv_entries WHERE app_id = $1 AND key {} $2 \
             AND (CAST($3 AS TEXT) IS NULL OR key < $3) AND (expires_at IS NULL OR expires_at > $4) \
             ORDER BY key LIMIT $5",
            if lower_is_exclusive { ">" } else { ">=" }
        );
        let rows: Vec<(String, String, Option<i64>)> = on_pool!(self, pool => {
            sqlx::query_as(&sql)
                .bind(app)
                .bind(lower)
                .bind(upper.as_deref())
                .bind(now_ms)
                .bind((limit + 1) as i64)
                .fetch_all(pool)
                .await?
        });
        let has_more = rows.len() > limit;
        let mut entries = Vec::with_capacity(limit.min(rows.len()));
        for (key, text, expires_at) in rows.into_iter().take(limit) {
            // Only a prefix ending in U+10FFFF has no successor bound.
            if !key.starts_with(prefix) {
                break;
            }
            entries.push(KvEntry {
                key,
                value: parse_stored_value(&text)?,
                expires_at,
            });
        }
        let next = if has_more {
            entries.last().map(|entry| entry.key.clone())
        } else {
            None
        };
        Ok(KvPage { entries, next })
    }

    /// How many live keys and bytes `app`'s store holds now.
    pub async fn kv_usage(&self, app: AppId) -> StoreResult<KvUsage> {
        let now_ms = Timestamp::now().unix_millis();
        let (keys, bytes): (i64, i64) = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM kv_entries \
                 WHERE app_id = $1 AND (expires_at IS NULL OR expires_at > $2)",
            )
            .bind(app)
            .bind(now_ms)
            .fetch_one(pool)
            .await?
        });
        Ok(KvUsage {
            keys: keys.max(0) as u64,
            bytes: bytes.max(0) as u64,
        })
    }

    /// Deletes every entry of every app that expired at or before `now_ms`;
    /// returns how many. Reads already treat them as absent: this only
    /// reclaims space, for a background task.
    pub async fn purge_expired_kv(&self, now_ms: i64) -> StoreResult<u64> {
        Ok(on_pool!(self, pool => {
            sqlx::query(
                "DELETE FROM kv_entries WHERE expires_at IS NOT NULL AND expires_at <= $1",
            )
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }

    /// Sets (creates or replaces) the variable `name` of `app` and records
    /// `var.set` by `actor` in the audit log, in one transaction.
    pub async fn set_var(
        &self,
        app: AppId,
        name: &str,
        value: &str,
        actor: Option<UserId>,
    ) -> StoreResult<AppVar> {
        validate_config_name(name)?;
        if value.len() > MAX_VAR_VALUE_BYTES {
            return Err(StoreError::invalid(
                "value",
                format!("a variable's value is at most {MAX_VAR_VALUE_BYTES} bytes"),
            ));
        }
        let lock = self.app_lock_clause();
        let now = Timestamp::now();
        let variable = write_transaction!(self, transaction => {
            let slug = lock_app_in!(transaction, lock, app);
            let before: Option<String> =
                sqlx::query_scalar("SELECT value FROM app_vars WHERE app_id = $1 AND name = $2")
                    .bind(app)
                    .bind(name)
                    .fetch_optional(&mut *transaction)
                    .await?;
            let variable = sqlx::query_as::<_, AppVar>(
                "INSERT INTO app_vars (app_id, name, value, updated_at, updated_by) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (app_id, name) DO UPDATE SET value = excluded.value, \
                 updated_at = excluded.updated_at, updated_by = excluded.updated_by \
                 RETURNING name, value, updated_at, updated_by",
            )
            .bind(app)
            .bind(name)
            .bind(value)
            .bind(now)
            .bind(actor)
            .fetch_one(&mut *transaction)
            .await?;
            let entry = NewAuditEntry {
                actor_id: actor,
                action: "var.set".to_owned(),
                target: format!("app:{slug}/var:{name}"),
                before: before.map(|value| json!({ "value": value })),
                after: Some(json!({ "value": value })),
            };
            append_audit_in!(transaction, &entry);
            variable
        });
        Ok(variable)
    }

    /// Deletes the variable `name` of `app` and records `var.delete`; fails
    /// with [`StoreError::NotFound`] if there is none.
    pub async fn delete_var(
        &self,
        app: AppId,
        name: &str,
        actor: Option<UserId>,
    ) -> StoreResult<()> {
        let lock = self.app_lock_clause();
        write_transaction!(self, transaction => {
            let slug = lock_app_in!(transaction, lock, app);
            let before: Option<String> = sqlx::query_scalar(
                "DELETE FROM app_vars WHERE app_id = $1 AND name = $2 RETURNING value",
            )
            .bind(app)
            .bind(name)
            .fetch_optional(&mut *transaction)
            .await?;
            let Some(before) = before else {
                return Err(StoreError::not_found(format!("variable `{}`", name.escape_debug())));
            };
            let entry = NewAuditEntry {
                actor_id: actor,
                action: "var.delete".to_owned(),
                target: format!("app:{slug}/var:{name}"),
                before: Some(json!({ "value": before })),
                after: None,
            };
            append_audit_in!(transaction, &entry);
        });
        Ok(())
    }

    /// The variables of `app`, by name.
    pub async fn list_vars(&self, app: AppId) -> StoreResult<Vec<AppVar>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, AppVar>(
                "SELECT name, value, updated_at, updated_by FROM app_vars WHERE app_id = $1 \
                 ORDER BY name",
            )
            .bind(app)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The value of the variable `name` of `app`, if set.
    pub async fn get_var(&self, app: AppId, name: &str) -> StoreResult<Option<String>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_scalar("SELECT value FROM app_vars WHERE app_id = $1 AND name = $2")
                .bind(app)
                .bind(name)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Encrypts `plaintext` under `key` (bound to `app` and `name`), stores
    /// it as the secret `name` of `app`, and records `secret.set` (without
    /// the value) in the audit log, in one transaction.
    pub async fn set_secret(
        &self,
        app: AppId,
        name: &str,
        plaintext: &str,
        key: &SecretKey,
        actor: Option<UserId>,
    ) -> StoreResult<SecretInfo> {
        validate_config_name(name)?;
        if plaintext.len() > MAX_SECRET_VALUE_BYTES {
            return Err(StoreError::invalid(
                "value",
                format!("a secret's value is at most {MAX_SECRET_VALUE_BYTES} bytes"),
            ));
        }
        let mut nonce = [0_u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = secret_aad(app, name);
        let ciphertext = key
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::invalid("value", "the secret cannot be encrypted"))?;
        let lock = self.app_lock_clause();
        let now = Timestamp::now();
        let info = write_transaction!(self, transaction => {
            let slug = lock_app_in!(transaction, lock, app);
            let existed: Option<String> =
                sqlx::query_scalar("SELECT name FROM app_secrets WHERE app_id = $1 AND name = $2")
                    .bind(app)
                    .bind(name)
                    .fetch_optional(&mut *transaction)
                    .await?;
            let info = sqlx::query_as::<_, SecretInfo>(
                "INSERT INTO app_secrets (app_id, name, nonce, ciphertext, updated_at, updated_by) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (app_id, name) DO UPDATE SET nonce = excluded.nonce, \
                 ciphertext = excluded.ciphertext, updated_at = excluded.updated_at, \
                 updated_by = excluded.updated_by \
                 RETURNING name, updated_at",
            )
            .bind(app)
            .bind(name)
            .bind(&nonce[..])
            .bind(&ciphertext)
            .bind(now)
            .bind(actor)
            .fetch_one(&mut *transaction)
            .await?;
            let entry = NewAuditEntry {
                actor_id: actor,
                action: "secret.set".to_owned(),
                target: format!("app:{slug}/secret:{name}"),
                before: existed.map(|_| json!({ "set": true })),
                after: Some(json!({ "set": true })),
            };
            append_audit_in!(transaction, &entry);
            info
        });
        Ok(info)
    }

    /// Deletes the secret `name` of `app` and records `secret.delete`; fails
    /// with [`StoreError::NotFound`] if there is none.
    pub async fn delete_secret(
        &self,
        app: AppId,
        name: &str,
        actor: Option<UserId>,
    ) -> StoreResult<()> {
        let lock = self.app_lock_clause();
        write_transaction!(self, transaction => {
            let slug = lock_app_in!(transaction, lock, app);
            let deleted: Option<String> = sqlx::query_scalar(
                "DELETE FROM app_secrets WHERE app_id = $1 AND name = $2 RETURNING name",
            )
            .bind(app)
            .bind(name)
            .fetch_optional(&mut *transaction)
            .await?;
            if deleted.is_none() {
                return Err(StoreError::not_found(format!("secret `{}`", name.escape_debug())));
            }
            let entry = NewAuditEntry {
                actor_id: actor,
                action: "secret.delete".to_owned(),
                target: format!("app:{slug}/secret:{name}"),
                before: Some(json!({ "set": true })),
                after: None,
            };
            append_audit_in!(transaction, &entry);
        });
        Ok(())
    }

    /// The names of `app`'s secrets with when each was set, by name; never
    /// their values.
    pub async fn list_secrets(&self, app: AppId) -> StoreResult<Vec<SecretInfo>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, SecretInfo>(
                "SELECT name, updated_at FROM app_secrets WHERE app_id = $1 ORDER BY name",
            )
            .bind(app)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The decrypted value of the secret `name` of `app`, if set: for the
    /// script runtime only, never for an API answer or a log.
    ///
    /// Fails with [`StoreError::SecretUndecryptable`] if it does not decrypt
    /// under `key` for this app and name.
    pub async fn get_secret(
        &self,
        app: AppId,
        name: &str,
        key: &SecretKey,
    ) -> StoreResult<Option<String>> {
        let row: Option<(Vec<u8>, Vec<u8>)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT nonce, ciphertext FROM app_secrets WHERE app_id = $1 AND name = $2")
                .bind(app)
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        let Some((nonce, ciphertext)) = row else {
            return Ok(None);
        };
        let undecryptable = || StoreError::SecretUndecryptable {
            name: name.to_owned(),
        };
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| undecryptable())?;
        let aad = secret_aad(app, name);
        let plaintext = key
            .cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| undecryptable())?;
        String::from_utf8(plaintext)
            .map(Some)
            .map_err(|_| undecryptable())
    }

    /// The outbound-HTTP allow-list of `app`, sorted.
    pub async fn list_http_allow(&self, app: AppId) -> StoreResult<Vec<String>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_scalar("SELECT host FROM app_http_allow WHERE app_id = $1 ORDER BY host")
                .bind(app)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Replaces the outbound-HTTP allow-list of `app` with `hosts` (each
    /// checked by [`HttpAllowPattern::parse`], lower-cased, duplicates
    /// dropped, at most [`MAX_HTTP_ALLOW_HOSTS`]) and records
    /// `http_allow.set` with the lists before and after. Returns the stored
    /// list, sorted.
    pub async fn set_http_allow(
        &self,
        app: AppId,
        hosts: Vec<String>,
        actor: Option<UserId>,
    ) -> StoreResult<Vec<String>> {
        let mut normalised = std::collections::BTreeSet::new();
        for host in &hosts {
            let pattern = HttpAllowPattern::parse(host)
                .map_err(|message| StoreError::invalid("hosts", message))?;
            normalised.insert(pattern.to_string());
        }
        if normalised.len() > MAX_HTTP_ALLOW_HOSTS {
            return Err(StoreError::invalid(
                "hosts",
                format!("an allow-list holds at most {MAX_HTTP_ALLOW_HOSTS} hosts"),
            ));
        }
        let hosts: Vec<String> = normalised.into_iter().collect();
        let lock = self.app_lock_clause();
        let now = Timestamp::now();
        write_transaction!(self, transaction => {
            let slug = lock_app_in!(transaction, lock, app);
            let before: Vec<String> = sqlx::query_scalar(
                "SELECT host FROM app_http_allow WHERE app_id = $1 ORDER BY host",
            )
            .bind(app)
            .fetch_all(&mut *transaction)
            .await?;
            sqlx::query("DELETE FROM app_http_allow WHERE app_id = $1")
                .bind(app)
                .execute(&mut *transaction)
                .await?;
            for host in &hosts {
                sqlx::query("INSERT INTO app_http_allow (app_id, host, created_at) VALUES ($1, $2, $3)")
                    .bind(app)
                    .bind(host)
                    .bind(now)
                    .execute(&mut *transaction)
                    .await?;
            }
            let entry = NewAuditEntry {
                actor_id: actor,
                action: "http_allow.set".to_owned(),
                target: format!("app:{slug}/http-allowlist"),
                before: Some(json!({ "hosts": before })),
                after: Some(json!({ "hosts": hosts })),
            };
            append_audit_in!(transaction, &entry);
        });
        Ok(hosts)
    }
}

fn check_value_size(text: &str, quota: &KvQuota) -> StoreResult<()> {
    if text.len() as u64 > quota.max_value_bytes {
        return Err(StoreError::QuotaExceeded {
            what: "value size in bytes",
            limit: quota.max_value_bytes,
        });
    }
    Ok(())
}

fn parse_stored_value(text: &str) -> StoreResult<Value> {
    serde_json::from_str(text).map_err(|error| {
        StoreError::Database(sqlx::Error::Decode(
            format!("a stored key-value value is not JSON: {error}").into(),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successors_bound_the_prefix() {
        assert_eq!(prefix_successor(""), None);
        assert_eq!(prefix_successor("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_successor("a%").as_deref(), Some("a&"));
        assert_eq!(prefix_successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{10FFFF}"), None);
    }

    #[test]
    fn secret_keys_parse_from_hex_and_base64_and_never_print() {
        let key = SecretKey::generate();
        assert_eq!(SecretKey::from_text(&key.to_base64()).unwrap(), key);
        let hex_text = hex::encode([7_u8; 32]);
        assert_eq!(
            SecretKey::from_text(&format!(" {hex_text}\n")).unwrap(),
            SecretKey::from_bytes([7; 32])
        );
        assert!(SecretKey::from_text("short").is_err());
        assert!(SecretKey::from_text(&hex::encode([1_u8; 31])).is_err());
        assert_eq!(format!("{key:?}"), "SecretKey(<redacted>)");
    }

    #[test]
    fn names_and_keys_are_checked() {
        for good in ["A", "_x", "API_KEY", &"a".repeat(64)] {
            assert!(validate_config_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1a", "a-b", "a.b", "é", &"a".repeat(65)] {
            assert!(validate_config_name(bad).is_err(), "{bad}");
        }
        let quota = KvQuota::default();
        assert!(validate_kv_key("users/42:name %_", &quota).is_ok());
        assert!(validate_kv_key("", &quota).is_err());
        assert!(validate_kv_key("a\0b", &quota).is_err());
        assert!(validate_kv_key("a\nb", &quota).is_err());
        assert!(matches!(
            validate_kv_key(&"k".repeat(513), &quota),
            Err(StoreError::QuotaExceeded { .. })
        ));
    }
}
