//! The server's configuration: one typed struct, read from a TOML file and
//! overridden by `PICLOUD_*` environment variables and command-line flags.
//! Every key and its default is listed in `docs/configuration.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use picloud_executor_core::ExecutorConfig;
use picloud_executor_core::outbound::OutboundConfig;
use picloud_manager_core::files::FileQuota;
use picloud_orchestrator_core::IngressConfig;
use serde::{Deserialize, Serialize};

/// The default configuration file, read when it exists and `--config` is
/// not given.
pub const DEFAULT_CONFIG_FILE: &str = "picloud.toml";

/// Everything `picloud serve` needs. Unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the server listens on (API, dashboard, script endpoints and
    /// health checks on one port). Default `127.0.0.1:8080`: loopback only.
    pub listen: SocketAddr,
    /// The URL users reach the server at, behind any reverse proxy. When it
    /// is `https://...` the session cookie is marked `Secure`. Default: none
    /// (`http://` + `listen`).
    pub public_url: Option<String>,
    /// Where PiCloud keeps its files. Default `./data`.
    pub data_dir: PathBuf,
    /// The database: `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB`.
    /// Default `sqlite://<data_dir>/picloud.db`.
    pub database_url: Option<String>,
    /// The server's own log: format and level (`[log]`).
    pub log: LogSettings,
    /// The admin listener and the metrics endpoint (`[admin]`).
    pub admin: AdminSettings,
    /// The built web dashboard (the output of `npm run build` in
    /// `dashboard/`), served at `/dashboard/`. Default: `./dashboard/build`
    /// when that folder exists, so `cargo run` from a checkout serves it.
    pub dashboard_dir: Option<PathBuf>,
    /// The owner account created on first start.
    pub owner: OwnerConfig,
    /// The management API.
    pub api: ApiSettings,
    /// The executor (sandbox, pools, limits). Its `cache_dir` defaults to
    /// `<data_dir>/cache`.
    pub executor: ExecutorConfig,
    /// The HTTP ingress (request limits, timeouts, invocation records).
    pub ingress: IngressConfig,
    /// Retention of the invocation records in the database (`[records]`).
    pub records: RecordSettings,
    /// Static files per app: quotas (`[files]`).
    pub files: FileQuota,
    /// Outbound HTTP from scripts (`[outbound]`).
    pub outbound: OutboundSettings,
    /// The key that encrypts app secrets at rest (`[secrets]`).
    pub secrets: SecretsSettings,
    /// What scripts may use of the runtime services (`[runtime]`).
    pub runtime: RuntimeSettings,
    /// Cron schedules and async invocations (`[triggers]`).
    pub triggers: crate::triggers::TriggerSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            log: LogSettings::default(),
            admin: AdminSettings::default(),
            dashboard_dir: None,
            owner: OwnerConfig::default(),
            api: ApiSettings::default(),
            executor: ExecutorConfig::default(),
            ingress: IngressConfig::default(),
            records: RecordSettings::default(),
            files: FileQuota::default(),
            outbound: OutboundSettings::default(),
            secrets: SecretsSettings::default(),
            runtime: RuntimeSettings::default(),
            triggers: crate::triggers::TriggerSettings::default(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event (`human` is accepted too).
    #[serde(alias = "human")]
    #[value(alias = "human")]
    Text,
    /// One JSON object per line.
    Json,
}

/// The server's own log (`[log]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` (readable lines) or `json` (one object per line). Default `text`.
    pub format: LogFormat,
    /// Which events are written: a level (`info`) or `tracing` directives
    /// (`info,picloud::script=warn`). Default `info`. `RUST_LOG`,
    /// `PICLOUD_LOG_LEVEL` and `--log-level` override it, in that order.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// The admin listener and who may read `/metrics` (`[admin]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// A second listener serving `/metrics`, `/healthz` and `/readyz`
    /// without authentication, for a scraper on a private network. Default:
    /// none.
    pub listen: Option<SocketAddr>,
    /// The bearer token that `/metrics` on the main listener requires.
    /// Default: none, and `/metrics` on the main listener answers 404.
    pub metrics_token: Option<String>,
}

/// The instance owner created on first start with an empty database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OwnerConfig {
    /// Login name. Default `owner`.
    pub username: String,
    /// E-mail address. Default `owner@localhost`.
    pub email: String,
}

impl Default for OwnerConfig {
    fn default() -> Self {
        OwnerConfig {
            username: "owner".into(),
            email: "owner@localhost".into(),
        }
    }
}

