//! `picloud serve`: the manager, the orchestrator and the executor in one
//! process, on one listener.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use picloud_executor_core::{Allocation, Executor, GuestOrigin};
use picloud_manager_core::api::{ApiConfig, ApiState, api_router};
use picloud_manager_core::{InstanceRole, NewUser, Store, auth};
use picloud_orchestrator_core::{IngressState, RecordBuffer, RouteTable, ingress_router, serve};

use crate::config::{Config, redact_database_url};
use crate::records::{FEED_CAPACITY, StoreRecordSink, enforce_retention};
use crate::wiring::{ExecutorCompiler, RouteTablePublisher, snapshot};

/// The environment variable holding the first owner's password.
pub const OWNER_PASSWORD_ENV: &str = "PICLOUD_OWNER_PASSWORD";

/// Runs the server until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let started = Instant::now();
    let database_url = config.database_url();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %config.listen,
        database = %redact_database_url(&database_url),
        data_dir = %config.data_dir.display(),
        "starting PiCloud"
    );
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;

    let store = Store::connect(&database_url).await.with_context(|| {
        format!(
            "cannot open the database {}",
            redact_database_url(&database_url)
        )
    })?;
    store
        .migrate()
        .await
        .context("cannot bring the database schema up to date")?;
    tracing::info!(
        schema_version = store.binary_schema_version(),
        "database ready"
    );
    create_owner_if_empty(&store, &config).await?;
    // The key that encrypts app secrets; the script runtime decrypts with it too.
    let secret_key = config.secrets.load_or_create_key(&config.data_dir)?;

    let executor_config = config.executor.clone();
    let executor = tokio::task::spawn_blocking(move || Executor::new(executor_config))
        .await
        .context("the executor's start-up task failed")?
        .context("cannot start the executor")?;
    log_executor(&executor);
    if executor.guest_origin() == GuestOrigin::Compiled {
        // Compiling the guest freed tens of megabytes across the compiler's
        // threads; give them back now rather than after the first traffic.
        tokio::task::spawn_blocking(crate::memory::release_free_memory);
    }

    let routes = Arc::new(RouteTable::new(executor.clone()));
    let active_scripts = store
        .active_scripts()
        .await
        .context("cannot load the active scripts")?;
    let domains = store
        .all_domains()
        .await
        .context("cannot load the domains")?;
    tracing::info!(
        scripts = active_scripts.len(),
        domains = domains.len(),
        "routing table loaded"
    );
    routes.replace_all(snapshot(&active_scripts, domains, &executor));

    let metrics_handle = picloud_orchestrator_core::metrics::install()
        .map_err(|_| anyhow::anyhow!("another metrics recorder is already installed"))?;
    let (invocation_feed, _) = tokio::sync::broadcast::channel(FEED_CAPACITY);
    let records = RecordBuffer::start(
        config.ingress.records.clone(),
        Arc::new(StoreRecordSink::new(
            store.clone(),
            invocation_feed.clone(),
            &config.records,
        )),
    );
    let metrics_source = crate::observability::MetricsSource {
        handle: metrics_handle,
        executor: executor.clone(),
        records: records.clone(),
    };
    let app_files = picloud_manager_core::files::AppFiles::open(&config.data_dir)
        .context("cannot open the static files folder")?;
    let outbound =
        picloud_executor_core::outbound::OutboundClient::new(config.outbound.client_config())
            .map_err(|error| anyhow::anyhow!("cannot start the outbound HTTP client: {error}"))?;
    let runtime = crate::runtime::Runtime::new(crate::runtime::RuntimeParts {
        store: store.clone(),
        secret_key: secret_key.clone(),
        outbound,
        files: app_files.clone(),
        routes: routes.clone(),
        executor: executor.clone(),
        records: records.clone(),
        limits: config.runtime.limits(),
    });
    let trigger_hooks = crate::triggers::TriggerHooks::new(store.clone(), &config.triggers);
    let ingress = IngressState::new(
        executor.clone(),
        routes.clone(),
        records.clone(),
        config.ingress.clone(),
    )
    .with_services(Arc::new(runtime.clone()))
    .with_async_queue(trigger_hooks.queue());
    let api = ApiState::new(
        store.clone(),
        Arc::new(ExecutorCompiler {
            executor: executor.clone(),
        }),
        Arc::new(RouteTablePublisher {
            routes: routes.clone(),
            executor: executor.clone(),
        }),
        ApiConfig {
            secure_cookies: config.secure_cookies(),
            session_lifetime: Duration::from_secs(config.api.session_lifetime_secs),
            max_request_bytes: config.api.max_request_bytes,
        },
    );
    api.set_invocation_feed(invocation_feed);
    let live_tails = api.clone();
    // Several nodes on one PostgreSQL database: follow the others' changes.
    let route_follower = tokio::spawn(api.clone().follow_route_changes());
    api.set_secret_key(secret_key.clone());
    api.set_files(app_files.clone(), config.files);
    api.set_schedule_observer(trigger_hooks.observer());
    let triggers = trigger_hooks.start(ingress.clone());
    let router = api_router(api)
        .merge(crate::observability::health_router(store.clone()))
        .merge(crate::observability::protected_metrics_router(
            metrics_source.clone(),
            config.admin.metrics_token.clone(),
        ))
        .merge(crate::dashboard::router(config.dashboard_dir().as_deref()))
        .merge(crate::static_files::router(
            crate::static_files::StaticFiles {
                files: app_files,
                store: store.clone(),
                slugs: crate::static_files::slug_cache(),
                routes: routes.clone(),
                ingress: ingress_router(ingress.clone()),
            },
        ))
        .merge(ingress_router(ingress));

    let admin_listener = match config.admin.listen {
        Some(address) => Some(
            crate::observability::AdminListener::start(
                address,
                store.clone(),
                metrics_source,
                &config.ingress,
            )
            .await?,
        ),
        None => None,
    };
    let session_sweeper = tokio::spawn(sweep_expired_sessions(store.clone()));
    let retention = tokio::spawn(enforce_retention(store.clone(), config.records.clone()));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local_address = listener
        .local_addr()
        .context("cannot read the listening address")?;
    tracing::info!(
        listen = %local_address,
        url = %crate::config::local_url(local_address),
        startup_ms = started.elapsed().as_millis() as u64,
        "PiCloud is listening"
    );

    // Live tails never end by themselves: close them as shutdown starts.
    let shutdown = async move {
        shutdown_signal().await;
        live_tails.close_invocation_tails();
    };
    let outcome = serve(listener, router, &config.ingress, shutdown).await;
    tracing::info!(
        connections_at_shutdown = outcome.connections_at_shutdown,
        connections_aborted = outcome.connections_aborted,
        "stopped accepting; flushing invocation records"
    );
    session_sweeper.abort();
    retention.abort();
    // Its subscription holds a database connection, which `store.close()`
    // would wait for.
    route_follower.abort();
    let _ = route_follower.await;
    triggers.shutdown(Duration::from_secs(10)).await;
    if let Some(admin_listener) = admin_listener {
        admin_listener.stop().await;
    }
    records.shutdown().await;
    store.close().await;
    tracing::info!("PiCloud stopped");
    Ok(())
}

