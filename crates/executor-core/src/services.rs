//! The host's services as the executor sees them: one trait, implemented by
//! the embedder, that answers a script's [`HostCall`]s.
//!
//! The executor only carries calls across the sandbox boundary: it decodes
//! them, bounds the wait by the invocation's deadline, and hands the reply
//! back. What a call means (which app's keys, which hosts are allowed) is the
//! embedder's business, decided by the [`HostServices`] value it passes to
//! [`Executor::invoke_with`](crate::Executor::invoke_with) for one
//! invocation. Time spent waiting for a reply counts against the deadline but
//! uses no fuel: the guest is suspended meanwhile, and the thread is free to
//! run other requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use picloud_shared::{HostCall, HostReply};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Answers the host calls of one invocation.
///
/// ```
/// use std::time::Instant;
/// use picloud_executor_core::{BoxFuture, HostCall, HostReply, HostServices};
///
/// /// Every variable is "42"; nothing else exists.
/// struct FortyTwo;
///
/// impl HostServices for FortyTwo {
///     fn call(&self, call: HostCall, _deadline: Instant) -> BoxFuture<'_, HostReply> {
///         Box::pin(async move {
///             match call {
///                 HostCall::VarGet { .. } => HostReply::Text("42".into()),
///                 other => HostReply::error("unavailable", format!("{} is not available", other.function_name())),
///             }
///         })
///     }
/// }
/// ```
pub trait HostServices: Send + Sync {
    /// Runs one call. `deadline` is the invocation's wall-clock deadline;
    /// the executor stops waiting then (and fails the invocation with
    /// `deadline_exceeded`), so an implementation only needs it to pass on
    /// (to a nested invocation, or as an outbound request's timeout).
    fn call(&self, call: HostCall, deadline: Instant) -> BoxFuture<'_, HostReply>;
}

/// What the embedder gives one invocation beyond the request.
#[derive(Clone, Default)]
pub struct InvocationContext {
    /// The services the script's host calls go to; without them every call
    /// fails with `unavailable`.
    pub services: Option<Arc<dyn HostServices>>,
    /// A deadline earlier than the script's own limit, for a nested
    /// invocation that must finish within its caller's remaining time.
    pub deadline: Option<Instant>,
}

impl std::fmt::Debug for InvocationContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvocationContext")
            .field("services", &self.services.is_some())
            .field("deadline", &self.deadline)
            .finish()
    }
}
