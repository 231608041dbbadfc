//! Users, sessions and API tokens.

use super::{on_pool, write_transaction};
use crate::Store;
use crate::error::{
    StoreError, StoreResult, is_foreign_key_violation, map_foreign_key_violation,
    map_unique_violation,
};
use crate::model::{
    ApiToken, ApiTokenId, ApiTokenWithUser, InstanceRole, NewSession, NewUser, Session, SessionId,
    SessionWithUser, Timestamp, User, UserCredentials, UserId,
};
use crate::validate;

pub(super) const USER_COLUMNS: &str = "id, username, email, instance_role, active, created_at";

/// A change to a user that may affect who owns the instance.
#[derive(Clone, Copy)]
enum UserChange {
    Active(bool),
    Role(InstanceRole),
}

/// A session or token row joined with its user's columns (prefixed `user_`).
#[derive(sqlx::FromRow)]
struct CredentialRow {
    id: i64,
    user_id: UserId,
    /// The session's CSRF token, or the API token's name.
    detail: String,
    created_at: Timestamp,
    expires_at: Option<Timestamp>,
    last_used_at: Option<Timestamp>,
    user_username: String,
    user_email: String,
    #[sqlx(try_from = "String")]
    user_instance_role: InstanceRole,
    user_created_at: Timestamp,
}

impl CredentialRow {
    fn user(&self) -> User {
        User {
            id: self.user_id,
            username: self.user_username.clone(),
            email: self.user_email.clone(),
            instance_role: self.user_instance_role,
            // The lookups only return rows of active users.
            active: true,
            created_at: self.user_created_at,
        }
    }
}

impl Store {
    /// Creates a user, active from the start.
    ///
    /// Fails with [`StoreError::Invalid`] on a bad username or e-mail and with
    /// [`StoreError::Conflict`] when either is taken (e-mail regardless of case).
    pub async fn create_user(&self, new_user: &NewUser) -> StoreResult<User> {
        validate::username(&new_user.username)?;
        validate::email(&new_user.email)?;
        let sql = format!(
            "INSERT INTO users (username, email, password_hash, instance_role, active, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {USER_COLUMNS}"
        );
        let result = on_pool!(self, pool => {
            sqlx::query_as::<_, User>(&sql)
                .bind(&new_user.username)
                .bind(&new_user.email)
                .bind(&new_user.password_hash)
                .bind(new_user.instance_role.as_str())
                .bind(true)
                .bind(Timestamp::now())
                .fetch_one(pool)
                .await
        });
        result.map_err(|error| {
            map_unique_violation(
                error,
                &[
                    ("users_username_unique", &|| {
                        username_taken(&new_user.username)
                    }),
                    ("users.username", &|| username_taken(&new_user.username)),
                    ("users_email_unique", &|| email_taken(&new_user.email)),
                ],
            )
        })
    }

