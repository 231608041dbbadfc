//! `picloud schedules list|add|remove APP ...`: the cron schedules that run
//! an app's scripts.

use reqwest::Method;
use serde_json::{Value, json};

use super::{CliResult, Client, Failure, print_json};

/// `picloud schedules ...`.
#[derive(Debug, clap::Subcommand)]
pub enum SchedulesCommand {
    /// List an app's schedules with their next run.
    List {
        /// The app's slug.
        app: String,
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Run SCRIPT on a cron schedule: `picloud schedules add APP SCRIPT "*/5 * * * *"`.
    Add {
        /// The app's slug.
        app: String,
        /// The script to run.
        script: String,
        /// Five fields (minute hour day-of-month month day-of-week) or a
        /// shortcut such as `@hourly` or `@daily`; quote it.
        cron: String,
        /// An IANA time zone name such as `Europe/Paris`. Default UTC.
        #[arg(long)]
        timezone: Option<String>,
        /// JSON given to each run as its request body.
        #[arg(long)]
        payload: Option<String>,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Delete a schedule by its id (see `list`).
    Remove {
        /// The app's slug.
        app: String,
        /// The schedule's id.
        id: i64,
    },
}

/// One schedule as a line: id, script, expression, zone, next run, state.
fn format_schedule(schedule: &Value) -> String {
    let text = |key: &str| schedule[key].as_str().unwrap_or("-").to_owned();
    format!(
        "{}\t{}\t{}\t{}\tnext {}{}",
        schedule["id"],
        text("script"),
        text("cron"),
        text("timezone"),
        text("next_run_at"),
        if schedule["enabled"] == false {
            "\t(disabled)"
        } else {
            ""
        }
    )
}

/// Runs a `picloud schedules` command.
pub async fn run(command: SchedulesCommand) -> CliResult {
    let client = Client::logged_in()?;
    match command {
        SchedulesCommand::List { app, json } => {
            let answer = client
                .api(
                    Method::GET,
                    &format!("/apps/{}/schedules", crate::cli::url_segment(&app)),
                    None,
                )
                .await?;
            if json {
                print_json(&answer);
            } else {
                for schedule in answer.as_array().into_iter().flatten() {
                    println!("{}", format_schedule(schedule));
                }
            }
        }
        SchedulesCommand::Add {
            app,
            script,
            cron,
            timezone,
            payload,
            disabled,
            json,
        } => {
            let payload: Option<Value> = payload
                .map(|text| {
                    serde_json::from_str(&text).map_err(|error| {
                        Failure::usage(format!("--payload is not valid JSON: {error}"))
                    })
                })
                .transpose()?;
            let mut body = json!({ "script": script, "cron": cron, "enabled": !disabled });
            if let Some(timezone) = timezone {
                body["timezone"] = json!(timezone);
            }
            if let Some(payload) = payload {
                body["payload"] = payload;
            }
            let answer = client
                .api(
                    Method::POST,
                    &format!("/apps/{}/schedules", crate::cli::url_segment(&app)),
                    Some(body),
                )
                .await?;
            if json {
                print_json(&answer);
            } else {
                println!("{}", format_schedule(&answer));
            }
        }
        SchedulesCommand::Remove { app, id } => {
            client
                .api(
                    Method::DELETE,
                    &format!("/apps/{}/schedules/{id}", crate::cli::url_segment(&app)),
                    None,
                )
                .await?;
            println!("removed schedule {id} of {app}");
        }
    }
    Ok(())
}
