//! Invocation records: one per request that reached a script, buffered in
//! memory and written in batches to a [`RecordSink`] that the binary backs
//! with its store.
//!
//! **The hot path never waits for the sink.** [`RecordBuffer::push`] takes a
//! short lock on an in-memory queue; a background task drains it every
//! [`RecordConfig::batch_size`] records or [`RecordConfig::flush_interval_ms`]
//! milliseconds. When the sink cannot keep up and the queue is full, the
//! oldest record is dropped and counted: recent invocations matter most to a
//! script author looking at the logs. With no records pending, the task
//! sleeps without a timer, except for one [`IDLE_AFTER`] after the last
//! batch, to tell the sink that traffic has stopped ([`RecordSink::idle`]).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use picloud_executor_core::{InvocationStats, OutputLevel, OutputLine};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::RecordConfig;
use crate::error::IngressError;
use crate::routes::ActiveScript;

/// What started an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// An HTTP request to the script's endpoint.
    Http,
    /// A tick of one of the script's cron schedules.
    Schedule,
    /// A request accepted with `Prefer: respond-async` and run in the background.
    Async,
    /// A call from another script of the app (`scripts::invoke`).
    Invoke,
}

impl Trigger {
    /// The lower-case name stored with the record, such as `http`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Http => "http",
            Trigger::Schedule => "schedule",
            Trigger::Async => "async",
            Trigger::Invoke => "invoke",
        }
    }
}

/// What happened to one request that reached a script.
///
/// A request refused before the script ran (a body over the limit, a client
/// too slow to send its body) also gets a record, with zero fuel and no
/// output, so the author sees it. Requests for unknown apps or scripts get
/// none: there is no script to attach them to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvocationRecord {
    /// The request id, as returned in `x-request-id` and seen in the logs.
    pub request_id: String,
    /// The control plane's id of the app.
    pub app_id: i64,
    /// The app's slug.
    pub app_slug: String,
    /// The script's name.
    pub script_name: String,
    /// The control plane's id of the script.
    pub script_id: i64,
    /// The control plane's id of the version that ran.
    pub version_id: u64,
    /// What started the invocation.
    pub trigger: Trigger,
    /// The HTTP status sent to the caller.
    pub status: u16,
    /// The stable error code sent to the caller, when the request failed.
    pub error_code: Option<String>,
    /// When the request arrived, in milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// How long the invocation took in the executor (including any wait for
    /// a free slot and any cold start), in microseconds; for a request
    /// refused before the script ran, the time until it was refused.
    pub duration_us: u64,
    /// Fuel the script used.
    pub fuel_used: u64,
    /// The invocation's fuel budget.
    pub fuel_limit: u64,
    /// Size of the instance's memory after the invocation, in bytes.
    pub memory_bytes: u64,
    /// The instance's memory limit, in bytes.
    pub memory_limit_bytes: u64,
    /// Whether the script had to be compiled for this request.
    pub cold_start: bool,
    /// The script's `print` and `debug` lines, in order, up to
    /// [`RecordConfig::max_output_bytes`].
    pub output: Vec<(OutputLevel, String)>,
    /// Whether lines were left out of `output` to respect the limit.
    pub output_truncated: bool,
    /// The full error for the script's author (message, line and column),
    /// which the caller never sees.
    pub error_message: Option<String>,
}

/// The first lines of `lines` that fit in `max_bytes` (the record's output
/// cap, [`RecordConfig::max_output_bytes`]), and whether any were left out.
fn bounded_output(
    lines: &[picloud_executor_core::OutputLine],
    max_bytes: usize,
) -> (Vec<(OutputLevel, String)>, bool) {
    let mut kept = Vec::new();
    let mut bytes = 0;
    for line in lines {
        bytes += line.text.len();
        if bytes > max_bytes {
            return (kept, true);
        }
        kept.push((line.level, line.text.clone()));
    }
    (kept, false)
}

/// What [`RecordBuffer::record`] needs to know of one invocation.
#[derive(Debug, Clone, Copy)]
pub struct Ran<'a> {
    /// The script that ran.
    pub script: &'a ActiveScript,
    /// What started it.
    pub trigger: Trigger,
    /// The request id.
    pub request_id: &'a str,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// What it cost.
    pub stats: &'a InvocationStats,
    /// The script's output, all of it (the record keeps what fits).
    pub output: &'a [OutputLine],
    /// The HTTP status answered, or that an HTTP caller would have got.
    pub status: u16,
    /// Why it failed, if it did.
    pub error: Option<&'a IngressError>,
}

