//! The one error type of the store.

/// Everything that can go wrong in a [`Store`](crate::Store) call.
///
/// The variants are meant to be mapped to user-facing answers by the API
/// layer: [`NotFound`](StoreError::NotFound) and
/// [`Conflict`](StoreError::Conflict) carry a sentence naming the thing, and
/// [`Invalid`](StoreError::Invalid) names the field that was refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row asked for does not exist; `what` names it, for example
    /// "app `shop`" or "version 3 of script 12".
    #[error("{what} not found")]
    NotFound {
        /// The thing that was looked for, in words.
        what: String,
    },

    /// The change would break a uniqueness rule or another invariant; `what`
    /// says which, for example "an app with slug `shop` already exists".
    #[error("conflict: {what}")]
    Conflict {
        /// The rule that the change would break, in words.
        what: String,
    },

    /// An input was refused before it reached the database.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The name of the field, as the API calls it (`slug`, `name`, `host`...).
        field: &'static str,
        /// What is wrong with it, in a sentence.
        message: String,
    },

    /// A write to an app's key-value store would exceed one of its quotas
    /// ([`KvQuota`](crate::KvQuota)); nothing was written.
    #[error("key-value quota exceeded: {what} (limit {limit})")]
    QuotaExceeded {
        /// Which quota, in words: "key count", "value size in bytes"...
        what: &'static str,
        /// The limit that would have been exceeded.
        limit: u64,
    },

    /// A stored secret does not decrypt under the configured secrets key: the
    /// key changed, or the row was tampered with or copied from elsewhere.
    #[error("secret `{name}` cannot be decrypted with this instance's secrets key")]
    SecretUndecryptable {
        /// The secret's name.
        name: String,
    },

    /// The database was migrated by a newer PiCloud than this binary: running
    /// on it could corrupt data that the newer schema relies on.
    #[error(
        "the database schema is at version {database_version}, but this PiCloud binary only knows \
         versions up to {binary_version}: the database was upgraded by a newer PiCloud; \
         upgrade this binary to that version or later (downgrades are not supported)"
    )]
    DatabaseNewerThanBinary {
        /// The highest migration version recorded in the database.
        database_version: i64,
        /// The highest migration version embedded in this binary.
        binary_version: i64,
    },

    /// The database URL names no backend this store supports.
    #[error(
        "unsupported database URL scheme `{scheme}`: use `sqlite://PATH` or `postgres://USER@HOST/DATABASE`"
    )]
    UnsupportedUrl {
        /// The scheme part of the URL (never the whole URL, which may hold a password).
        scheme: String,
    },

    /// Creating the directory that holds the SQLite database file failed.
    #[error("cannot create the database directory {path}: {source}")]
    CreateDirectory {
        /// The directory that could not be created.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// Applying the migrations failed (a migration was edited after it was
    /// applied, a previous run died half-way, or the SQL itself failed).
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),

    /// Any other database error: connection lost, timeout, bad SQL.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The result type of every [`Store`](crate::Store) call.
pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    pub(crate) fn conflict(what: impl Into<String>) -> Self {
        Self::Conflict { what: what.into() }
    }

    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// Turns a unique-constraint violation into [`StoreError::Conflict`].
///
/// `constraints` pairs a needle with the conflict message to use: the needle
/// is an index name (what PostgreSQL reports, and what SQLite reports for an
/// expression index) or a `table.column` list (what SQLite reports for a plain
/// column index). Other errors pass through unchanged.
pub(crate) fn map_unique_violation(
    error: sqlx::Error,
    constraints: &[(&str, &dyn Fn() -> String)],
) -> StoreError {
    if let Some(database_error) = error.as_database_error()
        && database_error.is_unique_violation()
    {
        let constraint = database_error.constraint().unwrap_or_default();
        let message = database_error.message();
        for (needle, conflict) in constraints {
            if constraint == *needle || message.contains(needle) {
                return StoreError::conflict(conflict());
            }
        }
    }
    StoreError::Database(error)
}

/// Whether `error` is a foreign-key violation.
pub(crate) fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|database_error| database_error.is_foreign_key_violation())
}

/// Turns a foreign-key violation into [`StoreError::NotFound`] of `missing`
/// (the row the new one would have referred to).
pub(crate) fn map_foreign_key_violation(
    error: sqlx::Error,
    missing: impl FnOnce() -> String,
) -> StoreError {
    if is_foreign_key_violation(&error) {
        StoreError::not_found(missing())
    } else {
        StoreError::Database(error)
    }
}
