//! The script runtime's services in the all-in-one binary: what a script's
//! `kv`, `vars`, `secrets`, `http`, `files` and `scripts` calls do.
//!
//! # Invariant
//! **Every call is bound to the app of the script that makes it.** The app
//! id comes from the routing table entry the orchestrator resolved, never
//! from anything the script passes; a script can name keys, variables,
//! files and scripts only inside its own app.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use picloud_executor_core::outbound::{AppPolicy, OutboundClient, OutboundRequest};
use picloud_executor_core::{
    BoxFuture, Executor, HostCall, HostReply, HostServices, HttpAnswer, HttpCall,
    InvocationContext, Request,
};
use picloud_manager_core::files::AppFiles;
use picloud_manager_core::{AppId, KvQuota, SecretKey, Store, StoreError};
use picloud_orchestrator_core::{
    IngressError, Ran, RecordBuffer, RouteTable, ScriptIdentity, ServiceProvider, Trigger,
};
use serde_json::Value;

/// How deep `scripts::invoke` may nest by default: a script may call one
/// that calls one that calls one.
pub const DEFAULT_MAX_CALL_DEPTH: u32 = 3;

/// Settings of the runtime services.
#[derive(Debug, Clone)]
pub struct RuntimeLimits {
    /// Quotas of each app's key-value store.
    pub kv: KvQuota,
    /// How many `scripts::invoke` levels may nest.
    pub max_call_depth: u32,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        RuntimeLimits {
            kv: KvQuota::default(),
            max_call_depth: DEFAULT_MAX_CALL_DEPTH,
        }
    }
}

/// The process-wide runtime: makes one [`AppServices`] per invocation.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeParts>,
}

/// What the runtime's services are made of.
pub struct RuntimeParts {
    /// KV, variables, secrets and the allow-lists.
    pub store: Store,
    /// Decrypts secrets.
    pub secret_key: SecretKey,
    /// Makes outbound HTTP requests.
    pub outbound: OutboundClient,
    /// Apps' static files.
    pub files: AppFiles,
    /// Where `scripts::invoke` finds the active version of a script.
    pub routes: Arc<RouteTable>,
    /// Runs nested invocations.
    pub executor: Executor,
    /// Receives the records of nested invocations.
    pub records: RecordBuffer,
    /// Quotas.
    pub limits: RuntimeLimits,
}

impl Runtime {
    /// The runtime over these services.
    pub fn new(parts: RuntimeParts) -> Runtime {
        Runtime {
            inner: Arc::new(parts),
        }
    }
}

impl ServiceProvider for Runtime {
    fn services_for(&self, identity: ScriptIdentity) -> Arc<dyn HostServices> {
        Arc::new(AppServices {
            runtime: self.clone(),
            identity,
            http: tokio::sync::OnceCell::new(),
        })
    }
}

/// The services of one invocation, bound to its app.
pub struct AppServices {
    runtime: Runtime,
    /// The script that runs (the routing table's entry) and its call chain.
    identity: ScriptIdentity,
    /// The app's outbound policy, loaded at the first `http` call and kept
    /// for the invocation, so the per-invocation request cap holds.
    http: tokio::sync::OnceCell<AppPolicy>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|duration| duration.as_millis() as i64)
        .unwrap_or(0)
}

/// A store error as the script sees it: quotas and bad input in full,
/// anything else (a database failure) without internals, which go to the
/// server log instead.
fn store_error(function: &str, error: StoreError) -> HostReply {
    match error {
        StoreError::QuotaExceeded { what, limit } => HostReply::error(
            "quota_exceeded",
            format!(
                "this app's key-value {what} limit ({limit}) would be exceeded; nothing was written"
            ),
        ),
        StoreError::Invalid { field, message } => {
            HostReply::error("invalid_input", format!("invalid {field}: {message}"))
        }
        StoreError::NotFound { what } => HostReply::error("not_found", format!("{what} not found")),
        StoreError::SecretUndecryptable { name } => HostReply::error(
            "secret_unavailable",
            format!("the secret `{name}` cannot be read; an app editor should set it again"),
        ),
        other => {
            tracing::error!(function, error = %other, "a host call failed in the store");
            HostReply::error("unavailable", "the service failed; try again")
        }
    }
}