/// Settings of the management API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// How long a dashboard session lasts, in seconds. Default 604,800 (7 days).
    pub session_lifetime_secs: u64,
    /// Largest management request body (a deployed script), in bytes.
    /// Default 1 MiB.
    pub max_request_bytes: usize,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            session_lifetime_secs: 7 * 24 * 60 * 60,
            max_request_bytes: 1024 * 1024,
        }
    }
}

/// Retention of the invocation records in the database (`[records]`); how
/// they are buffered before they are written is `[ingress.records]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordSettings {
    /// Records kept per app; older ones beyond it are deleted. Default 10,000.
    pub retention_max_per_app: u32,
    /// Records older than this many days are deleted. Default 7.
    pub retention_max_age_days: u32,
    /// Seconds between two retention runs (one also runs at start).
    /// Default 600 (10 minutes).
    pub retention_interval_secs: u64,
}

impl Default for RecordSettings {
    fn default() -> Self {
        RecordSettings {
            retention_max_per_app: 10_000,
            retention_max_age_days: 7,
            retention_interval_secs: 600,
        }
    }
}

/// The environment variable that holds the secrets key; it wins over the file.
pub const SECRETS_KEY_ENV: &str = "PICLOUD_SECRETS_KEY";

/// The file under the data directory where a generated secrets key is kept.
pub const SECRETS_KEY_FILE: &str = "secrets.key";

/// The key that encrypts app secrets at rest (`[secrets]`).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsSettings {
    /// 32 bytes as 64 hex digits or base64 (`openssl rand -base64 32`).
    /// `PICLOUD_SECRETS_KEY` overrides it. Default: none, and the key in
    /// `<data_dir>/secrets.key` is used, generated on first start.
    #[serde(skip_serializing)]
    pub key: Option<String>,
}

/// Never shows the key.
impl std::fmt::Debug for SecretsSettings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SecretsSettings")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl SecretsSettings {
    /// The secrets key: from `PICLOUD_SECRETS_KEY`, else from `[secrets] key`,
    /// else from `<data_dir>/secrets.key`, which is created (mode 0600) with a
    /// fresh random key if missing. Logs where the key came from, never the key.
    pub fn load_or_create_key(
        &self,
        data_dir: &Path,
    ) -> anyhow::Result<picloud_manager_core::SecretKey> {
        use picloud_manager_core::SecretKey;
        if let Ok(text) = std::env::var(SECRETS_KEY_ENV) {
            tracing::info!("secrets key read from {SECRETS_KEY_ENV}");
            return SecretKey::from_text(&text)
                .with_context(|| format!("invalid {SECRETS_KEY_ENV}"));
        }
        if let Some(text) = &self.key {
            tracing::info!("secrets key read from the configuration ([secrets] key)");
            return SecretKey::from_text(text).context("invalid [secrets] key");
        }
        let path = data_dir.join(SECRETS_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                tracing::info!(path = %path.display(), "secrets key read from its file");
                SecretKey::from_text(&text)
                    .with_context(|| format!("invalid secrets key in {}", path.display()))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = SecretKey::generate();
                write_private_file(&path, &format!("{}\n", key.to_base64())).with_context(
                    || format!("cannot write the secrets key to {}", path.display()),
                )?;
                tracing::warn!(
                    path = %path.display(),
                    "generated a new secrets key; back it up: without it, stored app secrets cannot be read"
                );
                Ok(key)
            }
            Err(error) => Err(error)
                .with_context(|| format!("cannot read the secrets key from {}", path.display())),
        }
    }
}

/// Creates `path` with `contents`, readable by its owner only; fails if it exists.
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Outbound HTTP from scripts (`[outbound]`); see
/// [`OutboundConfig`] for the rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSettings {
    /// Connection (TCP + TLS) timeout, in milliseconds. Default 5,000.
    pub connect_timeout_ms: u64,
    /// Total time one request may take, redirects and body included, in
    /// milliseconds; the invocation's deadline shortens it. Default 10,000.
    pub timeout_ms: u64,
    /// Largest response body, in bytes. Default 1 MiB.
    pub max_response_bytes: usize,
    /// Most requests one invocation may send. Default 10.
    pub max_requests_per_invocation: u32,
    /// Most redirects one request follows. Default 5.
    pub max_redirects: u32,
    /// Hosts, addresses (`host[:port]`, `IP[:port]`, `[IPv6]:port`) or
    /// networks (`IP/prefix`) exempt from the refusal of private and
    /// loopback addresses. Default: none.
    pub allow_private: Vec<String>,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        let defaults = OutboundConfig::default();
        OutboundSettings {
            connect_timeout_ms: defaults.connect_timeout.as_millis() as u64,
            timeout_ms: defaults.total_timeout.as_millis() as u64,
            max_response_bytes: defaults.max_response_bytes,
            max_requests_per_invocation: defaults.max_requests_per_invocation,
            max_redirects: defaults.max_redirects,
            allow_private: Vec::new(),
        }
    }
}

