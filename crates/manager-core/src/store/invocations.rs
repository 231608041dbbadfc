//! Invocation records: what every invocation of a script did, written in
//! batches by the server, queried and tailed by the API, and pruned in the
//! background so that the table cannot grow without limit.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Backend, on_pool, write_transaction};
use crate::Store;
use crate::error::StoreResult;
use crate::model::{AppId, ScriptId, Timestamp, VersionId};

/// The most records one call of [`Store::list_invocations`] or
/// [`Store::invocations_after`] returns.
pub const MAX_INVOCATION_PAGE: u32 = 200;

/// Identifies a stored invocation record; ids grow with time, so they double
/// as the paging cursor and the live tail's position.
pub type InvocationId = i64;

/// One line a script printed (`print`, `debug`, `log`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputLine {
    /// `print`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The line, without a trailing newline.
    pub text: String,
}

/// An invocation record to store; see [`StoredInvocation`] for the fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NewInvocation {
    /// The app the script belongs to.
    pub app_id: AppId,
    /// The script that ran.
    pub script_id: ScriptId,
    /// The script's name at the time.
    pub script_name: String,
    /// The version that ran.
    pub version_id: VersionId,
    /// What started it: `http`, `schedule`, `async`...
    pub trigger: String,
    /// The HTTP status answered (or that an HTTP caller would have got).
    pub status: u16,
    /// The stable error code, when the invocation failed.
    pub error_code: Option<String>,
    /// The full error for the script's author, when it failed.
    pub error_message: Option<String>,
    /// The request id (`x-request-id`).
    pub request_id: String,
    /// When it started.
    pub started_at: Timestamp,
    /// How long it took, in microseconds.
    pub duration_us: i64,
    /// Fuel used.
    pub fuel_used: i64,
    /// The fuel budget.
    pub fuel_limit: i64,
    /// The instance's memory after the invocation, in bytes.
    pub memory_bytes: i64,
    /// The instance's memory limit, in bytes.
    pub memory_limit_bytes: i64,
    /// Whether the script was compiled for this invocation.
    pub cold_start: bool,
    /// The script's output, already bounded by the server.
    pub output: Vec<OutputLine>,
    /// Whether lines were left out of `output`.
    pub output_truncated: bool,
}

impl NewInvocation {
    /// Whether this invocation counts as an error: a status of 500 or more,
    /// or an error code (a request refused before or while the script ran).
    /// A script that answers `404` on purpose did not fail.
    pub fn is_error(&self) -> bool {
        self.status >= 500 || self.error_code.is_some()
    }
}

/// An invocation record as stored: [`NewInvocation`] with its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoredInvocation {
    /// The record's id.
    pub id: InvocationId,
    /// Everything else.
    #[serde(flatten)]
    pub invocation: NewInvocation,
}

impl std::ops::Deref for StoredInvocation {
    type Target = NewInvocation;

    fn deref(&self) -> &NewInvocation {
        &self.invocation
    }
}

/// Which statuses [`Store::list_invocations`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFilter {
    /// Invocations that are not errors (see [`NewInvocation::is_error`]).
    Ok,
    /// Errors: a status of 500 or more, or an error code.
    Error,
    /// Exactly this HTTP status.
    Exact(u16),
}

/// What [`Store::list_invocations`] returns: every field narrows the list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InvocationFilter {
    /// Only this script's invocations.
    pub script: Option<String>,
    /// Only these statuses.
    pub status: Option<StatusFilter>,
    /// Only invocations started at or after this time.
    pub since: Option<Timestamp>,
    /// Only invocations started before this time.
    pub until: Option<Timestamp>,
    /// Only records older than this id (the previous page's last id).
    pub before: Option<InvocationId>,
}

/// Counts and durations of one script's invocations in one time bucket.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InvocationBucket {
    /// The start of the bucket.
    pub start: Timestamp,
    /// Invocations started in the bucket.
    pub count: u64,
    /// How many of them were errors (see [`NewInvocation::is_error`]).
    pub errors: u64,
    /// Mean duration in milliseconds; `None` for an empty bucket.
    pub avg_ms: Option<f64>,
    /// Median duration in milliseconds.
    pub p50_ms: Option<f64>,
    /// 95th percentile duration in milliseconds (nearest rank).
    pub p95_ms: Option<f64>,
    /// Longest duration in milliseconds.
    pub max_ms: Option<f64>,
}