/// Where batches of records go; the binary implements it with its store.
///
/// A sink handles its own errors (logs them, retries or gives up): a batch
/// handed to it is gone from the buffer. Writes are never concurrent: the
/// next batch waits for the previous one.
///
/// ```
/// use std::future::Future;
/// use std::pin::Pin;
/// use picloud_orchestrator_core::{InvocationRecord, RecordSink};
///
/// struct LogSink;
///
/// impl RecordSink for LogSink {
///     fn write_batch(&self, batch: Vec<InvocationRecord>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
///         Box::pin(async move { println!("{} records", batch.len()) })
///     }
/// }
/// ```
pub trait RecordSink: Send + Sync + 'static {
    /// Writes one batch of records.
    fn write_batch(
        &self,
        batch: Vec<InvocationRecord>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;

    /// Called once when no record has arrived for [`IDLE_AFTER`] since the
    /// last batch was written: the traffic has stopped, a good moment to
    /// give memory back. Runs on the flush task; keep it short.
    fn idle(&self) {}
}

/// How long the flush task waits after writing the last batch before it
/// calls [`RecordSink::idle`]. It sets this one timer only after traffic, so
/// a server at rest still wakes for nothing.
pub const IDLE_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// The bounded in-memory queue of records and the task that writes them.
/// Cheap to clone; all clones share one queue.
#[derive(Clone)]
pub struct RecordBuffer {
    shared: Arc<Shared>,
}

