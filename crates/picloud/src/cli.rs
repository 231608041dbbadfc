//! The command-line client: talks to a server's management API with a
//! server URL and an API token stored by `picloud login`.
//!
//! Exit codes: 0 success; 1 the server refused (or the script failed);
//! 2 usage error; 3 the server cannot be reached or nobody is logged in.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[path = "cli_logs.rs"]
mod logs;
pub use logs::LogsArguments;
#[path = "cli_config.rs"]
mod app_config;
pub use app_config::{SecretsCommand, VarsCommand};
#[path = "cli_files.rs"]
mod files;
pub use files::FilesCommand;
#[path = "cli_schedules.rs"]
mod schedules;
pub use schedules::SchedulesCommand;
#[path = "cli_health.rs"]
mod health;
pub use health::HealthArguments;

/// Where the CLI keeps the server URL and token unless this variable says.
pub const CLI_CONFIG_ENV: &str = "PICLOUD_CLI_CONFIG";

/// A client command, with its arguments.
#[derive(Debug)]
pub enum CliCommand {
    Login(LoginArguments),
    Apps(AppsCommand),
    Deploy(DeployArguments),
    Scripts(ScriptsCommand),
    Versions(VersionsArguments),
    Rollback(RollbackArguments),
    Invoke(InvokeArguments),
    Logs(LogsArguments),
    Vars(VarsCommand),
    Secrets(SecretsCommand),
    Files(FilesCommand),
    Schedules(SchedulesCommand),
    Health(HealthArguments),
}

/// `picloud login`.
#[derive(Debug, clap::Args)]
pub struct LoginArguments {
    /// The server's URL, such as `http://127.0.0.1:8080`.
    #[arg(long, env = "PICLOUD_SERVER")]
    server: String,
    /// An existing API token (`pc_...`) instead of a username and password.
    #[arg(long)]
    token: Option<String>,
    /// The username (asked for when missing and no token is given).
    #[arg(long)]
    username: Option<String>,
}

