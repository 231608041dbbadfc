//! Triggers beyond HTTP: the [`Scheduler`] that runs cron schedules and the
//! [`AsyncWorker`]s that run requests accepted with `Prefer: respond-async`.
//!
//! Both are generic over a [`TriggerStore`] (the binary implements it with
//! its database, which claims each tick and each job for exactly one node)
//! and a [`Clock`] ([`SystemClock`] in production, [`ManualClock`] in tests).
//! Runs go through the same path as HTTP requests: the active version from
//! the [`RouteTable`](crate::RouteTable), the executor with the ingress's host
//! services, and one [`InvocationRecord`] per run with
//! [`Trigger::Schedule`] or [`Trigger::Async`].
//!
//! **No idle cost.** The scheduler sleeps until the earliest due tick, a
//! change notified through [`Scheduler::notify`], or a safety re-check at most
//! every [`TriggerConfig::recheck_interval`] (to see other nodes' changes).
//! Workers sleep until an enqueue on this node ([`AsyncWorker::notify`]), the
//! next retry or lease end the store knows of, or the same re-check.
//!
//! # What a scheduled run receives
//! A `POST` to the script's own path with an empty sub-path, the header
//! `x-picloud-trigger: schedule` (plus `x-picloud-schedule-id` and
//! `x-picloud-scheduled-for`, the tick's due time in Unix milliseconds), and
//! the schedule's payload as a JSON body (`content-type: application/json`),
//! or an empty body without one. An async run receives the original request
//! with `x-picloud-trigger: async` and `x-picloud-attempt` added.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use picloud_executor_core::{Invocation, InvocationStats, Request, Response};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::error::IngressError;
use crate::ingress::IngressState;
use crate::records::{Ran, Trigger};
use crate::routes::ActiveScript;

/// A boxed future, so that the traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The header that tells a script what started it: `schedule` or `async`
/// (absent for a plain HTTP request).
pub const TRIGGER_HEADER: &str = "x-picloud-trigger";

/// A failure of the [`TriggerStore`] (the database), in words for the logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TriggerStoreError(pub String);

/// The time, as the scheduler and the workers see it.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Completes once [`now_ms`](Clock::now_ms) has reached `deadline_ms`.
    fn sleep_until(&self, deadline_ms: i64) -> BoxFuture<'_, ()>;
}

/// The system's clock, with Tokio timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
            })
    }

    fn sleep_until(&self, deadline_ms: i64) -> BoxFuture<'_, ()> {
        let wait = u64::try_from(deadline_ms.saturating_sub(self.now_ms())).unwrap_or(0);
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }
}

/// A clock that moves only when told to: for tests.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: watch::Sender<i64>,
}

impl ManualClock {
    /// A clock standing at `now_ms`.
    pub fn new(now_ms: i64) -> ManualClock {
        ManualClock {
            now_ms: watch::Sender::new(now_ms),
        }
    }

    /// Sets the time; sleepers whose deadline has come wake up.
    pub fn set(&self, now_ms: i64) {
        self.now_ms.send_replace(now_ms);
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now_ms.send_modify(|now| *now = now.saturating_add(by));
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        *self.now_ms.borrow()
    }