    /// Whether there are no users at all: the server then bootstraps the owner.
    pub async fn is_empty(&self) -> StoreResult<bool> {
        let any_user: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM users LIMIT 1").fetch_optional(pool).await?
        });
        Ok(any_user.is_none())
    }

    /// The user with this id.
    pub async fn user(&self, id: UserId) -> StoreResult<User> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let user = on_pool!(self, pool => {
            sqlx::query_as::<_, User>(&sql).bind(id).fetch_optional(pool).await?
        });
        user.ok_or_else(|| StoreError::not_found(format!("user {id}")))
    }

    /// The user with exactly this username.
    pub async fn user_by_username(&self, username: &str) -> StoreResult<User> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        let user = on_pool!(self, pool => {
            sqlx::query_as::<_, User>(&sql).bind(username).fetch_optional(pool).await?
        });
        user.ok_or_else(|| StoreError::not_found(format!("user `{username}`")))
    }

    /// The user with this e-mail address, compared regardless of case.
    pub async fn user_by_email(&self, email: &str) -> StoreResult<User> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1)");
        let user = on_pool!(self, pool => {
            sqlx::query_as::<_, User>(&sql).bind(email).fetch_optional(pool).await?
        });
        user.ok_or_else(|| StoreError::not_found(format!("user with e-mail `{email}`")))
    }

    /// The user whose username is `login`, or whose e-mail is `login`
    /// regardless of case, with their password hash: what a log-in checks.
    /// Inactive users are returned too; the caller refuses them.
    pub async fn user_credentials(&self, login: &str) -> StoreResult<Option<UserCredentials>> {
        // At most one row matches: usernames cannot contain '@', e-mails must.
        let sql = format!(
            "SELECT {USER_COLUMNS}, password_hash FROM users \
             WHERE username = $1 OR lower(email) = lower($1)"
        );
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, UserCredentials>(&sql).bind(login).fetch_optional(pool).await?
        }))
    }

    /// Every user, in order of creation.
    pub async fn list_users(&self) -> StoreResult<Vec<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY id");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, User>(&sql).fetch_all(pool).await?))
    }

    /// Replaces a user's password hash.
    pub async fn set_password_hash(&self, id: UserId, password_hash: &str) -> StoreResult<()> {
        let rows_affected = on_pool!(self, pool => {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(password_hash)
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if rows_affected == 0 {
            return Err(StoreError::not_found(format!("user {id}")));
        }
        Ok(())
    }

    /// Activates or deactivates a user. Deactivation keeps every row of the
    /// user but makes their sessions and tokens stop working at once (the
    /// lookups skip inactive users). Refused with [`StoreError::Conflict`] if
    /// it would leave the instance without an active owner.
    pub async fn set_user_active(&self, id: UserId, active: bool) -> StoreResult<User> {
        self.change_user_keeping_an_owner(id, UserChange::Active(active))
            .await
    }

    /// Changes a user's instance role. Refused with [`StoreError::Conflict`]
    /// if it would leave the instance without an active owner.
    pub async fn set_instance_role(&self, id: UserId, role: InstanceRole) -> StoreResult<User> {
        self.change_user_keeping_an_owner(id, UserChange::Role(role))
            .await
    }

    /// How many active users have the instance role `owner`.
    pub async fn count_active_owners(&self) -> StoreResult<i64> {
        Ok(on_pool!(self, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE instance_role = 'owner' AND active")
                .fetch_one(pool)
                .await?
        }))
    }

    /// Applies `change` in a transaction that fails if it took away the last
    /// active owner. On PostgreSQL the owner rows are locked first, so two
    /// concurrent demotions of the last two owners cannot both succeed.
    async fn change_user_keeping_an_owner(
        &self,
        id: UserId,
        change: UserChange,
    ) -> StoreResult<User> {
        let lock_owners_sql = format!(
            "SELECT id FROM users WHERE instance_role = 'owner'{}",
            self.lock_clause()
        );
        let select_sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let count_owners_sql =
            "SELECT COUNT(*) FROM users WHERE instance_role = 'owner' AND active";
        let user = write_transaction!(self, transaction => {
            let _: Vec<i64> = sqlx::query_scalar(&lock_owners_sql)
                .fetch_all(&mut *transaction)
                .await?;
            let active_owners_before: i64 = sqlx::query_scalar(count_owners_sql)
                .fetch_one(&mut *transaction)
                .await?;
            let update = match change {
                UserChange::Active(active) => {
                    sqlx::query("UPDATE users SET active = $1 WHERE id = $2").bind(active)
                }
                UserChange::Role(role) => {
                    sqlx::query("UPDATE users SET instance_role = $1 WHERE id = $2").bind(role.as_str())
                }
            };
            let updated = update.bind(id).execute(&mut *transaction).await?;
            if updated.rows_affected() == 0 {
                return Err(StoreError::not_found(format!("user {id}")));
            }
            let active_owners_after: i64 = sqlx::query_scalar(count_owners_sql)
                .fetch_one(&mut *transaction)
                .await?;
            if active_owners_before > 0 && active_owners_after == 0 {
                return Err(StoreError::conflict(
                    "the instance must keep at least one active owner",
                ));
            }
            sqlx::query_as::<_, User>(&select_sql)
                .bind(id)
                .fetch_one(&mut *transaction)
                .await?
        });
        Ok(user)
    }

    /// Creates a log-in session.
    pub async fn create_session(&self, new_session: &NewSession) -> StoreResult<Session> {
        let result = on_pool!(self, pool => {
            sqlx::query_as::<_, Session>(
                "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 RETURNING id, user_id, csrf_token, created_at, expires_at",
            )
            .bind(&new_session.token_hash)
            .bind(new_session.user_id)
            .bind(&new_session.csrf_token)
            .bind(Timestamp::now())
            .bind(new_session.expires_at)
            .fetch_one(pool)
            .await
        });
        result.map_err(|error| {
            map_foreign_key_violation(error, || format!("user {}", new_session.user_id))
        })
    }

    /// The session whose token hashes to `token_hash`, with its user, if it
    /// has not expired and its user is active.
    pub async fn session_by_token_hash(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<SessionWithUser>> {
        let row = on_pool!(self, pool => {
            sqlx::query_as::<_, CredentialRow>(
                "SELECT s.id, s.user_id, s.csrf_token AS detail, s.created_at, \
                        s.expires_at, CAST(NULL AS BIGINT) AS last_used_at, \
                        u.username AS user_username, u.email AS user_email, \
                        u.instance_role AS user_instance_role, u.created_at AS user_created_at \
                 FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.active",
            )
            .bind(token_hash)
            .bind(Timestamp::now())
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|row| SessionWithUser {
            user: row.user(),
            session: Session {
                id: SessionId(row.id),
                user_id: row.user_id,
                csrf_token: row.detail,
                created_at: row.created_at,
                expires_at: row.expires_at.unwrap_or(row.created_at),
            },
        }))
    }

    /// Deletes a session (log out). Deleting a session that is gone is not an error.
    pub async fn delete_session(&self, id: SessionId) -> StoreResult<()> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM sessions WHERE id = $1").bind(id).execute(pool).await?.rows_affected()
        });
        Ok(())
    }

    /// Deletes every session of a user (for example after a password change);
    /// returns how many there were.
    pub async fn delete_sessions_of_user(&self, user_id: UserId) -> StoreResult<u64> {
        let rows_affected = on_pool!(self, pool => {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(pool).await?.rows_affected()
        });
        Ok(rows_affected)
    }

    /// Deletes the sessions that have expired; returns how many there were.
    pub async fn delete_expired_sessions(&self) -> StoreResult<u64> {
        let rows_affected = on_pool!(self, pool => {
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
                .bind(Timestamp::now())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(rows_affected)
    }

    /// Records a new API token of `user_id`; `token_hash` comes from
    /// [`hash_token`](crate::auth::hash_token) of the token shown once to the user.
    pub async fn create_api_token(
        &self,
        user_id: UserId,
        name: &str,
        token_hash: &str,
    ) -> StoreResult<ApiToken> {
        validate::display_name("name", name)?;
        let result = on_pool!(self, pool => {
            sqlx::query_as::<_, ApiToken>(
                "INSERT INTO api_tokens (user_id, name, token_hash, created_at) \
                 VALUES ($1, $2, $3, $4) \
                 RETURNING id, user_id, name, created_at, last_used_at, revoked_at",
            )
            .bind(user_id)
            .bind(name)
            .bind(token_hash)
            .bind(Timestamp::now())
            .fetch_one(pool)
            .await
        });
        result.map_err(|error| match error {
            error if is_foreign_key_violation(&error) => {
                StoreError::not_found(format!("user {user_id}"))
            }
            error => map_unique_violation(
                error,
                &[
                    ("api_tokens_token_hash_unique", &|| {
                        "this token already exists".to_owned()
                    }),
                    ("api_tokens.token_hash", &|| {
                        "this token already exists".to_owned()
                    }),
                ],
            ),
        })
    }

    /// The API tokens of a user, revoked ones included, oldest first.
    pub async fn list_api_tokens(&self, user_id: UserId) -> StoreResult<Vec<ApiToken>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, ApiToken>(
                "SELECT id, user_id, name, created_at, last_used_at, revoked_at \
                 FROM api_tokens WHERE user_id = $1 ORDER BY id",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Revokes the token `id` of `user_id` (a token of another user is
    /// [`StoreError::NotFound`]). Revoking twice keeps the first revocation time.
    pub async fn revoke_api_token(&self, user_id: UserId, id: ApiTokenId) -> StoreResult<ApiToken> {
        let token = on_pool!(self, pool => {
            sqlx::query_as::<_, ApiToken>(
                "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) \
                 WHERE id = $2 AND user_id = $3 \
                 RETURNING id, user_id, name, created_at, last_used_at, revoked_at",
            )
            .bind(Timestamp::now())
            .bind(id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?
        });
        token.ok_or_else(|| StoreError::not_found(format!("API token {id} of user {user_id}")))
    }

    /// The API token that hashes to `token_hash`, with its user, if it is not
    /// revoked and its user is active.
    pub async fn api_token_by_hash(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<ApiTokenWithUser>> {
        let row = on_pool!(self, pool => {
            sqlx::query_as::<_, CredentialRow>(
                "SELECT t.id, t.user_id, t.name AS detail, t.created_at, \
                        CAST(NULL AS BIGINT) AS expires_at, t.last_used_at, \
                        u.username AS user_username, u.email AS user_email, \
                        u.instance_role AS user_instance_role, u.created_at AS user_created_at \
                 FROM api_tokens t JOIN users u ON u.id = t.user_id \
                 WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND u.active",
            )
            .bind(token_hash)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|row| ApiTokenWithUser {
            user: row.user(),
            token: ApiToken {
                id: ApiTokenId(row.id),
                user_id: row.user_id,
                name: row.detail,
                created_at: row.created_at,
                last_used_at: row.last_used_at,
                revoked_at: None,
            },
        }))
    }

    /// Records that a token was just used.
    pub async fn touch_api_token(&self, id: ApiTokenId) -> StoreResult<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(Timestamp::now())
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(())
    }
}

pub(super) fn username_taken(username: &str) -> String {
    format!("the username `{username}` is taken")
}

pub(super) fn email_taken(email: &str) -> String {
    format!("the e-mail address `{email}` is already in use")
}