/// `picloud apps ...`.
#[derive(Debug, clap::Subcommand)]
pub enum AppsCommand {
    /// Create an app.
    Create {
        /// The app's URL name: lower-case letters, digits and '-'.
        slug: String,
        /// A display name; defaults to the slug.
        #[arg(long)]
        name: Option<String>,
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// List the apps you can see.
    List {
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
}

/// `picloud deploy APP/SCRIPT FILE`.
#[derive(Debug, clap::Args)]
pub struct DeployArguments {
    /// The script, as `APP/SCRIPT`.
    target: String,
    /// The Rhai source file.
    file: PathBuf,
    /// Print the server's JSON answer.
    #[arg(long)]
    json: bool,
}

/// `picloud scripts ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ScriptsCommand {
    /// List an app's scripts.
    List {
        /// The app's slug.
        app: String,
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
}

/// `picloud versions APP/SCRIPT`.
#[derive(Debug, clap::Args)]
pub struct VersionsArguments {
    /// The script, as `APP/SCRIPT`.
    target: String,
    /// Print the server's JSON answer.
    #[arg(long)]
    json: bool,
}

/// `picloud rollback APP/SCRIPT VERSION`.
#[derive(Debug, clap::Args)]
pub struct RollbackArguments {
    /// The script, as `APP/SCRIPT`.
    target: String,
    /// The version number to make active.
    version: i64,
    /// Print the server's JSON answer.
    #[arg(long)]
    json: bool,
}

/// `picloud invoke APP/SCRIPT[/SUB/PATH][?QUERY]`.
#[derive(Debug, clap::Args)]
pub struct InvokeArguments {
    /// The endpoint, as `APP/SCRIPT`, optionally with a sub-path and query.
    target: String,
    /// The HTTP method. Default `GET`, or `POST` when `--data` is given.
    #[arg(long, short = 'X')]
    method: Option<String>,
    /// The request body; `@FILE` reads it from a file.
    #[arg(long, short = 'd')]
    data: Option<String>,
    /// A request header, `NAME: VALUE`; may be repeated.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Print status, headers and body as JSON.
    #[arg(long)]
    json: bool,
}

/// The CLI's stored settings (`~/.config/picloud/cli.toml`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CliConfig {
    /// The server's URL.
    server: String,
    /// The API token.
    token: String,
}

/// Why a command failed, and its exit code.
struct Failure {
    exit_code: u8,
    message: String,
}

impl Failure {
    fn refused(message: impl Into<String>) -> Self {
        Failure {
            exit_code: 1,
            message: message.into(),
        }
    }
    fn usage(message: impl Into<String>) -> Self {
        Failure {
            exit_code: 2,
            message: message.into(),
        }
    }
    fn unreachable(message: impl Into<String>) -> Self {
        Failure {
            exit_code: 3,
            message: message.into(),
        }
    }
    /// Already reported (for example a compile error in `FILE:LINE:COL` form).
    fn silent(exit_code: u8) -> Self {
        Failure {
            exit_code,
            message: String::new(),
        }
    }
}

type CliResult<T = ()> = Result<T, Failure>;

/// Runs a client command and returns the process exit code.
pub async fn run(command: CliCommand) -> ExitCode {
    let outcome = match command {
        CliCommand::Login(arguments) => login(arguments).await,
        CliCommand::Apps(AppsCommand::Create { slug, name, json }) => {
            apps_create(slug, name, json).await
        }
        CliCommand::Apps(AppsCommand::List { json }) => apps_list(json).await,
        CliCommand::Deploy(arguments) => deploy(arguments).await,
        CliCommand::Scripts(ScriptsCommand::List { app, json }) => scripts_list(app, json).await,
        CliCommand::Versions(arguments) => versions(arguments).await,
        CliCommand::Rollback(arguments) => rollback(arguments).await,
        CliCommand::Invoke(arguments) => invoke(arguments).await,
        CliCommand::Logs(arguments) => logs::run(arguments).await,
        CliCommand::Vars(command) => app_config::run_vars(command).await,
        CliCommand::Secrets(command) => app_config::run_secrets(command).await,
        CliCommand::Files(command) => files::run(command).await,
        CliCommand::Schedules(command) => schedules::run(command).await,
        CliCommand::Health(arguments) => health::run(arguments).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("picloud: {}", failure.message);
            }
            ExitCode::from(failure.exit_code)
        }
    }
}

fn config_path() -> CliResult<PathBuf> {
    if let Some(path) = std::env::var_os(CLI_CONFIG_ENV) {
        return Ok(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .ok_or_else(|| {
            Failure::usage(format!(
                "set HOME or {CLI_CONFIG_ENV} so the CLI knows where to keep its settings"
            ))
        })?;
    Ok(base.join("picloud").join("cli.toml"))
}

fn load_config() -> CliResult<CliConfig> {
    let path = config_path()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::unreachable(format!(
                "not logged in: run `picloud login --server URL` first (no {})",
                path.display()
            )));
        }
        Err(error) => {
            return Err(Failure::unreachable(format!(
                "cannot read {}: {error}",
                path.display()
            )));
        }
    };
    toml::from_str(&text)
        .map_err(|error| Failure::usage(format!("invalid {}: {error}", path.display())))
}