/// One script's buckets, oldest first, covering the whole window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InvocationSeries {
    /// The script's name.
    pub script: String,
    /// One bucket per interval of the window, empty ones included.
    pub buckets: Vec<InvocationBucket>,
}

/// How many records [`Store::prune_invocations`] deleted, and why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneOutcome {
    /// Deleted because they were older than the age limit.
    pub too_old: u64,
    /// Deleted because their app had more than the count limit.
    pub over_count: u64,
}

const COLUMNS: &str = "id, app_id, script_id, script_name, version_id, \"trigger\", status, \
     error_code, error_message, request_id, started_at, duration_us, fuel_used, fuel_limit, \
     memory_bytes, memory_limit_bytes, cold_start, output, output_truncated";

#[derive(sqlx::FromRow)]
struct InvocationRow {
    id: i64,
    app_id: AppId,
    script_id: ScriptId,
    script_name: String,
    version_id: VersionId,
    trigger: String,
    status: i32,
    error_code: Option<String>,
    error_message: Option<String>,
    request_id: String,
    started_at: Timestamp,
    duration_us: i64,
    fuel_used: i64,
    fuel_limit: i64,
    memory_bytes: i64,
    memory_limit_bytes: i64,
    cold_start: bool,
    output: String,
    output_truncated: bool,
}

impl From<InvocationRow> for StoredInvocation {
    fn from(row: InvocationRow) -> Self {
        StoredInvocation {
            id: row.id,
            invocation: NewInvocation {
                app_id: row.app_id,
                script_id: row.script_id,
                script_name: row.script_name,
                version_id: row.version_id,
                trigger: row.trigger,
                status: u16::try_from(row.status).unwrap_or(0),
                error_code: row.error_code,
                error_message: row.error_message,
                request_id: row.request_id,
                started_at: row.started_at,
                duration_us: row.duration_us,
                fuel_used: row.fuel_used,
                fuel_limit: row.fuel_limit,
                memory_bytes: row.memory_bytes,
                memory_limit_bytes: row.memory_limit_bytes,
                cold_start: row.cold_start,
                // The store writes this column itself; unreadable text means
                // a hand-edited row, shown as no output rather than an error.
                output: serde_json::from_str(&row.output).unwrap_or_default(),
                output_truncated: row.output_truncated,
            },
        }
    }
}

/// The SQL condition of an error, matching [`NewInvocation::is_error`].
const IS_ERROR: &str = "(status >= 500 OR error_code IS NOT NULL)";

/// The head of the multi-row insert of [`Store::insert_invocations`].
const INSERT_COLUMNS: &str = "INSERT INTO invocations (id, app_id, script_id, script_name, version_id, \
     \"trigger\", status, error_code, error_message, request_id, started_at, duration_us, fuel_used, \
     fuel_limit, memory_bytes, memory_limit_bytes, cold_start, output, output_truncated)";

/// Values per row of that insert.
const INSERT_FIELDS: usize = 19;

/// Most rows per `INSERT`. A batch is written as chunks of this many
/// records, then the rest in chunks of halving sizes (64, 32, ..., 1): at
/// most eight statement texts, each prepared once per connection and
/// cached, since parsing a multi-row `INSERT` costs about as much as running
/// it. Fewer, larger statements also mean fewer round trips to SQLite's
/// worker thread; at 128 rows (2,432 values) every cached statement together
/// stays well under a megabyte per connection.
const INSERT_CHUNK: usize = 128;

/// The chunk sizes [`Store::insert_invocations`] writes `rows` records in:
/// full chunks first, then the binary digits of the rest, largest first.
fn chunk_sizes(rows: usize) -> impl Iterator<Item = usize> {
    let full = std::iter::repeat_n(INSERT_CHUNK, rows / INSERT_CHUNK);
    let rest = rows % INSERT_CHUNK;
    let halves = (0..INSERT_CHUNK.trailing_zeros())
        .rev()
        .map(|bit| 1 << bit)
        .filter(move |size| rest & size != 0);
    full.chain(halves)
}

