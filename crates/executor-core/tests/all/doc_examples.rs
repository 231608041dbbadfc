//! Every `rhai` example in `docs/scripting.md` runs without an error, so the
//! documentation cannot drift from what the guest offers.

use std::path::Path;

use std::sync::Arc;

use picloud_executor_core::{InvocationContext, Request};

use crate::services::Memory;
use crate::{executor, script};

/// The ```rhai blocks of a Markdown text.
fn rhai_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```rhai") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[tokio::test]
async fn scripting_guide_examples_run() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/scripting.md");
    let markdown = std::fs::read_to_string(path).unwrap();
    let blocks = rhai_blocks(&markdown);
    assert!(blocks.len() >= 10, "found only {} examples", blocks.len());
    let mut failures = Vec::new();
    for source in blocks {
        let request = Request {
            method: "POST".into(),
            path: "/demo/example/42".into(),
            subpath: "/42".into(),
            query: vec![("id".into(), "7".into()), ("page".into(), "2".into())],
            headers: vec![("cookie".into(), "theme=dark".into())],
            body: br#"{"id": 7, "items": [{"qty": 2, "price": 1.5}]}"#.to_vec(),
            request_id: "docs".into(),
        };
        // The examples of the services run against the in-memory services
        // of the `services` tests.
        let context = InvocationContext {
            services: Some(Arc::new(Memory::default())),
            deadline: None,
        };
        let invocation = executor()
            .invoke_with(&script(&source), request, context)
            .await;
        if let Err(error) = invocation.result {
            failures.push(format!("{source}\n→ {error}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}
