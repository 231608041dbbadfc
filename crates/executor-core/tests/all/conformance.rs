//! PiCloud's Rhai is stock Rhai: each script under `tests/conformance/` gives
//! the same result and the same printed output inside the guest as in a
//! native `rhai` 1.27 engine with its default features.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::{executor, get, script};

/// Evaluates a script natively and renders its result the way the guest
/// renders a response body: strings as text, everything else as JSON.
fn native(source: &str) -> (String, Vec<String>) {
    let printed = Arc::new(Mutex::new(Vec::new()));
    let mut engine = rhai::Engine::new();
    // Rhai lowers its default depth limits in debug builds (this test binary
    // is one); use the release defaults, which are also the guest's.
    let limits = picloud_executor_core::RhaiLimits::default();
    engine
        .set_max_call_levels(limits.max_call_levels as usize)
        .set_max_expr_depths(
            limits.max_expr_depth as usize,
            limits.max_function_expr_depth as usize,
        );
    let sink = printed.clone();
    engine.on_print(move |text| sink.lock().unwrap().push(text.to_string()));
    let value: rhai::Dynamic = engine
        .eval(source)
        .unwrap_or_else(|error| panic!("native rhai failed: {error}"));
    let rendered = if value.is_string() {
        value.into_string().unwrap()
    } else {
        serde_json::to_string(&value).unwrap()
    };
    let lines = printed.lock().unwrap().clone();
    (rendered, lines)
}

#[tokio::test]
async fn guest_and_native_rhai_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "rhai")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the conformance scripts are missing");
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let (expected, expected_lines) = native(&source);
        let invocation = executor().invoke(&script(&source), get("/")).await;
        let name = file.file_name().unwrap().to_string_lossy();
        let response = invocation
            .result
            .unwrap_or_else(|error| panic!("{name}: the guest failed: {error}"));
        assert_eq!(
            String::from_utf8_lossy(&response.body),
            expected,
            "{name}: results differ"
        );
        let lines: Vec<_> = invocation
            .output
            .iter()
            .map(|line| line.text.clone())
            .collect();
        assert_eq!(lines, expected_lines, "{name}: printed output differs");
    }
}