struct Shared {
    config: RecordConfig,
    sink: Arc<dyn RecordSink>,
    pending: Mutex<VecDeque<InvocationRecord>>,
    /// Woken when the first record arrives, when a batch is full, and on
    /// shutdown.
    wake: Notify,
    /// Held while a batch is being written, so that batches are written one
    /// at a time and [`RecordBuffer::flush`] waits for one in progress.
    writing: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    dropped: AtomicU64,
    written: AtomicU64,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for RecordBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordBuffer")
            .field("pending", &self.pending())
            .field("written", &self.written())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl RecordBuffer {
    /// An empty buffer writing to `sink`, with its flush task spawned on the
    /// current Tokio runtime (so call it from inside one). Call
    /// [`shutdown`](Self::shutdown) before the process exits, or records
    /// still in memory are lost.
    pub fn start(config: RecordConfig, sink: Arc<dyn RecordSink>) -> RecordBuffer {
        let config = RecordConfig {
            capacity: config.capacity.max(1),
            batch_size: config.batch_size.max(1),
            ..config
        };
        let shared = Arc::new(Shared {
            pending: Mutex::new(VecDeque::with_capacity(
                config.batch_size.min(config.capacity),
            )),
            config,
            sink,
            wake: Notify::new(),
            writing: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(flush_periodically(shared.clone()));
        *shared.task.lock().unwrap() = Some(task);
        RecordBuffer { shared }
    }

    /// The configuration the buffer runs with.
    pub fn config(&self) -> &RecordConfig {
        &self.shared.config
    }

    /// Builds the record of an invocation that ran (or was refused on its
    /// way to the script), counts it in the metrics and queues it: the one
    /// way the ingress, the triggers and nested calls record invocations.
    pub fn record(&self, ran: Ran<'_>) {
        let (output, output_truncated) = bounded_output(ran.output, self.config().max_output_bytes);
        let script = ran.script;
        let stats = ran.stats;
        let record = InvocationRecord {
            request_id: ran.request_id.to_owned(),
            app_id: script.app_id,
            app_slug: script.app_slug.clone(),
            script_name: script.script_name.clone(),
            script_id: script.script_id,
            version_id: script.version.version_id,
            trigger: ran.trigger,
            status: ran.status,
            error_code: ran.error.map(|error| error.code().to_owned()),
            started_at_unix_ms: ran.started_at_unix_ms,
            duration_us: u64::try_from(stats.duration.as_micros()).unwrap_or(u64::MAX),
            fuel_used: stats.fuel_used,
            fuel_limit: stats.fuel_limit,
            memory_bytes: stats.memory_bytes,
            memory_limit_bytes: stats.memory_limit_bytes,
            cold_start: stats.cold_start,
            output,
            output_truncated,
            error_message: ran.error.map(ToString::to_string),
        };
        crate::metrics::observe_invocation(&record, &script.series);
        self.push(record);
    }

    /// Queues a record; never waits for the sink. When the queue is full the
    /// oldest record is dropped and counted in [`dropped`](Self::dropped).
    pub fn push(&self, record: InvocationRecord) {
        let shared = &self.shared;
        let queued = {
            let mut pending = shared.pending.lock().unwrap();
            if pending.len() >= shared.config.capacity {
                pending.pop_front();
                shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
            pending.push_back(record);
            pending.len()
        };
        if queued == 1 || queued >= shared.config.batch_size {
            shared.wake.notify_one();
        }
    }

    /// Writes every queued record now, in batches, and returns once the sink
    /// has taken them (including a batch the flush task was writing).
    pub async fn flush(&self) {
        write_pending(&self.shared, Until::Empty).await;
    }

    /// Stops the flush task and writes every queued record. Records pushed
    /// afterwards stay queued until the next [`flush`](Self::flush).
    /// Bound it with a timeout if the sink may hang.
    pub async fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        let task = self.shared.task.lock().unwrap().take();
        if let Some(task) = task
            && let Err(error) = task.await
            && error.is_panic()
        {
            tracing::error!("the invocation-record flush task panicked");
        }
        self.flush().await;
    }

    /// Records queued and not yet written.
    pub fn pending(&self) -> usize {
        self.shared.pending.lock().unwrap().len()
    }

    /// Records handed to the sink since the start.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Records dropped because the queue was full, since the start.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// The flush task: waits without a timer while nothing is queued, then
/// writes when a batch is full or the oldest record has waited the flush
/// interval.
async fn flush_periodically(shared: Arc<Shared>) {
    // Nothing has happened yet, so there is nothing to report as idle.
    let mut idle_reported = true;
    loop {
        while shared.pending.lock().unwrap().is_empty() {
            if shared.closed.load(Ordering::SeqCst) {
                return;
            }
            if idle_reported {
                shared.wake.notified().await;
            } else {
                tokio::select! {
                    () = tokio::time::sleep(IDLE_AFTER) => {
                        release_queue_memory(&shared);
                        shared.sink.idle();
                        idle_reported = true;
                    }
                    () = shared.wake.notified() => {}
                }
            }
        }
        idle_reported = false;
        let deadline = tokio::time::Instant::now() + shared.config.flush_interval();
        loop {
            if shared.closed.load(Ordering::SeqCst) {
                // `shutdown` writes what is left.
                return;
            }
            if shared.pending.lock().unwrap().len() >= shared.config.batch_size {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                () = shared.wake.notified() => {}
            }
        }
        write_pending(&shared, Until::Written).await;
    }
}

/// Frees the queue's buffer if it is empty. A burst that outruns the sink
/// grows the queue to thousands of records (up to `capacity`, megabytes),
/// and a `VecDeque` never gives that back by itself.
fn release_queue_memory(shared: &Shared) {
    let mut pending = shared.pending.lock().unwrap();
    if pending.is_empty() {
        pending.shrink_to_fit();
    }
}

/// How much [`write_pending`] writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// The records queued when it starts; later ones wait for their own batch.
    Written,
    /// Everything, including records queued while it writes.
    Empty,
}

/// Writes queued records, one batch at a time.
///
/// The flush task writes only what was queued when it decided to write:
/// draining until empty would, under steady traffic, chase the records that
/// arrive during each write with back-to-back small transactions (hundreds
/// a second, each with its fsync) instead of waiting for a full batch.
async fn write_pending(shared: &Shared, until: Until) {
    let _writing = shared.writing.lock().await;
    let mut budget = match until {
        Until::Written => shared.pending.lock().unwrap().len(),
        Until::Empty => usize::MAX,
    };
    while budget > 0 {
        let batch: Vec<InvocationRecord> = {
            let mut pending = shared.pending.lock().unwrap();
            let take = pending.len().min(shared.config.batch_size).min(budget);
            pending.drain(..take).collect()
        };
        if batch.is_empty() {
            return;
        }
        budget -= batch.len();
        let count = batch.len() as u64;
        shared.sink.write_batch(batch).await;
        shared.written.fetch_add(count, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Discard;

    impl RecordSink for Discard {
        fn write_batch(
            &self,
            _batch: Vec<InvocationRecord>,
        ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            Box::pin(async {})
        }
    }

    fn record() -> InvocationRecord {
        InvocationRecord {
            request_id: "r".into(),
            app_id: 1,
            app_slug: "app".into(),
            script_name: "script".into(),
            script_id: 1,
            version_id: 1,
            trigger: Trigger::Http,
            status: 200,
            error_code: None,
            started_at_unix_ms: 0,
            duration_us: 0,
            fuel_used: 0,
            fuel_limit: 0,
            memory_bytes: 0,
            memory_limit_bytes: 0,
            cold_start: false,
            output: Vec::new(),
            output_truncated: false,
            error_message: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_gives_its_memory_back_once_traffic_stops() {
        let buffer = RecordBuffer::start(RecordConfig::default(), Arc::new(Discard));
        let capacity = || buffer.shared.pending.lock().unwrap().capacity();
        for _ in 0..5_000 {
            buffer.push(record());
        }
        assert!(capacity() >= 5_000);

        tokio::time::sleep(IDLE_AFTER / 2).await;
        assert_eq!(buffer.written(), 5_000);
        assert!(capacity() >= 5_000, "kept while traffic may go on");
        tokio::time::sleep(IDLE_AFTER).await;
        assert_eq!(capacity(), 0, "freed once the traffic stopped");

        buffer.push(record());
        buffer.flush().await;
        assert_eq!(buffer.written(), 5_001, "and the queue still works");
        buffer.shutdown().await;
    }
}
