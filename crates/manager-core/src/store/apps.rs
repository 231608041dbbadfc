//! Apps, their members and their domains.

use super::{on_pool, write_transaction};
use crate::Store;
use crate::error::{StoreError, StoreResult, map_foreign_key_violation, map_unique_violation};
use crate::model::{
    App, AppId, AppMember, AppRole, AppUpdate, AppWithRole, Domain, DomainRoute, Membership,
    Timestamp, UserId,
};
use crate::validate;

const APP_COLUMNS: &str = "id, slug, name, settings, created_at";

impl Store {
    /// Creates an app with empty settings.
    ///
    /// Fails with [`StoreError::Invalid`] naming `slug` or `name` on bad
    /// input, and with [`StoreError::Conflict`] when the slug is taken.
    pub async fn create_app(&self, slug: &str, name: &str) -> StoreResult<App> {
        validate::app_slug(slug)?;
        validate::display_name("name", name)?;
        let sql = format!(
            "INSERT INTO apps (slug, name, settings, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING {APP_COLUMNS}"
        );
        let result = on_pool!(self, pool => {
            sqlx::query_as::<_, App>(&sql)
                .bind(slug)
                .bind(name.trim())
                .bind(serde_json::json!({}))
                .bind(Timestamp::now())
                .fetch_one(pool)
                .await
        });
        result.map_err(|error| {
            let taken = || format!("an app with slug `{slug}` already exists");
            map_unique_violation(
                error,
                &[("apps_slug_unique", &taken), ("apps.slug", &taken)],
            )
        })
    }

    /// The app with this id.
    pub async fn app(&self, id: AppId) -> StoreResult<App> {
        let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE id = $1");
        let app = on_pool!(self, pool => {
            sqlx::query_as::<_, App>(&sql).bind(id).fetch_optional(pool).await?
        });
        app.ok_or_else(|| StoreError::not_found(format!("app {id}")))
    }

    /// The app with this slug.
    pub async fn app_by_slug(&self, slug: &str) -> StoreResult<App> {
        let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE slug = $1");
        let app = on_pool!(self, pool => {
            sqlx::query_as::<_, App>(&sql).bind(slug).fetch_optional(pool).await?
        });
        app.ok_or_else(|| StoreError::not_found(format!("app `{slug}`")))
    }

