//! Scripts, their immutable versions, deploy and rollback.

use sha2::{Digest, Sha256};

use super::{on_pool, write_transaction};
use crate::Store;
use crate::error::{StoreError, StoreResult};
use crate::model::{
    ActiveScript, AppId, Script, ScriptId, ScriptSummary, ScriptVersion, Timestamp, UserId,
    VersionSummary,
};
use crate::validate;

const SCRIPT_COLUMNS: &str = "id, app_id, name, active_version_id, created_at";
const VERSION_COLUMNS: &str = "id, script_id, number, source, hash, author_id, created_at";

/// Every script with its active version and its app's settings; callers add
/// a condition and the order.
const ACTIVE_SCRIPTS: &str = "SELECT a.id AS app_id, a.slug AS app_slug, s.id AS script_id, \
        s.name AS script_name, v.id AS version_id, v.number, v.hash, v.source, \
        a.settings AS app_settings \
     FROM scripts s \
     JOIN apps a ON a.id = s.app_id \
     JOIN script_versions v ON v.id = s.active_version_id";

impl Store {
    /// Stores `source` as the next version of script `script_name` of app
    /// `app_id` and makes it the active one, creating the script on its first
    /// deploy. Returns the new version.
    ///
    /// Everything happens in one transaction: on any error nothing is stored.
    /// Concurrent deploys of one script are serialised (a row lock on
    /// PostgreSQL, the database write lock on SQLite), so version numbers are
    /// 1, 2, 3... without gaps or duplicates. Compiling the source is the
    /// caller's job, before calling this.
    ///
    /// Fails with [`StoreError::Invalid`] naming `name` for a bad script name
    /// and [`StoreError::NotFound`] if the app or the author does not exist.
    pub async fn deploy(
        &self,
        app_id: AppId,
        script_name: &str,
        source: &str,
        author_id: UserId,
    ) -> StoreResult<ScriptVersion> {
        validate::script_name(script_name)?;
        let hash = hex::encode(Sha256::digest(source.as_bytes()));
        let now = Timestamp::now();
        let lock_script_sql = format!(
            "SELECT id FROM scripts WHERE app_id = $1 AND name = $2{}",
            self.lock_clause()
        );
        let insert_version_sql = format!(
            "INSERT INTO script_versions (script_id, number, source, hash, author_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {VERSION_COLUMNS}"
        );
        let version = write_transaction!(self, transaction => {
            let app_exists: Option<i64> = sqlx::query_scalar("SELECT id FROM apps WHERE id = $1")
                .bind(app_id)
                .fetch_optional(&mut *transaction)
                .await?;
            if app_exists.is_none() {
                return Err(StoreError::not_found(format!("app {app_id}")));
            }
            let author_exists: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
                .bind(author_id)
                .fetch_optional(&mut *transaction)
                .await?;
            if author_exists.is_none() {
                return Err(StoreError::not_found(format!("user {author_id}")));
            }
            // A concurrent first deploy of the same script makes this wait for
            // the other transaction, then do nothing.
            sqlx::query(
                "INSERT INTO scripts (app_id, name, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (app_id, name) DO NOTHING",
            )
            .bind(app_id)
            .bind(script_name)
            .bind(now)
            .execute(&mut *transaction)
            .await?;
            let script_id: ScriptId = sqlx::query_scalar(&lock_script_sql)
                .bind(app_id)
                .bind(script_name)
                .fetch_one(&mut *transaction)
                .await?;
            let number: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(number), 0) + 1 FROM script_versions WHERE script_id = $1",
            )
            .bind(script_id)
            .fetch_one(&mut *transaction)
            .await?;
            let version = sqlx::query_as::<_, ScriptVersion>(&insert_version_sql)
                .bind(script_id)
                .bind(number)
                .bind(source)
                .bind(&hash)
                .bind(author_id)
                .bind(now)
                .fetch_one(&mut *transaction)
                .await?;
            sqlx::query("UPDATE scripts SET active_version_id = $1 WHERE id = $2")
                .bind(version.id)
                .bind(script_id)
                .execute(&mut *transaction)
                .await?;
            version
        });
        tracing::info!(
            app_id = %app_id,
            script = script_name,
            version = version.number,
            hash = %version.hash,
            "script deployed"
        );
        Ok(version)
    }

    /// Makes version `number` of a script its active version again (a
    /// rollback, or a roll forward); returns that version.
    pub async fn activate_version(
        &self,
        script_id: ScriptId,
        number: i64,
    ) -> StoreResult<ScriptVersion> {
        let select_sql = format!(
            "SELECT {VERSION_COLUMNS} FROM script_versions WHERE script_id = $1 AND number = $2"
        );
        let version = write_transaction!(self, transaction => {
            let version = sqlx::query_as::<_, ScriptVersion>(&select_sql)
                .bind(script_id)
                .bind(number)
                .fetch_optional(&mut *transaction)
                .await?
                .ok_or_else(|| {
                    StoreError::not_found(format!("version {number} of script {script_id}"))
                })?;
            sqlx::query("UPDATE scripts SET active_version_id = $1 WHERE id = $2")
                .bind(version.id)
                .bind(script_id)
                .execute(&mut *transaction)
                .await?;
            version
        });
        tracing::info!(script_id = %script_id, version = number, "script version activated");
        Ok(version)
    }

    /// The scripts of an app, by name, with their active version number and
    /// last deploy time.
    pub async fn list_scripts(&self, app_id: AppId) -> StoreResult<Vec<ScriptSummary>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, ScriptSummary>(
                "SELECT s.id, s.app_id, s.name, s.created_at, \
                        active.number AS active_version_number, \
                        latest.latest_version_number, latest.last_deployed_at \
                 FROM scripts s \
                 LEFT JOIN script_versions active ON active.id = s.active_version_id \
                 LEFT JOIN ( \
                     SELECT script_id, MAX(number) AS latest_version_number, \
                            MAX(created_at) AS last_deployed_at \
                     FROM script_versions GROUP BY script_id \
                 ) latest ON latest.script_id = s.id \
                 WHERE s.app_id = $1 ORDER BY s.name",
            )
            .bind(app_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The script `name` of an app.
    pub async fn script(&self, app_id: AppId, name: &str) -> StoreResult<Script> {
        let sql = format!("SELECT {SCRIPT_COLUMNS} FROM scripts WHERE app_id = $1 AND name = $2");
        let script = on_pool!(self, pool => {
            sqlx::query_as::<_, Script>(&sql)
                .bind(app_id)
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        script.ok_or_else(|| StoreError::not_found(format!("script `{name}` of app {app_id}")))
    }

    /// The script with this id.
    pub async fn script_by_id(&self, id: ScriptId) -> StoreResult<Script> {
        let sql = format!("SELECT {SCRIPT_COLUMNS} FROM scripts WHERE id = $1");
        let script = on_pool!(self, pool => {
            sqlx::query_as::<_, Script>(&sql).bind(id).fetch_optional(pool).await?
        });
        script.ok_or_else(|| StoreError::not_found(format!("script {id}")))
    }

    /// Deletes a script with all its versions.
    pub async fn delete_script(&self, id: ScriptId) -> StoreResult<()> {
        let rows_affected = on_pool!(self, pool => {
            sqlx::query("DELETE FROM scripts WHERE id = $1").bind(id).execute(pool).await?.rows_affected()
        });
        if rows_affected == 0 {
            return Err(StoreError::not_found(format!("script {id}")));
        }
        Ok(())
    }

    /// The versions of a script without their sources, newest first.
    pub async fn list_versions(&self, script_id: ScriptId) -> StoreResult<Vec<VersionSummary>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, VersionSummary>(
                "SELECT v.id, v.script_id, v.number, v.hash, v.author_id, \
                        u.username AS author_username, v.created_at, \
                        CASE WHEN v.id = s.active_version_id THEN TRUE ELSE FALSE END AS active \
                 FROM script_versions v \
                 JOIN scripts s ON s.id = v.script_id \
                 JOIN users u ON u.id = v.author_id \
                 WHERE v.script_id = $1 ORDER BY v.number DESC",
            )
            .bind(script_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Version `number` of a script, with its source.
    pub async fn version(&self, script_id: ScriptId, number: i64) -> StoreResult<ScriptVersion> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM script_versions WHERE script_id = $1 AND number = $2"
        );
        let version = on_pool!(self, pool => {
            sqlx::query_as::<_, ScriptVersion>(&sql)
                .bind(script_id)
                .bind(number)
                .fetch_optional(pool)
                .await?
        });
        version
            .ok_or_else(|| StoreError::not_found(format!("version {number} of script {script_id}")))
    }

    /// Every script that has an active version, with that version's source:
    /// what the orchestrator loads into its in-memory routing cache.
    pub async fn active_scripts(&self) -> StoreResult<Vec<ActiveScript>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, ActiveScript>(&format!("{ACTIVE_SCRIPTS} ORDER BY a.slug, s.name"))
                .fetch_all(pool)
                .await?
        }))
    }

    /// The scripts of one app that have an active version, as
    /// [`active_scripts`](Self::active_scripts) gives them: what is
    /// republished when the app's settings (its limits) change.
    pub async fn active_scripts_of_app(&self, app_id: AppId) -> StoreResult<Vec<ActiveScript>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, ActiveScript>(&format!(
                "{ACTIVE_SCRIPTS} WHERE a.id = $1 ORDER BY s.name"
            ))
            .bind(app_id)
            .fetch_all(pool)
            .await?
        }))
    }
}
