//! The real `picloud` binary on a free port, with a temporary data
//! directory and a fresh database (SQLite or PostgreSQL), and a small HTTP
//! client for its API.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use reqwest::Method;
use serde_json::Value;
use sqlx::Connection;

/// The owner's password in every test server.
pub const OWNER_PASSWORD: &str = "correct horse battery staple";
/// The password of every user that [`user_with_token`] creates.
pub const USER_PASSWORD: &str = "a password long enough";

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Which database the server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a test body once per backend: `per_backend!(name)` makes
/// `name::sqlite` and `name::postgres` from `async fn name(Backend)`.
#[macro_export]
macro_rules! per_backend {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name($crate::harness::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name($crate::harness::Backend::Postgres).await
            }
        }
    };
}

/// A data directory and a database that outlive server restarts.
pub struct Instance {
    pub data_dir: tempfile::TempDir,
    pub database_url: String,
    pub extra_config: String,
    _postgres: Option<DropPostgresDatabase>,
}

impl Instance {
    /// A fresh instance on `backend`. The PostgreSQL server comes from
    /// `PICLOUD_TEST_POSTGRES_URL`; the test fails (never skips) when it is
    /// unreachable.
    pub async fn new(backend: Backend) -> Instance {
        Self::with_config(backend, "").await
    }

    /// A fresh instance whose configuration file holds `extra_config`.
    pub async fn with_config(backend: Backend, extra_config: &str) -> Instance {
        let data_dir = tempfile::tempdir().expect("create a temporary data directory");
        let (database_url, postgres) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", data_dir.path().join("picloud.db").display()),
                None,
            ),
            Backend::Postgres => {
                let server_url = std::env::var("PICLOUD_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
                let name = format!("picloud_e2e_{:016x}", rand::thread_rng().r#gen::<u64>());
                let mut server = sqlx::PgConnection::connect(&server_url)
                    .await
                    .unwrap_or_else(|error| {
                        panic!(
                            "cannot reach PostgreSQL at {server_url} ({error}); start it, or point \
                         PICLOUD_TEST_POSTGRES_URL at a server where this user may CREATE DATABASE"
                        )
                    });
                sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
                    .execute(&mut server)
                    .await
                    .expect("create the test database");
                server.close().await.ok();
                let url = match server_url.rsplit_once('/') {
                    Some((base, _)) => format!("{base}/{name}"),
                    None => panic!("PICLOUD_TEST_POSTGRES_URL must end with /DATABASE"),
                };
                (url, Some(DropPostgresDatabase { server_url, name }))
            }
        };
        Instance {
            data_dir,
            database_url,
            extra_config: extra_config.to_owned(),
            _postgres: postgres,
        }
    }

    /// Starts the server on this instance and waits until it listens.
    pub fn start(&self) -> Server {
        let config_file = self.data_dir.path().join("picloud.toml");
        std::fs::write(&config_file, &self.extra_config).expect("write the configuration file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_picloud"))
            .arg("serve")
            .arg("--config")
            .arg(&config_file)
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .arg("--database-url")
            .arg(&self.database_url)
            .arg("--cache-dir")
            .arg(guest_cache_dir())
            .env("PICLOUD_OWNER_PASSWORD", OWNER_PASSWORD)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the picloud binary");
        let logs = Arc::new(Mutex::new(String::new()));
        let (address_sender, address_receiver) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        let thread_logs = logs.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(event) = serde_json::from_str::<Value>(&line)
                    && event["message"] == "PiCloud is listening"
                {
                    let _ = address_sender
                        .send(event["listen"].as_str().unwrap_or_default().to_owned());
                }
                let mut logs = thread_logs.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let address = match address_receiver.recv_timeout(Duration::from_secs(120)) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the server did not start; its log:\n{}",
                    logs.lock().unwrap()
                );
            }
        };
        Server {
            child,
            base_url: format!("http://{address}"),
            logs,
        }
    }
}

/// Where the compiled guest is cached for every test server, so only the
/// first one of a test run pays for compiling it.
pub fn guest_cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("picloud-guest-cache")
}

/// A running `picloud serve`.
pub struct Server {
    child: Child,
    pub base_url: String,
    logs: Arc<Mutex<String>>,
}