fn save_config(config: &CliConfig) -> CliResult<PathBuf> {
    let path = config_path()?;
    let failed =
        |error: std::io::Error| Failure::usage(format!("cannot write {}: {error}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    let text = toml::to_string(config).map_err(|error| Failure::usage(error.to_string()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options.open(&path).map_err(failed)?;
        // The mode above only applies to a new file: tighten an old one too.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(failed)?;
        file.write_all(text.as_bytes()).map_err(failed)?;
    }
    #[cfg(not(unix))]
    {
        let mut file = options.open(&path).map_err(failed)?;
        file.write_all(text.as_bytes()).map_err(failed)?;
    }
    Ok(path)
}

/// A client of one server's management API.
struct Client {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
}

impl Client {
    fn new(server: &str, token: Option<String>) -> CliResult<Self> {
        let server = server.trim_end_matches('/').to_owned();
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            return Err(Failure::usage(format!(
                "the server URL must start with http:// or https://, not `{server}`"
            )));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("picloud-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| {
                Failure::unreachable(format!("cannot build an HTTP client: {error}"))
            })?;
        Ok(Client {
            http,
            server,
            token,
        })
    }

    fn logged_in() -> CliResult<Self> {
        let mut config = load_config()?;
        if let Ok(server) = std::env::var("PICLOUD_SERVER") {
            config.server = server;
        }
        if let Ok(token) = std::env::var("PICLOUD_TOKEN") {
            config.token = token;
        }
        Client::new(&config.server, Some(config.token))
    }

    /// Sends a management request and returns the JSON answer of a success;
    /// an error answer becomes a [`Failure`] with the server's message.
    async fn api(&self, method: Method, path: &str, body: Option<Value>) -> CliResult<Value> {
        let response = self.send_api(method, path, body).await?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| self.unreachable(&error))?;
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            Ok(value)
        } else {
            Err(server_refused(status, &value))
        }
    }

    async fn send_api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> CliResult<reqwest::Response> {
        let mut request = self
            .http
            .request(method, format!("{}/api/v1{path}", self.server));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request
            .send()
            .await
            .map_err(|error| self.unreachable(&error))
    }

    fn unreachable(&self, error: &reqwest::Error) -> Failure {
        Failure::unreachable(format!(
            "cannot reach the server at {}: {error}",
            self.server
        ))
    }
}

fn server_refused(status: StatusCode, body: &Value) -> Failure {
    let code = body["error"]["code"].as_str().unwrap_or("error");
    let message = body["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| body.to_string());
    if status == StatusCode::UNAUTHORIZED {
        return Failure::unreachable(format!(
            "the server refused the stored token ({code}): run `picloud login` again"
        ));
    }
    Failure::refused(format!("{message} ({code}, HTTP {})", status.as_u16()))
}

fn split_target(target: &str) -> CliResult<(&str, &str)> {
    match target.split_once('/') {
        Some((app, script)) if !app.is_empty() && !script.is_empty() && !script.contains('/') => {
            Ok((app, script))
        }
        _ => Err(Failure::usage(format!(
            "expected APP/SCRIPT, got `{target}`"
        ))),
    }
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn prompt(question: &str) -> CliResult<String> {
    eprint!("{question}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|error| Failure::usage(format!("cannot read from standard input: {error}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

async fn login(arguments: LoginArguments) -> CliResult {
    let token = match arguments.token {
        Some(token) => token,
        None => {
            let username = match arguments.username {
                Some(username) => username,
                None => prompt("Username: ")?,
            };
            let password = if std::io::stdin().is_terminal() {
                rpassword::prompt_password("Password: ")
                    .map_err(|error| Failure::usage(format!("cannot read the password: {error}")))?
            } else {
                prompt("")?
            };
            create_token_with_password(&arguments.server, &username, &password).await?
        }
    };
    let client = Client::new(&arguments.server, Some(token.clone()))?;
    let me = client.api(Method::GET, "/auth/me", None).await?;
    let path = save_config(&CliConfig {
        server: client.server.clone(),
        token,
    })?;
    println!(
        "Logged in to {} as {} ({}); settings saved in {}",
        client.server,
        me["user"]["username"].as_str().unwrap_or("?"),
        me["instance_role"].as_str().unwrap_or("?"),
        path.display()
    );
    Ok(())
}

/// Logs in with a password, creates an API token for this machine, and logs
/// the session out again.
async fn create_token_with_password(
    server: &str,
    username: &str,
    password: &str,
) -> CliResult<String> {
    let client = Client::new(server, None)?;
    let response = client
        .send_api(
            Method::POST,
            "/auth/login",
            Some(json!({ "login": username, "password": password })),
        )
        .await?;
    let status = response.status();
    let cookie = response
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::to_owned);
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(Failure::refused(format!(
            "log-in refused: {}",
            body["error"]["message"].as_str().unwrap_or("unknown error")
        )));
    }
    let cookie = cookie.ok_or_else(|| Failure::refused("the server set no session cookie"))?;
    let csrf = body["csrf_token"].as_str().unwrap_or_default().to_owned();
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "this machine".into());
    let session_request = |method: Method, path: &str| {
        client
            .http
            .request(method, format!("{}/api/v1{path}", client.server))
            .header(reqwest::header::COOKIE, &cookie)
            .header("x-csrf-token", &csrf)
    };
    let created = session_request(Method::POST, "/tokens")
        .json(&json!({ "name": format!("cli on {host}") }))
        .send()
        .await
        .map_err(|error| client.unreachable(&error))?;
    let status = created.status();
    let created: Value = created.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(server_refused(status, &created));
    }
    // The token is what the CLI keeps; the session is not needed any more.
    let _ = session_request(Method::POST, "/auth/logout").send().await;
    created["secret"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Failure::refused("the server returned no token"))
}