    fn sleep_until(&self, deadline_ms: i64) -> BoxFuture<'_, ()> {
        let mut receiver = self.now_ms.subscribe();
        Box::pin(async move {
            // The sender lives as long as `self`, so `changed` only fails
            // when the clock is gone; then never wake.
            while *receiver.borrow_and_update() < deadline_ms {
                if receiver.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

/// A schedule tick that this node has claimed and must run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledRun {
    /// The schedule's id.
    pub schedule_id: i64,
    /// The app's slug.
    pub app_slug: String,
    /// The script's name.
    pub script_name: String,
    /// The payload as JSON text, if the schedule has one.
    pub payload: Option<String>,
    /// When the tick was due, in Unix milliseconds.
    pub scheduled_for_ms: i64,
}

/// An async job that this worker has claimed and must run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncJob {
    /// The invocation's id.
    pub id: String,
    /// The app's slug.
    pub app_slug: String,
    /// The script's name.
    pub script_name: String,
    /// The stored request.
    pub request: Request,
    /// This run's number, from 1.
    pub attempt: u32,
    /// The most runs the job gets.
    pub max_attempts: u32,
}

/// What the scheduler and the workers need from the database. Every claim
/// must hand a tick or a job to one caller only, across every node.
pub trait TriggerStore: Send + Sync + 'static {
    /// Claims the ticks due at `now_ms` (see the store's missed-ticks policy).
    fn claim_due_schedules(
        &self,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<ScheduledRun>, TriggerStoreError>>;

    /// The earliest due time of any enabled schedule.
    fn next_schedule_due(&self) -> BoxFuture<'_, Result<Option<i64>, TriggerStoreError>>;

    /// Claims the next due job for `worker`, leased until `now_ms + lease`.
    fn claim_async<'a>(
        &'a self,
        worker: &'a str,
        now_ms: i64,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Option<AsyncJob>, TriggerStoreError>>;

    /// Stores the response of a job `worker` holds and marks it succeeded.
    fn complete_async<'a>(
        &'a self,
        id: &'a str,
        worker: &'a str,
        response: &'a Response,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<(), TriggerStoreError>>;

    /// Records a failed run: queued again at `retry_at_ms` while attempts
    /// are left, else failed. Returns whether it will be retried.
    fn fail_async<'a>(
        &'a self,
        id: &'a str,
        worker: &'a str,
        error: &'a str,
        now_ms: i64,
        retry_at_ms: i64,
    ) -> BoxFuture<'a, Result<bool, TriggerStoreError>>;

    /// The earliest retry time of a queued job or lease end of a running one.
    fn next_async_due(&self) -> BoxFuture<'_, Result<Option<i64>, TriggerStoreError>>;

    /// How many jobs wait for a worker (the `picloud_queue_depth` gauge).
    fn async_queue_depth(&self) -> BoxFuture<'_, Result<u64, TriggerStoreError>>;
}

/// Where the ingress puts a request sent with `Prefer: respond-async`.
pub trait AsyncQueue: Send + Sync + 'static {
    /// Stores `request` for `script` durably and returns the invocation's id.
    fn enqueue<'a>(
        &'a self,
        script: &'a ActiveScript,
        request: Request,
    ) -> BoxFuture<'a, Result<String, TriggerStoreError>>;
}

/// How the scheduler and the workers run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerConfig {
    /// Async workers on this node; 0 accepts async requests but runs none
    /// (another node, or a later start, runs them). Default 2.
    pub workers: usize,
    /// Whether this node runs a scheduler. Default true.
    pub scheduler_enabled: bool,
    /// The longest sleep between two looks at the database, to see changes
    /// made on other nodes. Default 60 s.
    pub recheck_interval: Duration,
    /// How long a claimed job is this worker's before another may take it
    /// over (it must outlast a run). Default 5 min.
    pub lease: Duration,
    /// The wait before the first retry; each further retry waits four times
    /// longer (1 s, 4 s, 16 s... by default), up to one hour.
    pub retry_base: Duration,
    /// A name for this node, part of each worker's lease holder name.
    pub node_name: String,
}

