//! The management API: JSON under `/api/v1` for the CLI and the dashboard.
//!
//! # Concepts
//! - **Callers** authenticate with a session cookie (`POST /auth/login`,
//!   for the dashboard; state-changing requests must echo the session's CSRF
//!   token in `x-csrf-token`) or an API token (`Authorization: Bearer pc_...`,
//!   for the CLI). Every route but log-in and the OpenAPI document requires
//!   one ([`Caller`]).
//! - **The policy** ([`policy`]) is the one place that decides who may do
//!   what; handlers ask it with an [`Action`](policy::Action).
//! - **Errors** are [`ApiError`] values, answered as
//!   `{"error": {"code", "message", ...}}` with a stable code.
//! - **Deploys** compile the script in the sandbox first
//!   ([`ScriptCompiler`]), store it as the new active version, then publish
//!   it to the orchestrator ([`RoutePublisher`]) so the next request runs it.
//! - **The route table** ([`endpoints`]) is the single list the router, the
//!   OpenAPI document (`GET /api/v1/openapi.json`) and the tests are built from.
//!
//! # Invariants
//! **HTTP types and status codes live in this module only**; the store below
//! it knows nothing of HTTP. **An app the caller may not see is `404`**,
//! never `403`, so its existence does not leak.

mod accounts;
mod apps;
mod auth;
mod error;
mod files;
pub mod hooks;
mod invocations;
mod openapi;
pub mod policy;
mod runtime;
mod throttle;
mod triggers;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::routing::{MethodFilter, MethodRouter, on};
use serde::de::DeserializeOwned;

pub use auth::{API_TOKEN_PREFIX, CSRF_HEADER, Caller, Credential, SESSION_COOKIE};
pub use error::{ApiError, ApiResult};
pub use hooks::{BoxFuture, CheckError, RoutePublisher, ScriptCompiler};
pub use triggers::ScheduleObserver;

use crate::Store;

/// The prefix every management route lives under.
pub const API_PREFIX: &str = "/api/v1";

/// Settings of the management API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Mark the session cookie `Secure` (the public URL is `https`).
    pub secure_cookies: bool,
    /// How long a dashboard session lasts. Default 7 days.
    pub session_lifetime: Duration,
    /// Largest request body (a deployed script, as JSON or text), in bytes;
    /// larger is `413 payload_too_large`. Default 1 MiB.
    pub max_request_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            secure_cookies: false,
            session_lifetime: Duration::from_secs(7 * 24 * 60 * 60),
            max_request_bytes: 1024 * 1024,
        }
    }
}

/// How often a node reloads its routes from a shared PostgreSQL database
/// even without announcements (one may have been lost).
const ROUTES_RESYNC_INTERVAL: Duration = Duration::from_secs(300);

