//! `picloud logs APP [SCRIPT]`: an app's invocation records, newest last,
//! and with `--follow` the new ones as they happen (the API's server-sent
//! event stream).

use reqwest::Method;
use serde_json::Value;

use super::{CliResult, Client, Failure, server_refused};

/// `picloud logs APP [SCRIPT]`.
#[derive(Debug, clap::Args)]
pub struct LogsArguments {
    /// The app's slug.
    app: String,
    /// Only this script's invocations.
    script: Option<String>,
    /// Keep running and print new invocations as they happen.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only `ok`, `error` (a status of 500 or more, or a refused request), or
    /// one HTTP status such as `404`.
    #[arg(long)]
    status: Option<String>,
    /// How many of the latest invocations to print first (at most 200).
    #[arg(long, short = 'n', default_value_t = 20)]
    limit: u32,
    /// Print each invocation as one JSON object per line.
    #[arg(long)]
    json: bool,
}

/// One invocation as a line: time, status, duration, script, request id,
/// resources, then its output and error indented below.
fn format_invocation(item: &Value) -> String {
    let text = |key: &str| item[key].as_str().unwrap_or("").to_owned();
    let percent = |key: &str| item[key].as_f64().unwrap_or(0.0) * 100.0;
    let mut line = format!(
        "{} {} {:>8.2}ms {} {} fuel {:.0}% mem {:.0}%{}",
        text("started_at"),
        item["status"],
        item["duration_ms"].as_f64().unwrap_or(0.0),
        text("script"),
        text("request_id"),
        percent("fuel_share"),
        percent("memory_share"),
        if item["cold_start"] == true {
            " cold"
        } else {
            ""
        },
    );
    if let Some(code) = item["error_code"].as_str() {
        line.push_str(&format!(" [{code}]"));
    }
    for output in item["output"].as_array().into_iter().flatten() {
        line.push_str(&format!(
            "\n    {}: {}",
            output["level"].as_str().unwrap_or("print"),
            output["text"].as_str().unwrap_or("")
        ));
    }
    if item["output_truncated"] == true {
        line.push_str("\n    (output truncated)");
    }
    if let Some(message) = item["error_message"].as_str() {
        line.push_str(&format!("\n    error: {message}"));
    }
    line
}

fn print_invocation(item: &Value, json: bool) {
    if json {
        println!("{item}");
    } else {
        println!("{}", format_invocation(item));
    }
}

/// Runs `picloud logs`.
pub(super) async fn run(arguments: LogsArguments) -> CliResult {
    if !(1..=200).contains(&arguments.limit) {
        return Err(Failure::usage("--limit must be from 1 to 200"));
    }
    let client = Client::logged_in()?;
    let app = crate::cli::url_segment(&arguments.app);
    let mut query = format!("limit={}", arguments.limit);
    if let Some(script) = &arguments.script {
        query.push_str(&format!("&script={}", crate::cli::url_segment(script)));
    }
    if let Some(status) = &arguments.status {
        query.push_str(&format!("&status={}", crate::cli::url_segment(status)));
    }
    let page = client
        .api(
            Method::GET,
            &format!("/apps/{app}/invocations?{query}"),
            None,
        )
        .await?;
    let items = page["items"].as_array().cloned().unwrap_or_default();
    // Oldest first, like a log.
    for item in items.iter().rev() {
        print_invocation(item, arguments.json);
    }
    if !arguments.follow {
        return Ok(());
    }
    let newest = items.first().and_then(|item| item["id"].as_i64());
    follow(&client, &app, &arguments, newest).await
}

/// Reads the live tail until the server ends it or the user stops the CLI.
async fn follow(
    client: &Client,
    app: &str,
    arguments: &LogsArguments,
    newest: Option<i64>,
) -> CliResult {
    let status_filter = arguments.status.as_deref();
    let mut last_id = newest;
    loop {
        let mut query = Vec::new();
        if let Some(script) = &arguments.script {
            query.push(format!("script={}", crate::cli::url_segment(script)));
        }
        if let Some(last_id) = last_id {
            query.push(format!("after={last_id}"));
        }
        let mut request = client.http.request(
            Method::GET,
            format!(
                "{}/api/v1/apps/{app}/invocations/stream?{}",
                client.server,
                query.join("&")
            ),
        );
        if let Some(token) = &client.token {
            request = request.bearer_auth(token);
        }
        let mut response = request
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|error| client.unreachable(&error))?;
        let status = response.status();
        if !status.is_success() {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            return Err(server_refused(status, &body));
        }
        let mut buffer = String::new();
        // Ends when the server closes the stream; the loop reconnects after
        // the last record seen.
        while let Ok(Some(chunk)) = response.chunk().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let data: String = event
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(|data| data.strip_prefix(' ').unwrap_or(data))
                    .collect::<Vec<_>>()
                    .join("\n");
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let Ok(item) = serde_json::from_str::<Value>(&data) else {
                    continue;
                };
                last_id = item["id"].as_i64().or(last_id);
                if matches_status(&item, status_filter) {
                    print_invocation(&item, arguments.json);
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Whether `item` passes `--status` (the stream itself filters by script only).
fn matches_status(item: &Value, filter: Option<&str>) -> bool {
    let status = item["status"].as_u64().unwrap_or(0);
    let is_error = status >= 500 || !item["error_code"].is_null();
    match filter {
        None => true,
        Some("ok") => !is_error,
        Some("error") => is_error,
        Some(code) => code.parse::<u64>().is_ok_and(|code| code == status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn invocations_print_as_readable_lines() {
        let item = json!({
            "started_at": "2026-11-30T08:00:00Z", "status": 500, "duration_ms": 1.5,
            "script": "hello", "request_id": "abc", "fuel_share": 0.25, "memory_share": 0.5,
            "cold_start": true, "error_code": "script_error", "error_message": "boom",
            "output": [{"level": "print", "text": "hi"}], "output_truncated": false
        });
        let line = format_invocation(&item);
        assert!(
            line.starts_with(
                "2026-11-30T08:00:00Z 500     1.50ms hello abc fuel 25% mem 50% cold [script_error]"
            ),
            "{line}"
        );
        assert!(line.contains("\n    print: hi\n    error: boom"), "{line}");
        assert!(matches_status(&item, Some("error")));
        assert!(!matches_status(&item, Some("ok")));
        assert!(matches_status(&item, Some("500")));
        assert_eq!(crate::cli::url_segment("a b/ü"), "a%20b%2F%C3%BC");
    }
}
