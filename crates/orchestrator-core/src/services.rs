//! Where a script's host calls go: the embedder hands the orchestrator a
//! [`ServiceProvider`] that makes the [`HostServices`] of one invocation,
//! bound to the script's app. The ingress, the scheduler and the async
//! workers all ask it, so a script has the same powers whatever started it.

use std::sync::Arc;

use picloud_executor_core::HostServices;

use crate::routes::ActiveScript;

/// The script an invocation runs, as the services need it.
#[derive(Debug, Clone)]
pub struct ScriptIdentity {
    /// The routing table's entry: app id and slug, script name and version.
    pub script: Arc<ActiveScript>,
    /// The request id of the invocation (of the outermost one, for a nested
    /// call), for the services' own logs.
    pub request_id: String,
    /// How many `scripts::call` levels deep this invocation is; 0 for one
    /// started by a trigger.
    pub depth: u32,
}

/// Makes the services of one invocation.
pub trait ServiceProvider: Send + Sync {
    /// The services for one invocation of `script`.
    fn services_for(&self, script: ScriptIdentity) -> Arc<dyn HostServices>;
}
