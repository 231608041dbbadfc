//! Invocation records: what every invocation of a script did, written in
//! batches by the server, queried and tailed by the API, and pruned in the
//! background so that the table cannot grow without limit.

use std::collections::BTreeMap;
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

/// Most records in one chunk (one row of `invocation_chunks`). A batch of an
/// app's records is stored as chunks of at most this many: few rows per
/// batch, and a query that needs one record decodes at most this many.
const CHUNK_RECORDS: usize = 256;

/// Chunks a query reads at a time while it walks an app's records.
const CHUNK_PAGE: i64 = 16;

/// One record inside a chunk, as written: a JSON array of its fields in this
/// order (the app and nothing else is the chunk's). docs/store.md documents
/// the layout; migration 0006 writes the same for the records it converts.
#[derive(Serialize)]
struct RecordOut<'a>(
    InvocationId,
    i64,
    &'a str,
    i64,
    &'a str,
    u16,
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    bool,
    &'a [OutputLine],
    bool,
);

impl<'a> RecordOut<'a> {
    fn of(record: &'a StoredInvocation) -> Self {
        let invocation = &record.invocation;
        RecordOut(
            record.id,
            invocation.script_id.0,
            &invocation.script_name,
            invocation.version_id.0,
            &invocation.trigger,
            invocation.status,
            invocation.error_code.as_deref(),
            invocation.error_message.as_deref(),
            &invocation.request_id,
            invocation.started_at.unix_millis(),
            invocation.duration_us,
            invocation.fuel_used,
            invocation.fuel_limit,
            invocation.memory_bytes,
            invocation.memory_limit_bytes,
            invocation.cold_start,
            &invocation.output,
            invocation.output_truncated,
        )
    }
}

/// [`RecordOut`] as read back.
#[derive(Deserialize)]
struct RecordIn(
    InvocationId,
    i64,
    String,
    i64,
    String,
    i64,
    Option<String>,
    Option<String>,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    bool,
    Vec<OutputLine>,
    bool,
);

impl RecordIn {
    fn into_stored(self, app_id: AppId) -> StoredInvocation {
        let RecordIn(
            id,
            script_id,
            script_name,
            version_id,
            trigger,
            status,
            error_code,
            error_message,
            request_id,
            started_at,
            duration_us,
            fuel_used,
            fuel_limit,
            memory_bytes,
            memory_limit_bytes,
            cold_start,
            output,
            output_truncated,
        ) = self;
        StoredInvocation {
            id,
            invocation: NewInvocation {
                app_id,
                script_id: ScriptId(script_id),
                script_name,
                version_id: VersionId(version_id),
                trigger,
                status: u16::try_from(status).unwrap_or(0),
                error_code,
                error_message,
                request_id,
                started_at: Timestamp::from_unix_millis(started_at),
                duration_us,
                fuel_used,
                fuel_limit,
                memory_bytes,
                memory_limit_bytes,
                cold_start,
                output,
                output_truncated,
            },
        }
    }
}

/// The `records` text of a chunk: its records as a JSON array, oldest first.
fn encode_chunk<'a>(records: impl IntoIterator<Item = &'a StoredInvocation>) -> String {
    let mut text = Vec::with_capacity(4096);
    text.push(b'[');
    for (index, record) in records.into_iter().enumerate() {
        if index > 0 {
            text.push(b',');
        }
        serde_json::to_writer(&mut text, &RecordOut::of(record))
            .expect("records serialise to a Vec");
    }
    text.push(b']');
    String::from_utf8(text).expect("serde_json writes UTF-8")
}

/// A chunk's records, oldest first. The store writes this column itself;
/// text it cannot read means a hand-edited row, shown as no records (and
/// logged) rather than failing every query that touches the app.
fn decode_chunk(app_id: AppId, chunk_id: i64, text: &str) -> Vec<StoredInvocation> {
    match serde_json::from_str::<Vec<RecordIn>>(text) {
        Ok(records) => records
            .into_iter()
            .map(|record| record.into_stored(app_id))
            .collect(),
        Err(error) => {
            tracing::warn!(chunk_id, %error, "an invocation chunk is unreadable; skipped it");
            Vec::new()
        }
    }
}

