//! Triggers beyond HTTP: cron schedules and the durable queue of
//! asynchronous invocations.
//!
//! # Exactly once across nodes
//! Every node runs a scheduler against the same database. A node runs a
//! tick only after it has moved the schedule's `next_run_at` forward with a
//! compare-and-set (`UPDATE ... WHERE id = $1 AND next_run_at = $2`): of two
//! nodes that saw the same due tick, exactly one update changes a row, and
//! only that node runs it. This needs no lock held across the run and works
//! alike on PostgreSQL and SQLite. Async jobs are claimed the same way, with
//! a lease (`locked_by`, `locked_until`) on top: on PostgreSQL the claim
//! reads with `FOR UPDATE SKIP LOCKED`, so concurrent workers take different
//! jobs instead of queueing on one row; on SQLite the write transaction holds
//! the database lock.
//!
//! # Missed ticks
//! After downtime (or a scheduler that was busy), a schedule whose
//! `next_run_at` lies in the past runs **once**, not once per missed tick;
//! its next run is then the first tick strictly after the claim time `now`.
//!
//! # Time
//! Every call that depends on the time takes `now` as a parameter, so tests
//! (and a cluster of schedulers in one test) drive a controllable clock.

use std::str::FromStr;

use chrono::TimeZone;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::Serialize;

use super::{Store, on_pool, write_transaction};
use crate::error::{StoreError, StoreResult, is_foreign_key_violation};
use crate::model::{AppId, ScriptId, Timestamp, UserId};

/// Identifies a [`Schedule`].
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    serde::Deserialize,
    sqlx::Type,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct ScheduleId(pub i64);

impl std::fmt::Display for ScheduleId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(formatter)
    }
}

/// The time zone of a schedule that names none.
pub const DEFAULT_TIMEZONE: &str = "UTC";

/// The most attempts an async invocation may be given.
pub const MAX_ASYNC_ATTEMPTS: u32 = 20;

/// A validated cron expression in a time zone: what computes a schedule's
/// next tick.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    timezone: chrono_tz::Tz,
}