impl Server {
    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().expect("wait for the server") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!(
            "the server did not stop within 30 s of SIGTERM; log:\n{}",
            self.logs()
        );
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }

    /// An API client without credentials.
    pub fn anonymous(&self) -> Client {
        Client {
            http: reqwest::Client::new(),
            base_url: self.base_url.clone(),
            token: None,
        }
    }

    /// Logs in as the owner with a password and returns a client with a
    /// fresh API token.
    pub async fn owner(&self) -> Client {
        self.login_with_token("owner", OWNER_PASSWORD).await
    }

    /// Logs in with a password and returns a client with a fresh API token
    /// of that account.
    pub async fn login_with_token(&self, login: &str, password: &str) -> Client {
        let anonymous = self.anonymous();
        let session = anonymous.login(login, password).await;
        let (status, created) = session
            .send(
                Method::POST,
                "/api/v1/tokens",
                Some(serde_json::json!({"name": "test"})),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        let secret = created["secret"]
            .as_str()
            .expect("a token secret")
            .to_owned();
        anonymous.with_token(&secret)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A user created by `owner` with `instance_role` `role` and the password
/// [`USER_PASSWORD`]; returns its id and a client with an API token of its own.
pub async fn user_with_token(
    server: &Server,
    owner: &Client,
    username: &str,
    role: &str,
) -> (i64, Client) {
    let (status, created) = owner
        .send(
            Method::POST,
            "/api/v1/admin/users",
            Some(serde_json::json!({
                "username": username,
                "email": format!("{username}@example.com"),
                "password": USER_PASSWORD,
                "instance_role": role,
            })),
        )
        .await;
    assert_eq!(status, 201, "create a user: {created}");
    let client = server.login_with_token(username, USER_PASSWORD).await;
    (created["id"].as_i64().unwrap(), client)
}

/// A client of the test server.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base_url: String,
    pub token: Option<String>,
}

/// A cookie session: the cookie and its CSRF token.
pub struct Session {
    pub client: Client,
    pub cookie: String,
    pub csrf_token: String,
    pub set_cookie: String,
}

impl Client {
    /// The same client with `token` as its bearer token.
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// Sends a request and returns the status and the JSON body (`Null` when
    /// empty, a string when not JSON).
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send a request");
        into_status_and_json(response).await
    }

    /// Calls a script endpoint with any method, headers and body; returns
    /// the status, the headers and the body text.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut request = self.http.request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", self.base_url),
        );
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("call an endpoint");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap_or_default())
    }

    /// Logs in with a password.
    pub async fn login(&self, login: &str, password: &str) -> Session {
        let response = self
            .http
            .post(format!("{}/api/v1/auth/login", self.base_url))
            .json(&serde_json::json!({"login": login, "password": password}))
            .send()
            .await
            .expect("log in");
        assert_eq!(response.status(), 200, "log-in failed");
        let set_cookie = response
            .headers()
            .get("set-cookie")
            .expect("a session cookie")
            .to_str()
            .unwrap()
            .to_owned();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let body: Value = response.json().await.unwrap();
        Session {
            client: self.clone(),
            cookie,
            csrf_token: body["csrf_token"].as_str().unwrap().to_owned(),
            set_cookie,
        }
    }

    /// Deploys `source` as `app/script` (as text/plain); returns status and body.
    pub async fn deploy(&self, app: &str, script: &str, source: &str) -> (u16, Value) {
        let mut request = self
            .http
            .put(format!(
                "{}/api/v1/apps/{app}/scripts/{script}",
                self.base_url
            ))
            .header("content-type", "text/plain")
            .body(source.to_owned());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        into_status_and_json(request.send().await.expect("deploy")).await
    }
}

impl Session {
    /// Sends a request with the session cookie, and the CSRF token when `csrf`.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        csrf: bool,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .http
            .request(method, format!("{}{path}", self.client.base_url))
            .header("cookie", &self.cookie);
        if csrf {
            request = request.header("x-csrf-token", &self.csrf_token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        into_status_and_json(request.send().await.expect("send")).await
    }

    /// Sends a request with the cookie and the CSRF token.
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send_with(method, path, body, true).await
    }
}

async fn into_status_and_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// Asserts that `body` is an error with `code`.
#[track_caller]
pub fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "body: {body}");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(body["error"]["message"].is_string(), "body: {body}");
}

/// Drops a test database from a thread of its own, so that it also happens
/// while a failed test unwinds.
struct DropPostgresDatabase {
    server_url: String,
    name: String,
}

impl Drop for DropPostgresDatabase {
    fn drop(&mut self) {
        let server_url = self.server_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut server = sqlx::PgConnection::connect(&server_url).await?;
                sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut server)
                    .await?;
                server.close().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}
