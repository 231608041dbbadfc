//! The records the store reads and writes, and the small value types they use.
//!
//! Every record derives `serde::Serialize` so the API layer may return it as
//! is; secrets (password hashes, token hashes) are never part of a serialized
//! record.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(formatter)
            }
        }
    };
}

id_type!(
    /// Identifies a [`User`].
    UserId
);
id_type!(
    /// Identifies a [`Session`].
    SessionId
);
id_type!(
    /// Identifies an [`ApiToken`].
    ApiTokenId
);
id_type!(
    /// Identifies an [`App`].
    AppId
);
id_type!(
    /// Identifies a [`Script`].
    ScriptId
);
id_type!(
    /// Identifies a [`ScriptVersion`] (across all scripts; the per-script
    /// counter is [`ScriptVersion::number`]).
    VersionId
);
id_type!(
    /// Identifies a [`Domain`].
    DomainId
);
id_type!(
    /// Identifies an [`AuditEntry`]; ids grow with time, so they double as
    /// the paging cursor of [`Store::list_audit`](crate::Store::list_audit).
    AuditId
);

/// A point in time, stored as milliseconds since the Unix epoch (UTC) in both
/// backends and serialized as an RFC 3339 string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time, to the millisecond.
    pub fn now() -> Self {
        Self::from_offset_date_time(OffsetDateTime::now_utc())
    }

    /// The time `unix_millis` milliseconds after 1970-01-01T00:00:00Z.
    pub const fn from_unix_millis(unix_millis: i64) -> Self {
        Self(unix_millis)
    }

    /// Milliseconds since 1970-01-01T00:00:00Z.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// Converts from `time`'s type, dropping anything below a millisecond.
    pub fn from_offset_date_time(moment: OffsetDateTime) -> Self {
        let millis = moment.unix_timestamp_nanos() / 1_000_000;
        Self(i64::try_from(millis).unwrap_or(if millis < 0 { i64::MIN } else { i64::MAX }))
    }

    /// Converts to `time`'s type, in UTC.
    pub fn to_offset_date_time(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// The time `duration` after this one, saturating at the end of the range.
    pub fn after(self, duration: std::time::Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(millis))
    }

    /// The time `duration` before this one, saturating at the start of the range.
    pub fn before(self, duration: std::time::Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(millis))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_offset_date_time().format(&Rfc3339) {
            Ok(text) => formatter.write_str(&text),
            Err(_) => write!(formatter, "@{}ms", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        OffsetDateTime::parse(&text, &Rfc3339)
            .map(Self::from_offset_date_time)
            .map_err(serde::de::Error::custom)
    }
}

/// The error returned when text names no known role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}`")]
pub struct UnknownRole(pub String);

macro_rules! role_type {
    ($(#[$meta:meta])* $name:ident { $($(#[$variant_meta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$variant_meta])* $variant),+
        }

        impl $name {
            /// Every role, from the least to the most powerful.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The name of the role as stored and as shown in the API.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownRole;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    other => Err(UnknownRole(other.to_owned())),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownRole;

            fn try_from(text: String) -> Result<Self, Self::Error> {
                text.parse()
            }
        }
    };
}

role_type!(
    /// A user's role on the whole instance. The variants are ordered from the
    /// least to the most powerful.
    InstanceRole {
        /// Sees and touches only the apps where it has an explicit membership.
        Member => "member",
        /// May manage users (not owners) and is an implicit editor on every app.
        Admin => "admin",
        /// May do everything, and is an implicit `app_admin` on every app.
        Owner => "owner",
    }
);

role_type!(
    /// A user's role on one app, through an explicit membership. The variants
    /// are ordered from the least to the most powerful.
    AppRole {
        /// Reads scripts, versions, logs and settings.
        Viewer => "viewer",
        /// Also deploys, rolls back and manages domains.
        Editor => "editor",
        /// Also manages the app's members and settings, and may delete it.
        AppAdmin => "app_admin",
    }
);

/// An account. The password hash is deliberately absent: see
/// [`UserCredentials`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// The unique login name (lower-case).
    pub username: String,
    /// The e-mail address as entered; unique regardless of case.
    pub email: String,
    /// The role on the whole instance.
    #[sqlx(try_from = "String")]
    pub instance_role: InstanceRole,
    /// False once the user is deactivated: their sessions and tokens stop
    /// working, their rows stay.
    pub active: bool,
    /// When the account was created.
    pub created_at: Timestamp,
}

/// What a login check needs: the user and their argon2id PHC string.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct UserCredentials {
    /// The account.
    #[sqlx(flatten)]
    pub user: User,
    /// The argon2id hash in PHC string format.
    pub password_hash: String,
}