impl OutboundSettings {
    /// Refuses an invalid `allow_private` entry or a zero timeout.
    pub fn validate(&self) -> anyhow::Result<()> {
        picloud_executor_core::outbound::validate_allow_private(&self.allow_private)
            .map_err(anyhow::Error::msg)?;
        if self.connect_timeout_ms == 0 || self.timeout_ms == 0 {
            anyhow::bail!("outbound.connect_timeout_ms and outbound.timeout_ms must be above 0");
        }
        Ok(())
    }

    /// The outbound client's configuration.
    pub fn client_config(&self) -> OutboundConfig {
        OutboundConfig {
            connect_timeout: std::time::Duration::from_millis(self.connect_timeout_ms),
            total_timeout: std::time::Duration::from_millis(self.timeout_ms),
            max_response_bytes: self.max_response_bytes,
            max_requests_per_invocation: self.max_requests_per_invocation,
            max_redirects: self.max_redirects,
            allow_private: self.allow_private.clone(),
        }
    }
}

/// Quotas of the script runtime (`[runtime]`): each app's key-value store
/// and the nesting of `scripts::invoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSettings {
    /// Most keys one app may keep. Default 10,000.
    pub kv_max_keys: u64,
    /// Largest value (its JSON text), in bytes. Default 64 KiB.
    pub kv_max_value_bytes: u64,
    /// Most bytes (keys plus values) one app may keep. Default 10 MiB.
    pub kv_max_total_bytes: u64,
    /// Longest key, in bytes. Default 512.
    pub kv_max_key_bytes: u64,
    /// How deep `scripts::invoke` calls may nest. Default 3.
    pub max_call_depth: u32,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        let limits = crate::runtime::RuntimeLimits::default();
        RuntimeSettings {
            kv_max_keys: limits.kv.max_keys,
            kv_max_value_bytes: limits.kv.max_value_bytes,
            kv_max_total_bytes: limits.kv.max_total_bytes,
            kv_max_key_bytes: limits.kv.max_key_bytes,
            max_call_depth: limits.max_call_depth,
        }
    }
}

impl RuntimeSettings {
    /// The runtime's limits.
    pub fn limits(&self) -> crate::runtime::RuntimeLimits {
        crate::runtime::RuntimeLimits {
            kv: picloud_manager_core::KvQuota {
                max_keys: self.kv_max_keys,
                max_value_bytes: self.kv_max_value_bytes,
                max_total_bytes: self.kv_max_total_bytes,
                max_key_bytes: self.kv_max_key_bytes,
            },
            max_call_depth: self.max_call_depth,
        }
    }
}

/// Values from environment variables and flags, which override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen` / `PICLOUD_LISTEN`.
    pub listen: Option<SocketAddr>,
    /// `--public-url` / `PICLOUD_PUBLIC_URL`.
    pub public_url: Option<String>,
    /// `--data-dir` / `PICLOUD_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--database-url` / `PICLOUD_DATABASE_URL`.
    pub database_url: Option<String>,
    /// `--log-format` / `PICLOUD_LOG_FORMAT`.
    pub log_format: Option<LogFormat>,
    /// `--log-level` / `PICLOUD_LOG_LEVEL`, else `RUST_LOG`.
    pub log_level: Option<String>,
    /// `--admin-listen` / `PICLOUD_ADMIN_LISTEN`.
    pub admin_listen: Option<SocketAddr>,
    /// `PICLOUD_METRICS_TOKEN` (environment only, so it never shows in `ps`).
    pub metrics_token: Option<String>,
    /// `--owner-username` / `PICLOUD_OWNER_USERNAME`.
    pub owner_username: Option<String>,
    /// `--cache-dir` / `PICLOUD_CACHE_DIR`.
    pub cache_dir: Option<PathBuf>,
    /// `--dashboard-dir` / `PICLOUD_DASHBOARD_DIR`.
    pub dashboard_dir: Option<PathBuf>,
}

