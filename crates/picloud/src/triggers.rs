//! Schedules and async invocations in the all-in-one server: the
//! orchestrator's [`TriggerStore`] and [`AsyncQueue`] backed by the store,
//! the API's [`ScheduleObserver`] that wakes the scheduler, the `[triggers]`
//! configuration section, and starting and stopping it all.

use std::sync::Arc;
use std::time::Duration;

use picloud_executor_core::{Request, Response};
use picloud_manager_core::api::ScheduleObserver;
use picloud_manager_core::{
    AppId, AsyncFailure, AsyncResult, MAX_ASYNC_ATTEMPTS, NewAsyncInvocation, ScriptId, Store,
    Timestamp,
};
use picloud_orchestrator_core::triggers::{
    AsyncJob, AsyncQueue, AsyncWorker, BoxFuture, Clock, ScheduledRun, Scheduler, SystemClock,
    TriggerConfig, TriggerStore, TriggerStoreError,
};
use picloud_orchestrator_core::{ActiveScript, IngressState};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// The `[triggers]` section: cron schedules and async invocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriggerSettings {
    /// Async workers on this node: how many background invocations run at
    /// once. 0 accepts `Prefer: respond-async` requests but runs none here
    /// (another node or a later start runs them). Default 2.
    pub workers: usize,
    /// How many times an async invocation runs before it is marked failed
    /// (1 to 20). Default 3.
    pub async_max_attempts: u32,
    /// The wait before the first retry of a failed async invocation, in
    /// milliseconds; each further retry waits four times longer (1 s, 4 s,
    /// 16 s... by default, at most one hour). Default 1000.
    pub retry_base_ms: u64,
    /// Whether this node runs the scheduler. Every node may: each tick runs
    /// once across all of them. Default true.
    pub scheduler_enabled: bool,
    /// The longest the scheduler and the workers sleep before looking at
    /// the database again, to see changes made on other nodes, in seconds
    /// (changes made through this node wake them at once). Default 60.
    pub recheck_interval_secs: u64,
}

impl Default for TriggerSettings {
    fn default() -> Self {
        TriggerSettings {
            workers: 2,
            async_max_attempts: 3,
            retry_base_ms: 1000,
            scheduler_enabled: true,
            recheck_interval_secs: 60,
        }
    }
}

impl TriggerSettings {
    /// Refuses values that cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(1..=MAX_ASYNC_ATTEMPTS).contains(&self.async_max_attempts) {
            anyhow::bail!(
                "triggers.async_max_attempts must be 1 to {MAX_ASYNC_ATTEMPTS}, not {}",
                self.async_max_attempts
            );
        }
        if self.recheck_interval_secs == 0 {
            anyhow::bail!("triggers.recheck_interval_secs must be at least 1");
        }
        if self.workers > 64 {
            anyhow::bail!("triggers.workers must be at most 64, not {}", self.workers);
        }
        Ok(())
    }

    /// The runner's settings; a job's lease outlasts the longest run (the
    /// request timeout) by a minute.
    fn runner_config(&self, request_timeout: Duration) -> TriggerConfig {
        TriggerConfig {
            workers: self.workers,
            scheduler_enabled: self.scheduler_enabled,
            recheck_interval: Duration::from_secs(self.recheck_interval_secs),
            lease: request_timeout + Duration::from_secs(60),
            retry_base: Duration::from_millis(self.retry_base_ms),
            ..TriggerConfig::default()
        }
    }
}

fn store_error(error: picloud_manager_core::StoreError) -> TriggerStoreError {
    TriggerStoreError(error.to_string())
}

/// The store, as the scheduler, the workers and the ingress need it.
pub struct StoreTriggers {
    store: Store,
    /// Notified after each enqueue, so that an idle worker starts at once.
    async_wake: Arc<Notify>,
    max_attempts: u32,
}

impl StoreTriggers {
    /// Triggers over `store`; jobs queued here get `max_attempts` runs.
    pub fn new(store: Store, async_wake: Arc<Notify>, max_attempts: u32) -> StoreTriggers {
        StoreTriggers {
            store,
            async_wake,
            max_attempts,
        }
    }
}

