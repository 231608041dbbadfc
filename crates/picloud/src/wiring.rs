//! The glue between the manager's API and the in-process orchestrator and
//! executor: the two hooks the API calls. The invocation-record sink is in
//! `records.rs`.

use std::sync::Arc;

use picloud_executor_core::{Executor, InvocationLimits, InvokeError, ScriptVersion};
use picloud_manager_core::api::{BoxFuture, CheckError, RoutePublisher, ScriptCompiler};
use picloud_manager_core::{ActiveScript, DomainRoute};
use picloud_orchestrator_core::{RouteTable, RoutesSnapshot};

/// Compiles deployed scripts in the in-process sandbox.
pub struct ExecutorCompiler {
    /// The executor.
    pub executor: Executor,
}

impl ScriptCompiler for ExecutorCompiler {
    fn check<'a>(&'a self, source: &'a str) -> BoxFuture<'a, Result<(), CheckError>> {
        Box::pin(async move {
            let limits = self.executor.config().default_limits;
            match self.executor.check(source, &limits).await {
                Ok(()) => Ok(()),
                Err(InvokeError::Compile(error)) => Err(CheckError::Compile {
                    message: error.message,
                    line: error.position.map(|position| position.line),
                    column: error
                        .position
                        .map(|position| position.column)
                        .filter(|column| *column > 0),
                }),
                Err(error @ InvokeError::PoolExhausted { .. }) => Err(CheckError::Unavailable {
                    message: format!("the sandbox is busy, retry: {error}"),
                }),
                // Anything else means compiling itself blew a limit (an
                // enormous script): the author gets the reason, without a line.
                Err(error) => Err(CheckError::Compile {
                    message: error.to_string(),
                    line: error.position().map(|position| position.line),
                    column: error.position().map(|position| position.column),
                }),
            }
        })
    }
}

/// The limits a script of an app runs with: the executor's defaults, with
/// the app's overrides (`settings.limits`: `fuel`, `deadline_ms`,
/// `memory_bytes`, `output_bytes`) on top, each clamped to the instance's
/// maximum.
pub fn app_limits(settings: &serde_json::Value, executor: &Executor) -> InvocationLimits {
    let mut limits = executor.config().default_limits;
    let overrides = &settings["limits"];
    let value = |name: &str| overrides[name].as_u64().filter(|value| *value > 0);
    if let Some(fuel) = value("fuel") {
        limits.fuel = fuel;
    }
    if let Some(deadline_ms) = value("deadline_ms") {
        limits.deadline_ms = deadline_ms;
    }
    if let Some(memory_bytes) = value("memory_bytes") {
        limits.memory_bytes = memory_bytes;
    }
    if let Some(output_bytes) = value("output_bytes") {
        limits.output_bytes = output_bytes;
    }
    executor.limits_for(&limits)
}

/// Turns a store record into what the routing table serves, with its app's
/// limits.
pub fn to_route(
    script: &ActiveScript,
    executor: &Executor,
) -> picloud_orchestrator_core::ActiveScript {
    let limits = app_limits(&script.app_settings, executor);
    let label = format!(
        "{}/{}@{}",
        script.app_slug, script.script_name, script.number
    );
    picloud_orchestrator_core::ActiveScript {
        app_id: script.app_id.0,
        app_slug: script.app_slug.clone(),
        script_name: script.script_name.clone(),
        script_id: script.script_id.0,
        version: ScriptVersion::new(script.version_id.0 as u64, &label, &script.source)
            .with_limits(limits),
        series: Default::default(),
    }
}

/// The full routing table from the store's records, for start-up.
pub fn snapshot(
    scripts: &[ActiveScript],
    domains: Vec<DomainRoute>,
    executor: &Executor,
) -> RoutesSnapshot {
    RoutesSnapshot {
        scripts: scripts
            .iter()
            .map(|script| to_route(script, executor))
            .collect(),
        domains: domains
            .into_iter()
            .map(|domain| (domain.host, domain.app_slug))
            .collect(),
    }
}

/// Publishes the API's changes to the in-process routing table, and warms an
/// instance of each newly active version so its first request is not a
/// cold start.
pub struct RouteTablePublisher {
    /// The table the ingress reads.
    pub routes: Arc<RouteTable>,
    /// The executor, to warm new versions.
    pub executor: Executor,
}

impl RouteTablePublisher {
    /// After `version` took the place of `previous` in the table: a version
    /// new here gets a warm instance, so its first request is not a cold
    /// start; the same version with new limits (the app's settings changed)
    /// loses its instances, which were made with the old memory limit, and
    /// gets a fresh one; the same version with the same limits needs nothing.
    fn replaced(
        &self,
        previous: Option<&picloud_orchestrator_core::ActiveScript>,
        version: ScriptVersion,
    ) {
        if let Some(previous) = previous
            && previous.version.version_id == version.version_id
        {
            if previous.version.limits == version.limits {
                return;
            }
            self.executor.retire(version.version_id);
        }
        let executor = self.executor.clone();
        tokio::spawn(async move {
            if let Err(error) = executor.prepare(&version).await {
                tracing::warn!(script = %version.label, %error, "cannot warm the new version");
            }
        });
    }
}

impl RoutePublisher for RouteTablePublisher {
    fn script_activated(&self, script: &ActiveScript) {
        let route = to_route(script, &self.executor);
        let version = route.version.clone();
        let previous = self.routes.set_active(route);
        self.replaced(previous.as_deref(), version);
    }

    fn script_removed(&self, app_slug: &str, script_name: &str) {
        self.routes.remove_script(app_slug, script_name);
    }

    fn app_removed(&self, app_slug: &str) {
        self.routes.remove_app(app_slug);
    }

    fn domains_changed(&self, app_slug: &str, hosts: &[String]) {
        self.routes.set_domains(app_slug, hosts);
    }

    fn routes_reloaded(&self, scripts: &[ActiveScript], domains: Vec<DomainRoute>) {
        let table = snapshot(scripts, domains, &self.executor);
        let current = self.routes.load();
        let replacements: Vec<_> = table
            .scripts
            .iter()
            .map(|route| {
                let previous = current.script(&route.app_slug, &route.script_name).cloned();
                (previous, route.version.clone())
            })
            .collect();
        // Versions that no longer serve at all are retired by the table.
        self.routes.replace_all(table);
        for (previous, version) in replacements {
            self.replaced(previous.as_deref(), version);
        }
    }
}