/// The fields of a user to create.
#[derive(Clone, Debug)]
pub struct NewUser {
    /// Login name: 1 to 64 characters of `a-z`, `0-9`, `_`, `-`, `.`, starting
    /// with a letter or digit.
    pub username: String,
    /// E-mail address; unique regardless of case.
    pub email: String,
    /// An argon2id PHC string, from [`hash_password`](crate::auth::hash_password).
    pub password_hash: String,
    /// The role on the instance.
    pub instance_role: InstanceRole,
}

/// The changes to make to a user's account; `None` leaves a field as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserUpdate {
    /// A new instance role.
    pub instance_role: Option<InstanceRole>,
    /// Activate (`true`) or deactivate (`false`).
    pub active: Option<bool>,
}

/// A dashboard log-in session. The token itself is never stored, only its
/// SHA-256 hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Session {
    /// The session's id.
    pub id: SessionId,
    /// The user who logged in.
    pub user_id: UserId,
    /// The token that state-changing requests of this session must echo.
    pub csrf_token: String,
    /// When the session was created.
    pub created_at: Timestamp,
    /// When the session stops working.
    pub expires_at: Timestamp,
}

/// The fields of a session to create.
#[derive(Clone, Debug)]
pub struct NewSession {
    /// The SHA-256 hex of the session token, from [`hash_token`](crate::auth::hash_token).
    pub token_hash: String,
    /// The user who logged in.
    pub user_id: UserId,
    /// The CSRF token of the session.
    pub csrf_token: String,
    /// When the session stops working.
    pub expires_at: Timestamp,
}

/// A live session with its (active) user, as found by a token lookup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionWithUser {
    /// The session.
    pub session: Session,
    /// Its user, as of now.
    pub user: User,
}

/// A long-lived API token of a user, for the CLI and automation. The token
/// itself is shown once on creation and never stored, only its SHA-256 hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ApiToken {
    /// The token's id.
    pub id: ApiTokenId,
    /// The user the token acts as.
    pub user_id: UserId,
    /// A label chosen by the user ("laptop", "ci").
    pub name: String,
    /// When the token was created.
    pub created_at: Timestamp,
    /// When the token was last presented, if ever.
    pub last_used_at: Option<Timestamp>,
    /// When the token was revoked; a revoked token no longer works.
    pub revoked_at: Option<Timestamp>,
}

/// A working API token with its (active) user, as found by a token lookup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiTokenWithUser {
    /// The token.
    pub token: ApiToken,
    /// Its user, as of now.
    pub user: User,
}

/// An app: a namespace of scripts served under `/{slug}/...` and on its
/// domains.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct App {
    /// The app's id.
    pub id: AppId,
    /// The unique URL name of the app.
    pub slug: String,
    /// The display name.
    pub name: String,
    /// Per-app settings such as limit overrides, a JSON object; the store
    /// keeps it opaque.
    pub settings: serde_json::Value,
    /// When the app was created.
    pub created_at: Timestamp,
}

/// The changes to make to an app; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct AppUpdate {
    /// A new display name.
    pub name: Option<String>,
    /// New settings, replacing the old ones whole; must be a JSON object.
    pub settings: Option<serde_json::Value>,
}

/// An app together with the role a given user holds on it by membership.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct AppWithRole {
    /// The app.
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub app: App,
    /// The user's explicit role on it.
    #[sqlx(try_from = "String")]
    pub role: AppRole,
}

/// An explicit membership of a user in an app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Membership {
    /// The app.
    pub app_id: AppId,
    /// The member.
    pub user_id: UserId,
    /// The member's role on the app.
    #[sqlx(try_from = "String")]
    pub role: AppRole,
    /// When the membership was created.
    pub joined_at: Timestamp,
}

/// A member of an app with the user fields a member list shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AppMember {
    /// The member.
    pub user_id: UserId,
    /// Their login name.
    pub username: String,
    /// Their e-mail address.
    pub email: String,
    /// Their role on the instance.
    #[sqlx(try_from = "String")]
    pub instance_role: InstanceRole,
    /// Whether their account is active.
    pub active: bool,
    /// Their role on the app.
    #[sqlx(try_from = "String")]
    pub role: AppRole,
    /// When they joined the app.
    pub joined_at: Timestamp,
}

/// A script of an app: a name and a pointer to its active version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Script {
    /// The script's id.
    pub id: ScriptId,
    /// The app it belongs to.
    pub app_id: AppId,
    /// The name, unique within the app, served at `/{app}/{name}`.
    pub name: String,
    /// The version that serves requests; `None` only if it was never set.
    pub active_version_id: Option<VersionId>,
    /// When the script was first deployed.
    pub created_at: Timestamp,
}

/// A script as listed for an app, with facts about its versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ScriptSummary {
    /// The script's id.
    pub id: ScriptId,
    /// The app it belongs to.
    pub app_id: AppId,
    /// The name, unique within the app.
    pub name: String,
    /// When the script was first deployed.
    pub created_at: Timestamp,
    /// The number of the active version.
    pub active_version_number: Option<i64>,
    /// The number of the newest version.
    pub latest_version_number: Option<i64>,
    /// When the newest version was deployed.
    pub last_deployed_at: Option<Timestamp>,
}