/// How long to wait before subscribing to route changes again after an error.
const ROUTES_RETRY_DELAY: Duration = Duration::from_secs(1);

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    compiler: Arc<dyn ScriptCompiler>,
    routes: Arc<dyn RoutePublisher>,
    config: ApiConfig,
    /// Held while a change is stored and published, so the routing table
    /// receives changes in the order the store made them.
    route_updates: tokio::sync::Mutex<()>,
    /// This node's name in route announcements (random per process).
    node: String,
    /// Failed log-ins per account and per address.
    login_throttle: throttle::LoginThrottle,
    /// The server's feed of newly stored invocation records, for live
    /// tails; without one they poll the store.
    invocation_feed: std::sync::OnceLock<tokio::sync::broadcast::Sender<crate::StoredInvocation>>,
    /// Set to `true` when the server shuts down: every live tail ends.
    tails_closing: tokio::sync::watch::Sender<bool>,
    /// The apps' static files and their quota, when the server keeps them.
    files: std::sync::OnceLock<(crate::files::AppFiles, crate::files::FileQuota)>,
    /// The instance key that encrypts app secrets; without one, setting a
    /// secret answers `503`.
    secret_key: std::sync::OnceLock<crate::SecretKey>,
    /// Told of every schedule change, so the scheduler wakes at the right time.
    schedule_observer: std::sync::OnceLock<Arc<dyn ScheduleObserver>>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ApiState")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// The state of an API over `store` that compiles scripts with
    /// `compiler` and publishes what serves where to `routes`.
    pub fn new(
        store: Store,
        compiler: Arc<dyn ScriptCompiler>,
        routes: Arc<dyn RoutePublisher>,
        config: ApiConfig,
    ) -> Self {
        ApiState {
            inner: Arc::new(Inner {
                store,
                compiler,
                routes,
                config,
                route_updates: tokio::sync::Mutex::new(()),
                node: uuid::Uuid::new_v4().simple().to_string(),
                login_throttle: throttle::LoginThrottle::default(),
                invocation_feed: std::sync::OnceLock::new(),
                tails_closing: tokio::sync::watch::Sender::new(false),
                files: std::sync::OnceLock::new(),
                secret_key: std::sync::OnceLock::new(),
                schedule_observer: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Makes live tails (`GET /apps/{app}/invocations/stream`) follow
    /// `feed`, where the server publishes every invocation record it has
    /// just stored, instead of polling the store. Only the first call counts.
    pub fn set_invocation_feed(
        &self,
        feed: tokio::sync::broadcast::Sender<crate::StoredInvocation>,
    ) {
        let _ = self.inner.invocation_feed.set(feed);
    }

    fn invocation_feed(&self) -> Option<&tokio::sync::broadcast::Sender<crate::StoredInvocation>> {
        self.inner.invocation_feed.get()
    }

    /// Ends every live tail of invocation records, now and from now on.
    /// Call it when the server starts shutting down: a tail never ends by
    /// itself, so it would hold up a graceful shutdown until its grace period.
    pub fn close_invocation_tails(&self) {
        self.inner.tails_closing.send_replace(true);
    }

    fn tails_closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.tails_closing.subscribe()
    }

    /// Serves the files routes (`/apps/{app}/files`) from `files` with
    /// `quota`; without it they answer `503`. Only the first call counts.
    pub fn set_files(&self, files: crate::files::AppFiles, quota: crate::files::FileQuota) {
        let _ = self.inner.files.set((files, quota));
    }

    /// The apps' static files and their quota, if set.
    pub fn files(&self) -> Option<(&crate::files::AppFiles, &crate::files::FileQuota)> {
        self.inner.files.get().map(|(files, quota)| (files, quota))
    }

    /// Encrypts app secrets set through the API with `key`; without it,
    /// `PUT /apps/{app}/secrets/{name}` answers `503`. Only the first call counts.
    pub fn set_secret_key(&self, key: crate::SecretKey) {
        let _ = self.inner.secret_key.set(key);
    }

    /// The instance's secrets key, if set.
    pub fn secret_key(&self) -> Option<&crate::SecretKey> {
        self.inner.secret_key.get()
    }

    /// Tells `observer` of every schedule created, changed or deleted
    /// through the API. Only the first call counts.
    pub fn set_schedule_observer(&self, observer: Arc<dyn ScheduleObserver>) {
        let _ = self.inner.schedule_observer.set(observer);
    }

    fn schedule_observer(&self) -> Option<&dyn ScheduleObserver> {
        self.inner
            .schedule_observer
            .get()
            .map(|observer| &**observer)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The settings.
    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    fn compiler(&self) -> &dyn ScriptCompiler {
        &*self.inner.compiler
    }

    fn routes(&self) -> &dyn RoutePublisher {
        &*self.inner.routes
    }

    fn route_updates(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.route_updates
    }

    /// Tells the other nodes on the database that routes changed, after this
    /// node published the change to its own table. A failed announcement
    /// only delays the other nodes until their next periodic reload.
    async fn announce_routes(&self) {
        if let Err(error) = self.store().announce_route_change(&self.inner.node).await {
            tracing::warn!(%error, "cannot announce a route change to the other nodes");
        }
    }

    /// Keeps this node's routing table in step with changes made through
    /// other nodes on the same PostgreSQL database: on each of their
    /// announcements, after a lost subscription, and every
    /// [`ROUTES_RESYNC_INTERVAL`] in case an announcement was lost, it
    /// reloads every route from the store. Returns at once on SQLite (one
    /// node); otherwise runs until the task is aborted, which must happen
    /// before [`Store::close`] (the subscription holds a connection).
    pub async fn follow_route_changes(self) {
        let mut changes = loop {
            match self.store().route_changes().await {
                Ok(Some(changes)) => break changes,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, "cannot subscribe to route changes; retrying");
                    tokio::time::sleep(ROUTES_RETRY_DELAY).await;
                }
            }
        };
        // Changes made between the server's first load and the subscription.
        let mut reload = true;
        loop {
            if reload && let Err(error) = self.reload_routes().await {
                tracing::warn!(%error, "cannot reload the routes after a change on another node");
            }
            reload = match tokio::time::timeout(ROUTES_RESYNC_INTERVAL, changes.next()).await {
                Ok(Ok(crate::RouteChange::Announced(node))) => node != self.inner.node,
                Ok(Ok(crate::RouteChange::Resubscribed)) | Err(_) => true,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "lost the subscription to route changes; retrying");
                    tokio::time::sleep(ROUTES_RETRY_DELAY).await;
                    false
                }
            };
        }
    }

    /// Reloads the whole routing table from the store.
    async fn reload_routes(&self) -> crate::StoreResult<()> {
        let _routes = self.route_updates().lock().await;
        let scripts = self.store().active_scripts().await?;
        let domains = self.store().all_domains().await?;
        self.routes().routes_reloaded(&scripts, domains);
        Ok(())
    }

    fn login_throttle(&self) -> &throttle::LoginThrottle {
        &self.inner.login_throttle
    }
}

