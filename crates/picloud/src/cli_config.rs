//! `picloud vars ...` and `picloud secrets ...`: an app's variables and
//! secrets, which its scripts read with `vars::get` and `secrets::get`.
//!
//! A secret's value is read from standard input (or a hidden prompt on a
//! terminal), never from the command line, where `ps` and shell history
//! would show it; the server never gives it back.

use std::io::{IsTerminal, Read};

use reqwest::Method;
use serde_json::{Value, json};

use super::{CliResult, Client, Failure, print_json};

/// `picloud vars ...`.
#[derive(Debug, clap::Subcommand)]
pub enum VarsCommand {
    /// List an app's variables with their values.
    List {
        /// The app's slug.
        app: String,
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Set a variable: `picloud vars set APP NAME VALUE`, or `NAME=VALUE`.
    Set {
        /// The app's slug.
        app: String,
        /// The name (`[A-Za-z_][A-Za-z0-9_]*`), or `NAME=VALUE`.
        name: String,
        /// The value (up to 4 KiB); omit it with `NAME=VALUE`.
        value: Option<String>,
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Delete a variable.
    Unset {
        /// The app's slug.
        app: String,
        /// The variable's name.
        name: String,
    },
}

/// `picloud secrets ...`.
#[derive(Debug, clap::Subcommand)]
pub enum SecretsCommand {
    /// List an app's secret names and when each was set (never the values).
    List {
        /// The app's slug.
        app: String,
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Set a secret; the value is read from standard input (a hidden prompt
    /// on a terminal), never from the command line.
    Set {
        /// The app's slug.
        app: String,
        /// The secret's name (`[A-Za-z_][A-Za-z0-9_]*`).
        name: String,
    },
    /// Delete a secret.
    Unset {
        /// The app's slug.
        app: String,
        /// The secret's name.
        name: String,
    },
}

/// Runs a `picloud vars` command.
pub async fn run_vars(command: VarsCommand) -> CliResult {
    let client = Client::logged_in()?;
    match command {
        VarsCommand::List { app, json } => {
            let answer = client
                .api(
                    Method::GET,
                    &format!("/apps/{}/vars", crate::cli::url_segment(&app)),
                    None,
                )
                .await?;
            if json {
                print_json(&answer);
            } else {
                for item in items(&answer) {
                    println!(
                        "{}={}",
                        item["name"].as_str().unwrap_or_default(),
                        item["value"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        VarsCommand::Set {
            app,
            name,
            value,
            json,
        } => {
            let (name, value) = match value {
                Some(value) => (name, value),
                None => match name.split_once('=') {
                    Some((name, value)) => (name.to_owned(), value.to_owned()),
                    None => {
                        return Err(Failure::usage(
                            "give the value: `picloud vars set APP NAME VALUE` or `NAME=VALUE`",
                        ));
                    }
                },
            };
            let answer = client
                .api(
                    Method::PUT,
                    &format!(
                        "/apps/{}/vars/{}",
                        crate::cli::url_segment(&app),
                        crate::cli::url_segment(&name)
                    ),
                    Some(json!({ "value": value })),
                )
                .await?;
            if json {
                print_json(&answer);
            } else {
                eprintln!("set {name} in {app}");
            }
        }
        VarsCommand::Unset { app, name } => {
            client
                .api(
                    Method::DELETE,
                    &format!(
                        "/apps/{}/vars/{}",
                        crate::cli::url_segment(&app),
                        crate::cli::url_segment(&name)
                    ),
                    None,
                )
                .await?;
            eprintln!("deleted {name} from {app}");
        }
    }
    Ok(())
}

/// Runs a `picloud secrets` command.
pub async fn run_secrets(command: SecretsCommand) -> CliResult {
    let client = Client::logged_in()?;
    match command {
        SecretsCommand::List { app, json } => {
            let answer = client
                .api(
                    Method::GET,
                    &format!("/apps/{}/secrets", crate::cli::url_segment(&app)),
                    None,
                )
                .await?;
            if json {
                print_json(&answer);
            } else {
                for item in items(&answer) {
                    println!(
                        "{}\tset {}",
                        item["name"].as_str().unwrap_or_default(),
                        item["updated_at"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        SecretsCommand::Set { app, name } => {
            let value = read_secret_value(&name)?;
            client
                .api(
                    Method::PUT,
                    &format!(
                        "/apps/{}/secrets/{}",
                        crate::cli::url_segment(&app),
                        crate::cli::url_segment(&name)
                    ),
                    Some(json!({ "value": value })),
                )
                .await?;
            eprintln!("set secret {name} in {app}");
        }
        SecretsCommand::Unset { app, name } => {
            client
                .api(
                    Method::DELETE,
                    &format!(
                        "/apps/{}/secrets/{}",
                        crate::cli::url_segment(&app),
                        crate::cli::url_segment(&name)
                    ),
                    None,
                )
                .await?;
            eprintln!("deleted secret {name} from {app}");
        }
    }
    Ok(())
}

fn items(answer: &Value) -> impl Iterator<Item = &Value> {
    answer["items"].as_array().into_iter().flatten()
}

/// The secret's value: a hidden prompt on a terminal, else all of standard
/// input without one trailing newline.
fn read_secret_value(name: &str) -> CliResult<String> {
    let value = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Value of {name}: "))
            .map_err(|error| Failure::usage(format!("cannot read the value: {error}")))?
    } else {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|error| Failure::usage(format!("cannot read standard input: {error}")))?;
        let trimmed = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        trimmed.to_owned()
    };
    if value.is_empty() {
        return Err(Failure::usage("the secret's value is empty"));
    }
    Ok(value)
}