impl CronSchedule {
    /// Parses a standard five-field expression (`minute hour day-of-month
    /// month day-of-week`) or a shortcut (`@yearly`, `@annually`, `@monthly`,
    /// `@weekly`, `@daily`, `@midnight`, `@hourly`) in the IANA time zone
    /// `timezone` (`UTC`, `Europe/Paris`...).
    ///
    /// Fails with [`StoreError::Invalid`] naming `cron` or `timezone`.
    pub fn parse(expression: &str, timezone: &str) -> StoreResult<CronSchedule> {
        let expression = expression.trim();
        let expanded = if expression.eq_ignore_ascii_case("@midnight") {
            "@daily"
        } else {
            expression
        };
        if expanded.is_empty() {
            return Err(StoreError::invalid(
                "cron",
                "must be a five-field cron expression such as `*/5 * * * *`, or `@hourly`",
            ));
        }
        if !expanded.starts_with('@') && expanded.split_whitespace().count() != 5 {
            return Err(StoreError::invalid(
                "cron",
                format!(
                    "`{expression}` has {} fields; a cron expression has five: minute hour \
                     day-of-month month day-of-week (or use a shortcut such as `@hourly`)",
                    expanded.split_whitespace().count()
                ),
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expanded)
            .map_err(|error| {
                StoreError::invalid(
                    "cron",
                    format!("`{expression}` is not a valid cron expression: {error}"),
                )
            })?;
        let timezone = chrono_tz::Tz::from_str(timezone.trim()).map_err(|_| {
            StoreError::invalid(
                "timezone",
                format!(
                    "`{timezone}` is not an IANA time zone name such as `UTC` or `Europe/Paris`"
                ),
            )
        })?;
        Ok(CronSchedule { cron, timezone })
    }

    /// The first tick strictly after `after`.
    ///
    /// Fails with [`StoreError::Invalid`] naming `cron` for an expression
    /// that never matches (`0 0 31 2 *`).
    pub fn next_after(&self, after: Timestamp) -> StoreResult<Timestamp> {
        let start = self
            .timezone
            .timestamp_millis_opt(after.unix_millis())
            .single()
            .ok_or_else(|| StoreError::invalid("cron", "the time is out of range"))?;
        let next = self
            .cron
            .find_next_occurrence(&start, false)
            .map_err(|error| {
                StoreError::invalid("cron", format!("the expression never matches: {error}"))
            })?;
        Ok(Timestamp::from_unix_millis(next.timestamp_millis()))
    }
}

/// A cron schedule that runs a script of an app.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schedule {
    /// The schedule's id.
    pub id: ScheduleId,
    /// The app it belongs to.
    pub app_id: AppId,
    /// The script it runs.
    pub script_id: ScriptId,
    /// The script's name.
    pub script: String,
    /// The cron expression, as given.
    pub cron: String,
    /// The IANA time zone the expression is evaluated in.
    pub timezone: String,
    /// JSON given to the script as the request body, if any.
    pub payload: Option<serde_json::Value>,
    /// Whether it runs; a disabled schedule keeps its settings.
    pub enabled: bool,
    /// The next tick (the scheduler runs it at or soon after this time).
    pub next_run_at: Timestamp,
    /// When a scheduler last claimed a tick, if ever.
    pub last_run_at: Option<Timestamp>,
    /// When it was created.
    pub created_at: Timestamp,
    /// Who created it, if known.
    pub created_by: Option<UserId>,
}

#[derive(sqlx::FromRow)]
struct ScheduleRow {
    id: ScheduleId,
    app_id: AppId,
    script_id: ScriptId,
    script: String,
    cron: String,
    timezone: String,
    payload: Option<String>,
    enabled: bool,
    next_run_at: Timestamp,
    last_run_at: Option<Timestamp>,
    created_at: Timestamp,
    created_by: Option<UserId>,
}

impl From<ScheduleRow> for Schedule {
    fn from(row: ScheduleRow) -> Self {
        Schedule {
            id: row.id,
            app_id: row.app_id,
            script_id: row.script_id,
            script: row.script,
            cron: row.cron,
            timezone: row.timezone,
            payload: row
                .payload
                .and_then(|text| serde_json::from_str(&text).ok()),
            enabled: row.enabled,
            next_run_at: row.next_run_at,
            last_run_at: row.last_run_at,
            created_at: row.created_at,
            created_by: row.created_by,
        }
    }
}

const SCHEDULE_SELECT: &str = "SELECT sc.id, sc.app_id, sc.script_id, s.name AS script, sc.cron, \
     sc.timezone, sc.payload, sc.enabled, sc.next_run_at, sc.last_run_at, sc.created_at, \
     sc.created_by FROM schedules sc JOIN scripts s ON s.id = sc.script_id";

/// A new schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSchedule {
    /// The script to run; it must belong to the schedule's app.
    pub script_id: ScriptId,
    /// The cron expression (see [`CronSchedule::parse`]).
    pub cron: String,
    /// The time zone; `None` is [`DEFAULT_TIMEZONE`].
    pub timezone: Option<String>,
    /// JSON for the request body, if any.
    pub payload: Option<serde_json::Value>,
    /// Whether it runs.
    pub enabled: bool,
    /// Who creates it.
    pub created_by: Option<UserId>,
}