impl Config {
    /// Reads the file at `path` (or `picloud.toml` if it exists and `path`
    /// is `None`), then applies `overrides`.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> anyhow::Result<Config> {
        let (mut config, cache_dir_from_file) = match path {
            Some(path) => Self::read_file(path)?,
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                Self::read_file(Path::new(DEFAULT_CONFIG_FILE))?
            }
            None => (Config::default(), false),
        };
        config.apply(overrides, cache_dir_from_file);
        config.validate()?;
        Ok(config)
    }

    /// Parses a configuration from TOML text. Unknown keys are errors.
    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        Ok(toml::from_str(text)?)
    }

    fn read_file(path: &Path) -> anyhow::Result<(Config, bool)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        let config = Self::from_toml(&text)
            .with_context(|| format!("invalid configuration file {}", path.display()))?;
        let value: toml::Table = toml::from_str(&text).unwrap_or_default();
        let cache_dir_set = value
            .get("executor")
            .and_then(|executor| executor.get("cache_dir"))
            .is_some();
        Ok((config, cache_dir_set))
    }

    fn apply(&mut self, overrides: Overrides, cache_dir_from_file: bool) {
        if let Some(listen) = overrides.listen {
            self.listen = listen;
        }
        if let Some(public_url) = overrides.public_url {
            self.public_url = Some(public_url);
        }
        if let Some(data_dir) = overrides.data_dir {
            self.data_dir = data_dir;
        }
        if let Some(database_url) = overrides.database_url {
            self.database_url = Some(database_url);
        }
        if let Some(log_format) = overrides.log_format {
            self.log.format = log_format;
        }
        if let Some(log_level) = overrides.log_level {
            self.log.level = log_level;
        }
        if let Some(admin_listen) = overrides.admin_listen {
            self.admin.listen = Some(admin_listen);
        }
        if let Some(metrics_token) = overrides.metrics_token {
            self.admin.metrics_token = Some(metrics_token);
        }
        if let Some(username) = overrides.owner_username {
            self.owner.username = username;
        }
        if let Some(dashboard_dir) = overrides.dashboard_dir {
            self.dashboard_dir = Some(dashboard_dir);
        }
        match overrides.cache_dir {
            Some(cache_dir) => self.executor.cache_dir = cache_dir,
            // The cache follows the data directory unless it was set itself.
            None if !cache_dir_from_file => self.executor.cache_dir = self.data_dir.join("cache"),
            None => {}
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(public_url) = &self.public_url
            && !(public_url.starts_with("http://") || public_url.starts_with("https://"))
        {
            anyhow::bail!("public_url must start with http:// or https://, not `{public_url}`");
        }
        crate::observability::validate(&self.log, &self.admin)?;
        self.triggers.validate()?;
        self.outbound.validate()?;
        Ok(())
    }

    /// The dashboard folder to serve: the configured one, or
    /// `./dashboard/build` when it exists.
    pub fn dashboard_dir(&self) -> Option<PathBuf> {
        match &self.dashboard_dir {
            Some(directory) => Some(directory.clone()),
            None => {
                let default = PathBuf::from("dashboard/build");
                default.join("index.html").exists().then_some(default)
            }
        }
    }

    /// The database URL, defaulting to an SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("picloud.db").display()))
    }

    /// Whether cookies must be `Secure`: the public URL is https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|url| url.starts_with("https://"))
    }
}