/// One route of the management API, as documented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// The path below [`API_PREFIX`], with `{parameters}`.
    pub path: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// The OpenAPI tag (resource).
    pub tag: &'static str,
    /// Whether it requires a session or an API token.
    pub authenticated: bool,
    /// The name of the request body's schema, if it takes one.
    pub request_body: Option<&'static str>,
    /// The status of a successful answer.
    pub success_status: u16,
}

impl Endpoint {
    /// The full path, with [`API_PREFIX`].
    pub fn full_path(&self) -> String {
        format!("{API_PREFIX}{}", self.path)
    }
}

macro_rules! endpoint {
    ($method:ident $path:literal, $tag:literal, $summary:literal, auth: $auth:literal, body: $body:expr, status: $status:literal, $handler:expr) => {
        (
            Endpoint {
                method: stringify!($method),
                path: $path,
                summary: $summary,
                tag: $tag,
                authenticated: $auth,
                request_body: $body,
                success_status: $status,
            },
            on(MethodFilter::$method, $handler),
        )
    };
}

/// The routes with their handlers: the single source of the router and the
/// OpenAPI document.
fn table() -> Vec<(Endpoint, MethodRouter<ApiState>)> {
    vec![
        endpoint!(POST "/auth/login", "auth", "Log in with a username (or e-mail) and password; sets the session cookie and returns the CSRF token", auth: false, body: Some("LoginRequest"), status: 200, auth::login),
        endpoint!(POST "/auth/logout", "auth", "End the current session", auth: true, body: None, status: 204, auth::logout),
        endpoint!(GET "/auth/me", "auth", "Who is calling: user, instance role, permissions", auth: true, body: None, status: 200, auth::who_am_i),
        endpoint!(GET "/tokens", "tokens", "List the caller's API tokens (never their secrets)", auth: true, body: None, status: 200, auth::list_tokens),
        endpoint!(POST "/tokens", "tokens", "Create an API token; its secret is in this answer only", auth: true, body: Some("CreateTokenRequest"), status: 201, auth::create_token),
        endpoint!(DELETE "/tokens/{id}", "tokens", "Revoke one of the caller's API tokens", auth: true, body: None, status: 204, auth::revoke_token),
        endpoint!(GET "/apps", "apps", "List the apps the caller can see, each with `my_role`", auth: true, body: None, status: 200, apps::list_apps),
        endpoint!(POST "/apps", "apps", "Create an app", auth: true, body: Some("CreateAppRequest"), status: 201, apps::create_app),
        endpoint!(GET "/apps/{app}", "apps", "Get an app", auth: true, body: None, status: 200, apps::get_app),
        endpoint!(PATCH "/apps/{app}", "apps", "Change an app's name or settings", auth: true, body: Some("UpdateAppRequest"), status: 200, apps::update_app),
        endpoint!(DELETE "/apps/{app}", "apps", "Delete an app with its scripts, versions and domains", auth: true, body: None, status: 204, apps::delete_app),
        endpoint!(GET "/apps/{app}/scripts", "scripts", "List an app's scripts", auth: true, body: None, status: 200, apps::list_scripts),
        endpoint!(GET "/apps/{app}/scripts/{script}", "scripts", "Get a script with its active version's source", auth: true, body: None, status: 200, apps::get_script),
        endpoint!(PUT "/apps/{app}/scripts/{script}", "scripts", "Deploy: compile in the sandbox, store as a new version and activate it", auth: true, body: Some("DeployRequest"), status: 201, apps::deploy),
        endpoint!(DELETE "/apps/{app}/scripts/{script}", "scripts", "Delete a script with its versions", auth: true, body: None, status: 204, apps::delete_script),
        endpoint!(GET "/apps/{app}/scripts/{script}/versions", "scripts", "List a script's versions", auth: true, body: None, status: 200, apps::list_versions),
        endpoint!(GET "/apps/{app}/scripts/{script}/versions/{version}", "scripts", "Get one version with its source", auth: true, body: None, status: 200, apps::get_version),
        endpoint!(POST "/apps/{app}/scripts/{script}/rollback", "scripts", "Make an earlier version active again", auth: true, body: Some("RollbackRequest"), status: 200, apps::rollback),
        endpoint!(GET "/apps/{app}/domains", "domains", "List an app's domains", auth: true, body: None, status: 200, apps::list_domains),
        endpoint!(POST "/apps/{app}/domains", "domains", "Route a host name to the app", auth: true, body: Some("AddDomainRequest"), status: 201, apps::add_domain),
        endpoint!(DELETE "/apps/{app}/domains/{host}", "domains", "Remove a host name", auth: true, body: None, status: 204, apps::remove_domain),
        endpoint!(GET "/apps/{app}/schedules", "schedules", "List an app's cron schedules, each with `next_run_at`", auth: true, body: None, status: 200, triggers::list_schedules),
        endpoint!(POST "/apps/{app}/schedules", "schedules", "Create a cron schedule: `script`, `cron` (five fields or @hourly...), optional `timezone` (default UTC), `payload` (JSON body of each run), `enabled` (editors)", auth: true, body: Some("CreateScheduleRequest"), status: 201, triggers::create_schedule),
        endpoint!(GET "/apps/{app}/schedules/{id}", "schedules", "Get a schedule", auth: true, body: None, status: 200, triggers::get_schedule),
        endpoint!(PATCH "/apps/{app}/schedules/{id}", "schedules", "Change a schedule's `script`, `cron`, `timezone`, `payload` (null removes it) or `enabled` (editors)", auth: true, body: Some("UpdateScheduleRequest"), status: 200, triggers::update_schedule),
        endpoint!(DELETE "/apps/{app}/schedules/{id}", "schedules", "Delete a schedule (editors)", auth: true, body: None, status: 204, triggers::delete_schedule),
        endpoint!(GET "/apps/{app}/async/{id}", "async", "The status of an invocation accepted with `Prefer: respond-async`: status, attempts, result, error", auth: true, body: None, status: 200, triggers::get_async),
        endpoint!(GET "/apps/{app}/vars", "runtime", "List an app's variables with their values", auth: true, body: None, status: 200, runtime::list_vars),
        endpoint!(PUT "/apps/{app}/vars/{name}", "runtime", "Set a variable (editors)", auth: true, body: Some("SetValueRequest"), status: 200, runtime::set_var),
        endpoint!(DELETE "/apps/{app}/vars/{name}", "runtime", "Delete a variable (editors)", auth: true, body: None, status: 204, runtime::delete_var),
        endpoint!(GET "/apps/{app}/secrets", "runtime", "List an app's secret names with when each was set (never their values)", auth: true, body: None, status: 200, runtime::list_secrets),
        endpoint!(PUT "/apps/{app}/secrets/{name}", "runtime", "Set a secret, encrypted at rest; the answer never holds the value (editors)", auth: true, body: Some("SetValueRequest"), status: 200, runtime::set_secret),
        endpoint!(DELETE "/apps/{app}/secrets/{name}", "runtime", "Delete a secret (editors)", auth: true, body: None, status: 204, runtime::delete_secret),
        endpoint!(GET "/apps/{app}/http-allowlist", "runtime", "The hosts an app's scripts may call", auth: true, body: None, status: 200, runtime::get_http_allowlist),
        endpoint!(PUT "/apps/{app}/http-allowlist", "runtime", "Replace the hosts an app's scripts may call (editors)", auth: true, body: Some("HttpAllowlistRequest"), status: 200, runtime::set_http_allowlist),
        endpoint!(GET "/apps/{app}/kv", "runtime", "List an app's key-value entries by key, filtered by `prefix`, paged with `after` and `limit`", auth: true, body: None, status: 200, runtime::list_kv),
        endpoint!(DELETE "/apps/{app}/kv/{*key}", "runtime", "Delete a key-value entry (editors)", auth: true, body: None, status: 204, runtime::delete_kv),
        endpoint!(GET "/apps/{app}/kv-usage", "runtime", "How many keys and bytes an app's key-value store holds", auth: true, body: None, status: 200, runtime::kv_usage),
        endpoint!(GET "/apps/{app}/files", "files", "List an app's static files with size, ETag and modification time, its usage and quota", auth: true, body: None, status: 200, files::list_files),
        endpoint!(PUT "/apps/{app}/files/{*path}", "files", "Upload a static file (raw body, up to the per-file quota; editors); 201 when new, 200 when replaced", auth: true, body: None, status: 201, axum::handler::Handler::layer(files::put_file, DefaultBodyLimit::disable())),
        endpoint!(DELETE "/apps/{app}/files/{*path}", "files", "Delete a static file (editors)", auth: true, body: None, status: 204, files::delete_file),
        endpoint!(GET "/apps/{app}/invocations", "invocations", "List an app's invocation records, newest first; filters `script`, `status` (ok, error or a code), `since`, `until`, paged with `before` and `limit`", auth: true, body: None, status: 200, invocations::list_invocations),
        endpoint!(GET "/apps/{app}/invocations/stream", "invocations", "Live tail of new invocation records as server-sent events (`event: invocation`), after `Last-Event-ID` or `after`; filter `script`", auth: true, body: None, status: 200, invocations::stream_invocations),
        endpoint!(GET "/apps/{app}/invocations/stats", "invocations", "Per-script counts, errors and durations in time buckets for charts; `window` 1h, 24h or 7d, filter `script`", auth: true, body: None, status: 200, invocations::invocation_stats),
        endpoint!(GET "/apps/{app}/invocations/{id}", "invocations", "Get one invocation record by its id or its request id", auth: true, body: None, status: 200, invocations::get_invocation),
        endpoint!(GET "/apps/{app}/members", "members", "List an app's members (app admins)", auth: true, body: None, status: 200, accounts::list_members),
        endpoint!(POST "/apps/{app}/members", "members", "Give an active member-role user a role on the app (app admins)", auth: true, body: Some("AddMemberRequest"), status: 201, accounts::add_member),
        endpoint!(POST "/apps/{app}/members/lookup", "members", "Resolve one exact username or e-mail to a user that can be added, revealing nothing else (app admins)", auth: true, body: Some("MemberLookupRequest"), status: 200, accounts::lookup_member),
        endpoint!(PATCH "/apps/{app}/members/{user}", "members", "Change a member's app role (app admins)", auth: true, body: Some("UpdateMemberRequest"), status: 200, accounts::update_member),
        endpoint!(DELETE "/apps/{app}/members/{user}", "members", "Remove a member from the app (app admins)", auth: true, body: None, status: 204, accounts::remove_member),
        endpoint!(GET "/admin/admins", "admin", "The user directory: username, e-mail, instance role, active (InstanceManageUsers)", auth: true, body: None, status: 200, accounts::list_users),
        endpoint!(GET "/admin/users", "admin", "The user directory, as `/admin/admins` (InstanceManageUsers)", auth: true, body: None, status: 200, accounts::list_users),
        endpoint!(POST "/admin/users", "admin", "Create a user (InstanceManageUsers; owners only for an owner)", auth: true, body: Some("CreateUserRequest"), status: 201, accounts::create_user),
        endpoint!(PATCH "/admin/users/{id}", "admin", "Change a user's instance role or deactivate/reactivate it (InstanceManageUsers; owners only for owners)", auth: true, body: Some("UpdateUserRequest"), status: 200, accounts::update_user),
        endpoint!(GET "/admin/audit", "admin", "The audit log, newest first, paged with `before` and `limit` (owners and admins)", auth: true, body: None, status: 200, accounts::list_audit),
        endpoint!(GET "/openapi.json", "meta", "This API's OpenAPI 3.1 document", auth: false, body: None, status: 200, openapi::serve_document),
    ]
}