/// A change to a schedule; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleUpdate {
    /// Run another script of the same app.
    pub script_id: Option<ScriptId>,
    /// A new cron expression.
    pub cron: Option<String>,
    /// A new time zone.
    pub timezone: Option<String>,
    /// A new payload; `Some(None)` removes it.
    pub payload: Option<Option<serde_json::Value>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// A tick a scheduler has claimed and must run now.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleTick {
    /// The schedule.
    pub schedule_id: ScheduleId,
    /// Its app's id.
    pub app_id: AppId,
    /// Its app's slug.
    pub app_slug: String,
    /// The script's id.
    pub script_id: ScriptId,
    /// The script's name.
    pub script_name: String,
    /// The payload as JSON text, if any.
    pub payload: Option<String>,
    /// The tick's due time (the run's lag is `now - scheduled_for`).
    pub scheduled_for: Timestamp,
    /// The schedule's next tick, as the claim stored it.
    pub next_run_at: Timestamp,
}

#[derive(sqlx::FromRow)]
struct DueRow {
    id: ScheduleId,
    app_id: AppId,
    app_slug: String,
    script_id: ScriptId,
    script_name: String,
    cron: String,
    timezone: String,
    payload: Option<String>,
    next_run_at: Timestamp,
}

/// Where an async invocation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AsyncStatus {
    /// Waiting for a worker (first run, or a retry after its back-off).
    Queued,
    /// A worker holds it.
    Running,
    /// The script answered; the result is stored.
    Succeeded,
    /// Every attempt failed; the last error is stored.
    Failed,
}

impl AsyncStatus {
    /// The name as stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            AsyncStatus::Queued => "queued",
            AsyncStatus::Running => "running",
            AsyncStatus::Succeeded => "succeeded",
            AsyncStatus::Failed => "failed",
        }
    }

    fn from_stored(text: &str) -> AsyncStatus {
        match text {
            "running" => AsyncStatus::Running,
            "succeeded" => AsyncStatus::Succeeded,
            "failed" => AsyncStatus::Failed,
            _ => AsyncStatus::Queued,
        }
    }
}

/// A request accepted for asynchronous execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAsyncInvocation {
    /// The app.
    pub app_id: AppId,
    /// The script; it must belong to the app.
    pub script_id: ScriptId,
    /// The request id given to the caller and the script.
    pub request_id: String,
    /// Upper-case method.
    pub method: String,
    /// The full path.
    pub path: String,
    /// The path below the script's own.
    pub subpath: String,
    /// Query parameters in order.
    pub query: Vec<(String, String)>,
    /// Headers in order, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// How many times it may run before it is marked failed (1 to
    /// [`MAX_ASYNC_ATTEMPTS`]).
    pub max_attempts: u32,
}

/// The response a script gave to an async invocation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AsyncResult {
    /// The HTTP status the script answered.
    pub status: u16,
    /// Its headers.
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub body: Vec<u8>,
}

/// An async invocation as its status page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncInvocation {
    /// The id given to the caller.
    pub id: String,
    /// The app.
    pub app_id: AppId,
    /// The script's id.
    pub script_id: ScriptId,
    /// The script's name.
    pub script: String,
    /// The request id.
    pub request_id: String,
    /// Where it stands.
    pub status: AsyncStatus,
    /// Runs started so far.
    pub attempts: u32,
    /// The most runs it gets.
    pub max_attempts: u32,
    /// When it may run next (while queued).
    pub next_attempt_at: Timestamp,
    /// The script's response, once it succeeded.
    pub result: Option<AsyncResult>,
    /// The last failure, if any.
    pub error: Option<String>,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When it succeeded or finally failed.
    pub finished_at: Option<Timestamp>,
}

#[derive(sqlx::FromRow)]
struct AsyncRow {
    id: String,
    app_id: AppId,
    script_id: ScriptId,
    script: String,
    request_id: String,
    status: String,
    attempts: i64,
    max_attempts: i64,
    next_attempt_at: Timestamp,
    result_status: Option<i64>,
    result_headers: Option<String>,
    result_body: Option<Vec<u8>>,
    error: Option<String>,
    created_at: Timestamp,
    finished_at: Option<Timestamp>,
}