/// A chunk as queries read it.
#[derive(sqlx::FromRow)]
struct ChunkRow {
    id: i64,
    app_id: AppId,
    first_id: i64,
    last_id: i64,
    records: String,
}

impl ChunkRow {
    fn decode(&self) -> Vec<StoredInvocation> {
        decode_chunk(self.app_id, self.id, &self.records)
    }
}

/// The columns of [`ChunkRow`].
const CHUNK_COLUMNS: &str = "id, app_id, first_id, last_id, records";

/// Whether `record` passes every condition of `filter`.
fn matches(filter: &InvocationFilter, record: &StoredInvocation) -> bool {
    filter
        .script
        .as_ref()
        .is_none_or(|script| record.script_name == *script)
        && filter.before.is_none_or(|before| record.id < before)
        && filter.since.is_none_or(|since| record.started_at >= since)
        && filter.until.is_none_or(|until| record.started_at < until)
        && match filter.status {
            None => true,
            Some(StatusFilter::Ok) => !record.is_error(),
            Some(StatusFilter::Error) => record.is_error(),
            Some(StatusFilter::Exact(status)) => record.status == status,
        }
}

impl Store {
    /// Stores a batch of records in one transaction and returns them with
    /// their ids, in order. Records of an app that no longer exists (deleted
    /// while they waited in memory) are skipped, not an error.
    ///
    /// Ids are taken for the whole batch with one `UPDATE` of the counter
    /// row, in batch order, and each app's records go in as chunks of up to
    /// [`CHUNK_RECORDS`]: a handful of rows per batch instead of one row and
    /// four index entries per record, so the server can keep up with tens
    /// of thousands of invocations a second on a small board. The batch is
    /// taken by value and moved into the result, so writing it copies no
    /// record.
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
                // The counter row's lock keeps concurrent writers' ranges apart.
                let last: i64 = sqlx::query_scalar(
                    "UPDATE invocation_ids SET last_id = last_id + $1 RETURNING last_id",
                )
                .bind(count)
                .fetch_one(&mut *transaction)
                .await?;
                let stored: Vec<StoredInvocation> = rows
                    .into_iter()
                    .zip(last - count + 1..)
                    .map(|(invocation, id)| StoredInvocation { id, invocation })
                    .collect();
                // Each app's records in batch order (so in id order).
                let mut by_app: BTreeMap<i64, Vec<&StoredInvocation>> = BTreeMap::new();
                for record in &stored {
                    by_app.entry(record.app_id.0).or_default().push(record);
                }
                for (app_id, records) in &by_app {
                    for chunk in records.chunks(CHUNK_RECORDS) {
                        let (oldest, newest) = chunk.iter().fold((i64::MAX, i64::MIN), |(oldest, newest), record| {
                            let started_at = record.started_at.unix_millis();
                            (oldest.min(started_at), newest.max(started_at))
                        });
                        sqlx::query(
                            "INSERT INTO invocation_chunks (app_id, first_id, last_id, \
                             oldest_started_at, newest_started_at, record_count, records) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        )
                        .bind(*app_id)
                        .bind(chunk[0].id)
                        .bind(chunk[chunk.len() - 1].id)
                        .bind(oldest)
                        .bind(newest)
                        .bind(chunk.len() as i32)
                        .bind(encode_chunk(chunk.iter().copied()))
                        .execute(&mut *transaction)
                        .await?;
                    }
                }
                stored
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
        let limit = limit.clamp(1, MAX_INVOCATION_PAGE) as usize;
        let mut found = Vec::new();
        self.walk_newest_first(app_id, filter, None, |record| {
            if matches(filter, &record) {
                found.push(record);
            }
            found.len() < limit
        })
        .await?;
        Ok(found)
    }

