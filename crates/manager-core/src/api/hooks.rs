//! What the management API needs from the rest of PiCloud, as two small
//! traits: compiling a script in the sandbox, and telling the orchestrator
//! which version serves which endpoint. The all-in-one binary implements
//! them with the in-process executor and routing table; a cluster manager
//! would implement them over the network.

use std::future::Future;
use std::pin::Pin;

use crate::{ActiveScript, DomainRoute};

/// A boxed future, so that the traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a script did not pass the sandbox check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The script does not compile.
    #[error("compile error: {message}")]
    Compile {
        /// The compiler's message, without the position.
        message: String,
        /// Line, from 1, when known.
        line: Option<u32>,
        /// Column, from 1, when known.
        column: Option<u32>,
    },
    /// The sandbox could not check it now (every slot busy); retry.
    #[error("{message}")]
    Unavailable {
        /// What is busy.
        message: String,
    },
}

/// Compiles scripts in the sandbox before they are stored.
pub trait ScriptCompiler: Send + Sync + 'static {
    /// Compiles `source` and throws the result away.
    fn check<'a>(&'a self, source: &'a str) -> BoxFuture<'a, Result<(), CheckError>>;
}

/// Receives every change of what serves which endpoint, right after it is
/// committed to the store, so that the next request sees it.
pub trait RoutePublisher: Send + Sync + 'static {
    /// `script` is now the active version of its script (deploy, rollback).
    fn script_activated(&self, script: &ActiveScript);
    /// A script was deleted.
    fn script_removed(&self, app_slug: &str, script_name: &str);
    /// An app was deleted with its scripts and domains.
    fn app_removed(&self, app_slug: &str);
    /// The host names of an app are now exactly `hosts`.
    fn domains_changed(&self, app_slug: &str, hosts: &[String]);
    /// The whole table, read again from the store after a change made
    /// through another node: exactly `scripts` serve, and `domains` route.
    fn routes_reloaded(&self, scripts: &[ActiveScript], domains: Vec<DomainRoute>);
}
