//! Hostile scripts: each ends in its own typed error within its limit, while
//! a normal script in another pool keeps being served.

use picloud_executor_core::{InvocationLimits, InvokeError, OutputKind, ScriptLimit};

use crate::{body, executor, get, run, script};

#[tokio::test]
async fn smoke() {
    let invocation = run(r#""Hello, world!""#).await;
    assert_eq!(body(&invocation), "Hello, world!");
}