    /// Calls `visit` with an app's records newest first, from the chunks that
    /// may hold records passing `filter`'s id and time bounds (and, when
    /// given, whose text contains `needle`), until it returns `false` or the
    /// records run out.
    async fn walk_newest_first(
        &self,
        app_id: AppId,
        filter: &InvocationFilter,
        needle: Option<&str>,
        mut visit: impl FnMut(StoredInvocation) -> bool,
    ) -> StoreResult<()> {
        let contains = match self.backend() {
            Backend::Sqlite => "instr(records, $6) > 0",
            Backend::Postgres => "strpos(records, $6) > 0",
        };
        let sql = format!(
            "SELECT {CHUNK_COLUMNS} FROM invocation_chunks WHERE app_id = $1 AND first_id < $2 \
             AND newest_started_at >= $3 AND oldest_started_at < $4 AND ($6 IS NULL OR {contains}) \
             ORDER BY last_id DESC LIMIT $5"
        );
        let since = filter.since.map_or(i64::MIN, Timestamp::unix_millis);
        let until = filter.until.map_or(i64::MAX, Timestamp::unix_millis);
        let mut below = filter.before.unwrap_or(i64::MAX);
        loop {
            let chunks: Vec<ChunkRow> = on_pool!(self, pool => {
                sqlx::query_as(&sql)
                    .bind(app_id)
                    .bind(below)
                    .bind(since)
                    .bind(until)
                    .bind(CHUNK_PAGE)
                    .bind(needle)
                    .fetch_all(pool)
                    .await?
            });
            for chunk in &chunks {
                for record in chunk.decode().into_iter().rev() {
                    if record.id < below && !visit(record) {
                        return Ok(());
                    }
                }
                below = chunk.first_id;
            }
            if (chunks.len() as i64) < CHUNK_PAGE {
                return Ok(());
            }
        }
    }

