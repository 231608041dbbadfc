//! The server watching itself: its own log (`tracing`, text or JSON), the
//! health endpoints (`/healthz`, `/readyz`) and the Prometheus endpoint
//! (`/metrics`), on the main listener and on the optional admin listener.
//! See `docs/observability.md`.
//!
//! Who may read `/metrics`:
//! - on the **main listener**, only a caller sending
//!   `Authorization: Bearer <admin.metrics_token>`; without a configured
//!   token the route answers 404, as if it did not exist (the default);
//! - on the **admin listener** (`admin.listen`, off by default), anyone who
//!   can reach it: bind it to loopback or a private network.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use picloud_executor_core::Executor;
use picloud_manager_core::{Store, StoreError};
use picloud_orchestrator_core::metrics::{self, PrometheusHandle};
use picloud_orchestrator_core::{IngressConfig, RecordBuffer, serve};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::config::{AdminSettings, LogFormat, LogSettings};

/// The environment variable holding the metrics token (never a flag, so it
/// does not show in `ps`).
pub const METRICS_TOKEN_ENV: &str = "PICLOUD_METRICS_TOKEN";

/// The shortest metrics token accepted, in characters.
pub const MIN_METRICS_TOKEN_CHARS: usize = 16;

/// How long each readiness check may take before it counts as failed.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks the `[log]` and `[admin]` settings when the configuration loads.
pub fn validate(log: &LogSettings, admin: &AdminSettings) -> anyhow::Result<()> {
    tracing_subscriber::EnvFilter::try_new(&log.level)
        .map_err(|error| anyhow::anyhow!("log.level `{}` is not valid: {error}", log.level))?;
    if let Some(token) = &admin.metrics_token
        && token.chars().count() < MIN_METRICS_TOKEN_CHARS
    {
        anyhow::bail!(
            "admin.metrics_token (or {METRICS_TOKEN_ENV}) must be at least \
             {MIN_METRICS_TOKEN_CHARS} characters long"
        );
    }
    Ok(())
}

/// Installs the process's log subscriber: events on stderr, filtered by
/// `settings.level`, as readable text or one JSON object per line. In JSON
/// each line carries the fields of its spans, so every line of a request
/// has its `request_id` (in `span` and `spans`). Text is coloured only when
/// stderr is a terminal: a log file or journald gets plain lines (and the
/// server skips formatting escape codes for every request span).
pub fn install_logging(settings: &LogSettings) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match settings.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

/// What `/metrics` renders: the installed recorder plus the values sampled
/// at render time from the executor and the record buffer.
#[derive(Clone)]
pub struct MetricsSource {
    /// Renders the installed recorder.
    pub handle: PrometheusHandle,
    /// Sampled for the warm-pool and instance series.
    pub executor: Executor,
    /// Sampled for the dropped-records counter.
    pub records: RecordBuffer,
}

impl MetricsSource {
    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        metrics::observe_executor(&self.executor.stats());
        metrics::observe_record_buffer(&self.records);
        self.handle.run_upkeep();
        self.handle.render()
    }
}

#[derive(Clone)]
struct MetricsEndpoint {
    source: MetricsSource,
    /// `None`: open (the admin listener). `Some(None)`: closed (no token
    /// configured). `Some(Some(token))`: the bearer token required.
    token: Option<Option<String>>,
}

/// `GET /metrics` for the main listener: requires
/// `Authorization: Bearer <token>`, and answers 404 when `token` is `None`.
pub fn protected_metrics_router(source: MetricsSource, token: Option<String>) -> Router {
    metrics_router(MetricsEndpoint {
        source,
        token: Some(token),
    })
}

fn metrics_router(endpoint: MetricsEndpoint) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(endpoint)
}

async fn render_metrics(State(endpoint): State<MetricsEndpoint>, headers: HeaderMap) -> Response {
    match &endpoint.token {
        None => {}
        Some(None) => {
            return error(StatusCode::NOT_FOUND, "not_found", "no route for /metrics");
        }
        Some(Some(token)) => {
            let sent = headers
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Bearer "));
            if !sent.is_some_and(|sent| {
                picloud_manager_core::auth::constant_time_eq(
                    sent.trim().as_bytes(),
                    token.as_bytes(),
                )
            }) {
                let mut response = error(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "/metrics requires `Authorization: Bearer <metrics token>`",
                );
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
        }
    }
    let text = endpoint.source.render();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// `GET /healthz` (liveness: 200 while the process runs) and `GET /readyz`
/// (readiness: 200 when the database answers and its schema is current,
/// else 503).
pub fn health_router(store: Store) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(store)
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(store): State<Store>) -> Response {
    let readiness = readiness(&store, READINESS_TIMEOUT).await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness.body())).into_response()
}

/// The outcome of the readiness checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Whether every check passed.
    pub ready: bool,
    /// `ok`, `unavailable` (an error) or `timeout`.
    pub database: &'static str,
    /// `ok`, `pending` (migrations to apply), `newer_than_binary` or
    /// `unknown` (the database did not answer).
    pub migrations: &'static str,
    /// How many migrations are pending, when known.
    pub pending_migrations: Option<usize>,
}

impl Readiness {
    /// `{"status":"ok"|"unavailable","checks":{"database":...,"migrations":...}}`.
    pub fn body(&self) -> Value {
        let mut checks = json!({ "database": self.database, "migrations": self.migrations });
        if let Some(pending) = self.pending_migrations.filter(|pending| *pending > 0) {
            checks["pending_migrations"] = json!(pending);
        }
        json!({
            "status": if self.ready { "ok" } else { "unavailable" },
            "checks": checks,
        })
    }
}