impl Default for TriggerConfig {
    fn default() -> Self {
        TriggerConfig {
            workers: 2,
            scheduler_enabled: true,
            recheck_interval: Duration::from_secs(60),
            lease: Duration::from_secs(5 * 60),
            retry_base: Duration::from_secs(1),
            node_name: format!("node-{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

impl TriggerConfig {
    /// The wait before retrying after failed attempt number `attempt` (from 1).
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let factor = 4u32.saturating_pow(attempt.saturating_sub(1).min(15));
        self.retry_base
            .saturating_mul(factor)
            .min(Duration::from_secs(60 * 60))
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A background task that stops when asked, and is aborted if it does not
/// within the grace period.
struct Task {
    handle: JoinHandle<()>,
}

/// What the loops share: the wake-up, the stop flag.
struct Control {
    wake: Arc<Notify>,
    closed: AtomicBool,
}

impl Control {
    fn new(wake: Arc<Notify>) -> Arc<Control> {
        Arc::new(Control {
            wake,
            closed: AtomicBool::new(false),
        })
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    async fn close(&self, tasks: Vec<Task>, grace: Duration) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
        for task in tasks {
            let abort = task.handle.abort_handle();
            if tokio::time::timeout(grace, task.handle).await.is_err() {
                abort.abort();
            }
        }
    }

    /// Sleeps until `deadline_ms` on `clock`, a wake-up, or the stop.
    async fn sleep(&self, clock: &dyn Clock, deadline_ms: i64) {
        if self.is_closed() {
            return;
        }
        tokio::select! {
            () = clock.sleep_until(deadline_ms) => {}
            () = self.wake.notified() => {}
        }
    }
}

/// Runs due schedule ticks; see the module docs.
pub struct Scheduler {
    control: Arc<Control>,
    tasks: Vec<Task>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Starts the scheduler's task on the current Tokio runtime. `wake`
    /// is notified (`notify_one`) when schedules change, for example by the
    /// management API; [`notify`](Self::notify) does the same.
    pub fn start(
        ingress: IngressState,
        store: Arc<dyn TriggerStore>,
        clock: Arc<dyn Clock>,
        config: TriggerConfig,
        wake: Arc<Notify>,
    ) -> Scheduler {
        let control = Control::new(wake);
        let handle = tokio::spawn(schedule_loop(
            ingress,
            store,
            clock,
            config,
            control.clone(),
        ));
        Scheduler {
            control,
            tasks: vec![Task { handle }],
        }
    }

    /// Tells the scheduler that schedules changed, so it recomputes when to
    /// wake.
    pub fn notify(&self) {
        self.control.wake.notify_one();
    }

    /// Stops the scheduler; runs already started go on by themselves.
    pub async fn shutdown(self, grace: Duration) {
        self.control.close(self.tasks, grace).await;
    }
}

async fn schedule_loop(
    ingress: IngressState,
    store: Arc<dyn TriggerStore>,
    clock: Arc<dyn Clock>,
    config: TriggerConfig,
    control: Arc<Control>,
) {
    let recheck = millis(config.recheck_interval).max(1);
    while !control.is_closed() {
        let now = clock.now_ms();
        let mut claim_failed = false;
        match store.claim_due_schedules(now).await {
            Ok(runs) => {
                for run in runs {
                    let lag_seconds = (now - run.scheduled_for_ms).max(0) as f64 / 1000.0;
                    metrics::histogram!(crate::metrics::SCHEDULE_LAG_SECONDS).record(lag_seconds);
                    tokio::spawn(run_scheduled(ingress.clone(), run));
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot claim due schedule ticks");
                claim_failed = true;
            }
        }
        let next_due = match store.next_schedule_due().await {
            Ok(next_due) => next_due,
            Err(error) => {
                tracing::warn!(%error, "cannot read the next schedule tick");
                None
            }
        };
        let deadline = next_deadline(now, next_due, recheck, claim_failed);
        control.sleep(&*clock, deadline).await;
    }
}

/// When a loop looks again: at the next due time the store knows of, but
/// no later than a re-check; after a failed claim (the database is down),
/// not before a second has passed, so a due time in the past does not make
/// the loop spin.
fn next_deadline(now: i64, next_due: Option<i64>, recheck: i64, claim_failed: bool) -> i64 {
    let deadline = next_due.map_or(now + recheck, |due| due.min(now + recheck));
    if claim_failed {
        deadline.max(now + 1000)
    } else {
        deadline
    }
}

/// The request a scheduled run receives.
fn scheduled_request(script: &ActiveScript, run: &ScheduledRun, request_id: &str) -> Request {
    let mut headers = vec![
        (TRIGGER_HEADER.to_owned(), "schedule".to_owned()),
        (
            "x-picloud-schedule-id".to_owned(),
            run.schedule_id.to_string(),
        ),
        (
            "x-picloud-scheduled-for".to_owned(),
            run.scheduled_for_ms.to_string(),
        ),
    ];
    if run.payload.is_some() {
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
    }
    Request {
        method: "POST".to_owned(),
        path: format!("/{}/{}", script.app_slug, script.script_name),
        subpath: String::new(),
        query: Vec::new(),
        headers,
        body: run.payload.clone().unwrap_or_default().into_bytes(),
        request_id: request_id.to_owned(),
    }
}

async fn run_scheduled(ingress: IngressState, run: ScheduledRun) {
    let request_id = crate::request_id::generate();
    let span = tracing::info_span!(
        "schedule",
        request_id = %request_id,
        schedule_id = run.schedule_id,
        app = %run.app_slug,
        script = %run.script_name,
    );
    async {
        let script = ingress
            .routes()
            .load()
            .script(&run.app_slug, &run.script_name)
            .cloned();
        let Some(script) = script else {
            tracing::warn!("the scheduled script has no active version; tick skipped");
            return;
        };
        let request = scheduled_request(&script, &run, &request_id);
        let outcome = invoke(&ingress, &script, request, Trigger::Schedule).await;
        if let Err(error) = outcome.result {
            tracing::info!(%error, "scheduled run failed");
        }
    }
    .instrument(span)
    .await;
}

/// Runs queued async invocations; see the module docs.
pub struct AsyncWorker {
    control: Arc<Control>,
    tasks: Vec<Task>,
}

impl std::fmt::Debug for AsyncWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncWorker")
            .field("workers", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl AsyncWorker {
    /// Starts [`TriggerConfig::workers`] worker tasks on the current Tokio
    /// runtime (none when it is 0). `wake` is notified (`notify_one`) when a
    /// job is queued on this node, for example by the [`AsyncQueue`];
    /// [`notify`](Self::notify) does the same.
    pub fn start(
        ingress: IngressState,
        store: Arc<dyn TriggerStore>,
        clock: Arc<dyn Clock>,
        config: TriggerConfig,
        wake: Arc<Notify>,
    ) -> AsyncWorker {
        let control = Control::new(wake);
        let tasks = (0..config.workers)
            .map(|index| Task {
                handle: tokio::spawn(worker_loop(
                    ingress.clone(),
                    store.clone(),
                    clock.clone(),
                    config.clone(),
                    format!("{}/{index}", config.node_name),
                    control.clone(),
                )),
            })
            .collect();
        AsyncWorker { control, tasks }
    }

    /// Tells one idle worker that a job was queued.
    pub fn notify(&self) {
        self.control.wake.notify_one();
    }

    /// Stops the workers, letting runs in progress finish within `grace`;
    /// a run cut short stays leased and is run again once its lease ends.
    pub async fn shutdown(self, grace: Duration) {
        self.control.close(self.tasks, grace).await;
    }
}

async fn worker_loop(
    ingress: IngressState,
    store: Arc<dyn TriggerStore>,
    clock: Arc<dyn Clock>,
    config: TriggerConfig,
    worker: String,
    control: Arc<Control>,
) {
    let recheck = millis(config.recheck_interval).max(1);
    while !control.is_closed() {
        let now = clock.now_ms();
        let mut claim_failed = false;
        match store.claim_async(&worker, now, config.lease).await {
            Ok(Some(job)) => {
                run_job(&ingress, &*store, &*clock, &config, &worker, job).await;
                continue;
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot claim an async invocation");
                claim_failed = true;
            }
        }
        if let Ok(depth) = store.async_queue_depth().await {
            metrics::gauge!(crate::metrics::QUEUE_DEPTH).set(depth as f64);
        }
        let next_due = match store.next_async_due().await {
            Ok(next_due) => next_due,
            Err(error) => {
                tracing::warn!(%error, "cannot read the next async retry time");
                None
            }
        };
        let deadline = next_deadline(now, next_due, recheck, claim_failed);
        control.sleep(&*clock, deadline).await;
    }
}

async fn run_job(
    ingress: &IngressState,
    store: &dyn TriggerStore,
    clock: &dyn Clock,
    config: &TriggerConfig,
    worker: &str,
    job: AsyncJob,
) {
    let span = tracing::info_span!(
        "async",
        request_id = %job.request.request_id,
        invocation_id = %job.id,
        app = %job.app_slug,
        script = %job.script_name,
        attempt = job.attempt,
    );
    async {
        let script = ingress
            .routes()
            .load()
            .script(&job.app_slug, &job.script_name)
            .cloned();
        let outcome = match script {
            Some(script) => {
                let mut request = job.request.clone();
                request
                    .headers
                    .push((TRIGGER_HEADER.to_owned(), "async".to_owned()));
                request
                    .headers
                    .push(("x-picloud-attempt".to_owned(), job.attempt.to_string()));
                invoke(ingress, &script, request, Trigger::Async)
                    .await
                    .result
                    .map_err(|error| error.to_string())
            }
            None => Err("the script has no active version".to_owned()),
        };
        let now = clock.now_ms();
        let stored = match &outcome {
            Ok(response) => store.complete_async(&job.id, worker, response, now).await,
            Err(error) => {
                let retry_at = now.saturating_add(millis(config.retry_delay(job.attempt)));
                match store
                    .fail_async(&job.id, worker, error, now, retry_at)
                    .await
                {
                    Ok(true) => {
                        tracing::info!(%error, retry_in_ms = retry_at - now, "async run failed; will retry");
                        Ok(())
                    }
                    Ok(false) => {
                        tracing::info!(%error, "async run failed; no attempts left");
                        Ok(())
                    }
                    Err(store_error) => Err(store_error),
                }
            }
        };
        if let Err(error) = stored {
            tracing::warn!(%error, "cannot store the outcome of an async run");
        }
    }
    .instrument(span)
    .await;
}

/// The outcome of one run: the script's response, or why there is none.
struct Outcome {
    result: Result<Response, IngressError>,
}

/// Runs `request` on `script` as the ingress does (with the host services,
/// within the request timeout) and records it with `trigger`.
async fn invoke(
    ingress: &IngressState,
    script: &Arc<ActiveScript>,
    request: Request,
    trigger: Trigger,
) -> Outcome {
    let started = std::time::Instant::now();
    let started_at_unix_ms = SystemClock.now_ms().max(0) as u64;
    let request_id = request.request_id.clone();
    let context = ingress.context_for(script, &request_id);
    let timeout = ingress.config().request_timeout();
    let invocation = tokio::time::timeout(
        timeout,
        ingress
            .executor()
            .invoke_with(&script.version, request, context),
    )
    .await;
    let (result, output, stats) = match invocation {
        Ok(Invocation {
            result,
            output,
            stats,
        }) => (result.map_err(IngressError::Invoke), output, stats),
        Err(_elapsed) => (
            Err(IngressError::Timeout {
                timeout_ms: ingress.config().request_timeout_ms,
            }),
            Vec::new(),
            InvocationStats {
                fuel_limit: script.version.limits.fuel,
                memory_limit_bytes: script.version.limits.memory_bytes,
                duration: started.elapsed(),
                ..InvocationStats::default()
            },
        ),
    };
    let label = &*script.version.label;
    for line in &output {
        tracing::info!(target: "picloud::script", script = label, stream = line.level.as_str(), "{}", line.text);
    }
    let (status, error) = match &result {
        Ok(response) => (response.status, None),
        Err(error) => (error.status().as_u16(), Some(error)),
    };
    ingress.records().record(Ran {
        script,
        trigger,
        request_id: &request_id,
        started_at_unix_ms,
        stats: &stats,
        output: &output,
        status,
        error,
    });
    Outcome { result }
}

/// Whether a request asks to be run in the background: a `Prefer` header
/// with the `respond-async` preference (RFC 7240).
pub(crate) fn wants_async(headers: &HeaderMap) -> bool {
    headers.get_all("prefer").iter().any(|value| {
        String::from_utf8_lossy(value.as_bytes())
            .split(',')
            .any(|preference| {
                preference
                    .split(';')
                    .next()
                    .is_some_and(|token| token.trim().eq_ignore_ascii_case("respond-async"))
            })
    })
}

/// Queues `request` and answers `202 Accepted` with the invocation's id and
/// where to follow it, or `503 unavailable` if it cannot be stored.
pub(crate) async fn accept_async(
    queue: &dyn AsyncQueue,
    script: &ActiveScript,
    request: Request,
) -> axum::response::Response {
    match queue.enqueue(script, request).await {
        Ok(id) => {
            let status_url = format!("/api/v1/apps/{}/async/{id}", script.app_slug);
            let mut response = (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({
                    "invocation_id": id,
                    "status": "queued",
                    "status_url": status_url,
                })),
            )
                .into_response();
            if let Ok(location) = HeaderValue::from_str(&status_url) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response.headers_mut().insert(
                "preference-applied",
                HeaderValue::from_static("respond-async"),
            );
            response
        }
        Err(error) => {
            tracing::warn!(%error, "cannot queue an async invocation");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({
                    "error": {
                        "code": "unavailable",
                        "message": "the request could not be queued; retry later",
                    }
                })),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respond_async_is_found_among_preferences() {
        let headers = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append("prefer", HeaderValue::from_str(value).unwrap());
            }
            headers
        };
        assert!(wants_async(&headers(&["respond-async"])));
        assert!(wants_async(&headers(&[
            "return=minimal, Respond-Async; wait=10"
        ])));
        assert!(wants_async(&headers(&["return=minimal", "respond-async"])));
        assert!(!wants_async(&headers(&["return=minimal"])));
        assert!(!wants_async(&HeaderMap::new()));
    }

    #[test]
    fn retries_back_off_by_four() {
        let config = TriggerConfig::default();
        assert_eq!(config.retry_delay(1), Duration::from_secs(1));
        assert_eq!(config.retry_delay(2), Duration::from_secs(4));
        assert_eq!(config.retry_delay(3), Duration::from_secs(16));
        assert_eq!(config.retry_delay(40), Duration::from_secs(3600));
    }

    #[test]
    fn loops_sleep_until_the_next_due_time_but_never_spin_on_errors() {
        let recheck = 60_000;
        assert_eq!(next_deadline(1_000, Some(5_000), recheck, false), 5_000);
        assert_eq!(next_deadline(1_000, None, recheck, false), 61_000);
        assert_eq!(next_deadline(1_000, Some(999_999), recheck, false), 61_000);
        // Due in the past and the claim failed: wait a second.
        assert_eq!(next_deadline(1_000, Some(500), recheck, true), 2_000);
    }

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_it_reaches_their_deadline() {
        let clock = Arc::new(ManualClock::new(1_000));
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep_until(61_000).await })
        };
        clock.advance(Duration::from_secs(30));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(30));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("the sleeper wakes")
            .unwrap();
    }
}
