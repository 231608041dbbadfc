//! The server's configuration: one typed struct, read from a TOML file and
//! overridden by `PICLOUD_*` environment variables and command-line flags.
//! Every key and its default is listed in `docs/configuration.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use picloud_executor_core::ExecutorConfig;
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
    fn sections_embed_the_executor_and_ingress_settings() {
        let config = Config::from_toml(
            "data_dir = \"/srv/pi\"\npublic_url = \"https://pi.example\"\n\
             [executor.pool]\nmax_concurrent_invocations = 4\n\
             [ingress]\nmax_body_bytes = 10\n",
        )
        .unwrap();
        assert_eq!(config.executor.pool.max_concurrent_invocations, 4);
        assert_eq!(config.ingress.max_body_bytes, 10);
        assert!(config.secure_cookies());
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