impl From<AsyncRow> for AsyncInvocation {
    fn from(row: AsyncRow) -> Self {
        let result = row.result_status.map(|status| AsyncResult {
            status: u16::try_from(status).unwrap_or(500),
            headers: decode_pairs(row.result_headers.as_deref()),
            body: row.result_body.unwrap_or_default(),
        });
        AsyncInvocation {
            id: row.id,
            app_id: row.app_id,
            script_id: row.script_id,
            script: row.script,
            request_id: row.request_id,
            status: AsyncStatus::from_stored(&row.status),
            attempts: u32::try_from(row.attempts).unwrap_or(0),
            max_attempts: u32::try_from(row.max_attempts).unwrap_or(1),
            next_attempt_at: row.next_attempt_at,
            result,
            error: row.error,
            created_at: row.created_at,
            finished_at: row.finished_at,
        }
    }
}

/// A job a worker has claimed: the stored request and where to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncJob {
    /// The invocation's id.
    pub id: String,
    /// The app's id.
    pub app_id: AppId,
    /// The app's slug.
    pub app_slug: String,
    /// The script's id.
    pub script_id: ScriptId,
    /// The script's name.
    pub script_name: String,
    /// The request id.
    pub request_id: String,
    /// Upper-case method.
    pub method: String,
    /// The full path.
    pub path: String,
    /// The path below the script's own.
    pub subpath: String,
    /// Query parameters.
    pub query: Vec<(String, String)>,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// This run's number, from 1.
    pub attempt: u32,
    /// The most runs it gets.
    pub max_attempts: u32,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    app_id: AppId,
    app_slug: String,
    script_id: ScriptId,
    script_name: String,
    request_id: String,
    method: String,
    path: String,
    subpath: String,
    query: String,
    headers: String,
    body: Vec<u8>,
    attempts: i64,
    max_attempts: i64,
}

const ASYNC_SELECT: &str = "SELECT ai.id, ai.app_id, ai.script_id, s.name AS script, \
     ai.request_id, ai.status, ai.attempts, ai.max_attempts, ai.next_attempt_at, \
     ai.result_status, ai.result_headers, ai.result_body, ai.error, ai.created_at, \
     ai.finished_at FROM async_invocations ai JOIN scripts s ON s.id = ai.script_id";

/// What [`Store::fail_async`] did with a failed run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsyncFailure {
    /// Queued again, to run at this time.
    Retry(Timestamp),
    /// No attempts left: marked failed.
    Failed,
    /// The job was no longer this worker's (its lease expired and another
    /// worker took it); nothing was changed.
    LeaseLost,
}

fn encode_pairs(pairs: &[(String, String)]) -> String {
    serde_json::to_string(pairs).unwrap_or_else(|_| "[]".to_owned())
}

