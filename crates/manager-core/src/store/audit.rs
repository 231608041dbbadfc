//! The append-only audit log.

use super::on_pool;
use crate::Store;
use crate::error::{StoreResult, map_foreign_key_violation};
use crate::model::{AuditEntry, AuditId, NewAuditEntry, Timestamp};
use crate::validate;

const SELECT_ENTRIES: &str = "SELECT l.id, l.actor_id, u.username AS actor_username, l.action, \
     l.target, l.state_before, l.state_after, l.created_at \
     FROM audit_log l LEFT JOIN users u ON u.id = l.actor_id";

/// The most entries one call of [`Store::list_audit`] returns.
pub const MAX_AUDIT_PAGE: u32 = 500;

impl Store {
    /// Appends an entry to the audit log. There is no way to change or delete
    /// one: the store offers none, and the database refuses it with a trigger.
    pub async fn append_audit(&self, entry: &NewAuditEntry) -> StoreResult<AuditEntry> {
        validate::audit_text("action", &entry.action)?;
        validate::audit_text("target", &entry.target)?;
        let inserted: Result<AuditId, sqlx::Error> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO audit_log (actor_id, action, target, state_before, state_after, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(entry.actor_id)
            .bind(&entry.action)
            .bind(&entry.target)
            .bind(entry.before.as_ref())
            .bind(entry.after.as_ref())
            .bind(Timestamp::now())
            .fetch_one(pool)
            .await
        });
        let id = inserted.map_err(|error| {
            map_foreign_key_violation(error, || match entry.actor_id {
                Some(actor_id) => format!("user {actor_id}"),
                None => "actor".to_owned(),
            })
        })?;
        let sql = format!("{SELECT_ENTRIES} WHERE l.id = $1");
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, AuditEntry>(&sql).bind(id).fetch_one(pool).await?
        }))
    }

    /// Audit entries newest first: at most `limit` (capped at
    /// [`MAX_AUDIT_PAGE`]) entries older than `before`, or the newest ones if
    /// `before` is `None`. Pass the last id of a page as `before` to get the next.
    pub async fn list_audit(
        &self,
        before: Option<AuditId>,
        limit: u32,
    ) -> StoreResult<Vec<AuditEntry>> {
        let limit = i64::from(limit.min(MAX_AUDIT_PAGE));
        let before = before.map_or(i64::MAX, |id| id.0);
        let sql = format!("{SELECT_ENTRIES} WHERE l.id < $1 ORDER BY l.id DESC LIMIT $2");
        Ok(on_pool!(self, pool => {
            sqlx::query_as::<_, AuditEntry>(&sql)
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }
}