async fn apps_create(slug: String, name: Option<String>, json: bool) -> CliResult {
    let client = Client::logged_in()?;
    let mut body = json!({ "slug": slug });
    if let Some(name) = name {
        body["name"] = json!(name);
    }
    let app = client.api(Method::POST, "/apps", Some(body)).await?;
    if json {
        print_json(&app);
    } else {
        println!(
            "created app {} ({}); its scripts answer at {}/{}/SCRIPT",
            app["slug"].as_str().unwrap_or(&slug),
            app["name"].as_str().unwrap_or(""),
            client.server,
            slug
        );
    }
    Ok(())
}

async fn apps_list(json: bool) -> CliResult {
    let client = Client::logged_in()?;
    let apps = client.api(Method::GET, "/apps", None).await?;
    if json {
        print_json(&apps);
        return Ok(());
    }
    for app in apps.as_array().into_iter().flatten() {
        println!(
            "{}\t{}\t{}",
            app["slug"].as_str().unwrap_or(""),
            app["my_role"].as_str().unwrap_or(""),
            app["name"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

async fn deploy(arguments: DeployArguments) -> CliResult {
    let (app, script) = split_target(&arguments.target)?;
    let source = std::fs::read_to_string(&arguments.file).map_err(|error| {
        Failure::usage(format!("cannot read {}: {error}", arguments.file.display()))
    })?;
    let client = Client::logged_in()?;
    let response = client
        .send_api(
            Method::PUT,
            &format!("/apps/{app}/scripts/{script}"),
            Some(json!({ "source": source })),
        )
        .await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if body["error"]["code"] == "compile_error" {
        let error = &body["error"];
        let detail = error["detail"]
            .as_str()
            .or(error["message"].as_str())
            .unwrap_or("does not compile");
        let line = error["line"]
            .as_u64()
            .map_or("?".to_owned(), |line| line.to_string());
        let column = error["column"]
            .as_u64()
            .map_or("?".to_owned(), |column| column.to_string());
        eprintln!("{}:{line}:{column}: {detail}", arguments.file.display());
        return Err(Failure::silent(1));
    }
    if !status.is_success() {
        return Err(server_refused(status, &body));
    }
    if arguments.json {
        print_json(&body);
    } else {
        println!("deployed {app}/{script} version {}", body["version"]);
    }
    Ok(())
}

async fn scripts_list(app: String, json: bool) -> CliResult {
    let client = Client::logged_in()?;
    let scripts = client
        .api(Method::GET, &format!("/apps/{app}/scripts"), None)
        .await?;
    if json {
        print_json(&scripts);
        return Ok(());
    }
    for script in scripts.as_array().into_iter().flatten() {
        println!(
            "{}\tactive v{}\tlatest v{}\t{}",
            script["name"].as_str().unwrap_or(""),
            script["active_version_number"],
            script["latest_version_number"],
            script["last_deployed_at"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

async fn versions(arguments: VersionsArguments) -> CliResult {
    let (app, script) = split_target(&arguments.target)?;
    let client = Client::logged_in()?;
    let versions = client
        .api(
            Method::GET,
            &format!("/apps/{app}/scripts/{script}/versions"),
            None,
        )
        .await?;
    if arguments.json {
        print_json(&versions);
        return Ok(());
    }
    for version in versions.as_array().into_iter().flatten() {
        println!(
            "{}{}\t{}\t{}\t{}",
            if version["active"] == true { "*" } else { " " },
            version["number"],
            version["created_at"].as_str().unwrap_or(""),
            version["author_username"].as_str().unwrap_or(""),
            &version["hash"].as_str().unwrap_or("")
                [..12.min(version["hash"].as_str().unwrap_or("").len())]
        );
    }
    Ok(())
}

async fn rollback(arguments: RollbackArguments) -> CliResult {
    let (app, script) = split_target(&arguments.target)?;
    let client = Client::logged_in()?;
    let answer = client
        .api(
            Method::POST,
            &format!("/apps/{app}/scripts/{script}/rollback"),
            Some(json!({ "version": arguments.version })),
        )
        .await?;
    if arguments.json {
        print_json(&answer);
    } else {
        println!("{app}/{script} now serves version {}", answer["version"]);
    }
    Ok(())
}

async fn invoke(arguments: InvokeArguments) -> CliResult {
    if split_target(
        arguments
            .target
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .splitn(3, '/')
            .take(2)
            .collect::<Vec<_>>()
            .join("/")
            .as_str(),
    )
    .is_err()
    {
        return Err(Failure::usage(format!(
            "expected APP/SCRIPT[/PATH][?QUERY], got `{}`",
            arguments.target
        )));
    }
    // The endpoint is a script: it never gets the API token, whose owner
    // may not be the script's author.
    let client = Client::logged_in().map(|mut client| {
        client.token = None;
        client
    })?;
    let body = match &arguments.data {
        Some(data) => match data.strip_prefix('@') {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|error| Failure::usage(format!("cannot read {path}: {error}")))?,
            ),
            None => Some(data.clone().into_bytes()),
        },
        None => None,
    };
    let method = match &arguments.method {
        Some(method) => Method::from_bytes(method.to_uppercase().as_bytes())
            .map_err(|_| Failure::usage(format!("`{method}` is not an HTTP method")))?,
        None if body.is_some() => Method::POST,
        None => Method::GET,
    };
    let mut request = client.http.request(
        method,
        format!(
            "{}/{}",
            client.server,
            arguments.target.trim_start_matches('/')
        ),
    );
    for header in &arguments.headers {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            Failure::usage(format!(
                "expected a header as `NAME: VALUE`, got `{header}`"
            ))
        })?;
        request = request.header(name.trim(), value.trim());
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request
        .send()
        .await
        .map_err(|error| client.unreachable(&error))?;
    let status = response.status();
    let headers: serde_json::Map<String, Value> = response
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), json!(value.to_str().unwrap_or(""))))
        .collect();
    let bytes = response
        .bytes()
        .await
        .map_err(|error| client.unreachable(&error))?;
    if arguments.json {
        print_json(&json!({
            "status": status.as_u16(),
            "headers": headers,
            "body": String::from_utf8_lossy(&bytes),
        }));
    } else {
        std::io::stdout().write_all(&bytes).ok();
        if !bytes.ends_with(b"\n") && std::io::stdout().is_terminal() {
            println!();
        }
    }
    if status.as_u16() >= 400 {
        return Err(Failure::refused(format!(
            "the endpoint answered HTTP {}",
            status.as_u16()
        )));
    }
    Ok(())
}

/// `text` percent-encoded for one path segment or query value: everything
/// but RFC 3986's unreserved characters.
pub(crate) fn url_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                encoded.push(byte as char);
            }
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}