impl TriggerStore for StoreTriggers {
    fn claim_due_schedules(
        &self,
        now_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<ScheduledRun>, TriggerStoreError>> {
        Box::pin(async move {
            let ticks = self
                .store
                .claim_due_schedules(Timestamp::from_unix_millis(now_ms), 100)
                .await
                .map_err(store_error)?;
            Ok(ticks
                .into_iter()
                .map(|tick| ScheduledRun {
                    schedule_id: tick.schedule_id.0,
                    app_slug: tick.app_slug,
                    script_name: tick.script_name,
                    payload: tick.payload,
                    scheduled_for_ms: tick.scheduled_for.unix_millis(),
                })
                .collect())
        })
    }

    fn next_schedule_due(&self) -> BoxFuture<'_, Result<Option<i64>, TriggerStoreError>> {
        Box::pin(async move {
            Ok(self
                .store
                .next_schedule_due()
                .await
                .map_err(store_error)?
                .map(Timestamp::unix_millis))
        })
    }

    fn claim_async<'a>(
        &'a self,
        worker: &'a str,
        now_ms: i64,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Option<AsyncJob>, TriggerStoreError>> {
        Box::pin(async move {
            let job = self
                .store
                .claim_async(worker, Timestamp::from_unix_millis(now_ms), lease)
                .await
                .map_err(store_error)?;
            Ok(job.map(|job| AsyncJob {
                id: job.id,
                app_slug: job.app_slug,
                script_name: job.script_name,
                request: Request {
                    method: job.method,
                    path: job.path,
                    subpath: job.subpath,
                    query: job.query,
                    headers: job.headers,
                    body: job.body,
                    request_id: job.request_id,
                },
                attempt: job.attempt,
                max_attempts: job.max_attempts,
            }))
        })
    }

    fn complete_async<'a>(
        &'a self,
        id: &'a str,
        worker: &'a str,
        response: &'a Response,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<(), TriggerStoreError>> {
        Box::pin(async move {
            let result = AsyncResult {
                status: response.status,
                headers: response.headers.clone(),
                body: response.body.clone(),
            };
            let stored = self
                .store
                .complete_async(id, worker, &result, Timestamp::from_unix_millis(now_ms))
                .await
                .map_err(store_error)?;
            if !stored {
                tracing::warn!(
                    invocation_id = id,
                    "the lease ended before the run did; its result is dropped"
                );
            }
            Ok(())
        })
    }

    fn fail_async<'a>(
        &'a self,
        id: &'a str,
        worker: &'a str,
        error: &'a str,
        now_ms: i64,
        retry_at_ms: i64,
    ) -> BoxFuture<'a, Result<bool, TriggerStoreError>> {
        Box::pin(async move {
            let outcome = self
                .store
                .fail_async(
                    id,
                    worker,
                    error,
                    Timestamp::from_unix_millis(now_ms),
                    Timestamp::from_unix_millis(retry_at_ms),
                )
                .await
                .map_err(store_error)?;
            Ok(matches!(outcome, AsyncFailure::Retry(_)))
        })
    }

    fn next_async_due(&self) -> BoxFuture<'_, Result<Option<i64>, TriggerStoreError>> {
        Box::pin(async move {
            Ok(self
                .store
                .next_async_due()
                .await
                .map_err(store_error)?
                .map(Timestamp::unix_millis))
        })
    }

    fn async_queue_depth(&self) -> BoxFuture<'_, Result<u64, TriggerStoreError>> {
        Box::pin(async move { self.store.async_queue_depth().await.map_err(store_error) })
    }
}

impl AsyncQueue for StoreTriggers {
    fn enqueue<'a>(
        &'a self,
        script: &'a ActiveScript,
        request: Request,
    ) -> BoxFuture<'a, Result<String, TriggerStoreError>> {
        Box::pin(async move {
            let new = NewAsyncInvocation {
                app_id: AppId(script.app_id),
                script_id: ScriptId(script.script_id),
                request_id: request.request_id,
                method: request.method,
                path: request.path,
                subpath: request.subpath,
                query: request.query,
                headers: request.headers,
                body: request.body,
                max_attempts: self.max_attempts,
            };
            let id = self
                .store
                .enqueue_async(&new, Timestamp::now())
                .await
                .map_err(store_error)?;
            self.async_wake.notify_one();
            Ok(id)
        })
    }
}

/// Wakes the scheduler when the API changes a schedule.
pub struct SchedulerWake(pub Arc<Notify>);

impl ScheduleObserver for SchedulerWake {
    fn schedules_changed(&self) {
        self.0.notify_one();
    }
}

/// What the ingress and the API are given before the runners start.
pub struct TriggerHooks {
    store: Arc<StoreTriggers>,
    schedule_wake: Arc<Notify>,
    async_wake: Arc<Notify>,
    settings: TriggerSettings,
}

