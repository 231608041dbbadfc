//! What the logs say about a request: every line carries its request id, the
//! script's output is there, and so is the full error the caller never sees.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::{TestServer, error_body};

/// A log destination the test can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// A current-thread runtime runs the server on this thread, so the
// thread-local subscriber sees every event of the request.
#[tokio::test(flavor = "current_thread")]
async fn every_log_line_of_a_request_carries_its_id_and_the_author_gets_the_details() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = TestServer::start().await;
    server.deploy(
        "logs",
        "fail",
        "print(\"from the script\");\nlet x = 1 +\n  undefined_variable;",
    );
    let response = server
        .client
        .get(server.url("/logs/fail"))
        .header("x-request-id", "log-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let (_, message, _) = error_body(response).await;
    assert!(!message.contains("undefined_variable"));
    server.stop().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("request_id=log-1"))
        .collect();
    let has = |needle: &str| lines.iter().any(|line| line.contains(needle));
    assert!(
        has("from the script"),
        "the script's output is logged with the request id:\n{logs}"
    );
    assert!(
        has("undefined_variable") && has("line=3"),
        "the full error is logged with the request id:\n{logs}"
    );
    assert!(has("logs/fail@"), "the script's label is logged:\n{logs}");
    assert!(
        has("invocation"),
        "the invocation is logged at debug:\n{logs}"
    );
}
