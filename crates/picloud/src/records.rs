//! Invocation records in the database: the sink that stores the
//! orchestrator's batches and publishes each stored record to live tails,
//! and the background task that enforces retention.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
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
///
/// It also keeps storage bounded under sustained traffic: once it has
/// written a quarter of `retention_max_per_app` records for an app since
/// that app was last pruned, it deletes the app's records beyond the newest
/// `retention_max_per_app` before the next batch. The periodic run of
/// [`enforce_retention`] alone would let a busy app write millions of rows
/// in between, all to be deleted (at 10,000 requests a second and the
/// default ten minutes, six million rows: gigabytes on a Pi's SD card).
pub struct StoreRecordSink {
    store: Store,
    feed: broadcast::Sender<StoredInvocation>,
    keep_per_app: u32,
    /// Records written per app since it was last pruned. Batches are written
    /// one at a time, so the lock is never contended.
    written_since_prune: Mutex<HashMap<AppId, u64>>,
}

impl StoreRecordSink {
    /// A sink writing to `store`, publishing to `feed`, and keeping about
    /// `settings.retention_max_per_app` records per app.
    pub fn new(
        store: Store,
        feed: broadcast::Sender<StoredInvocation>,
        settings: &RecordSettings,
    ) -> Self {
        StoreRecordSink {
            store,
            feed,
            keep_per_app: settings.retention_max_per_app,
            written_since_prune: Mutex::new(HashMap::new()),
        }
    }

    /// Counts `stored` against each app's allowance and returns the apps
    /// that have had a quarter of their retention written since their last
    /// prune (their counts start again).
    fn apps_to_prune(&self, stored: &[StoredInvocation]) -> Vec<AppId> {
        let prune_every = u64::from(self.keep_per_app / 4).max(1);
        let mut written = self.written_since_prune.lock().unwrap();
        for record in stored {
            *written.entry(record.app_id).or_default() += 1;
        }
        let mut due = Vec::new();
        written.retain(|app_id, count| {
            let is_due = *count >= prune_every;
            if is_due {
                due.push(*app_id);
            }
            !is_due
        });
        due
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
            let stored = match self.store.insert_invocations(batch).await {
                Ok(stored) => stored,
                Err(error) => {
                    tracing::warn!(%error, records = count, "cannot store invocation records; dropped them");
                    return;
                }
            };
            let due = self.apps_to_prune(&stored);
            for record in stored {
                // No live tail listening is not an error.
                let _ = self.feed.send(record);
            }
            for app_id in due {
                match self
                    .store
                    .prune_app_invocations(app_id, self.keep_per_app)
                    .await
                {
                    Ok(deleted) => tracing::debug!(
                        app_id = app_id.0,
                        deleted,
                        "pruned the records of a busy app"
                    ),
                    Err(error) => tracing::warn!(
                        app_id = app_id.0,
                        %error,
                        "cannot prune the records of a busy app"
                    ),
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

#[cfg(test)]
mod tests {
    use picloud_manager_core::InvocationFilter;
    use picloud_orchestrator_core::Trigger;

    use super::*;

    fn record(app_id: AppId, n: usize) -> InvocationRecord {
        InvocationRecord {
            request_id: format!("request-{n}"),
            app_id: app_id.0,
            app_slug: "busy".into(),
            script_name: "hello".into(),
            script_id: 1,
            version_id: 1,
            trigger: Trigger::Http,
            status: 200,
            error_code: None,
            started_at_unix_ms: Timestamp::now().unix_millis() as u64,
            duration_us: 10,
            fuel_used: 1,
            fuel_limit: 10,
            memory_bytes: 1,
            memory_limit_bytes: 10,
            cold_start: false,
            output: Vec::new(),
            output_truncated: false,
            error_message: None,
        }
    }

    #[tokio::test]
    async fn a_busy_app_is_pruned_as_its_records_are_written() {
        let directory = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", directory.path().join("records.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let busy = store.create_app("busy", "Busy").await.unwrap();
        let quiet = store.create_app("quiet", "Quiet").await.unwrap();
        let settings = RecordSettings {
            retention_max_per_app: 20,
            ..RecordSettings::default()
        };
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        let sink = StoreRecordSink::new(store.clone(), feed, &settings);
        let count = |app_id| {
            let store = store.clone();
            async move {
                store
                    .list_invocations(app_id, &InvocationFilter::default(), 500)
                    .await
                    .unwrap()
                    .len()
            }
        };

        // Four records: under a quarter of the allowance, nothing is pruned.
        sink.write_batch((0..4).map(|n| record(busy.id, n)).collect())
            .await;
        assert_eq!(count(busy.id).await, 4);
        // 300 more, in batches of 30, with a few for a quiet app: the busy
        // app never holds more than its allowance after a batch.
        for batch in 0..10 {
            let mut records: Vec<InvocationRecord> = (0..30)
                .map(|n| record(busy.id, 100 + batch * 30 + n))
                .collect();
            records.push(record(quiet.id, batch));
            sink.write_batch(records).await;
            assert_eq!(count(busy.id).await, 20, "after batch {batch}");
        }
        assert_eq!(count(quiet.id).await, 10, "under its allowance, kept whole");
        // The newest are the ones kept.
        let newest = store
            .list_invocations(busy.id, &InvocationFilter::default(), 1)
            .await
            .unwrap();
        assert_eq!(newest[0].request_id, "request-399");
        store.close().await;
    }
}