/// The multi-row `INSERT` of `rows` records on `backend`, with each
/// backend's own placeholders: `?` on SQLite (binding to a numbered
/// parameter there costs a lookup by name) and `$1`, `$2`, ... on PostgreSQL.
fn insert_sql(backend: Backend, rows: usize) -> String {
    use std::fmt::Write as _;
    let mut sql = String::with_capacity(INSERT_COLUMNS.len() + 40 + rows * INSERT_FIELDS * 6);
    sql.push_str(INSERT_COLUMNS);
    if backend == Backend::Postgres {
        // Ids are taken from the sequence up front.
        sql.push_str(" OVERRIDING SYSTEM VALUE");
    }
    sql.push_str(" VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for field in 0..INSERT_FIELDS {
            let separator = if field == 0 { "" } else { ", " };
            match backend {
                Backend::Sqlite => {
                    sql.push_str(separator);
                    sql.push('?');
                }
                Backend::Postgres => {
                    let _ = write!(sql, "{separator}${}", row * INSERT_FIELDS + field + 1);
                }
            }
        }
        sql.push(')');
    }
    sql
}

/// The `INSERT` of `rows` records (a size [`chunk_sizes`] yields) on
/// `backend`, built once per process: sqlx finds its cached prepared
/// statement by the text, so there is no reason to build the text again
/// for every chunk.
fn chunk_insert_sql(backend: Backend, rows: usize) -> &'static str {
    const SIZES: usize = INSERT_CHUNK.trailing_zeros() as usize + 1;
    static SQLITE: [OnceLock<String>; SIZES] = [const { OnceLock::new() }; SIZES];
    static POSTGRES: [OnceLock<String>; SIZES] = [const { OnceLock::new() }; SIZES];
    debug_assert!(rows.is_power_of_two() && rows <= INSERT_CHUNK);
    let cells = match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    };
    cells[rows.trailing_zeros() as usize].get_or_init(|| insert_sql(backend, rows))
}

/// A value bound to a query built at run time.
enum Bind {
    Integer(i64),
    Text(String),
}

