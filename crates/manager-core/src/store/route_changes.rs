//! Route changes announced between nodes that share one PostgreSQL database,
//! with `NOTIFY`/`LISTEN`: a node that changed what serves which endpoint
//! announces it, and every other node reloads its routing table from the
//! store. SQLite has a single node, so there is nothing to announce.

use sqlx::postgres::{PgListener, PgPool};

use super::{Pool, Store};
use crate::error::StoreResult;

/// The PostgreSQL channel of route announcements.
const CHANNEL: &str = "picloud_routes";

impl Store {
    /// Tells the other nodes on this database that routes changed (a deploy,
    /// a rollback, a deleted script or app, new domains or app limits).
    /// `node` names the announcing node, so that it can ignore its own
    /// announcements. Does nothing on SQLite.
    pub async fn announce_route_change(&self, node: &str) -> StoreResult<()> {
        if let Pool::Postgres(pool) = &self.pool {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(node)
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// Subscribes to the announcements of [`Store::announce_route_change`];
    /// `None` on SQLite. The subscription holds one connection of the pool:
    /// drop it before [`Store::close`].
    pub async fn route_changes(&self) -> StoreResult<Option<RouteChanges>> {
        match &self.pool {
            Pool::Sqlite(_) => Ok(None),
            Pool::Postgres(pool) => Ok(Some(RouteChanges {
                listener: Some(subscribe(pool).await?),
                pool: pool.clone(),
            })),
        }
    }
}

/// A subscription to route announcements.
pub struct RouteChanges {
    pool: PgPool,
    /// `None` after an error: the next call subscribes again.
    listener: Option<PgListener>,
}

/// What [`RouteChanges::next`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteChange {
    /// A node announced a change; its name.
    Announced(String),
    /// The subscription was lost and has been made again: announcements in
    /// between are lost, so routes must be reloaded.
    Resubscribed,
}

impl RouteChanges {
    /// Waits for the next announcement. An error means the database cannot be
    /// reached now: wait a little and call again, which subscribes again and
    /// then answers [`RouteChange::Resubscribed`].
    pub async fn next(&mut self) -> StoreResult<RouteChange> {
        let Some(listener) = &mut self.listener else {
            self.listener = Some(subscribe(&self.pool).await?);
            return Ok(RouteChange::Resubscribed);
        };
        match listener.try_recv().await {
            Ok(Some(notification)) => Ok(RouteChange::Announced(notification.payload().to_owned())),
            // The connection was lost; sqlx has already reconnected and
            // listens again.
            Ok(None) => Ok(RouteChange::Resubscribed),
            Err(error) => {
                self.listener = None;
                Err(error.into())
            }
        }
    }
}

async fn subscribe(pool: &PgPool) -> StoreResult<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