    /// Every app, by slug.
    pub async fn list_apps(&self) -> StoreResult<Vec<App>> {
        let sql = format!("SELECT {APP_COLUMNS} FROM apps ORDER BY slug");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, App>(&sql).fetch_all(pool).await?))
    }

    /// The apps where `user_id` has an explicit membership, with its role, by slug.
    pub async fn list_apps_of_member(&self, user_id: UserId) -> StoreResult<Vec<AppWithRole>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, AppWithRole>(
                "SELECT a.id, a.slug, a.name, a.settings, a.created_at, m.role \
                 FROM apps a JOIN app_members m ON m.app_id = a.id \
                 WHERE m.user_id = $1 ORDER BY a.slug",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Renames an app and/or replaces its settings (which must be a JSON object).
    pub async fn update_app(&self, id: AppId, update: &AppUpdate) -> StoreResult<App> {
        if let Some(name) = &update.name {
            validate::display_name("name", name)?;
        }
        if let Some(settings) = &update.settings {
            validate::settings(settings)?;
        }
        let sql = format!(
            "UPDATE apps SET name = COALESCE($1, name), settings = COALESCE($2, settings) \
             WHERE id = $3 RETURNING {APP_COLUMNS}"
        );
        let app = on_pool!(self, pool => {
            sqlx::query_as::<_, App>(&sql)
                .bind(update.name.as_deref().map(str::trim))
                .bind(update.settings.as_ref())
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        app.ok_or_else(|| StoreError::not_found(format!("app {id}")))
    }

    /// Deletes an app with its scripts, versions, memberships and domains.
    pub async fn delete_app(&self, id: AppId) -> StoreResult<()> {
        let rows_affected = on_pool!(self, pool => {
            sqlx::query("DELETE FROM apps WHERE id = $1").bind(id).execute(pool).await?.rows_affected()
        });
        if rows_affected == 0 {
            return Err(StoreError::not_found(format!("app {id}")));
        }
        Ok(())
    }

    /// Makes `user_id` a member of `app_id` with `role`.
    ///
    /// Fails with [`StoreError::NotFound`] if the app or the user does not
    /// exist and [`StoreError::Conflict`] if the user is already a member.
    /// Who may be added (instance role, active flag) is the caller's policy.
    pub async fn add_member(
        &self,
        app_id: AppId,
        user_id: UserId,
        role: AppRole,
    ) -> StoreResult<Membership> {
        let membership = write_transaction!(self, transaction => {
            let app_exists: Option<i64> = sqlx::query_scalar("SELECT id FROM apps WHERE id = $1")
                .bind(app_id)
                .fetch_optional(&mut *transaction)
                .await?;
            if app_exists.is_none() {
                return Err(StoreError::not_found(format!("app {app_id}")));
            }
            let user_exists: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(&mut *transaction)
                .await?;
            if user_exists.is_none() {
                return Err(StoreError::not_found(format!("user {user_id}")));
            }
            sqlx::query_as::<_, Membership>(
                "INSERT INTO app_members (app_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (app_id, user_id) DO NOTHING \
                 RETURNING app_id, user_id, role, joined_at",
            )
            .bind(app_id)
            .bind(user_id)
            .bind(role.as_str())
            .bind(Timestamp::now())
            .fetch_optional(&mut *transaction)
            .await?
        });
        membership.ok_or_else(|| {
            StoreError::conflict(format!(
                "user {user_id} is already a member of app {app_id}"
            ))
        })
    }

    /// The explicit role of `user_id` on `app_id`, if they are a member.
    pub async fn membership(&self, app_id: AppId, user_id: UserId) -> StoreResult<Option<AppRole>> {
        let role: Option<String> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT role FROM app_members WHERE app_id = $1 AND user_id = $2")
                .bind(app_id)
                .bind(user_id)
                .fetch_optional(pool)
                .await?
        });
        role.map(|role| {
            role.parse()
                .map_err(|error| StoreError::Database(sqlx::Error::Decode(Box::new(error))))
        })
        .transpose()
    }

    /// Changes the role of an existing member.
    pub async fn set_member_role(
        &self,
        app_id: AppId,
        user_id: UserId,
        role: AppRole,
    ) -> StoreResult<Membership> {
        let membership = on_pool!(self, pool => {
            sqlx::query_as::<_, Membership>(
                "UPDATE app_members SET role = $1 WHERE app_id = $2 AND user_id = $3 \
                 RETURNING app_id, user_id, role, joined_at",
            )
            .bind(role.as_str())
            .bind(app_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?
        });
        membership.ok_or_else(|| membership_not_found(app_id, user_id))
    }

    /// Ends a membership.
    pub async fn remove_member(&self, app_id: AppId, user_id: UserId) -> StoreResult<()> {
        let rows_affected = on_pool!(self, pool => {
            sqlx::query("DELETE FROM app_members WHERE app_id = $1 AND user_id = $2")
                .bind(app_id)
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if rows_affected == 0 {
            return Err(membership_not_found(app_id, user_id));
        }
        Ok(())
    }

    /// The members of an app with their user fields, by username.
    pub async fn list_members(&self, app_id: AppId) -> StoreResult<Vec<AppMember>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, AppMember>(
                "SELECT u.id AS user_id, u.username, u.email, u.instance_role, u.active, \
                        m.role, m.joined_at \
                 FROM app_members m JOIN users u ON u.id = m.user_id \
                 WHERE m.app_id = $1 ORDER BY u.username",
            )
            .bind(app_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Routes `host` (normalised to lower case, without a trailing dot) to an app.
    ///
    /// Fails with [`StoreError::Invalid`] naming `host`, with
    /// [`StoreError::NotFound`] if the app does not exist, and with
    /// [`StoreError::Conflict`] if any app already has the host.
    pub async fn add_domain(&self, app_id: AppId, host: &str) -> StoreResult<Domain> {
        let host = validate::host(host)?;
        let result = on_pool!(self, pool => {
            sqlx::query_as::<_, Domain>(
                "INSERT INTO domains (app_id, host, created_at) VALUES ($1, $2, $3) \
                 RETURNING id, app_id, host, created_at",
            )
            .bind(app_id)
            .bind(&host)
            .bind(Timestamp::now())
            .fetch_one(pool)
            .await
        });
        result.map_err(|error| {
            let taken = || format!("the host `{host}` is already routed to an app");
            match map_unique_violation(
                error,
                &[("domains_host_unique", &taken), ("domains.host", &taken)],
            ) {
                StoreError::Database(error) => {
                    map_foreign_key_violation(error, || format!("app {app_id}"))
                }
                other => other,
            }
        })
    }

    /// Removes the host `host` from an app.
    pub async fn remove_domain(&self, app_id: AppId, host: &str) -> StoreResult<()> {
        let normalized = host.trim().trim_end_matches('.').to_ascii_lowercase();
        let rows_affected = on_pool!(self, pool => {
            sqlx::query("DELETE FROM domains WHERE app_id = $1 AND host = $2")
                .bind(app_id)
                .bind(&normalized)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if rows_affected == 0 {
            return Err(StoreError::not_found(format!(
                "domain `{normalized}` of app {app_id}"
            )));
        }
        Ok(())
    }

    /// The domains of an app, by host.
    pub async fn list_domains(&self, app_id: AppId) -> StoreResult<Vec<Domain>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, Domain>(
                "SELECT id, app_id, host, created_at FROM domains WHERE app_id = $1 ORDER BY host",
            )
            .bind(app_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The whole host routing table, for the orchestrator's in-memory cache.
    pub async fn all_domains(&self) -> StoreResult<Vec<DomainRoute>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, DomainRoute>(
                "SELECT d.host, d.app_id, a.slug AS app_slug \
                 FROM domains d JOIN apps a ON a.id = d.app_id ORDER BY d.host",
            )
            .fetch_all(pool)
            .await?
        }))
    }
}

fn membership_not_found(app_id: AppId, user_id: UserId) -> StoreError {
    StoreError::not_found(format!("membership of user {user_id} in app {app_id}"))
}
