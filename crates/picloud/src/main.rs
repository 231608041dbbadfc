//! `picloud`: the all-in-one PiCloud server and its command-line client.
//!
//! `picloud serve` runs the manager (management API and store), the
//! orchestrator (HTTP ingress and routing table) and the executor (the
//! WebAssembly sandbox) in one process on one port. Every other subcommand
//! is the CLI, which talks to a server's management API with an API token
//! stored by `picloud login`. See `docs/configuration.md` and `docs/cli.md`.

mod cli;
mod config;
mod dashboard;
mod memory;
mod observability;
mod records;
mod runtime;
mod server;
mod static_files;
mod triggers;
mod wiring;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat, Overrides};

/// PiCloud: upload a Rhai script, get an HTTP endpoint.
#[derive(Debug, Parser)]
#[command(name = "picloud", version, about)]
struct Arguments {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: management API, script endpoints and sandbox in one process.
    Serve(ServeArguments),
    /// Store a server URL and an API token for the other commands.
    Login(cli::LoginArguments),
    /// Manage apps.
    #[command(subcommand)]
    Apps(cli::AppsCommand),
    /// Deploy FILE as the new active version of APP/SCRIPT.
    Deploy(cli::DeployArguments),
    /// Manage scripts.
    #[command(subcommand)]
    Scripts(cli::ScriptsCommand),
    /// List the versions of APP/SCRIPT.
    Versions(cli::VersionsArguments),
    /// Make VERSION the active version of APP/SCRIPT again.
    Rollback(cli::RollbackArguments),
    /// Call a script's endpoint and print the response body.
    Invoke(cli::InvokeArguments),
    /// Print an app's invocation records (status, duration, output, errors); `--follow` tails new ones.
    Logs(cli::LogsArguments),
    /// Manage an app's variables (read by scripts with `vars::get`).
    #[command(subcommand)]
    Vars(cli::VarsCommand),
    /// Manage an app's secrets (write-only; read by scripts with `secrets::get`).
    #[command(subcommand)]
    Secrets(cli::SecretsCommand),
    /// Manage an app's static files, served at /APP/_static/PATH.
    #[command(subcommand)]
    Files(cli::FilesCommand),
    /// Manage the cron schedules that run an app's scripts.
    #[command(subcommand)]
    Schedules(cli::SchedulesCommand),
    /// Ask a server on this machine whether it is ready (exit 0) or not (1, or 3 when nothing answers).
    Health(cli::HealthArguments),
}

/// Flags of `picloud serve`; each overrides the configuration file.
#[derive(Debug, clap::Args)]
struct ServeArguments {
    /// The TOML configuration file. Default: `picloud.toml` if it exists.
    #[arg(long, env = "PICLOUD_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, such as `127.0.0.1:8080` or `0.0.0.0:80`.
    #[arg(long, env = "PICLOUD_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// The URL users reach the server at; `https://...` makes cookies `Secure`.
    #[arg(long, env = "PICLOUD_PUBLIC_URL")]
    public_url: Option<String>,
    /// Where PiCloud keeps its files.
    #[arg(long, env = "PICLOUD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB`.
    #[arg(long, env = "PICLOUD_DATABASE_URL")]
    database_url: Option<String>,
    /// Where the compiled sandbox is cached.
    #[arg(long, env = "PICLOUD_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// The built dashboard (`dashboard/build`), served at `/dashboard/`.
    #[arg(long, env = "PICLOUD_DASHBOARD_DIR")]
    dashboard_dir: Option<PathBuf>,
    /// `text` or `json` log lines.
    #[arg(long, env = "PICLOUD_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Log level or `tracing` directives, such as `debug` or `info,picloud::script=warn`.
    #[arg(long, env = "PICLOUD_LOG_LEVEL")]
    log_level: Option<String>,
    /// A second listener for `/metrics`, `/healthz` and `/readyz`, such as `127.0.0.1:9090`.
    #[arg(long, env = "PICLOUD_ADMIN_LISTEN")]
    admin_listen: Option<std::net::SocketAddr>,
    /// Login name of the owner account created on first start.
    #[arg(long, env = "PICLOUD_OWNER_USERNAME")]
    owner_username: Option<String>,
}

fn main() -> ExitCode {
    let arguments = Arguments::parse();
    if matches!(arguments.command, Command::Serve(_)) {
        memory::tune_allocator();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("picloud: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match arguments.command {
        Command::Serve(serve) => runtime.block_on(run_server(serve)),
        command => runtime.block_on(cli::run(command.into_cli())),
    }
}

impl Command {
    fn into_cli(self) -> cli::CliCommand {
        match self {
            Command::Serve(_) => unreachable!("serve is not a client command"),
            Command::Login(arguments) => cli::CliCommand::Login(arguments),
            Command::Apps(command) => cli::CliCommand::Apps(command),
            Command::Deploy(arguments) => cli::CliCommand::Deploy(arguments),
            Command::Scripts(command) => cli::CliCommand::Scripts(command),
            Command::Versions(arguments) => cli::CliCommand::Versions(arguments),
            Command::Rollback(arguments) => cli::CliCommand::Rollback(arguments),
            Command::Invoke(arguments) => cli::CliCommand::Invoke(arguments),
            Command::Logs(arguments) => cli::CliCommand::Logs(arguments),
            Command::Vars(command) => cli::CliCommand::Vars(command),
            Command::Secrets(command) => cli::CliCommand::Secrets(command),
            Command::Files(command) => cli::CliCommand::Files(command),
            Command::Schedules(command) => cli::CliCommand::Schedules(command),
            Command::Health(arguments) => cli::CliCommand::Health(arguments),
        }
    }
}

async fn run_server(arguments: ServeArguments) -> ExitCode {
    let overrides = Overrides {
        listen: arguments.listen,
        public_url: arguments.public_url,
        data_dir: arguments.data_dir,
        database_url: arguments.database_url,
        log_format: arguments.log_format,
        log_level: arguments
            .log_level
            .or_else(|| std::env::var("RUST_LOG").ok())
            .filter(|level| !level.is_empty()),
        admin_listen: arguments.admin_listen,
        metrics_token: std::env::var(observability::METRICS_TOKEN_ENV).ok(),
        owner_username: arguments.owner_username,
        cache_dir: arguments.cache_dir,
        dashboard_dir: arguments.dashboard_dir,
    };
    let config = match Config::load(arguments.config.as_deref(), overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("picloud: {error:#}");
            return ExitCode::from(2);
        }
    };
    observability::install_logging(&config.log);
    match server::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("picloud: {error:#}");
            ExitCode::FAILURE
        }
    }
}
