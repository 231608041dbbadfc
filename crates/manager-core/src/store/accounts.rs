//! Account and membership changes that are written to the audit log in the
//! same transaction as the change itself: either both happen or neither.

use serde_json::json;

use super::users::{USER_COLUMNS, email_taken, username_taken};
use super::{on_pool, write_transaction};
use crate::Store;
use crate::error::{StoreError, StoreResult, map_unique_violation};
use crate::model::{
    AppId, AppMember, AppRole, InstanceRole, NewAuditEntry, NewUser, Timestamp, User, UserId,
    UserUpdate,
};
use crate::validate;

const MEMBER_SQL: &str = "SELECT u.id AS user_id, u.username, u.email, u.instance_role, \
     u.active, m.role, m.joined_at \
     FROM app_members m JOIN users u ON u.id = m.user_id \
     WHERE m.app_id = $1 AND m.user_id = $2";

/// Inserts `$entry` (a [`NewAuditEntry`]) into the audit log inside the
/// transaction `$transaction`.
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

/// The slug of the app `$app_id`, read inside `$transaction`, or an early
/// return of [`StoreError::NotFound`].
macro_rules! app_slug_in_transaction {
    ($transaction:ident, $app_id:expr) => {{
        let app_id: AppId = $app_id;
        let slug: String = sqlx::query_scalar("SELECT slug FROM apps WHERE id = $1")
            .bind(app_id)
            .fetch_optional(&mut *$transaction)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("app {app_id}")))?;
        slug
    }};
}

/// The audit form of a user's account state.
fn user_state(user: &User) -> serde_json::Value {
    json!({
        "username": user.username,
        "email": user.email,
        "instance_role": user.instance_role,
        "active": user.active,
    })
}

/// The audit form of a membership.
fn member_state(member: &AppMember) -> serde_json::Value {
    json!({ "user": member.username, "role": member.role })
}