/// `http://ADDRESS` of a server listening on `address`, as seen from this
/// machine: a wildcard address (`0.0.0.0`, `::`) is reached over loopback.
pub fn local_url(address: std::net::SocketAddr) -> String {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut address = address;
    if address.ip().is_unspecified() {
        address.set_ip(match address.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    format!("http://{address}")
}

/// `url` with any password replaced by `***`, for logs.
pub fn redact_database_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_a_newcomer() {
        let config = Config::load(Some(Path::new("/dev/null")), Overrides::default()).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database_url(), "sqlite://./data/picloud.db");
        assert_eq!(config.executor.cache_dir, PathBuf::from("./data/cache"));
        assert!(!config.secure_cookies());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let error = Config::from_toml("listen = \"127.0.0.1:1\"\nlisten_port = 3\n").unwrap_err();
        assert!(error.to_string().contains("listen_port"), "{error}");
        let error = Config::from_toml("[executor.pool]\nmax_warm = 3\n").unwrap_err();
        assert!(error.to_string().contains("max_warm"), "{error}");
    }

    #[test]
    fn record_retention_has_defaults_and_refuses_unknown_keys() {
        let defaults = Config::from_toml("").unwrap().records;
        assert_eq!(
            (
                defaults.retention_max_per_app,
                defaults.retention_max_age_days,
                defaults.retention_interval_secs
            ),
            (10_000, 7, 600)
        );
        let config = Config::from_toml(
            "[records]\nretention_max_per_app = 50\nretention_max_age_days = 1\n",
        )
        .unwrap();
        assert_eq!(config.records.retention_max_per_app, 50);
        assert_eq!(config.records.retention_max_age_days, 1);
        let error = Config::from_toml("[records]\nretention = 3\n").unwrap_err();
        assert!(error.to_string().contains("retention"), "{error}");
    }

    #[test]
    fn sections_embed_the_executor_and_ingress_settings() {
        let config = Config::from_toml(
            "data_dir = \"/srv/pi\"\npublic_url = \"https://pi.example\"\n\
             [executor.pool]\nmax_concurrent_invocations = 4\n\
             [ingress]\nmax_body_bytes = 10\ntrusted_proxies = [\"127.0.0.1\", \"::1\"]\n",
        )
        .unwrap();
        assert_eq!(config.executor.pool.max_concurrent_invocations, 4);
        assert_eq!(config.ingress.max_body_bytes, 10);
        assert!(
            config
                .ingress
                .is_trusted_proxy("127.0.0.1".parse().unwrap())
        );
        assert!(config.ingress.is_trusted_proxy("::1".parse().unwrap()));
        assert!(
            !config
                .ingress
                .is_trusted_proxy("127.0.0.2".parse().unwrap())
        );
        assert!(config.secure_cookies());
        let network = Config::from_toml("[ingress]\ntrusted_proxies = [\"10.0.0.0/8\"]\n").unwrap();
        assert!(
            network
                .ingress
                .is_trusted_proxy("10.20.30.40".parse().unwrap())
        );
        assert!(
            !network
                .ingress
                .is_trusted_proxy("11.0.0.1".parse().unwrap())
        );
        let error =
            Config::from_toml("[ingress]\ntrusted_proxies = [\"proxy.lan\"]\n").unwrap_err();
        assert!(
            error.to_string().contains("`proxy.lan` is neither"),
            "{error}"
        );
    }

    #[test]
    fn overrides_win_and_the_cache_follows_the_data_dir() {
        let mut config = Config::default();
        config.apply(
            Overrides {
                data_dir: Some("/var/lib/picloud".into()),
                listen: Some("0.0.0.0:80".parse().unwrap()),
                ..Overrides::default()
            },
            false,
        );
        assert_eq!(config.listen.to_string(), "0.0.0.0:80");
        assert_eq!(
            config.database_url(),
            "sqlite:///var/lib/picloud/picloud.db"
        );
        assert_eq!(
            config.executor.cache_dir,
            PathBuf::from("/var/lib/picloud/cache")
        );
    }

    #[test]
    fn files_and_outbound_sections() {
        let config = Config::from_toml(
            "[files]\nmax_file_bytes = 5\nmax_files = 2\n\
             [outbound]\ntimeout_ms = 250\nallow_private = [\"127.0.0.1:8081\", \"10.0.0.0/8\"]\n",
        )
        .unwrap();
        assert_eq!(config.files.max_file_bytes, 5);
        assert_eq!(config.files.max_files, 2);
        assert_eq!(config.files.max_total_bytes, 100 * 1024 * 1024);
        let outbound = config.outbound.client_config();
        assert_eq!(
            outbound.total_timeout,
            std::time::Duration::from_millis(250)
        );
        assert_eq!(outbound.max_requests_per_invocation, 10);
        assert_eq!(outbound.allow_private.len(), 2);
        config.validate().unwrap();
        let error = Config::from_toml("[files]\nmax_size = 1\n").unwrap_err();
        assert!(error.to_string().contains("max_size"), "{error}");
        let bad = Config::from_toml("[outbound]\nallow_private = [\"10.0.0.0/99\"]\n").unwrap();
        let error = bad.validate().unwrap_err();
        assert!(error.to_string().contains("allow_private"), "{error}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_database_url("postgres://pi:secret@db:5432/picloud"),
            "postgres://pi:***@db:5432/picloud"
        );
        assert_eq!(
            redact_database_url("postgres://pi@db/picloud"),
            "postgres://pi@db/picloud"
        );
        assert_eq!(
            redact_database_url("sqlite://./data/picloud.db"),
            "sqlite://./data/picloud.db"
        );
    }
}
