//! Integration tests of the orchestrator: real HTTP over loopback, the real
//! executor and the real guest.
//!
//! One test binary for the crate; every module shares one [`Executor`]
//! through [`executor()`] and starts its own [`TestServer`] (a routing
//! table, a record buffer with a [`MemorySink`], and [`serve`] on
//! `127.0.0.1:0`).

mod errors;
mod forwarded;
mod logs;
mod records;
mod requests;
mod routing;
mod shutdown;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use picloud_executor_core::{
    Executor, ExecutorConfig, InvocationLimits, PoolConfig, ScriptVersion,
};
use picloud_orchestrator_core::{
    ActiveScript, IngressConfig, IngressState, InvocationRecord, RecordBuffer, RecordSink,
    RouteTable, ServeOutcome, ingress_router, serve,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The cache directory shared by the test executors, kept across runs so the
/// guest is compiled once per build, not once per test run.
pub fn test_cache_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("orchestrator-cache")
}

static EXECUTOR: LazyLock<Executor> = LazyLock::new(|| {
    let config = ExecutorConfig {
        cache_dir: test_cache_dir(),
        ..ExecutorConfig::default()
    };
    Executor::new(config).expect("the executor starts")
});

/// The shared executor.
pub fn executor() -> &'static Executor {
    &EXECUTOR
}

static SINGLE_SLOT_EXECUTOR: LazyLock<Executor> = LazyLock::new(|| {
    // Let the shared executor compile and cache the guest first.
    let _ = executor();
    let config = ExecutorConfig {
        cache_dir: test_cache_dir(),
        pool: PoolConfig {
            max_concurrent_invocations: 1,
            queue_timeout_ms: 20,
            max_warm_instances: 2,
            ..PoolConfig::default()
        },
        ..ExecutorConfig::default()
    };
    Executor::new(config).expect("the single-slot executor starts")
});

/// An executor that runs one invocation at a time and lets a second one
/// wait only 20 ms for the slot.
pub fn single_slot_executor() -> &'static Executor {
    &SINGLE_SLOT_EXECUTOR
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh id, so that tests never share version pools by accident.
pub fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A script at `app/script` with a fresh version id and the default limits.
pub fn active_script(app: &str, script: &str, source: &str) -> ActiveScript {
    active_script_with_limits(app, script, source, InvocationLimits::default())
}

/// A script at `app/script` with a fresh version id and `limits`.
pub fn active_script_with_limits(
    app: &str,
    script: &str,
    source: &str,
    limits: InvocationLimits,
) -> ActiveScript {
    let version_id = next_id();
    ActiveScript {
        app_id: app.len() as i64,
        app_slug: app.into(),
        script_name: script.into(),
        script_id: 1000 + version_id as i64,
        version: ScriptVersion::new(version_id, &format!("{app}/{script}@{version_id}"), source)
            .with_limits(limits),
        series: Default::default(),
    }
}

/// A record sink that keeps every record in memory.
#[derive(Default)]
pub struct MemorySink {
    pub records: Mutex<Vec<InvocationRecord>>,
    pub batches: AtomicU64,
    pub idles: AtomicU64,
}

impl RecordSink for MemorySink {
    fn write_batch(
        &self,
        batch: Vec<InvocationRecord>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.records.lock().unwrap().extend(batch);
        })
    }

    fn idle(&self) {
        self.idles.fetch_add(1, Ordering::Relaxed);
    }
}

impl MemorySink {
    /// The records written so far for request `request_id`.
    pub fn for_request(&self, request_id: &str) -> Vec<InvocationRecord> {
        self.records
            .lock()
            .unwrap()
            .iter()
            .filter(|record| record.request_id == request_id)
            .cloned()
            .collect()
    }
}

/// A running ingress on a loopback port.
pub struct TestServer {
    pub address: std::net::SocketAddr,
    pub routes: Arc<RouteTable>,
    pub records: RecordBuffer,
    pub sink: Arc<MemorySink>,
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<ServeOutcome>,
}

impl TestServer {
    /// The ingress with the default configuration on the shared executor.
    pub async fn start() -> TestServer {
        TestServer::start_with(executor(), IngressConfig::default(), axum::Router::new()).await
    }

    /// The ingress on `executor` with `config`, merged with `other_routes`
    /// as the binary merges it with the management API.
    pub async fn start_with(
        executor: &Executor,
        config: IngressConfig,
        other_routes: axum::Router,
    ) -> TestServer {
        let routes = Arc::new(RouteTable::new(executor.clone()));
        let sink = Arc::new(MemorySink::default());
        let records = RecordBuffer::start(config.records.clone(), sink.clone());
        let state = IngressState::new(
            executor.clone(),
            routes.clone(),
            records.clone(),
            config.clone(),
        );
        let router = other_routes.merge(ingress_router(state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (shutdown, shutdown_signal) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            serve(listener, router, &config, async {
                let _ = shutdown_signal.await;
            })
            .await
        });
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        TestServer {
            address,
            routes,
            records,
            sink,
            client,
            shutdown: Some(shutdown),
            task,
        }
    }

    /// Makes `source` the active version of `app/script`.
    pub fn deploy(&self, app: &str, script: &str, source: &str) -> ActiveScript {
        let active = active_script(app, script, source);
        self.routes.set_active(active.clone());
        active
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// A GET of `path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// Asks the server to stop accepting connections.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Stops the server and waits until it has stopped.
    pub async fn stop(mut self) -> ServeOutcome {
        self.begin_shutdown();
        let outcome = (&mut self.task).await.unwrap();
        self.records.shutdown().await;
        outcome
    }
}

/// The body of an error response: `(code, message, request_id)`.
pub async fn error_body(response: reqwest::Response) -> (String, String, String) {
    let json: serde_json::Value = response.json().await.expect("error bodies are JSON");
    let error = &json["error"];
    let text = |key: &str| {
        error[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {json}"))
            .to_owned()
    };
    (text("code"), text("message"), text("request_id"))
}

/// A raw HTTP/1.1 connection, for what a polite client never does: stop in
/// the middle of a request, or wait for `100 Continue`.
pub struct RawConnection {
    stream: TcpStream,
    received: Vec<u8>,
}

impl RawConnection {
    pub async fn open(server: &TestServer) -> RawConnection {
        RawConnection {
            stream: TcpStream::connect(server.address).await.unwrap(),
            received: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &str) {
        self.stream.write_all(bytes.as_bytes()).await.unwrap();
    }

    /// Reads until `needle` has been received; returns everything so far.
    pub async fn read_until(&mut self, needle: &str) -> String {
        let read = async {
            let mut buffer = [0u8; 4096];
            while !String::from_utf8_lossy(&self.received).contains(needle) {
                let count = self.stream.read(&mut buffer).await.unwrap();
                assert!(
                    count > 0,
                    "connection closed before {needle:?}: {}",
                    String::from_utf8_lossy(&self.received)
                );
                self.received.extend_from_slice(&buffer[..count]);
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .expect("the server answers in time");
        String::from_utf8_lossy(&self.received).into_owned()
    }

    /// Reads until the server closes the connection; returns what was
    /// received, or `None` if it stayed open for `patience`.
    pub async fn read_until_closed(&mut self, patience: Duration) -> Option<String> {
        let read = async {
            let mut buffer = [0u8; 4096];
            loop {
                match self.stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(count) => self.received.extend_from_slice(&buffer[..count]),
                }
            }
        };
        tokio::time::timeout(patience, read).await.ok()?;
        Some(String::from_utf8_lossy(&self.received).into_owned())
    }
}