fn json_text(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

impl AppServices {
    fn app(&self) -> AppId {
        AppId(self.identity.script.app_id)
    }

    async fn run(&self, call: HostCall, deadline: Instant) -> HostReply {
        let shared = &self.runtime.inner;
        let store = &shared.store;
        let function = call.function_name();
        let app = self.app();
        match call {
            HostCall::KvGet { key } => match store.kv_get(app, &key, now_ms()).await {
                Ok(Some(value)) => HostReply::Json(json_text(&value)),
                Ok(None) => HostReply::Unit,
                Err(error) => store_error(function, error),
            },
            HostCall::KvSet { key, value, ttl_ms } => {
                let value: Value = match serde_json::from_str(&value) {
                    Ok(value) => value,
                    Err(error) => return HostReply::error("invalid_input", error.to_string()),
                };
                match store
                    .kv_set(app, &key, &value, ttl_ms, now_ms(), &shared.limits.kv)
                    .await
                {
                    Ok(()) => HostReply::Unit,
                    Err(error) => store_error(function, error),
                }
            }
            HostCall::KvDelete { key } => match store.kv_delete(app, &key).await {
                Ok(existed) => HostReply::Bool(existed),
                Err(error) => store_error(function, error),
            },
            HostCall::KvList {
                prefix,
                after,
                limit,
            } => match store
                .kv_list(app, &prefix, after.as_deref(), limit, now_ms())
                .await
            {
                Ok(page) => HostReply::KvPage {
                    entries: page
                        .entries
                        .into_iter()
                        .map(|entry| (entry.key, json_text(&entry.value)))
                        .collect(),
                    next: page.next,
                },
                Err(error) => store_error(function, error),
            },
            HostCall::KvIncrement { key, by } => match store
                .kv_increment(app, &key, by, now_ms(), &shared.limits.kv)
                .await
            {
                Ok(value) => HostReply::Int(value),
                Err(error) => store_error(function, error),
            },
            HostCall::VarGet { name } => match store.get_var(app, &name).await {
                Ok(Some(value)) => HostReply::Text(value),
                Ok(None) => HostReply::Unit,
                Err(error) => store_error(function, error),
            },
            HostCall::SecretGet { name } => {
                match store.get_secret(app, &name, &shared.secret_key).await {
                    Ok(Some(value)) => HostReply::Text(value),
                    Ok(None) => HostReply::Unit,
                    Err(error) => store_error(function, error),
                }
            }
            HostCall::Http(request) => self.http(request, deadline).await,
            HostCall::FileRead { path } => match shared.files.read(app, &path).await {
                Ok(Some((bytes, _meta))) => HostReply::Bytes(bytes),
                Ok(None) => HostReply::Unit,
                Err(error) => HostReply::error(error.code(), error.to_string()),
            },
            HostCall::FileList { prefix } => match shared.files.list(app, &prefix).await {
                Ok(files) => HostReply::List(files.into_iter().map(|file| file.path).collect()),
                Err(error) => HostReply::error(error.code(), error.to_string()),
            },
            HostCall::CallScript { script, payload } => {
                self.call_script(script, payload, deadline).await
            }
        }
    }

    async fn http(&self, request: HttpCall, deadline: Instant) -> HostReply {
        let shared = &self.runtime.inner;
        let policy = self
            .http
            .get_or_try_init(|| async {
                let hosts = shared.store.list_http_allow(self.app()).await?;
                Ok::<_, StoreError>(AppPolicy::new(hosts, deadline))
            })
            .await;
        let policy = match policy {
            Ok(policy) => policy,
            Err(error) => return store_error("http::request", error),
        };
        let request = OutboundRequest {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
        };
        match shared.outbound.send(request, policy).await {
            Ok(response) => HostReply::Http(HttpAnswer {
                status: response.status,
                headers: response.headers,
                body: response.body,
            }),
            Err(error) => HostReply::error(error.code(), error.to_string()),
        }
    }

    /// `scripts::invoke`: runs another script of the same app with the
    /// payload as its JSON body, within the caller's remaining time.
    async fn call_script(&self, name: String, payload: String, deadline: Instant) -> HostReply {
        let shared = &self.runtime.inner;
        let depth = self.identity.depth + 1;
        if depth > shared.limits.max_call_depth {
            return HostReply::error(
                "call_depth_exceeded",
                format!(
                    "scripts may nest calls at most {} deep",
                    shared.limits.max_call_depth
                ),
            );
        }
        let routes = shared.routes.load();
        let Some(target) = routes
            .script(&self.identity.script.app_slug, &name)
            .cloned()
        else {
            return HostReply::error(
                "not_found",
                format!("this app has no active script named `{name}`"),
            );
        };
        drop(routes);
        let request = Request {
            method: "POST".into(),
            path: format!("/{}/{}", self.identity.script.app_slug, name),
            subpath: String::new(),
            query: Vec::new(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-picloud-trigger".into(), "invoke".into()),
                (
                    "x-picloud-caller".into(),
                    self.identity.script.script_name.clone(),
                ),
            ],
            body: payload.into_bytes(),
            request_id: self.identity.request_id.clone(),
        };
        let services = self.runtime.services_for(ScriptIdentity {
            script: target.clone(),
            request_id: self.identity.request_id.clone(),
            depth,
        });
        let context = InvocationContext {
            services: Some(services),
            deadline: Some(deadline),
        };
        let started_at_unix_ms = now_ms().max(0) as u64;
        let invocation = Box::pin(
            shared
                .executor
                .invoke_with(&target.version, request, context),
        )
        .await;
        self.record(&target, started_at_unix_ms, &invocation);
        match invocation.result {
            Err(error) => HostReply::error("call_failed", format!("`{name}` failed: {error}")),
            Ok(response) if response.status >= 400 => HostReply::error(
                "call_failed",
                format!(
                    "`{name}` answered {}: {}",
                    response.status,
                    String::from_utf8_lossy(&response.body)
                ),
            ),
            Ok(response) if response.body.is_empty() => HostReply::Unit,
            Ok(response) => {
                let is_json = response.headers.iter().any(|(header, value)| {
                    header.eq_ignore_ascii_case("content-type") && value.contains("json")
                });
                match String::from_utf8(response.body) {
                    Ok(text) if is_json => HostReply::Json(text),
                    Ok(text) => HostReply::Text(text),
                    Err(_) => HostReply::error(
                        "call_failed",
                        format!("`{name}` answered with a body that is not UTF-8"),
                    ),
                }
            }
        }
    }
}

impl AppServices {
    /// Stores the record of a nested invocation, with the trigger `invoke`
    /// and the request id of the outermost one.
    fn record(
        &self,
        target: &picloud_orchestrator_core::ActiveScript,
        started_at_unix_ms: u64,
        invocation: &picloud_executor_core::Invocation,
    ) {
        let (status, error) = match &invocation.result {
            Ok(response) => (response.status, None),
            Err(error) => {
                let error = IngressError::Invoke(error.clone());
                (error.status().as_u16(), Some(error))
            }
        };
        self.runtime.inner.records.record(Ran {
            script: target,
            trigger: Trigger::Invoke,
            request_id: &self.identity.request_id,
            started_at_unix_ms,
            stats: &invocation.stats,
            output: &invocation.output,
            status,
            error: error.as_ref(),
        });
    }
}

impl HostServices for AppServices {
    fn call(&self, call: HostCall, deadline: Instant) -> BoxFuture<'_, HostReply> {
        Box::pin(self.run(call, deadline))
    }
}
