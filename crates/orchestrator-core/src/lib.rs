//! PiCloud's orchestrator: HTTP requests in, script invocations out.
//!
//! # Concepts
//! - **The routing table** ([`RouteTable`]) maps `/{app}/{script}` and
//!   `{domain}/{script}` to the [`ActiveScript`] that serves it: the
//!   executor's [`ScriptVersion`] plus the ids the control plane knows it by.
//!   It lives in memory. The control plane fills it at start-up
//!   ([`RouteTable::replace_all`]) and pushes every deploy, rollback and
//!   domain change into it ([`RouteTable::set_active`],
//!   [`RouteTable::set_domains`], ...). The next request sees the change;
//!   requests in flight finish on the version they started with.
//! - **The ingress** ([`ingress_router`]) is an axum [`Router`](axum::Router)
//!   that resolves a request against the table, turns it into an executor
//!   [`Request`](picloud_executor_core::Request), runs it, and turns the
//!   script's [`Response`](picloud_executor_core::Response) back into HTTP.
//!   Failures become a JSON body with a stable code ([`IngressError`]); the
//!   caller never sees what happened inside the sandbox, the logs do.
//! - **Request ids** are taken from a sane incoming `x-request-id` or
//!   generated, returned in `x-request-id` on every response, given to the
//!   script as `request.id`, and recorded on a `request` tracing span so
//!   every log line of the request carries them.
//! - **Invocation records** ([`InvocationRecord`]) describe each request
//!   that reached a script. They are queued in a bounded [`RecordBuffer`]
//!   and written in batches to a [`RecordSink`] that the binary implements
//!   with its store.
//! - **Metrics** ([`metrics`]) name every Prometheus series PiCloud emits
//!   through the `metrics` facade; the ingress counts each invocation, and
//!   the binary installs the recorder and renders it.
//! - **Serving** ([`serve`]) runs any router on a TCP listener with a header
//!   read timeout and a graceful shutdown bounded by a grace period. All
//!   limits are in one [`IngressConfig`].
//!
//! # Invariants
//! - **No database on the hot path.** This crate does not depend on the
//!   control plane or any database: routes are read from memory with one
//!   atomic load, and records are queued without waiting for their sink.
//! - **HTTP stops here.** The executor gets plain data and knows nothing of
//!   HTTP; status codes and headers are decided in this crate only.
//! - **No shadowing.** The ingress registers only parameter routes, so the
//!   static routes of the management API (`/api/v1`), the dashboard and the
//!   health endpoints always win when the binary merges the routers, and
//!   the [`RESERVED_APP_SLUGS`] never run a script.
//!
//! # Wiring it up
//! ```no_run
//! # async fn demo(executor: picloud_executor_core::Executor, sink: std::sync::Arc<dyn picloud_orchestrator_core::RecordSink>) {
//! use std::sync::Arc;
//! use picloud_orchestrator_core::*;
//!
//! let config = IngressConfig::default();
//! let routes = Arc::new(RouteTable::new(executor.clone()));
//! routes.replace_all(RoutesSnapshot::default()); // from the store, at start-up
//! let records = RecordBuffer::start(config.records.clone(), sink);
//! let state = IngressState::new(executor, routes, records.clone(), config.clone());
//! let app = axum::Router::new()
//!     .route("/healthz", axum::routing::get(|| async { "ok" }))
//!     .merge(ingress_router(state));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//! let shutdown = async { tokio::signal::ctrl_c().await.unwrap() };
//! serve(listener, app, &config, shutdown).await;
//! records.shutdown().await;
//! # }
//! ```

mod config;
mod error;
mod ingress;
pub mod metrics;
mod records;
pub mod request_id;
mod routes;
mod serve;
mod services;
pub mod triggers;

pub use crate::config::{IngressConfig, RecordConfig, TrustedProxies};
pub use crate::error::IngressError;
pub use crate::ingress::{IngressState, ingress_router};
pub use crate::records::{IDLE_AFTER, InvocationRecord, Ran, RecordBuffer, RecordSink, Trigger};
pub use crate::routes::{
    ActiveScript, AppRoutes, RESERVED_APP_SLUGS, RouteTable, Routes, RoutesSnapshot,
    is_reserved_app_slug, normalize_host,
};
pub use crate::serve::{ServeOutcome, serve};
pub use crate::services::{ScriptIdentity, ServiceProvider};
pub use picloud_executor_core::ScriptVersion;