impl TriggerHooks {
    /// The hooks over `store` with `settings`.
    pub fn new(store: Store, settings: &TriggerSettings) -> TriggerHooks {
        let async_wake = Arc::new(Notify::new());
        TriggerHooks {
            store: Arc::new(StoreTriggers::new(
                store,
                async_wake.clone(),
                settings.async_max_attempts,
            )),
            schedule_wake: Arc::new(Notify::new()),
            async_wake,
            settings: settings.clone(),
        }
    }

    /// For [`IngressState::with_async_queue`].
    pub fn queue(&self) -> Arc<dyn AsyncQueue> {
        self.store.clone()
    }

    /// For `ApiState::set_schedule_observer`.
    pub fn observer(&self) -> Arc<dyn ScheduleObserver> {
        Arc::new(SchedulerWake(self.schedule_wake.clone()))
    }

    /// Starts the scheduler (if enabled) and the async workers on `ingress`
    /// with the system clock.
    pub fn start(self, ingress: IngressState) -> Triggers {
        let config = self
            .settings
            .runner_config(ingress.config().request_timeout());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store: Arc<dyn TriggerStore> = self.store;
        let scheduler = config.scheduler_enabled.then(|| {
            Scheduler::start(
                ingress.clone(),
                store.clone(),
                clock.clone(),
                config.clone(),
                self.schedule_wake,
            )
        });
        let workers = AsyncWorker::start(ingress, store, clock, config.clone(), self.async_wake);
        tracing::info!(
            scheduler = config.scheduler_enabled,
            async_workers = config.workers,
            "triggers started"
        );
        Triggers { scheduler, workers }
    }
}

/// The running scheduler and workers.
pub struct Triggers {
    scheduler: Option<Scheduler>,
    workers: AsyncWorker,
}