impl Store {
    /// Stores a batch of records in one transaction and returns them with
    /// their ids, in order. Records of an app that no longer exists (deleted
    /// while they waited in memory) are skipped, not an error.
    ///
    /// Multi-row `INSERT`s of up to [`INSERT_CHUNK`] records, with ids taken
    /// up front (the sequence on PostgreSQL; on SQLite, after the highest
    /// id ever used, inside the write lock), so the server can keep up with
    /// tens of thousands of invocations a second on a small board. The
    /// batch is taken by value and moved into the result, so writing it
    /// copies no record.
    pub async fn insert_invocations(
        &self,
        batch: Vec<NewInvocation>,
    ) -> StoreResult<Vec<StoredInvocation>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut app_ids: Vec<i64> = batch.iter().map(|invocation| invocation.app_id.0).collect();
        app_ids.sort_unstable();
        app_ids.dedup();
        let apps_sql = format!(
            "SELECT id FROM apps WHERE id IN ({})",
            (1..=app_ids.len())
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let backend = self.backend();
        let stored = write_transaction!(self, transaction => {
            let mut live_apps = sqlx::query_scalar::<_, i64>(&apps_sql);
            for app_id in &app_ids {
                live_apps = live_apps.bind(*app_id);
            }
            let live_apps = live_apps.fetch_all(&mut *transaction).await?;
            let rows: Vec<NewInvocation> = batch
                .into_iter()
                .filter(|invocation| live_apps.contains(&invocation.app_id.0))
                .collect();
            if rows.is_empty() {
                Vec::new()
            } else {
                let count = rows.len() as i64;
                let ids: Vec<i64> = if backend == Backend::Sqlite {
                    // The write lock is held: nobody else takes ids meanwhile.
                    let last: i64 = sqlx::query_scalar(
                        "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence \
                                              WHERE name = 'invocations'), 0), \
                                    COALESCE((SELECT MAX(id) FROM invocations), 0))",
                    )
                    .fetch_one(&mut *transaction)
                    .await?;
                    (last + 1..=last + count).collect()
                } else {
                    sqlx::query_scalar(
                        "SELECT nextval(pg_get_serial_sequence('invocations', 'id')) \
                         FROM generate_series(1, $1)",
                    )
                    .bind(count)
                    .fetch_all(&mut *transaction)
                    .await?
                };
                let mut start = 0;
                for size in chunk_sizes(rows.len()) {
                    let (chunk, chunk_ids) =
                        (&rows[start..start + size], &ids[start..start + size]);
                    start += size;
                    let mut insert = sqlx::query(chunk_insert_sql(backend, size));
                    for (invocation, id) in chunk.iter().zip(chunk_ids) {
                        insert = insert
                            .bind(*id)
                            .bind(invocation.app_id)
                            .bind(invocation.script_id)
                            .bind(invocation.script_name.as_str())
                            .bind(invocation.version_id)
                            .bind(invocation.trigger.as_str())
                            .bind(i32::from(invocation.status))
                            .bind(invocation.error_code.as_deref())
                            .bind(invocation.error_message.as_deref())
                            .bind(invocation.request_id.as_str())
                            .bind(invocation.started_at)
                            .bind(invocation.duration_us)
                            .bind(invocation.fuel_used)
                            .bind(invocation.fuel_limit)
                            .bind(invocation.memory_bytes)
                            .bind(invocation.memory_limit_bytes)
                            .bind(invocation.cold_start);
                        // Most invocations print nothing: no JSON to write for them.
                        insert = if invocation.output.is_empty() {
                            insert.bind("[]")
                        } else {
                            insert.bind(
                                serde_json::to_string(&invocation.output)
                                    .unwrap_or_else(|_| "[]".to_owned()),
                            )
                        };
                        insert = insert.bind(invocation.output_truncated);
                    }
                    insert.execute(&mut *transaction).await?;
                }
                rows.into_iter()
                    .zip(ids)
                    .map(|(invocation, id)| StoredInvocation { id, invocation })
                    .collect()
            }
        });
        Ok(stored)
    }

