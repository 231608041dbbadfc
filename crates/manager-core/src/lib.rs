//! The control plane's store: everything PiCloud remembers, on SQLite or
//! PostgreSQL.
//!
//! # Concepts
//!
//! - **Users** log in with a username or e-mail and a password (argon2id, see
//!   [`auth`]). Each has one [`InstanceRole`]: `owner`, `admin` or `member`.
//!   Users are deactivated, never deleted, so what they authored keeps its
//!   author. The store refuses any change that would take away the last
//!   active owner.
//! - **Sessions** (dashboard log-ins, with a CSRF token and an expiry) and
//!   **API tokens** (CLI and automation, revocable) are bearer secrets: only
//!   their SHA-256 hash is stored. Looking one up also returns its user, and
//!   finds nothing once the user is deactivated, the session has expired or
//!   the token is revoked.
//! - An **app** is a namespace of scripts, served under `/{slug}/...` and on
//!   its **domains**. Users reach an app through a **membership** with an
//!   [`AppRole`] (`viewer`, `editor`, `app_admin`); deciding what each role
//!   may do is the API layer's job, the store only records them.
//! - A **script** has a name unique within its app and a list of immutable
//!   **versions** numbered 1, 2, 3... One version is active: [`Store::deploy`]
//!   adds a version and activates it in one transaction, and
//!   [`Store::activate_version`] rolls back (or forward) to another one.
//!   [`Store::active_scripts`] is the table the orchestrator caches in memory
//!   so that serving a request never touches the database.
//! - The **audit log** records who changed what, with the state before and
//!   after; it can only be appended to.
//!
//! # Backends
//!
//! [`Store::connect`] picks the backend from the URL: `sqlite://PATH` for an
//! embedded file (the single-node default) or `postgres://...` for a server
//! (production and cluster mode). Both run the same SQL and pass the same
//! conformance suite (`tests/all/store_suite.rs`). [`Store::migrate`] applies
//! the embedded migrations from `migrations/sqlite` or `migrations/postgres`,
//! and refuses a database migrated by a newer PiCloud with
//! [`StoreError::DatabaseNewerThanBinary`].
//!
//! # Invariants
//!
//! **This crate is the only code in PiCloud that speaks SQL**, and it knows
//! nothing of HTTP: errors are [`StoreError`] values that the API layer maps
//! to statuses. **Script versions and audit entries are never updated**: the
//! store has no method for it and the schema refuses it with triggers.
//!
//! ```no_run
//! # async fn example() -> Result<(), picloud_manager_core::StoreError> {
//! use picloud_manager_core::{InstanceRole, NewUser, Store, auth};
//!
//! let store = Store::connect("sqlite://./data/picloud.db").await?;
//! store.migrate().await?;
//! let owner = store
//!     .create_user(&NewUser {
//!         username: "root".into(),
//!         email: "root@example.com".into(),
//!         password_hash: auth::hash_password("a long passphrase").expect("argon2 works"),
//!         instance_role: InstanceRole::Owner,
//!     })
//!     .await?;
//! let app = store.create_app("shop", "The shop").await?;
//! let version = store
//!     .deploy(app.id, "hello", r#""Hello, world!""#, owner.id)
//!     .await?;
//! assert_eq!(version.number, 1);
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod auth;
mod error;
pub mod files;
mod model;
mod store;
pub mod validate;

pub use error::{StoreError, StoreResult};
pub use model::{
    ActiveScript, ApiToken, ApiTokenId, ApiTokenWithUser, App, AppId, AppMember, AppRole,
    AppUpdate, AppWithRole, AuditEntry, AuditId, Domain, DomainId, DomainRoute, InstanceRole,
    Membership, NewAuditEntry, NewSession, NewUser, Script, ScriptId, ScriptSummary, ScriptVersion,
    Session, SessionId, SessionWithUser, Timestamp, UnknownRole, User, UserCredentials, UserId,
    UserUpdate, VersionId, VersionSummary,
};
pub use store::{
    AppVar, HttpAllowPattern, InvalidSecretKey, KvEntry, KvPage, KvQuota, KvUsage,
    MAX_HTTP_ALLOW_HOSTS, MAX_KV_PAGE, MAX_SECRET_VALUE_BYTES, MAX_VAR_VALUE_BYTES, SecretInfo,
    SecretKey, validate_config_name, validate_kv_key,
};
pub use store::{
    AsyncFailure, AsyncInvocation, AsyncJob, AsyncResult, AsyncStatus, CronSchedule,
    DEFAULT_TIMEZONE, MAX_ASYNC_ATTEMPTS, NewAsyncInvocation, NewSchedule, Schedule, ScheduleId,
    ScheduleTick, ScheduleUpdate,
};
pub use store::{Backend, MAX_AUDIT_PAGE, RouteChange, RouteChanges, Store, StoreOptions};
pub use store::{
    InvocationBucket, InvocationFilter, InvocationId, InvocationSeries, MAX_INVOCATION_PAGE,
    NewInvocation, OutputLine, PruneOutcome, StatusFilter, StoredInvocation,
};