impl Triggers {
    /// Stops them, letting runs in progress finish within `grace`.
    pub async fn shutdown(self, grace: Duration) {
        if let Some(scheduler) = self.scheduler {
            scheduler.shutdown(grace).await;
        }
        self.workers.shutdown(grace).await;
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    #[test]
    fn the_triggers_section_is_read_and_checked() {
        let config = crate::config::Config::from_toml(
            "[triggers]\nworkers = 0\nasync_max_attempts = 5\nscheduler_enabled = false\n",
        )
        .unwrap();
        assert_eq!(config.triggers.workers, 0);
        assert_eq!(config.triggers.async_max_attempts, 5);
        assert!(!config.triggers.scheduler_enabled);
        assert_eq!(config.triggers.retry_base_ms, 1000);
        config.triggers.validate().unwrap();
        assert!(crate::config::Config::from_toml("[triggers]\nworker = 1\n").is_err());
        for bad in [
            TriggerSettings {
                async_max_attempts: 0,
                ..TriggerSettings::default()
            },
            TriggerSettings {
                async_max_attempts: 21,
                ..TriggerSettings::default()
            },
            TriggerSettings {
                recheck_interval_secs: 0,
                ..TriggerSettings::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    //! Two orchestrators with a scheduler each, against one PostgreSQL
    //! database, on one controllable clock: every tick runs exactly once.

    use std::sync::atomic::{AtomicUsize, Ordering};

    use picloud_executor_core::{Executor, ExecutorConfig};
    use picloud_manager_core::{InstanceRole, NewSchedule, NewUser};
    use picloud_orchestrator_core::triggers::ManualClock;
    use picloud_orchestrator_core::{
        InvocationRecord, RecordBuffer, RecordSink, RouteTable, Trigger,
    };
    use sqlx::Connection;

    use super::*;

    /// 2030-01-01T00:00:00Z.
    const T0: i64 = 1_893_456_000_000;
    const MINUTE: i64 = 60_000;

    /// Counts the scheduled runs a node recorded.
    struct CountingSink(Arc<AtomicUsize>);

    impl RecordSink for CountingSink {
        fn write_batch(
            &self,
            batch: Vec<InvocationRecord>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
            let scheduled = batch
                .iter()
                .filter(|record| record.trigger == Trigger::Schedule && record.status == 200)
                .count();
            self.0.fetch_add(scheduled, Ordering::SeqCst);
            Box::pin(async {})
        }
    }

    /// A fresh database on the test PostgreSQL server, dropped at the end.
    struct Database {
        server_url: String,
        name: String,
        url: String,
    }

    impl Database {
        async fn create() -> Database {
            let server_url = std::env::var("PICLOUD_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
            let name = format!("picloud_sched_{:016x}", rand::random::<u64>());
            let mut server = sqlx::PgConnection::connect(&server_url)
                .await
                .expect("PostgreSQL is reachable at PICLOUD_TEST_POSTGRES_URL");
            sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
                .execute(&mut server)
                .await
                .unwrap();
            server.close().await.ok();
            let (base, _) = server_url.rsplit_once('/').unwrap();
            let url = format!("{base}/{name}");
            Database {
                server_url,
                name,
                url,
            }
        }

        async fn drop_database(self) {
            let mut server = sqlx::PgConnection::connect(&self.server_url).await.unwrap();
            sqlx::raw_sql(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut server)
            .await
            .unwrap();
            server.close().await.ok();
        }
    }

    /// One orchestrator: its own pool, routing table, record buffer and
    /// scheduler.
    struct Node {
        runs: Arc<AtomicUsize>,
        records: RecordBuffer,
        scheduler: Scheduler,
    }

    async fn start_node(database_url: &str, executor: &Executor, clock: Arc<ManualClock>) -> Node {
        let store = Store::connect(database_url).await.unwrap();
        let routes = Arc::new(RouteTable::new(executor.clone()));
        routes.replace_all(crate::wiring::snapshot(
            &store.active_scripts().await.unwrap(),
            Vec::new(),
            executor,
        ));
        let runs = Arc::new(AtomicUsize::new(0));
        let ingress_config = picloud_orchestrator_core::IngressConfig::default();
        let records = RecordBuffer::start(
            ingress_config.records.clone(),
            Arc::new(CountingSink(runs.clone())),
        );
        let ingress = IngressState::new(executor.clone(), routes, records.clone(), ingress_config);
        let triggers = Arc::new(StoreTriggers::new(store, Arc::new(Notify::new()), 3));
        let scheduler = Scheduler::start(
            ingress,
            triggers,
            clock,
            TriggerConfig::default(),
            Arc::new(Notify::new()),
        );
        Node {
            runs,
            records,
            scheduler,
        }
    }

    async fn total_runs(nodes: &[Node]) -> usize {
        for node in nodes {
            node.records.flush().await;
        }
        nodes
            .iter()
            .map(|node| node.runs.load(Ordering::SeqCst))
            .sum()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_schedulers_on_one_postgres_run_each_tick_exactly_once() {
        let database = Database::create().await;
        let store = Store::connect(&database.url).await.unwrap();
        store.migrate().await.unwrap();
        let owner = store
            .create_user(&NewUser {
                username: "root".into(),
                email: "root@example.com".into(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
                    .into(),
                instance_role: InstanceRole::Owner,
            })
            .await
            .unwrap();
        let app = store.create_app("clock", "Clock").await.unwrap();
        let version = store
            .deploy(
                app.id,
                "tick",
                r#"if request.header("x-picloud-trigger") == "schedule" && request.json_body().n == 1 { "tick" } else { throw "not a schedule" }"#,
                owner.id,
            )
            .await
            .unwrap();
        store
            .create_schedule(
                app.id,
                &NewSchedule {
                    script_id: version.script_id,
                    cron: "* * * * *".into(),
                    timezone: None,
                    payload: Some(serde_json::json!({"n": 1})),
                    enabled: true,
                    created_by: Some(owner.id),
                },
                Timestamp::from_unix_millis(T0),
            )
            .await
            .unwrap();

        let cache_dir = std::env::temp_dir().join("picloud-test-guest-cache");
        let executor = tokio::task::spawn_blocking(move || {
            Executor::new(ExecutorConfig {
                cache_dir,
                ..ExecutorConfig::default()
            })
        })
        .await
        .unwrap()
        .expect("start the executor");
        let clock = Arc::new(ManualClock::new(T0));
        let nodes = vec![
            start_node(&database.url, &executor, clock.clone()).await,
            start_node(&database.url, &executor, clock.clone()).await,
        ];

        for minute in 1..=5 {
            clock.set(T0 + minute * MINUTE + 250);
            let expected = usize::try_from(minute).unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while total_runs(&nodes).await < expected {
                assert!(
                    std::time::Instant::now() < deadline,
                    "minute {minute}: only {} runs",
                    total_runs(&nodes).await
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Give a second run, if there were one, the time to show.
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(total_runs(&nodes).await, expected, "minute {minute}");
        }
        let per_node: Vec<usize> = nodes
            .iter()
            .map(|node| node.runs.load(Ordering::SeqCst))
            .collect();
        eprintln!("runs per node: {per_node:?}");

        for node in nodes {
            node.scheduler.shutdown(Duration::from_secs(1)).await;
            node.records.shutdown().await;
        }
        store.close().await;
        database.drop_database().await;
    }
}
