//! `picloud files put|ls|rm`: an app's static files, through the management
//! API (`/api/v1/apps/{app}/files`). A child module of `cli`, so it shares
//! its client and exit codes.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::Value;

use super::{CliResult, Client, Failure, print_json, server_refused};

/// `picloud files ...`.
#[derive(Debug, clap::Subcommand)]
pub enum FilesCommand {
    /// Upload LOCAL_PATH as REMOTE_PATH (default: its file name), replacing
    /// any file there. It is served at /APP/_static/REMOTE_PATH.
    Put {
        /// The app's slug.
        app: String,
        /// The file to upload.
        local_path: PathBuf,
        /// The path within the app, such as `css/site.css`.
        remote_path: Option<String>,
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// List an app's static files.
    Ls {
        /// The app's slug.
        app: String,
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Delete one of an app's static files.
    Rm {
        /// The app's slug.
        app: String,
        /// The path within the app.
        path: String,
    },
}

/// Runs a `files` command.
pub(super) async fn run(command: FilesCommand) -> CliResult {
    match command {
        FilesCommand::Put {
            app,
            local_path,
            remote_path,
            json,
        } => put(&app, &local_path, remote_path, json).await,
        FilesCommand::Ls { app, json } => list(&app, json).await,
        FilesCommand::Rm { app, path } => remove(&app, &path).await,
    }
}

/// Refuses a path the server would refuse, before the URL parser could
/// normalise `..` away and send something else.
fn checked_path(path: &str) -> CliResult<&str> {
    picloud_manager_core::files::validate_path(path)
        .map_err(|error| Failure::usage(error.to_string()))?;
    Ok(path)
}

async fn put(
    app: &str,
    local_path: &std::path::Path,
    remote: Option<String>,
    json: bool,
) -> CliResult {
    let remote = match remote {
        Some(remote) => remote,
        None => local_path
            .file_name()
            .and_then(|name| name.to_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                Failure::usage(format!(
                    "cannot name the file after {}: give REMOTE_PATH",
                    local_path.display()
                ))
            })?,
    };
    let remote = checked_path(&remote)?;
    let bytes = std::fs::read(local_path).map_err(|error| {
        Failure::usage(format!("cannot read {}: {error}", local_path.display()))
    })?;
    let client = Client::logged_in()?;
    let mut request = client
        .http
        .request(
            Method::PUT,
            format!("{}/api/v1/apps/{app}/files/{remote}", client.server),
        )
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(bytes);
    if let Some(token) = &client.token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|error| client.unreachable(&error))?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(server_refused(status, &answer));
    }
    if json {
        print_json(&answer);
    } else {
        println!(
            "Uploaded {} ({} bytes), served at /{app}/_static/{}",
            answer["path"].as_str().unwrap_or(remote),
            answer["size"],
            answer["path"].as_str().unwrap_or(remote)
        );
    }
    Ok(())
}

async fn list(app: &str, json: bool) -> CliResult {
    let client = Client::logged_in()?;
    let answer = client
        .api(Method::GET, &format!("/apps/{app}/files"), None)
        .await?;
    if json {
        print_json(&answer);
        return Ok(());
    }
    let files = answer["files"].as_array().cloned().unwrap_or_default();
    if files.is_empty() {
        println!("No files in {app}.");
        return Ok(());
    }
    println!("{:>10}  {:<24}  PATH", "SIZE", "MODIFIED");
    for file in &files {
        println!(
            "{:>10}  {:<24}  {}",
            file["size"],
            file["modified"].as_str().unwrap_or(""),
            file["path"].as_str().unwrap_or("")
        );
    }
    println!(
        "{} files, {} bytes (quota: {} files, {} bytes)",
        answer["usage"]["files"],
        answer["usage"]["bytes"],
        answer["quota"]["max_files"],
        answer["quota"]["max_total_bytes"]
    );
    Ok(())
}

async fn remove(app: &str, path: &str) -> CliResult {
    let path = checked_path(path)?;
    let client = Client::logged_in()?;
    client
        .api(Method::DELETE, &format!("/apps/{app}/files/{path}"), None)
        .await?;
    println!("Deleted {path} from {app}.");
    Ok(())
}