fn audit_entry(
    actor: Option<UserId>,
    action: &str,
    target: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> StoreResult<NewAuditEntry> {
    validate::audit_text("target", &target)?;
    Ok(NewAuditEntry {
        actor_id: actor,
        action: action.to_owned(),
        target,
        before,
        after,
    })
}

impl Store {
    /// Creates a user (active from the start) and records `user.create` by
    /// `actor` in the audit log, in one transaction.
    ///
    /// Fails like [`Store::create_user`]: [`StoreError::Invalid`] on a bad
    /// username or e-mail, [`StoreError::Conflict`] when either is taken.
    pub async fn create_user_audited(
        &self,
        new_user: &NewUser,
        actor: Option<UserId>,
    ) -> StoreResult<User> {
        validate::username(&new_user.username)?;
        validate::email(&new_user.email)?;
        let sql = format!(
            "INSERT INTO users (username, email, password_hash, instance_role, active, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {USER_COLUMNS}"
        );
        let user = write_transaction!(self, transaction => {
            let inserted = sqlx::query_as::<_, User>(&sql)
                .bind(&new_user.username)
                .bind(&new_user.email)
                .bind(&new_user.password_hash)
                .bind(new_user.instance_role.as_str())
                .bind(true)
                .bind(Timestamp::now())
                .fetch_one(&mut *transaction)
                .await;
            let user = inserted.map_err(|error| {
                map_unique_violation(
                    error,
                    &[
                        ("users_username_unique", &|| username_taken(&new_user.username)),
                        ("users.username", &|| username_taken(&new_user.username)),
                        ("users_email_unique", &|| email_taken(&new_user.email)),
                    ],
                )
            })?;
            let entry = audit_entry(
                actor,
                "user.create",
                format!("user:{}", user.username),
                None,
                Some(user_state(&user)),
            )?;
            append_audit_in!(transaction, &entry);
            user
        });
        Ok(user)
    }

    /// Changes a user's instance role and/or active flag and records
    /// `user.update` by `actor` (with the state before and after) in one
    /// transaction. Returns the user before and after the change.
    ///
    /// Deactivating deletes the user's sessions (its API tokens stay, and
    /// stop working because their lookup skips inactive users). Refused with
    /// [`StoreError::Conflict`] if it would leave the instance without an
    /// active owner; on PostgreSQL the owner rows are locked first, so two
    /// concurrent demotions of the last two owners cannot both succeed.
    pub async fn update_user_audited(
        &self,
        id: UserId,
        update: &UserUpdate,
        actor: Option<UserId>,
    ) -> StoreResult<(User, User)> {
        let lock_owners_sql = format!(
            "SELECT id FROM users WHERE instance_role = 'owner'{}",
            self.lock_clause()
        );
        let select_sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = $1{}",
            self.lock_clause()
        );
        let count_owners_sql =
            "SELECT COUNT(*) FROM users WHERE instance_role = 'owner' AND active";
        let changed = write_transaction!(self, transaction => {
            let _: Vec<i64> = sqlx::query_scalar(&lock_owners_sql)
                .fetch_all(&mut *transaction)
                .await?;
            let before = sqlx::query_as::<_, User>(&select_sql)
                .bind(id)
                .fetch_optional(&mut *transaction)
                .await?
                .ok_or_else(|| StoreError::not_found(format!("user {id}")))?;
            let role = update.instance_role.unwrap_or(before.instance_role);
            let active = update.active.unwrap_or(before.active);
            sqlx::query("UPDATE users SET instance_role = $1, active = $2 WHERE id = $3")
                .bind(role.as_str())
                .bind(active)
                .bind(id)
                .execute(&mut *transaction)
                .await?;
            let active_owners: i64 = sqlx::query_scalar(count_owners_sql)
                .fetch_one(&mut *transaction)
                .await?;
            if active_owners == 0 {
                return Err(StoreError::conflict(
                    "the instance must keep at least one active owner",
                ));
            }
            if before.active && !active {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                    .bind(id)
                    .execute(&mut *transaction)
                    .await?;
            }
            let after = sqlx::query_as::<_, User>(&select_sql)
                .bind(id)
                .fetch_one(&mut *transaction)
                .await?;
            if after != before {
                let entry = audit_entry(
                    actor,
                    "user.update",
                    format!("user:{}", after.username),
                    Some(user_state(&before)),
                    Some(user_state(&after)),
                )?;
                append_audit_in!(transaction, &entry);
            }
            (before, after)
        });
        Ok(changed)
    }

    /// The member `user_id` of `app_id` with its user fields, if it is one.
    pub async fn member(&self, app_id: AppId, user_id: UserId) -> StoreResult<Option<AppMember>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, AppMember>(MEMBER_SQL)
                .bind(app_id)
                .bind(user_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The user whose username is exactly `query`, or whose e-mail is
    /// `query` regardless of case, if it could be added to `app_id`: active,
    /// instance role `member`, and not a member of the app yet. Everything
    /// else (no such user, not addable) is `None`, so a caller cannot tell
    /// the two apart.
    pub async fn addable_user(&self, app_id: AppId, query: &str) -> StoreResult<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users \
             WHERE (username = $1 OR lower(email) = lower($1)) \
               AND active AND instance_role = 'member' \
               AND NOT EXISTS (SELECT 1 FROM app_members m WHERE m.app_id = $2 AND m.user_id = users.id)"
        );
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, User>(&sql)
                .bind(query.trim())
                .bind(app_id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Makes `user_id` a member of `app_id` with `role` and records
    /// `member.add` by `actor`, in one transaction.
    ///
    /// Fails with [`StoreError::NotFound`] if the app or the user does not
    /// exist, with [`StoreError::Invalid`] naming `user` unless the user is
    /// active with the instance role `member` (owners and admins have
    /// implicit roles on every app), and with [`StoreError::Conflict`] if the
    /// user is already a member.
    pub async fn add_member_audited(
        &self,
        app_id: AppId,
        user_id: UserId,
        role: AppRole,
        actor: Option<UserId>,
    ) -> StoreResult<AppMember> {
        let member = write_transaction!(self, transaction => {
            let slug = app_slug_in_transaction!(transaction, app_id);
            let user = sqlx::query_as::<_, User>(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
            ))
            .bind(user_id)
            .fetch_optional(&mut *transaction)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("user {user_id}")))?;
            if !user.active || user.instance_role != InstanceRole::Member {
                return Err(StoreError::invalid(
                    "user",
                    "only active users with the instance role `member` can be given a membership",
                ));
            }
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO app_members (app_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (app_id, user_id) DO NOTHING RETURNING user_id",
            )
            .bind(app_id)
            .bind(user_id)
            .bind(role.as_str())
            .bind(Timestamp::now())
            .fetch_optional(&mut *transaction)
            .await?;
            if inserted.is_none() {
                return Err(StoreError::conflict(format!(
                    "`{}` is already a member of the app `{slug}`",
                    user.username
                )));
            }
            let member = sqlx::query_as::<_, AppMember>(MEMBER_SQL)
                .bind(app_id)
                .bind(user_id)
                .fetch_one(&mut *transaction)
                .await?;
            let entry = audit_entry(
                actor,
                "member.add",
                format!("app:{slug}/user:{}", member.username),
                None,
                Some(member_state(&member)),
            )?;
            append_audit_in!(transaction, &entry);
            member
        });
        Ok(member)
    }

    /// Changes the role of a member and records `member.update` by `actor`,
    /// in one transaction. Returns the member before and after.
    pub async fn set_member_role_audited(
        &self,
        app_id: AppId,
        user_id: UserId,
        role: AppRole,
        actor: Option<UserId>,
    ) -> StoreResult<(AppMember, AppMember)> {
        let select_sql = format!("{MEMBER_SQL}{}", self.lock_clause_of("m"));
        let changed = write_transaction!(self, transaction => {
            let slug = app_slug_in_transaction!(transaction, app_id);
            let before = sqlx::query_as::<_, AppMember>(&select_sql)
                .bind(app_id)
                .bind(user_id)
                .fetch_optional(&mut *transaction)
                .await?
                .ok_or_else(|| membership_not_found(app_id, user_id))?;
            sqlx::query("UPDATE app_members SET role = $1 WHERE app_id = $2 AND user_id = $3")
                .bind(role.as_str())
                .bind(app_id)
                .bind(user_id)
                .execute(&mut *transaction)
                .await?;
            let after = AppMember { role, ..before.clone() };
            if before.role != role {
                let entry = audit_entry(
                    actor,
                    "member.update",
                    format!("app:{slug}/user:{}", after.username),
                    Some(member_state(&before)),
                    Some(member_state(&after)),
                )?;
                append_audit_in!(transaction, &entry);
            }
            (before, after)
        });
        Ok(changed)
    }

    /// Ends a membership and records `member.remove` by `actor`, in one
    /// transaction. Returns the membership that was removed.
    pub async fn remove_member_audited(
        &self,
        app_id: AppId,
        user_id: UserId,
        actor: Option<UserId>,
    ) -> StoreResult<AppMember> {
        let select_sql = format!("{MEMBER_SQL}{}", self.lock_clause_of("m"));
        let removed = write_transaction!(self, transaction => {
            let slug = app_slug_in_transaction!(transaction, app_id);
            let before = sqlx::query_as::<_, AppMember>(&select_sql)
                .bind(app_id)
                .bind(user_id)
                .fetch_optional(&mut *transaction)
                .await?
                .ok_or_else(|| membership_not_found(app_id, user_id))?;
            sqlx::query("DELETE FROM app_members WHERE app_id = $1 AND user_id = $2")
                .bind(app_id)
                .bind(user_id)
                .execute(&mut *transaction)
                .await?;
            let entry = audit_entry(
                actor,
                "member.remove",
                format!("app:{slug}/user:{}", before.username),
                Some(member_state(&before)),
                None,
            )?;
            append_audit_in!(transaction, &entry);
            before
        });
        Ok(removed)
    }

    /// ` FOR UPDATE OF {table}` on PostgreSQL (a join may only lock some of
    /// its tables), nothing on SQLite.
    fn lock_clause_of(&self, table: &str) -> String {
        match self.backend() {
            super::Backend::Sqlite => String::new(),
            super::Backend::Postgres => format!(" FOR UPDATE OF {table}"),
        }
    }
}

fn membership_not_found(app_id: AppId, user_id: UserId) -> StoreError {
    StoreError::not_found(format!("membership of user {user_id} in app {app_id}"))
}