/// Every route of the management API, in the order of the documentation.
pub fn endpoints() -> Vec<Endpoint> {
    table().into_iter().map(|(endpoint, _)| endpoint).collect()
}

/// The OpenAPI 3.1 document of the management API.
pub fn openapi_document() -> serde_json::Value {
    openapi::document(&endpoints())
}

/// The router of the management API, with absolute paths under
/// [`API_PREFIX`], ready to merge with the ingress.
pub fn api_router(state: ApiState) -> Router {
    let body_limit = state.config().max_request_bytes;
    let mut router = Router::new();
    for (endpoint, method_router) in table() {
        router = router.route(&endpoint.full_path(), method_router);
    }
    router
        // Unknown paths under the prefix answer in the API's own format
        // instead of falling through to the script ingress.
        .route(
            &format!("{API_PREFIX}/{{*rest}}"),
            axum::routing::any(|| async { ApiError::not_found("API route") }),
        )
        .route(
            API_PREFIX,
            axum::routing::any(|| async { ApiError::not_found("API route") }),
        )
        // A known path with another method: 405 in the API's format.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Appends an audit entry; a failure is logged, never returned, because the
/// change it describes has already been made.
pub(crate) async fn audit(
    state: &ApiState,
    actor: crate::UserId,
    action: &str,
    target: String,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) {
    let entry = crate::NewAuditEntry {
        actor_id: Some(actor),
        action: action.to_owned(),
        target,
        before,
        after,
    };
    if let Err(error) = state.store().append_audit(&entry).await {
        tracing::error!(%error, action, "cannot write an audit entry");
    }
}

/// A request body read whole, with the body limit answered as
/// `413 payload_too_large` in the API's format.
pub(crate) struct RawBody(pub Bytes);

impl FromRequest<ApiState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &ApiState) -> ApiResult<Self> {
        Bytes::from_request(request, state)
            .await
            .map(RawBody)
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge {
                        limit_bytes: state.config().max_request_bytes,
                    }
                } else {
                    ApiError::BadRequest {
                        message: rejection.body_text(),
                    }
                }
            })
    }
}

/// A JSON request body. A missing or unknown field is `422 invalid_input`
/// naming it; anything else malformed is `400 bad_request`.
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<ApiState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &ApiState) -> ApiResult<Self> {
        let RawBody(bytes) = RawBody::from_request(request, state).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|error| json_error(&error))
    }
}

fn json_error(error: &serde_json::Error) -> ApiError {
    let message = error.to_string();
    for marker in ["missing field `", "unknown field `"] {
        if let Some(rest) = message.split(marker).nth(1)
            && let Some(field) = rest.split('`').next()
        {
            return ApiError::invalid(field, message.clone());
        }
    }
    if let Some(rest) = message.split("invalid type").nth(1) {
        return ApiError::BadRequest {
            message: format!("the JSON body has an invalid type{rest}"),
        };
    }
    ApiError::BadRequest {
        message: format!("the body is not valid JSON for this route: {message}"),
    }
}