/// Creates the owner account on an empty database. The password comes from
/// `PICLOUD_OWNER_PASSWORD`, or is generated and printed once.
async fn create_owner_if_empty(store: &Store, config: &Config) -> anyhow::Result<()> {
    if !store
        .is_empty()
        .await
        .context("cannot read the users table")?
    {
        return Ok(());
    }
    let from_environment = std::env::var(OWNER_PASSWORD_ENV)
        .ok()
        .filter(|password| !password.is_empty());
    let generated = from_environment.is_none();
    let password = from_environment.unwrap_or_else(|| {
        // A readable random password: the token generator's alphabet is URL-safe.
        auth::generate_token("pc").trim_start_matches("pc_")[..24].to_owned()
    });
    let hash_input = password.clone();
    let password_hash = tokio::task::spawn_blocking(move || auth::hash_password(&hash_input))
        .await
        .context("the password hashing task failed")?
        .context("cannot hash the owner's password")?;
    let owner = store
        .create_user(&NewUser {
            username: config.owner.username.clone(),
            email: config.owner.email.clone(),
            password_hash,
            instance_role: InstanceRole::Owner,
        })
        .await
        .context("cannot create the owner account")?;
    tracing::info!(username = %owner.username, "created the owner account on an empty database");
    if generated {
        eprintln!();
        eprintln!("================================================================");
        eprintln!(" PiCloud created the owner account. This password is shown ONCE:");
        eprintln!();
        eprintln!("   username: {}", owner.username);
        eprintln!("   password: {password}");
        eprintln!();
        eprintln!(
            " Log in with:  picloud login --server {}",
            config
                .public_url
                .clone()
                .unwrap_or_else(|| crate::config::local_url(config.listen))
        );
        eprintln!(" (set {OWNER_PASSWORD_ENV} before the first start to choose it)");
        eprintln!("================================================================");
        eprintln!();
    }
    Ok(())
}

fn log_executor(executor: &Executor) {
    let pool = &executor.config().pool;
    let allocation = match executor.allocation() {
        Allocation::Pooling { slots } => format!("pooling ({slots} instance slots)"),
        Allocation::OnDemand => "on-demand".to_owned(),
    };
    let guest_cache = match executor.guest_origin() {
        GuestOrigin::Cache => "hit",
        GuestOrigin::Compiled => "miss (compiled now and cached)",
    };
    tracing::info!(
        allocation = %allocation,
        max_concurrent_invocations = pool.max_concurrent_invocations,
        max_warm_instances = pool.max_warm_instances,
        max_warm_per_script = pool.max_warm_per_script,
        guest_cache,
        guest_cache_file = %executor.guest_cache_file().display(),
        "executor ready"
    );
}

/// Deletes expired sessions once an hour. Lookups already ignore them; this
/// only keeps the table small, and wakes the process rarely enough to cost
/// nothing at rest.
async fn sweep_expired_sessions(store: Store) {
    let mut interval = tokio::time::interval(Duration::from_secs(60 * 60));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match store.delete_expired_sessions().await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted expired sessions"),
            Err(error) => tracing::warn!(%error, "cannot delete expired sessions"),
        }
        // Expired key-value entries already read as absent; this reclaims their rows.
        match store
            .purge_expired_kv(picloud_manager_core::Timestamp::now().unix_millis())
            .await
        {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted expired key-value entries"),
            Err(error) => tracing::warn!(%error, "cannot delete expired key-value entries"),
        }
    }
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received: shutting down"),
        () = terminate => tracing::info!("SIGTERM received: shutting down"),
    }
}
