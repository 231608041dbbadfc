//! Invocation records in the database: the sink that stores the
//! orchestrator's batches and publishes each stored record to live tails,
//! and the background task that enforces retention.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use picloud_manager_core::{
    AppId, NewInvocation, OutputLine, ScriptId, Store, StoredInvocation, Timestamp, VersionId,
};
use picloud_orchestrator_core::{InvocationRecord, RecordSink};
use tokio::sync::broadcast;

use crate::config::RecordSettings;

/// Records a live tail may fall behind by before it catches up from the
/// store instead.
pub const FEED_CAPACITY: usize = 1024;

/// Writes each batch of invocation records to the store in one
/// transaction, then publishes the stored records (with their ids) on a
/// broadcast channel that the API's live tails follow.
///
/// Each record is also logged (target `picloud::invocation`, at debug
/// level: enable with `RUST_LOG=info,picloud::invocation=debug`). Debug, not
/// info: an unbuffered log line per request costs a `write` system call on
/// the hot path. A batch the store refuses is logged and dropped: records
/// must never hold back requests.
pub struct StoreRecordSink {
    store: Store,
    feed: broadcast::Sender<StoredInvocation>,
}

impl StoreRecordSink {
    /// A sink writing to `store` and publishing to `feed`.
    pub fn new(store: Store, feed: broadcast::Sender<StoredInvocation>) -> Self {
        StoreRecordSink { store, feed }
    }
}

/// The store's form of an orchestrator record.
pub fn to_new_invocation(record: InvocationRecord) -> NewInvocation {
    let saturate = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    NewInvocation {
        app_id: AppId(record.app_id),
        script_id: ScriptId(record.script_id),
        script_name: record.script_name,
        version_id: VersionId(saturate(record.version_id)),
        trigger: record.trigger.as_str().to_owned(),
        status: record.status,
        error_code: record.error_code,
        error_message: record.error_message,
        request_id: record.request_id,
        started_at: Timestamp::from_unix_millis(saturate(record.started_at_unix_ms)),
        duration_us: saturate(record.duration_us),
        fuel_used: saturate(record.fuel_used),
        fuel_limit: saturate(record.fuel_limit),
        memory_bytes: saturate(record.memory_bytes),
        memory_limit_bytes: saturate(record.memory_limit_bytes),
        cold_start: record.cold_start,
        output: record
            .output
            .into_iter()
            .map(|(level, text)| OutputLine {
                level: level.as_str().to_owned(),
                text,
            })
            .collect(),
        output_truncated: record.output_truncated,
    }
}

fn log_record(record: &InvocationRecord) {
    tracing::debug!(
        target: "picloud::invocation",
        request_id = %record.request_id,
        app = %record.app_slug,
        script = %record.script_name,
        version_id = record.version_id,
        status = record.status,
        error = record.error_code.as_deref().unwrap_or(""),
        duration_us = record.duration_us,
        fuel_used = record.fuel_used,
        cold_start = record.cold_start,
        "invocation"
    );
}

impl RecordSink for StoreRecordSink {
    fn write_batch(
        &self,
        batch: Vec<InvocationRecord>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let count = batch.len();
            let batch: Vec<NewInvocation> = batch
                .into_iter()
                .inspect(log_record)
                .map(to_new_invocation)
                .collect();
            match self.store.insert_invocations(batch).await {
                Ok(stored) => {
                    for record in stored {
                        // No live tail listening is not an error.
                        let _ = self.feed.send(record);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, records = count, "cannot store invocation records; dropped them");
                }
            }
        })
    }

    /// Traffic has stopped: give the heap's free pages back (off the async
    /// workers, as trimming a large heap takes a few milliseconds).
    fn idle(&self) {
        tokio::task::spawn_blocking(crate::memory::release_free_memory);
    }
}

/// Enforces retention once at start and then every
/// `settings.retention_interval_secs`: deletes records older than
/// `retention_max_age_days` and, per app, beyond the newest
/// `retention_max_per_app`. Runs until aborted; sleeps in between.
pub async fn enforce_retention(store: Store, settings: RecordSettings) {
    let max_age = Duration::from_secs(u64::from(settings.retention_max_age_days) * 24 * 60 * 60);
    let interval = Duration::from_secs(settings.retention_interval_secs.max(1));
    loop {
        match store
            .prune_invocations(settings.retention_max_per_app, max_age)
            .await
        {
            Ok(outcome) if outcome.too_old + outcome.over_count > 0 => tracing::info!(
                too_old = outcome.too_old,
                over_count = outcome.over_count,
                "pruned invocation records"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot prune invocation records"),
        }
        tokio::time::sleep(interval).await;
    }
}
