//! Store health checks, for the readiness endpoint.

use crate::harness::TestDatabase;

pub async fn ping_answers_until_the_pool_is_closed(database: &TestDatabase) {
    database.store.ping().await.unwrap();
    let second_store = database.reconnect().await;
    second_store.ping().await.unwrap();
    second_store.close().await;
    assert!(second_store.ping().await.is_err());
    // The first store's pool is not affected.
    database.store.ping().await.unwrap();
}
