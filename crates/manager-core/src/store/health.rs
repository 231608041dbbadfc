//! Health checks of the database, for the readiness endpoint.

use crate::error::StoreResult;
use crate::store::{Store, on_pool};

impl Store {
    /// Runs `SELECT 1` on a pooled connection: succeeds when the database
    /// answers, fails when it is unreachable, gone, or the pool is closed.
    ///
    /// It waits at most the pool's acquire timeout for a connection; a
    /// readiness check should bound it with a shorter timeout of its own.
    pub async fn ping(&self) -> StoreResult<()> {
        let one: i32 =
            on_pool!(self, pool => sqlx::query_scalar("SELECT 1").fetch_one(pool).await?);
        debug_assert_eq!(one, 1);
        Ok(())
    }
}