/// Runs the readiness checks, each bounded by `timeout`: the database
/// answers `SELECT 1`, and no migration of this binary is pending. Failures
/// are logged at `warn` with their cause; the answer only names the check,
/// so a public `/readyz` reveals nothing about the database.
pub async fn readiness(store: &Store, timeout: Duration) -> Readiness {
    let mut readiness = Readiness {
        ready: false,
        database: "ok",
        migrations: "unknown",
        pending_migrations: None,
    };
    match tokio::time::timeout(timeout, store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: the database does not answer");
            readiness.database = "unavailable";
            return readiness;
        }
        Err(_elapsed) => {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "readiness: the database did not answer in time"
            );
            readiness.database = "timeout";
            return readiness;
        }
    }
    match tokio::time::timeout(timeout, store.pending_migrations()).await {
        Ok(Ok(0)) => {
            readiness.migrations = "ok";
            readiness.pending_migrations = Some(0);
            readiness.ready = true;
        }
        Ok(Ok(pending)) => {
            tracing::warn!(pending, "readiness: database migrations are pending");
            readiness.migrations = "pending";
            readiness.pending_migrations = Some(pending);
        }
        Ok(Err(error @ StoreError::DatabaseNewerThanBinary { .. })) => {
            tracing::warn!(%error, "readiness: the database is newer than this binary");
            readiness.migrations = "newer_than_binary";
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: cannot read the applied migrations");
            readiness.database = "unavailable";
        }
        Err(_elapsed) => {
            tracing::warn!("readiness: reading the applied migrations timed out");
            readiness.database = "timeout";
        }
    }
    readiness
}

/// The admin listener, serving `/metrics`, `/healthz` and `/readyz`
/// without authentication until [`stop`](Self::stop).
pub struct AdminListener {
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl AdminListener {
    /// Binds `address` and serves the admin routes on it.
    pub async fn start(
        address: SocketAddr,
        store: Store,
        source: MetricsSource,
        config: &IngressConfig,
    ) -> anyhow::Result<AdminListener> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address} (admin.listen)"))?;
        let local_address = listener
            .local_addr()
            .context("cannot read the admin listening address")?;
        let router = metrics_router(MetricsEndpoint {
            source,
            token: None,
        })
        .merge(health_router(store));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = config.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            serve(listener, router, &config, shutdown).await;
        });
        tracing::info!(
            admin_listen = %local_address,
            "admin listener ready: /metrics, /healthz, /readyz"
        );
        Ok(AdminListener { stop, task })
    }

    /// Stops accepting and waits for requests in flight.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the admin listener's task failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(picloud_manager_core::auth::constant_time_eq(b"abc", b"abc"));
        assert!(!picloud_manager_core::auth::constant_time_eq(
            b"abc", b"abd"
        ));
        assert!(!picloud_manager_core::auth::constant_time_eq(
            b"abc", b"abcd"
        ));
    }

    #[test]
    fn settings_are_checked() {
        let admin = AdminSettings::default();
        assert!(validate(&LogSettings::default(), &admin).is_ok());
        let bad_level = LogSettings {
            level: "info,=[".into(),
            ..LogSettings::default()
        };
        assert!(validate(&bad_level, &admin).is_err());
        let short_token = AdminSettings {
            metrics_token: Some("short".into()),
            ..AdminSettings::default()
        };
        let error = validate(&LogSettings::default(), &short_token).unwrap_err();
        assert!(error.to_string().contains("metrics_token"), "{error}");
    }

    #[test]
    fn log_and_admin_sections_parse() {
        use crate::config::Config;
        let config = Config::from_toml(
            "[log]\nformat = \"json\"\nlevel = \"info,picloud::script=warn\"\n\
             [admin]\nlisten = \"127.0.0.1:9090\"\nmetrics_token = \"0123456789abcdef\"\n",
        )
        .unwrap();
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.log.level, "info,picloud::script=warn");
        assert_eq!(config.admin.listen, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(
            config.admin.metrics_token.as_deref(),
            Some("0123456789abcdef")
        );

        let defaults = Config::default();
        assert_eq!(defaults.log.format, LogFormat::Text);
        assert_eq!(defaults.log.level, "info");
        assert_eq!(defaults.admin, AdminSettings::default());

        let human = Config::from_toml("[log]\nformat = \"human\"\n").unwrap();
        assert_eq!(human.log.format, LogFormat::Text);
        let error = Config::from_toml("[admin]\nmetrics = true\n").unwrap_err();
        assert!(error.to_string().contains("metrics"), "{error}");
    }

    #[tokio::test]
    async fn readiness_follows_the_database() {
        let directory = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", directory.path().join("ready.db").display());
        let store = Store::connect(&url).await.unwrap();

        let fresh = readiness(&store, READINESS_TIMEOUT).await;
        assert!(!fresh.ready, "{fresh:?}");
        assert_eq!(fresh.database, "ok");
        assert_eq!(fresh.migrations, "pending");
        assert_eq!(fresh.body()["status"], "unavailable");

        store.migrate().await.unwrap();
        let ready = readiness(&store, READINESS_TIMEOUT).await;
        assert!(ready.ready, "{ready:?}");
        assert_eq!(
            ready.body(),
            json!({"status": "ok", "checks": {"database": "ok", "migrations": "ok"}})
        );

        store.close().await;
        let closed = readiness(&store, READINESS_TIMEOUT).await;
        assert_eq!(
            closed.body(),
            json!({"status": "unavailable", "checks": {"database": "unavailable", "migrations": "unknown"}})
        );
    }
}