    /// An app's records, newest first, narrowed by `filter`: at most `limit`
    /// (capped at [`MAX_INVOCATION_PAGE`]). Pass the last id of a page as
    /// `filter.before` to get the next one.
    pub async fn list_invocations(
        &self,
        app_id: AppId,
        filter: &InvocationFilter,
        limit: u32,
    ) -> StoreResult<Vec<StoredInvocation>> {
        let mut conditions = vec!["app_id = $1".to_owned()];
        let mut binds = vec![Bind::Integer(app_id.0)];
        // Adds `column operator $n` with its value.
        let mut condition = |column: &str, operator: &str, value: Bind| {
            binds.push(value);
            conditions.push(format!("{column} {operator} ${}", binds.len()));
        };
        if let Some(script) = &filter.script {
            condition("script_name", "=", Bind::Text(script.clone()));
        }
        if let Some(before) = filter.before {
            condition("id", "<", Bind::Integer(before));
        }
        if let Some(since) = filter.since {
            condition("started_at", ">=", Bind::Integer(since.unix_millis()));
        }
        if let Some(until) = filter.until {
            condition("started_at", "<", Bind::Integer(until.unix_millis()));
        }
        if let Some(StatusFilter::Exact(status)) = filter.status {
            condition("status", "=", Bind::Integer(i64::from(status)));
        }
        match filter.status {
            Some(StatusFilter::Ok) => conditions.push(format!("NOT {IS_ERROR}")),
            Some(StatusFilter::Error) => conditions.push(IS_ERROR.to_owned()),
            Some(StatusFilter::Exact(_)) | None => {}
        }
        let limit = i64::from(limit.clamp(1, MAX_INVOCATION_PAGE));
        binds.push(Bind::Integer(limit));
        let sql = format!(
            "SELECT {COLUMNS} FROM invocations WHERE {} ORDER BY id DESC LIMIT ${}",
            conditions.join(" AND "),
            binds.len()
        );
        let rows: Vec<InvocationRow> = on_pool!(self, pool => {
            let mut query = sqlx::query_as::<_, InvocationRow>(&sql);
            for bind in &binds {
                query = match bind {
                    Bind::Integer(value) => query.bind(*value),
                    Bind::Text(value) => query.bind(value.as_str()),
                };
            }
            query.fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(StoredInvocation::from).collect())
    }

    /// One record of an app by its id, or `None`.
    pub async fn invocation(
        &self,
        app_id: AppId,
        id: InvocationId,
    ) -> StoreResult<Option<StoredInvocation>> {
        let sql = format!("SELECT {COLUMNS} FROM invocations WHERE app_id = $1 AND id = $2");
        let row: Option<InvocationRow> = on_pool!(self, pool => {
            sqlx::query_as::<_, InvocationRow>(&sql)
                .bind(app_id)
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(StoredInvocation::from))
    }

    /// The newest record of an app with this request id, or `None`.
    pub async fn invocation_by_request_id(
        &self,
        app_id: AppId,
        request_id: &str,
    ) -> StoreResult<Option<StoredInvocation>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM invocations WHERE app_id = $1 AND request_id = $2 \
             ORDER BY id DESC LIMIT 1"
        );
        let row: Option<InvocationRow> = on_pool!(self, pool => {
            sqlx::query_as::<_, InvocationRow>(&sql)
                .bind(app_id)
                .bind(request_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(StoredInvocation::from))
    }

    /// An app's records newer than `after_id`, oldest first (for a live
    /// tail catching up): at most `limit`, capped at [`MAX_INVOCATION_PAGE`],
    /// of script `script` only when given.
    pub async fn invocations_after(
        &self,
        app_id: AppId,
        after_id: InvocationId,
        script: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<StoredInvocation>> {
        let limit = i64::from(limit.clamp(1, MAX_INVOCATION_PAGE));
        let sql = format!(
            "SELECT {COLUMNS} FROM invocations WHERE app_id = $1 AND id > $2 \
             AND ($3 IS NULL OR script_name = $3) ORDER BY id LIMIT $4"
        );
        let rows: Vec<InvocationRow> = on_pool!(self, pool => {
            sqlx::query_as::<_, InvocationRow>(&sql)
                .bind(app_id)
                .bind(after_id)
                .bind(script)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(StoredInvocation::from).collect())
    }

    /// The id of an app's newest record, or 0 when it has none: where a live
    /// tail that wants only new records starts.
    pub async fn newest_invocation_id(&self, app_id: AppId) -> StoreResult<InvocationId> {
        let newest: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT MAX(id) FROM invocations WHERE app_id = $1")
                .bind(app_id)
                .fetch_one(pool)
                .await?
        });
        Ok(newest.unwrap_or(0))
    }

    /// Per-script counts, errors and durations of an app's invocations that
    /// started in `[since, until)`, in buckets of `bucket` aligned to the
    /// Unix epoch, for the dashboard's charts. Only scripts with at least
    /// one invocation in the window have a series; each series has every
    /// bucket of the window, empty ones included. Percentiles are computed
    /// here rather than in SQL, which has no portable percentile function.
    pub async fn invocation_stats(
        &self,
        app_id: AppId,
        script: Option<&str>,
        since: Timestamp,
        until: Timestamp,
        bucket: Duration,
    ) -> StoreResult<Vec<InvocationSeries>> {
        let bucket_ms = i64::try_from(bucket.as_millis()).unwrap_or(i64::MAX).max(1);
        let sql = format!(
            "SELECT script_name, started_at, duration_us, \
             CAST(CASE WHEN {IS_ERROR} THEN 1 ELSE 0 END AS BIGINT) AS failed FROM invocations \
             WHERE app_id = $1 AND started_at >= $2 AND started_at < $3 \
             AND ($4 IS NULL OR script_name = $4)"
        );
        let rows: Vec<(String, i64, i64, i64)> = on_pool!(self, pool => {
            sqlx::query_as(&sql)
                .bind(app_id)
                .bind(since)
                .bind(until)
                .bind(script)
                .fetch_all(pool)
                .await?
        });
        let first_bucket = since.unix_millis().div_euclid(bucket_ms) * bucket_ms;
        let bucket_count = usize::try_from(
            (until.unix_millis() - first_bucket + bucket_ms - 1).div_euclid(bucket_ms),
        )
        .unwrap_or(0);
        // Durations (in microseconds) and error counts per script per bucket.
        let mut per_script: BTreeMap<String, Vec<(Vec<i64>, u64)>> = BTreeMap::new();
        for (script_name, started_at, duration_us, failed) in rows {
            let index = usize::try_from((started_at - first_bucket).div_euclid(bucket_ms))
                .unwrap_or(usize::MAX);
            let buckets = per_script
                .entry(script_name)
                .or_insert_with(|| vec![(Vec::new(), 0); bucket_count]);
            if let Some((durations, errors)) = buckets.get_mut(index) {
                durations.push(duration_us);
                *errors += u64::from(failed != 0);
            }
        }
        Ok(per_script
            .into_iter()
            .map(|(script, buckets)| InvocationSeries {
                script,
                buckets: buckets
                    .into_iter()
                    .enumerate()
                    .map(|(index, (durations, errors))| {
                        let start = first_bucket + bucket_ms * index as i64;
                        summarize(Timestamp::from_unix_millis(start), durations, errors)
                    })
                    .collect(),
            })
            .collect())
    }

    /// Enforces retention: deletes records that started before `now -
    /// max_age`, then, per app, every record beyond its `max_per_app` newest.
    ///
    /// Old records go app by app (every record's app exists: deleting an app
    /// deletes its records), each on `invocations_app_started_at`, so no
    /// index on `started_at` alone is kept up to date on every insert.
    /// Deletes run in chunks of [`PRUNE_CHUNK`] rows, each its own
    /// statement, so a large backlog never becomes one huge transaction
    /// (which would hold the database's write lock and grow SQLite's
    /// write-ahead log by its whole size).
    pub async fn prune_invocations(
        &self,
        max_per_app: u32,
        max_age: Duration,
    ) -> StoreResult<PruneOutcome> {
        let cutoff = Timestamp::now().before(max_age);
        let apps: Vec<AppId> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM apps ORDER BY id")
                .fetch_all(pool)
                .await?
        });
        let mut too_old = 0;
        for app_id in apps {
            too_old += self
                .delete_in_chunks(
                    "DELETE FROM invocations WHERE id IN (SELECT id FROM invocations \
                     WHERE app_id = $1 AND started_at < $2 ORDER BY started_at LIMIT $3)",
                    app_id,
                    cutoff.unix_millis(),
                )
                .await?;
        }
        let crowded: Vec<AppId> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT app_id FROM invocations GROUP BY app_id HAVING COUNT(*) > $1",
            )
            .bind(i64::from(max_per_app))
            .fetch_all(pool)
            .await?
        });
        let mut over_count = 0;
        for app_id in crowded {
            over_count += self.prune_app_invocations(app_id, max_per_app).await?;
        }
        Ok(PruneOutcome {
            too_old,
            over_count,
        })
    }

    /// Deletes the records of one app beyond its `keep` newest, and says
    /// how many went. The record writer calls it for an app it has written
    /// many records to, so that storage stays bounded under sustained
    /// traffic however long the interval between full retention runs.
    pub async fn prune_app_invocations(&self, app_id: AppId, keep: u32) -> StoreResult<u64> {
        // The newest record that goes: everything from it down goes too.
        let newest_to_delete: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT id FROM invocations WHERE app_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2",
            )
            .bind(app_id)
            .bind(i64::from(keep))
            .fetch_optional(pool)
            .await?
        });
        let Some(newest_to_delete) = newest_to_delete else {
            return Ok(0);
        };
        self.delete_in_chunks(
            "DELETE FROM invocations WHERE id IN (SELECT id FROM invocations \
             WHERE app_id = $1 AND id <= $2 ORDER BY id LIMIT $3)",
            app_id,
            newest_to_delete,
        )
        .await
    }

    /// Runs `statement` (binding the app, `bound` and [`PRUNE_CHUNK`]) until
    /// it deletes fewer than a chunk, and returns the rows deleted.
    async fn delete_in_chunks(
        &self,
        statement: &'static str,
        app_id: AppId,
        bound: i64,
    ) -> StoreResult<u64> {
        let mut deleted = 0;
        loop {
            let rows = on_pool!(self, pool => {
                sqlx::query(statement)
                    .bind(app_id)
                    .bind(bound)
                    .bind(PRUNE_CHUNK)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
            deleted += rows;
            if rows < PRUNE_CHUNK as u64 {
                return Ok(deleted);
            }
        }
    }
}

/// Rows deleted per statement when pruning invocation records.
const PRUNE_CHUNK: i64 = 5_000;

/// One bucket's figures from its durations in microseconds.
fn summarize(start: Timestamp, mut durations: Vec<i64>, errors: u64) -> InvocationBucket {
    let count = durations.len() as u64;
    if durations.is_empty() {
        return InvocationBucket {
            start,
            count,
            errors,
            avg_ms: None,
            p50_ms: None,
            p95_ms: None,
            max_ms: None,
        };
    }
    durations.sort_unstable();
    let to_ms = |micros: i64| micros as f64 / 1000.0;
    // Nearest rank: the smallest value with at least `share` of the values at or below it.
    let percentile = |share: f64| {
        let rank = (share * durations.len() as f64).ceil() as usize;
        to_ms(durations[rank.clamp(1, durations.len()) - 1])
    };
    let total: i64 = durations.iter().sum();
    InvocationBucket {
        start,
        count,
        errors,
        avg_ms: Some(to_ms(total) / durations.len() as f64),
        p50_ms: Some(percentile(0.50)),
        p95_ms: Some(percentile(0.95)),
        max_ms: durations.last().copied().map(to_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_into_few_cached_chunk_sizes() {
        for rows in [0, 1, 2, 3, 100, 127, 128, 129, 1_000, 1_203] {
            let sizes: Vec<usize> = chunk_sizes(rows).collect();
            assert_eq!(sizes.iter().sum::<usize>(), rows, "{rows}: {sizes:?}");
            assert!(sizes.windows(2).all(|pair| pair[0] >= pair[1]), "{sizes:?}");
            assert!(
                sizes
                    .iter()
                    .all(|size| size.is_power_of_two() && *size <= INSERT_CHUNK)
            );
        }
        assert_eq!(
            chunk_sizes(1_000).collect::<Vec<_>>(),
            [128, 128, 128, 128, 128, 128, 128, 64, 32, 8]
        );
    }

    #[test]
    fn insert_statements_have_one_placeholder_per_value() {
        let sqlite = chunk_insert_sql(Backend::Sqlite, 4);
        assert_eq!(sqlite.matches('?').count(), 4 * INSERT_FIELDS);
        assert!(!sqlite.contains('$'));
        let postgres = chunk_insert_sql(Backend::Postgres, 2);
        assert!(postgres.contains("OVERRIDING SYSTEM VALUE VALUES ($1, $2, "));
        assert!(postgres.ends_with(&format!("${})", 2 * INSERT_FIELDS)));
        assert_eq!(postgres.matches('$').count(), 2 * INSERT_FIELDS);
    }

    #[test]
    fn buckets_summarize_durations() {
        let start = Timestamp::from_unix_millis(0);
        let durations: Vec<i64> = (1..=100).map(|ms| ms * 1000).collect();
        let bucket = summarize(start, durations, 3);
        assert_eq!(bucket.count, 100);
        assert_eq!(bucket.errors, 3);
        assert_eq!(bucket.avg_ms, Some(50.5));
        assert_eq!(bucket.p50_ms, Some(50.0));
        assert_eq!(bucket.p95_ms, Some(95.0));
        assert_eq!(bucket.max_ms, Some(100.0));
        let empty = summarize(start, Vec::new(), 0);
        assert_eq!((empty.count, empty.avg_ms), (0, None));
    }
}