/// One immutable version of a script, with its source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ScriptVersion {
    /// The version's id.
    pub id: VersionId,
    /// The script it belongs to.
    pub script_id: ScriptId,
    /// 1, 2, 3... in deploy order, per script.
    pub number: i64,
    /// The Rhai source.
    pub source: String,
    /// SHA-256 hex of the source.
    pub hash: String,
    /// The user who deployed it.
    pub author_id: UserId,
    /// When it was deployed.
    pub created_at: Timestamp,
}

/// A version as listed for a script, without its source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct VersionSummary {
    /// The version's id.
    pub id: VersionId,
    /// The script it belongs to.
    pub script_id: ScriptId,
    /// 1, 2, 3... in deploy order, per script.
    pub number: i64,
    /// SHA-256 hex of the source.
    pub hash: String,
    /// The user who deployed it.
    pub author_id: UserId,
    /// Their login name.
    pub author_username: String,
    /// When it was deployed.
    pub created_at: Timestamp,
    /// Whether this is the script's active version.
    pub active: bool,
}

/// A script's active version with everything the orchestrator's in-memory
/// routing cache needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ActiveScript {
    /// The app's id.
    pub app_id: AppId,
    /// The app's slug.
    pub app_slug: String,
    /// The script's id.
    pub script_id: ScriptId,
    /// The script's name.
    pub script_name: String,
    /// The active version's id.
    pub version_id: VersionId,
    /// The active version's number.
    pub number: i64,
    /// SHA-256 hex of the source (a cache key for compiled scripts).
    pub hash: String,
    /// The Rhai source.
    pub source: String,
    /// The app's settings (its limit overrides live under `limits`).
    pub app_settings: serde_json::Value,
}

/// A host name that routes to an app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Domain {
    /// The domain's id.
    pub id: DomainId,
    /// The app it routes to.
    pub app_id: AppId,
    /// The host name, lower-case, without a port.
    pub host: String,
    /// When it was added.
    pub created_at: Timestamp,
}

/// One entry of the host routing table: requests whose `Host` is `host` go to
/// the app `app_slug`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct DomainRoute {
    /// The host name, lower-case, without a port.
    pub host: String,
    /// The app's id.
    pub app_id: AppId,
    /// The app's slug.
    pub app_slug: String,
}

/// An entry of the append-only audit log.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    /// The entry's id; ids grow with time.
    pub id: AuditId,
    /// Who did it; `None` for the system itself (for example the bootstrap).
    pub actor_id: Option<UserId>,
    /// The actor's login name, if there is an actor.
    pub actor_username: Option<String>,
    /// What was done, a dotted verb such as `member.add`.
    pub action: String,
    /// What it was done to, such as `app:shop/user:bob`.
    pub target: String,
    /// The state before the change, if it had one.
    #[sqlx(rename = "state_before")]
    pub before: Option<serde_json::Value>,
    /// The state after the change, if it has one.
    #[sqlx(rename = "state_after")]
    pub after: Option<serde_json::Value>,
    /// When it was done.
    pub created_at: Timestamp,
}

/// The fields of an audit entry to append.
#[derive(Clone, Debug, Default)]
pub struct NewAuditEntry {
    /// Who did it; `None` for the system itself.
    pub actor_id: Option<UserId>,
    /// What was done, a dotted verb such as `member.add`.
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// The state before the change.
    pub before: Option<serde_json::Value>,
    /// The state after the change.
    pub after: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_serialize_as_rfc3339_and_round_trip() {
        let moment = Timestamp::from_unix_millis(1_700_000_000_123);
        assert_eq!(moment.to_string(), "2023-11-14T22:13:20.123Z");
        let json = serde_json::to_string(&moment).unwrap();
        assert_eq!(json, "\"2023-11-14T22:13:20.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), moment);
        let later = moment.after(std::time::Duration::from_secs(1));
        assert_eq!(later.unix_millis(), 1_700_000_001_123);
        assert_eq!(later.before(std::time::Duration::from_secs(1)), moment);
    }

    #[test]
    fn roles_parse_and_order() {
        for role in AppRole::ALL {
            assert_eq!(role.as_str().parse::<AppRole>().unwrap(), *role);
        }
        assert_eq!("app_admin".parse::<AppRole>().unwrap(), AppRole::AppAdmin);
        assert!(AppRole::Viewer < AppRole::Editor && AppRole::Editor < AppRole::AppAdmin);
        assert!(
            InstanceRole::Member < InstanceRole::Admin && InstanceRole::Admin < InstanceRole::Owner
        );
        assert!("root".parse::<InstanceRole>().is_err());
        assert_eq!(
            serde_json::to_string(&AppRole::AppAdmin).unwrap(),
            "\"app_admin\""
        );
    }
}