    /// One record of an app by its id, or `None`.
    pub async fn invocation(
        &self,
        app_id: AppId,
        id: InvocationId,
    ) -> StoreResult<Option<StoredInvocation>> {
        let sql = format!(
            "SELECT {CHUNK_COLUMNS} FROM invocation_chunks \
             WHERE app_id = $1 AND last_id >= $2 AND first_id <= $2 ORDER BY last_id LIMIT 1"
        );
        let chunk: Option<ChunkRow> = on_pool!(self, pool => {
            sqlx::query_as(&sql)
                .bind(app_id)
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(chunk.and_then(|chunk| chunk.decode().into_iter().find(|record| record.id == id)))
    }

    /// The newest record of an app with this request id, or `None`. Only
    /// chunks whose text holds the id (as a JSON string) are decoded.
    pub async fn invocation_by_request_id(
        &self,
        app_id: AppId,
        request_id: &str,
    ) -> StoreResult<Option<StoredInvocation>> {
        let needle = serde_json::to_string(request_id).expect("a string serialises");
        let mut found = None;
        self.walk_newest_first(
            app_id,
            &InvocationFilter::default(),
            Some(&needle),
            |record| {
                if record.request_id == request_id {
                    found = Some(record);
                }
                found.is_none()
            },
        )
        .await?;
        Ok(found)
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
        let limit = limit.clamp(1, MAX_INVOCATION_PAGE) as usize;
        let sql = format!(
            "SELECT {CHUNK_COLUMNS} FROM invocation_chunks WHERE app_id = $1 AND last_id > $2 \
             ORDER BY last_id LIMIT $3"
        );
        let mut found = Vec::new();
        let mut above = after_id;
        loop {
            let chunks: Vec<ChunkRow> = on_pool!(self, pool => {
                sqlx::query_as(&sql)
                    .bind(app_id)
                    .bind(above)
                    .bind(CHUNK_PAGE)
                    .fetch_all(pool)
                    .await?
            });
            for chunk in &chunks {
                for record in chunk.decode() {
                    if record.id > above && script.is_none_or(|script| record.script_name == script)
                    {
                        found.push(record);
                        if found.len() == limit {
                            return Ok(found);
                        }
                    }
                }
                above = above.max(chunk.last_id);
            }
            if (chunks.len() as i64) < CHUNK_PAGE {
                return Ok(found);
            }
        }
    }

    /// The id of an app's newest record, or 0 when it has none: where a live
    /// tail that wants only new records starts.
    pub async fn newest_invocation_id(&self, app_id: AppId) -> StoreResult<InvocationId> {
        let newest: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT MAX(last_id) FROM invocation_chunks WHERE app_id = $1")
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
    /// bucket of the window, empty ones included.
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
            "SELECT {CHUNK_COLUMNS} FROM invocation_chunks WHERE app_id = $1 \
             AND newest_started_at >= $2 AND oldest_started_at < $3"
        );
        let chunks: Vec<ChunkRow> = on_pool!(self, pool => {
            sqlx::query_as(&sql)
                .bind(app_id)
                .bind(since)
                .bind(until)
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
        for chunk in &chunks {
            for record in chunk.decode() {
                if record.started_at < since
                    || record.started_at >= until
                    || script.is_some_and(|script| record.script_name != script)
                {
                    continue;
                }
                let index = usize::try_from(
                    (record.started_at.unix_millis() - first_bucket).div_euclid(bucket_ms),
                )
                .unwrap_or(usize::MAX);
                let failed = record.is_error();
                let buckets = per_script
                    .entry(record.invocation.script_name)
                    .or_insert_with(|| vec![(Vec::new(), 0); bucket_count]);
                if let Some((durations, errors)) = buckets.get_mut(index) {
                    durations.push(record.invocation.duration_us);
                    *errors += u64::from(failed);
                }
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
    /// A chunk whose newest record is too old goes whole; one that straddles
    /// the limit is rewritten without its old records, so retention is exact
    /// to the record.
    pub async fn prune_invocations(
        &self,
        max_per_app: u32,
        max_age: Duration,
    ) -> StoreResult<PruneOutcome> {
        let cutoff = Timestamp::now().before(max_age).unix_millis();
        let counts: Vec<i32> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "DELETE FROM invocation_chunks WHERE newest_started_at < $1 RETURNING record_count",
            )
            .bind(cutoff)
            .fetch_all(pool)
            .await?
        });
        let mut too_old: u64 = counts.iter().map(|count| *count as u64).sum();
        let straddling: Vec<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT id FROM invocation_chunks WHERE oldest_started_at < $1")
                .bind(cutoff)
                .fetch_all(pool)
                .await?
        });
        for chunk_id in straddling {
            too_old += self
                .trim_chunk(chunk_id, |records| {
                    records.retain(|record| record.started_at.unix_millis() >= cutoff);
                })
                .await?;
        }
        let crowded: Vec<AppId> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT app_id FROM invocation_chunks GROUP BY app_id \
                 HAVING SUM(record_count) > $1",
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
        let chunks: Vec<(i64, i64, i32)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, last_id, record_count FROM invocation_chunks WHERE app_id = $1 \
                 ORDER BY last_id DESC",
            )
            .bind(app_id)
            .fetch_all(pool)
            .await?
        });
        let mut kept = 0u64;
        for (chunk_id, last_id, count) in chunks {
            let count = count as u64;
            let room = u64::from(keep) - kept;
            if count <= room {
                kept += count;
                continue;
            }
            // This chunk holds the oldest record to keep, or none at all:
            // trim it, then delete every older chunk.
            let mut deleted = 0;
            let newest_to_delete = if room > 0 {
                deleted += self
                    .trim_chunk(chunk_id, |records| {
                        let excess = records.len().saturating_sub(room as usize);
                        records.drain(..excess);
                    })
                    .await?;
                last_id - 1
            } else {
                last_id
            };
            let counts: Vec<i32> = on_pool!(self, pool => {
                sqlx::query_scalar(
                    "DELETE FROM invocation_chunks WHERE app_id = $1 AND last_id <= $2 \
                     RETURNING record_count",
                )
                .bind(app_id)
                .bind(newest_to_delete)
                .fetch_all(pool)
                .await?
            });
            // Trimming kept the chunk's newest records, so its last id is
            // still `last_id` and the delete above spared it.
            deleted += counts.iter().map(|count| *count as u64).sum::<u64>();
            return Ok(deleted);
        }
        Ok(0)
    }

    /// Rewrites one chunk with the records `trim` leaves (deleting the chunk
    /// when it leaves none) and says how many records went.
    async fn trim_chunk(
        &self,
        chunk_id: i64,
        trim: impl FnOnce(&mut Vec<StoredInvocation>),
    ) -> StoreResult<u64> {
        let select = format!(
            "SELECT {CHUNK_COLUMNS} FROM invocation_chunks WHERE id = $1{}",
            self.lock_clause()
        );
        let removed = write_transaction!(self, transaction => {
            let chunk: Option<ChunkRow> = sqlx::query_as(&select)
                .bind(chunk_id)
                .fetch_optional(&mut *transaction)
                .await?;
            match chunk {
                // Deleted meanwhile.
                None => 0,
                Some(chunk) => {
                    let mut records = chunk.decode();
                    let before = records.len();
                    trim(&mut records);
                    let removed = (before - records.len()) as u64;
                    if records.is_empty() {
                        sqlx::query("DELETE FROM invocation_chunks WHERE id = $1")
                            .bind(chunk_id)
                            .execute(&mut *transaction)
                            .await?;
                    } else if removed > 0 {
                        let starts = records.iter().map(|record| record.started_at);
                        let oldest = starts.clone().min().expect("records is not empty");
                        let newest = starts.max().expect("records is not empty");
                        sqlx::query(
                            "UPDATE invocation_chunks SET first_id = $2, last_id = $3, \
                             oldest_started_at = $4, newest_started_at = $5, record_count = $6, \
                             records = $7 WHERE id = $1",
                        )
                        .bind(chunk_id)
                        .bind(records[0].id)
                        .bind(records[records.len() - 1].id)
                        .bind(oldest)
                        .bind(newest)
                        .bind(records.len() as i32)
                        .bind(encode_chunk(&records))
                        .execute(&mut *transaction)
                        .await?;
                    }
                    removed
                }
            }
        });
        Ok(removed)
    }
}

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

    fn stored(id: InvocationId, status: u16, output: Vec<OutputLine>) -> StoredInvocation {
        StoredInvocation {
            id,
            invocation: NewInvocation {
                app_id: AppId(3),
                script_id: ScriptId(4),
                script_name: "caf\u{e9} \"quoted\"".to_owned(),
                version_id: VersionId(5),
                trigger: "http".to_owned(),
                status,
                error_code: (status >= 500).then(|| "script_error".to_owned()),
                error_message: (status >= 500).then(|| "line 1\nline 2".to_owned()),
                request_id: format!("req-{id}"),
                started_at: Timestamp::from_unix_millis(1_700_000_000_000 + id),
                duration_us: 12,
                fuel_used: 34,
                fuel_limit: 56,
                memory_bytes: 78,
                memory_limit_bytes: 90,
                cold_start: id % 2 == 0,
                output,
                output_truncated: id % 3 == 0,
            },
        }
    }

    #[test]
    fn chunks_round_trip_every_field() {
        let records = vec![
            stored(10, 200, Vec::new()),
            stored(
                11,
                500,
                vec![OutputLine {
                    level: "print".to_owned(),
                    text: "\u{2713} done".to_owned(),
                }],
            ),
        ];
        let text = encode_chunk(&records);
        assert!(text.starts_with("[[10,4,"), "{text}");
        assert_eq!(decode_chunk(AppId(3), 1, &text), records);
        assert!(decode_chunk(AppId(3), 1, "not json").is_empty());
    }

    #[test]
    fn filters_match_like_the_sql_they_replaced() {
        let ok = stored(10, 404, Vec::new());
        let failed = stored(11, 500, Vec::new());
        let mut refused = stored(12, 429, Vec::new());
        refused.invocation.error_code = Some("rate_limited".to_owned());
        let by = |status| InvocationFilter {
            status: Some(status),
            ..InvocationFilter::default()
        };
        assert!(matches(&by(StatusFilter::Ok), &ok));
        assert!(!matches(&by(StatusFilter::Ok), &refused));
        assert!(matches(&by(StatusFilter::Error), &failed));
        assert!(matches(&by(StatusFilter::Error), &refused));
        assert!(matches(&by(StatusFilter::Exact(404)), &ok));
        let window = InvocationFilter {
            before: Some(12),
            since: Some(ok.started_at),
            until: Some(refused.started_at),
            ..InvocationFilter::default()
        };
        assert!(matches(&window, &ok) && matches(&window, &failed));
        assert!(!matches(&window, &refused));
        let other_script = InvocationFilter {
            script: Some("other".to_owned()),
            ..InvocationFilter::default()
        };
        assert!(!matches(&other_script, &ok));
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
