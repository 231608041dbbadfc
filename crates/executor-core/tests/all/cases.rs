//! Data-driven script cases: each folder under `tests/cases/` holds
//! `script.rhai`, an optional `request.json`, and either `expected.json` (the
//! response) or `error.txt` (the error code and message). Run with
//! `PICLOUD_BLESS=1` to rewrite the expectations from the current behaviour.

use std::path::Path;

use picloud_executor_core::Request;
use serde_json::{Value, json};

use crate::{executor, script};

fn request_from(value: &Value) -> Request {
    let pairs = |key: &str| -> Vec<(String, String)> {
        value[key]
            .as_object()
            .map(|map| {
                map.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    Request {
        method: value["method"].as_str().unwrap_or("GET").to_string(),
        path: value["path"].as_str().unwrap_or("/app/script").to_string(),
        subpath: value["subpath"].as_str().unwrap_or("").to_string(),
        query: pairs("query"),
        headers: pairs("headers"),
        body: value["body"].as_str().unwrap_or("").as_bytes().to_vec(),
        request_id: "case".into(),
    }
}

#[tokio::test]
async fn script_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let bless = std::env::var_os("PICLOUD_BLESS").is_some();
    let mut folders: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    folders.sort();
    assert!(folders.len() >= 5, "the case folders are missing");
    let mut failures = Vec::new();
    for folder in folders {
        let name = folder.file_name().unwrap().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(folder.join("script.rhai")).unwrap();
        let request = match std::fs::read_to_string(folder.join("request.json")) {
            Ok(text) => request_from(&serde_json::from_str(&text).unwrap()),
            Err(_) => request_from(&json!({})),
        };
        let invocation = executor().invoke(&script(&source), request).await;
        let (file, actual) = match &invocation.result {
            Ok(response) => {
                let body = String::from_utf8_lossy(&response.body).into_owned();
                let actual = json!({
                    "status": response.status,
                    "headers": response.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
                    "body": body,
                });
                (
                    "expected.json",
                    serde_json::to_string_pretty(&actual).unwrap() + "\n",
                )
            }
            Err(error) => ("error.txt", format!("{}\n{}\n", error.code(), error)),
        };
        let path = folder.join(file);
        if bless {
            let _ = std::fs::remove_file(folder.join("expected.json"));
            let _ = std::fs::remove_file(folder.join("error.txt"));
            std::fs::write(&path, &actual).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!("{name}: expected\n{expected}\ngot\n{actual}")),
            Err(_) => failures.push(format!("{name}: no {file}; got\n{actual}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}