fn decode_pairs(text: Option<&str>) -> Vec<(String, String)> {
    text.and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

fn payload_text(payload: Option<&serde_json::Value>) -> Option<String> {
    payload
        .filter(|value| !value.is_null())
        .map(serde_json::Value::to_string)
}

impl Store {
    /// Creates a schedule for a script of app `app_id`; its first tick is the
    /// first one after `now`.
    ///
    /// Fails with [`StoreError::Invalid`] naming `cron` or `timezone`, and
    /// [`StoreError::NotFound`] if the script is not one of the app's.
    pub async fn create_schedule(
        &self,
        app_id: AppId,
        new: &NewSchedule,
        now: Timestamp,
    ) -> StoreResult<Schedule> {
        let timezone = new.timezone.as_deref().unwrap_or(DEFAULT_TIMEZONE).trim();
        let next_run_at = CronSchedule::parse(&new.cron, timezone)?.next_after(now)?;
        self.script_of_app(app_id, new.script_id).await?;
        let id: ScheduleId = on_pool!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO schedules (app_id, script_id, cron, timezone, payload, enabled, \
                 next_run_at, created_at, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            )
            .bind(app_id)
            .bind(new.script_id)
            .bind(new.cron.trim())
            .bind(timezone)
            .bind(payload_text(new.payload.as_ref()))
            .bind(new.enabled)
            .bind(next_run_at)
            .bind(now)
            .bind(new.created_by)
            .fetch_one(pool)
            .await
            .map_err(|error| {
                if is_foreign_key_violation(&error) {
                    StoreError::not_found(format!("script {} of app {app_id}", new.script_id))
                } else {
                    StoreError::Database(error)
                }
            })?
        });
        tracing::info!(app_id = %app_id, schedule = %id, cron = %new.cron, "schedule created");
        self.schedule(app_id, id).await
    }

    async fn script_of_app(&self, app_id: AppId, script_id: ScriptId) -> StoreResult<()> {
        let found: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM scripts WHERE id = $1 AND app_id = $2")
                .bind(script_id)
                .bind(app_id)
                .fetch_optional(pool)
                .await?
        });
        found
            .map(|_| ())
            .ok_or_else(|| StoreError::not_found(format!("script {script_id} of app {app_id}")))
    }

    /// The schedules of an app, oldest first.
    pub async fn list_schedules(&self, app_id: AppId) -> StoreResult<Vec<Schedule>> {
        let sql = format!("{SCHEDULE_SELECT} WHERE sc.app_id = $1 ORDER BY sc.id");
        let rows: Vec<ScheduleRow> = on_pool!(self, pool => {
            sqlx::query_as(&sql).bind(app_id).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(Schedule::from).collect())
    }

    /// Schedule `id` of app `app_id`.
    pub async fn schedule(&self, app_id: AppId, id: ScheduleId) -> StoreResult<Schedule> {
        let sql = format!("{SCHEDULE_SELECT} WHERE sc.app_id = $1 AND sc.id = $2");
        let row: Option<ScheduleRow> = on_pool!(self, pool => {
            sqlx::query_as(&sql).bind(app_id).bind(id).fetch_optional(pool).await?
        });
        row.map(Schedule::from)
            .ok_or_else(|| StoreError::not_found(format!("schedule {id}")))
    }

    /// Changes a schedule. A new expression or time zone, or enabling it
    /// again, moves its next tick to the first one after `now`.
    pub async fn update_schedule(
        &self,
        app_id: AppId,
        id: ScheduleId,
        update: &ScheduleUpdate,
        now: Timestamp,
    ) -> StoreResult<Schedule> {
        let before = self.schedule(app_id, id).await?;
        let cron = update.cron.as_deref().unwrap_or(&before.cron).trim();
        let timezone = update
            .timezone
            .as_deref()
            .unwrap_or(&before.timezone)
            .trim();
        let parsed = CronSchedule::parse(cron, timezone)?;
        let script_id = update.script_id.unwrap_or(before.script_id);
        if script_id != before.script_id {
            self.script_of_app(app_id, script_id).await?;
        }
        let enabled = update.enabled.unwrap_or(before.enabled);
        let timing_changed =
            update.cron.is_some() || update.timezone.is_some() || (enabled && !before.enabled);
        let next_run_at = if timing_changed {
            parsed.next_after(now)?
        } else {
            before.next_run_at
        };
        let payload = match &update.payload {
            Some(payload) => payload_text(payload.as_ref()),
            None => payload_text(before.payload.as_ref()),
        };
        let rows_affected = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE schedules SET script_id = $1, cron = $2, timezone = $3, payload = $4, \
                 enabled = $5, next_run_at = $6 WHERE id = $7 AND app_id = $8",
            )
            .bind(script_id)
            .bind(cron)
            .bind(timezone)
            .bind(payload)
            .bind(enabled)
            .bind(next_run_at)
            .bind(id)
            .bind(app_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if rows_affected == 0 {
            return Err(StoreError::not_found(format!("schedule {id}")));
        }
        self.schedule(app_id, id).await
    }

    /// Deletes a schedule.
    pub async fn delete_schedule(&self, app_id: AppId, id: ScheduleId) -> StoreResult<()> {
        let rows_affected = on_pool!(self, pool => {
            sqlx::query("DELETE FROM schedules WHERE id = $1 AND app_id = $2")
                .bind(id)
                .bind(app_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if rows_affected == 0 {
            return Err(StoreError::not_found(format!("schedule {id}")));
        }
        Ok(())
    }

    /// Claims up to `limit` ticks due at `now`: each is returned to exactly
    /// one caller across every node sharing the database.
    ///
    /// A claimed schedule's `next_run_at` moves to its first tick strictly
    /// after `now` (missed ticks are not replayed: see the module docs) and
    /// its `last_run_at` to `now`. A schedule whose expression no longer
    /// parses is disabled and logged.
    pub async fn claim_due_schedules(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<ScheduleTick>> {
        let due: Vec<DueRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT sc.id, sc.app_id, a.slug AS app_slug, sc.script_id, \
                        s.name AS script_name, sc.cron, sc.timezone, sc.payload, sc.next_run_at \
                 FROM schedules sc \
                 JOIN scripts s ON s.id = sc.script_id \
                 JOIN apps a ON a.id = sc.app_id \
                 WHERE sc.enabled = TRUE AND sc.next_run_at <= $1 \
                 ORDER BY sc.next_run_at, sc.id LIMIT $2",
            )
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        let mut claimed = Vec::with_capacity(due.len());
        for row in due {
            let next_run_at = match CronSchedule::parse(&row.cron, &row.timezone)
                .and_then(|schedule| schedule.next_after(now))
            {
                Ok(next_run_at) => next_run_at,
                Err(error) => {
                    tracing::warn!(schedule = %row.id, %error, "disabling a schedule that cannot run");
                    on_pool!(self, pool => {
                        sqlx::query("UPDATE schedules SET enabled = FALSE WHERE id = $1")
                            .bind(row.id)
                            .execute(pool)
                            .await?;
                    });
                    continue;
                }
            };
            // The compare-and-set: only the node whose update changes the
            // row runs the tick.
            let won = on_pool!(self, pool => {
                sqlx::query(
                    "UPDATE schedules SET next_run_at = $1, last_run_at = $2 \
                     WHERE id = $3 AND next_run_at = $4 AND enabled = TRUE",
                )
                .bind(next_run_at)
                .bind(now)
                .bind(row.id)
                .bind(row.next_run_at)
                .execute(pool)
                .await?
                .rows_affected()
                    == 1
            });
            if won {
                claimed.push(ScheduleTick {
                    schedule_id: row.id,
                    app_id: row.app_id,
                    app_slug: row.app_slug,
                    script_id: row.script_id,
                    script_name: row.script_name,
                    payload: row.payload,
                    scheduled_for: row.next_run_at,
                    next_run_at,
                });
            }
        }
        Ok(claimed)
    }

    /// The earliest `next_run_at` of any enabled schedule: when a scheduler
    /// should wake next.
    pub async fn next_schedule_due(&self) -> StoreResult<Option<Timestamp>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_scalar::<_, Option<Timestamp>>(
                "SELECT MIN(next_run_at) FROM schedules WHERE enabled = TRUE",
            )
            .fetch_one(pool)
            .await?
        }))
    }

    /// Stores a request for asynchronous execution, queued to run at `now`;
    /// returns its new id (a UUID).
    ///
    /// Fails with [`StoreError::Invalid`] naming `max_attempts` when it is
    /// not 1 to [`MAX_ASYNC_ATTEMPTS`], and [`StoreError::NotFound`] if the
    /// script is not one of the app's.
    pub async fn enqueue_async(
        &self,
        new: &NewAsyncInvocation,
        now: Timestamp,
    ) -> StoreResult<String> {
        if !(1..=MAX_ASYNC_ATTEMPTS).contains(&new.max_attempts) {
            return Err(StoreError::invalid(
                "max_attempts",
                format!("must be 1 to {MAX_ASYNC_ATTEMPTS}"),
            ));
        }
        self.script_of_app(new.app_id, new.script_id).await?;
        let id = uuid::Uuid::new_v4().to_string();
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO async_invocations (id, app_id, script_id, request_id, method, path, \
                 subpath, query, headers, body, status, attempts, max_attempts, next_attempt_at, \
                 created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued', 0, $11, $12, $13)",
            )
            .bind(&id)
            .bind(new.app_id)
            .bind(new.script_id)
            .bind(&new.request_id)
            .bind(&new.method)
            .bind(&new.path)
            .bind(&new.subpath)
            .bind(encode_pairs(&new.query))
            .bind(encode_pairs(&new.headers))
            .bind(&new.body)
            .bind(i64::from(new.max_attempts))
            .bind(now)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(id)
    }

    /// Claims the next async job due at `now` for `worker`, with a lease
    /// until `now + lease`, and counts the attempt. A `running` job whose
    /// lease has expired (its worker died) is claimed again, or marked
    /// failed if it has no attempts left. Each job goes to one worker only.
    pub async fn claim_async(
        &self,
        worker: &str,
        now: Timestamp,
        lease: std::time::Duration,
    ) -> StoreResult<Option<AsyncJob>> {
        let locked_until = now.after(lease);
        let skip_locked = match self.backend() {
            super::Backend::Postgres => " FOR UPDATE OF ai SKIP LOCKED",
            super::Backend::Sqlite => "",
        };
        let select_sql = format!(
            "SELECT ai.id, ai.app_id, a.slug AS app_slug, ai.script_id, s.name AS script_name, \
                    ai.request_id, ai.method, ai.path, ai.subpath, ai.query, ai.headers, ai.body, \
                    ai.attempts, ai.max_attempts \
             FROM async_invocations ai \
             JOIN scripts s ON s.id = ai.script_id \
             JOIN apps a ON a.id = ai.app_id \
             WHERE (ai.status = 'queued' AND ai.next_attempt_at <= $1) \
                OR (ai.status = 'running' AND ai.locked_until <= $1 AND ai.attempts < ai.max_attempts) \
             ORDER BY ai.next_attempt_at, ai.created_at LIMIT 1{skip_locked}"
        );
        let row: Option<JobRow> = write_transaction!(self, transaction => {
            // Jobs whose worker died on their last attempt: give up on them.
            sqlx::query(
                "UPDATE async_invocations SET status = 'failed', finished_at = $1, \
                 locked_by = NULL, locked_until = NULL, \
                 error = COALESCE(error || '; ', '') || 'the worker running the last attempt stopped' \
                 WHERE status = 'running' AND locked_until <= $1 AND attempts >= max_attempts",
            )
            .bind(now)
            .execute(&mut *transaction)
            .await?;
            let row: Option<JobRow> = sqlx::query_as(&select_sql)
                .bind(now)
                .fetch_optional(&mut *transaction)
                .await?;
            if let Some(row) = &row {
                sqlx::query(
                    "UPDATE async_invocations SET status = 'running', attempts = attempts + 1, \
                     locked_by = $1, locked_until = $2 WHERE id = $3",
                )
                .bind(worker)
                .bind(locked_until)
                .bind(&row.id)
                .execute(&mut *transaction)
                .await?;
            }
            row
        });
        Ok(row.map(|row| AsyncJob {
            id: row.id,
            app_id: row.app_id,
            app_slug: row.app_slug,
            script_id: row.script_id,
            script_name: row.script_name,
            request_id: row.request_id,
            method: row.method,
            path: row.path,
            subpath: row.subpath,
            query: decode_pairs(Some(&row.query)),
            headers: decode_pairs(Some(&row.headers)),
            body: row.body,
            attempt: u32::try_from(row.attempts + 1).unwrap_or(u32::MAX),
            max_attempts: u32::try_from(row.max_attempts).unwrap_or(1),
        }))
    }

    /// Stores the script's response for a job `worker` holds and marks it
    /// succeeded. Returns `false` (and changes nothing) if the job is no
    /// longer this worker's.
    pub async fn complete_async(
        &self,
        id: &str,
        worker: &str,
        result: &AsyncResult,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let rows_affected = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE async_invocations SET status = 'succeeded', result_status = $1, \
                 result_headers = $2, result_body = $3, finished_at = $4, locked_by = NULL, \
                 locked_until = NULL WHERE id = $5 AND status = 'running' AND locked_by = $6",
            )
            .bind(i64::from(result.status))
            .bind(encode_pairs(&result.headers))
            .bind(&result.body)
            .bind(now)
            .bind(id)
            .bind(worker)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(rows_affected == 1)
    }

    /// Records a failed run of a job `worker` holds: queued again at
    /// `retry_at` while it has attempts left, else marked failed.
    pub async fn fail_async(
        &self,
        id: &str,
        worker: &str,
        error: &str,
        now: Timestamp,
        retry_at: Timestamp,
    ) -> StoreResult<AsyncFailure> {
        let lock_sql = format!(
            "SELECT attempts, max_attempts FROM async_invocations \
             WHERE id = $1 AND status = 'running' AND locked_by = $2{}",
            self.lock_clause()
        );
        let outcome = write_transaction!(self, transaction => {
            let held: Option<(i64, i64)> = sqlx::query_as(&lock_sql)
                .bind(id)
                .bind(worker)
                .fetch_optional(&mut *transaction)
                .await?;
            match held {
                None => AsyncFailure::LeaseLost,
                Some((attempts, max_attempts)) if attempts < max_attempts => {
                    sqlx::query(
                        "UPDATE async_invocations SET status = 'queued', error = $1, \
                         next_attempt_at = $2, locked_by = NULL, locked_until = NULL WHERE id = $3",
                    )
                    .bind(error)
                    .bind(retry_at)
                    .bind(id)
                    .execute(&mut *transaction)
                    .await?;
                    AsyncFailure::Retry(retry_at)
                }
                Some(_) => {
                    sqlx::query(
                        "UPDATE async_invocations SET status = 'failed', error = $1, \
                         finished_at = $2, locked_by = NULL, locked_until = NULL WHERE id = $3",
                    )
                    .bind(error)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *transaction)
                    .await?;
                    AsyncFailure::Failed
                }
            }
        });
        Ok(outcome)
    }

    /// Async invocation `id` of app `app_id`.
    pub async fn async_invocation(&self, app_id: AppId, id: &str) -> StoreResult<AsyncInvocation> {
        let sql = format!("{ASYNC_SELECT} WHERE ai.app_id = $1 AND ai.id = $2");
        let row: Option<AsyncRow> = on_pool!(self, pool => {
            sqlx::query_as(&sql).bind(app_id).bind(id).fetch_optional(pool).await?
        });
        row.map(AsyncInvocation::from)
            .ok_or_else(|| StoreError::not_found(format!("async invocation `{id}`")))
    }

    /// When the async workers should look again: the earliest retry time of
    /// a queued job or lease end of a running one.
    pub async fn next_async_due(&self) -> StoreResult<Option<Timestamp>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_scalar::<_, Option<Timestamp>>(
                "SELECT MIN(CASE WHEN status = 'queued' THEN next_attempt_at ELSE locked_until END) \
                 FROM async_invocations WHERE status IN ('queued', 'running')",
            )
            .fetch_one(pool)
            .await?
        }))
    }

    /// How many async invocations wait for a worker.
    pub async fn async_queue_depth(&self) -> StoreResult<u64> {
        let count: i64 = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM async_invocations WHERE status = 'queued'")
                .fetch_one(pool)
                .await?
        });
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
