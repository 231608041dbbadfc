//! Invocation records: list them with filters, get one, tail new ones as
//! server-sent events, and chart them. Anyone who may see an app (a viewer
//! or more) may read its records.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{broadcast, watch};

use super::ApiState;
use super::apps::authorize;
use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::policy::Action;
use crate::{
    AppId, InvocationFilter, InvocationId, InvocationSeries, MAX_INVOCATION_PAGE, OutputLine,
    StatusFilter, Store, StoredInvocation, Timestamp,
};

/// Records per page when the caller gives no `limit`.
const DEFAULT_PAGE: u32 = 50;

/// How often a live tail without an in-process feed asks the store for new
/// records.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How often an idle live tail sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long a live tail trusts the check made when it opened (or last
/// checked): before sending a record after this, it checks its caller's
/// credential and access to the app again.
pub(crate) const REAUTHORIZE_EVERY: Duration = Duration::from_secs(5);

/// One record as the API returns it.
#[derive(Debug, Serialize)]
pub(crate) struct InvocationView {
    id: InvocationId,
    request_id: String,
    script: String,
    version_id: crate::VersionId,
    trigger: String,
    status: u16,
    error_code: Option<String>,
    error_message: Option<String>,
    /// RFC 3339.
    started_at: Timestamp,
    started_at_ms: i64,
    duration_ms: f64,
    fuel_used: i64,
    fuel_limit: i64,
    /// `fuel_used / fuel_limit`, from 0 to 1.
    fuel_share: f64,
    memory_bytes: i64,
    memory_limit_bytes: i64,
    /// `memory_bytes / memory_limit_bytes`, from 0 to 1.
    memory_share: f64,
    cold_start: bool,
    output: Vec<OutputLine>,
    output_truncated: bool,
}

fn share(used: i64, limit: i64) -> f64 {
    if limit <= 0 {
        return 0.0;
    }
    (used as f64 / limit as f64).clamp(0.0, 1.0)
}

impl From<StoredInvocation> for InvocationView {
    fn from(stored: StoredInvocation) -> Self {
        let record = stored.invocation;
        InvocationView {
            id: stored.id,
            request_id: record.request_id,
            script: record.script_name,
            version_id: record.version_id,
            trigger: record.trigger,
            status: record.status,
            error_code: record.error_code,
            error_message: record.error_message,
            started_at: record.started_at,
            started_at_ms: record.started_at.unix_millis(),
            duration_ms: record.duration_us as f64 / 1000.0,
            fuel_used: record.fuel_used,
            fuel_limit: record.fuel_limit,
            fuel_share: share(record.fuel_used, record.fuel_limit),
            memory_bytes: record.memory_bytes,
            memory_limit_bytes: record.memory_limit_bytes,
            memory_share: share(record.memory_bytes, record.memory_limit_bytes),
            cold_start: record.cold_start,
            output: record.output,
            output_truncated: record.output_truncated,
        }
    }
}

/// The query of `GET /apps/{app}/invocations`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    script: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<String>,
    limit: Option<String>,
}

/// A page of records, newest first.
#[derive(Debug, Serialize)]
pub(crate) struct InvocationPage {
    items: Vec<InvocationView>,
    /// Pass as `before` for the next page; `null` on the last one.
    next_before: Option<InvocationId>,
}

/// A query string the route does not take is `422 invalid_input` naming the
/// parameter, or `400 bad_request`.
fn query_error(rejection: &QueryRejection) -> ApiError {
    let message = rejection.body_text();
    match message.split("unknown field `").nth(1) {
        Some(rest) => ApiError::invalid(rest.split('`').next().unwrap_or("query"), message.clone()),
        None => ApiError::BadRequest { message },
    }
}

/// A time as milliseconds since the Unix epoch or an RFC 3339 string.
fn parse_time(field: &str, text: &str) -> ApiResult<Timestamp> {
    if let Ok(millis) = text.parse::<i64>() {
        return Ok(Timestamp::from_unix_millis(millis));
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .map(Timestamp::from_offset_date_time)
        .map_err(|_| {
            ApiError::invalid(
                field,
                format!("`{text}` is neither milliseconds since the epoch nor an RFC 3339 time"),
            )
        })
}

fn parse_status(text: &str) -> ApiResult<StatusFilter> {
    match text {
        "ok" => Ok(StatusFilter::Ok),
        "error" => Ok(StatusFilter::Error),
        code => code
            .parse::<u16>()
            .ok()
            .filter(|code| (100..=599).contains(code))
            .map(StatusFilter::Exact)
            .ok_or_else(|| {
                ApiError::invalid(
                    "status",
                    format!("`{text}` is not `ok`, `error` or an HTTP status from 100 to 599"),
                )
            }),
    }
}

fn parse_id(field: &str, text: &str) -> ApiResult<InvocationId> {
    text.parse::<InvocationId>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| ApiError::invalid(field, format!("`{text}` is not a record id")))
}

impl ListQuery {
    fn filter(&self) -> ApiResult<(InvocationFilter, u32)> {
        let limit = match &self.limit {
            None => DEFAULT_PAGE,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|limit| (1..=MAX_INVOCATION_PAGE).contains(limit))
                .ok_or_else(|| {
                    ApiError::invalid(
                        "limit",
                        format!("must be a whole number from 1 to {MAX_INVOCATION_PAGE}"),
                    )
                })?,
        };
        let filter = InvocationFilter {
            script: self.script.clone().filter(|script| !script.is_empty()),
            status: self.status.as_deref().map(parse_status).transpose()?,
            since: self
                .since
                .as_deref()
                .map(|text| parse_time("since", text))
                .transpose()?,
            until: self
                .until
                .as_deref()
                .map(|text| parse_time("until", text))
                .transpose()?,
            before: self
                .before
                .as_deref()
                .map(|text| parse_id("before", text))
                .transpose()?,
        };
        Ok((filter, limit))
    }
}

pub(crate) async fn list_invocations(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<InvocationPage>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ReadApp).await?;
    let Query(query) = query.map_err(|rejection| query_error(&rejection))?;
    let (filter, limit) = query.filter()?;
    let records = state
        .store()
        .list_invocations(app.id, &filter, limit)
        .await?;
    let next_before = match records.last() {
        Some(last) if records.len() == limit as usize => Some(last.id),
        _ => None,
    };
    Ok(Json(InvocationPage {
        items: records.into_iter().map(InvocationView::from).collect(),
        next_before,
    }))
}

pub(crate) async fn get_invocation(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, id)): Path<(String, String)>,
) -> ApiResult<Json<InvocationView>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ReadApp).await?;
    // A number is a record id; anything else is a request id.
    let record = match id.parse::<InvocationId>() {
        Ok(number) => state.store().invocation(app.id, number).await?,
        Err(_) => state.store().invocation_by_request_id(app.id, &id).await?,
    };
    record
        .map(|record| Json(InvocationView::from(record)))
        .ok_or_else(|| ApiError::not_found(format!("invocation `{id}` of app `{slug}`")))
}

/// The query of `GET /apps/{app}/invocations/stream`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamQuery {
    script: Option<String>,
    after: Option<String>,
}

/// A live tail: what has been sent, what is queued to send, and where new
/// records come from.
struct Tail {
    store: Store,
    app_id: AppId,
    script: Option<String>,
    /// The id of the last record sent (or skipped as old).
    last_id: InvocationId,
    backlog: VecDeque<StoredInvocation>,
    /// The server's in-process feed of stored records; without one the
    /// tail polls the store.
    feed: Option<broadcast::Receiver<StoredInvocation>>,
    /// Becomes `true` when the server shuts down.
    closing: watch::Receiver<bool>,
    /// The last read from the store filled a whole page: more stored
    /// records wait there, and the feed must not be read before them.
    behind: bool,
    access: Access,
}

/// Who opened a live tail, checked again while it runs: a caller whose
/// credential was revoked, whose account was deactivated or whose access to
/// the app was removed stops receiving records (the stream ends).
struct Access {
    state: ApiState,
    slug: String,
    app_id: AppId,
    /// The request's `Authorization` and `Cookie` headers.
    credentials: HeaderMap,
    checked_at: Instant,
}

impl Access {
    async fn still_granted(&mut self) -> bool {
        if self.checked_at.elapsed() < REAUTHORIZE_EVERY {
            return true;
        }
        let mut request = axum::http::Request::new(());
        *request.headers_mut() = self.credentials.clone();
        let (mut parts, ()) = request.into_parts();
        let granted = match Caller::from_request_parts(&mut parts, &self.state).await {
            Ok(caller) => authorize(&self.state, &caller, &self.slug, Action::ReadApp)
                .await
                .is_ok_and(|(app, _)| app.id == self.app_id),
            Err(_) => false,
        };
        if !granted {
            tracing::info!(app = %self.slug, "a live tail ended: its caller lost access");
        }
        self.checked_at = Instant::now();
        granted
    }
}

impl Tail {
    fn wants(&self, record: &StoredInvocation) -> bool {
        record.id > self.last_id
            && record.app_id == self.app_id
            && self
                .script
                .as_deref()
                .is_none_or(|script| script == record.script_name)
    }

    /// Queues the stored records newer than the last one sent; `false` if
    /// the store cannot be read (which ends the stream: the client
    /// reconnects with `Last-Event-ID`).
    async fn catch_up(&mut self) -> bool {
        match self
            .store
            .invocations_after(
                self.app_id,
                self.last_id,
                self.script.as_deref(),
                MAX_INVOCATION_PAGE,
            )
            .await
        {
            Ok(records) => {
                self.behind = records.len() >= MAX_INVOCATION_PAGE as usize;
                self.backlog.extend(records);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read invocation records for a live tail");
                false
            }
        }
    }

    /// The next record to send, if its caller may still see it; `None` ends
    /// the stream.
    async fn next(&mut self) -> Option<StoredInvocation> {
        let record = self.next_record().await?;
        self.access.still_granted().await.then_some(record)
    }

    /// The next record to send; `None` ends the stream.
    async fn next_record(&mut self) -> Option<StoredInvocation> {
        loop {
            if let Some(record) = self.backlog.pop_front() {
                if self.wants(&record) {
                    self.last_id = record.id;
                    return Some(record);
                }
                continue;
            }
            if *self.closing.borrow() {
                return None;
            }
            if self.behind {
                if !self.catch_up().await {
                    return None;
                }
                continue;
            }
            let received = match &mut self.feed {
                Some(feed) => tokio::select! {
                    received = feed.recv() => received,
                    _ = self.closing.changed() => return None,
                },
                None => {
                    tokio::select! {
                        () = tokio::time::sleep(POLL_INTERVAL) => {}
                        _ = self.closing.changed() => return None,
                    }
                    if !self.catch_up().await {
                        return None;
                    }
                    continue;
                }
            };
            match received {
                Ok(record) => {
                    if self.wants(&record) {
                        self.last_id = record.id;
                        return Some(record);
                    }
                }
                // Too slow to read the feed: the store has what was missed.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if !self.catch_up().await {
                        return None;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

fn event(record: StoredInvocation) -> Event {
    let id = record.id.to_string();
    let data =
        serde_json::to_string(&InvocationView::from(record)).unwrap_or_else(|_| "{}".to_owned());
    Event::default().event("invocation").id(id).data(data)
}

pub(crate) async fn stream_invocations(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ReadApp).await?;
    let Query(query) = query.map_err(|rejection| query_error(&rejection))?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty());
    let after = match last_event_id {
        Some(text) => Some(parse_id("Last-Event-ID", text)?),
        None => query
            .after
            .as_deref()
            .map(|text| parse_id("after", text))
            .transpose()?,
    };
    let mut credentials = HeaderMap::new();
    for name in [header::AUTHORIZATION, header::COOKIE] {
        for value in headers.get_all(&name) {
            credentials.append(name.clone(), value.clone());
        }
    }
    let access = Access {
        state: state.clone(),
        slug: slug.clone(),
        app_id: app.id,
        credentials,
        checked_at: Instant::now(),
    };
    // Subscribe before reading the store, so nothing falls between the two.
    let feed = state.invocation_feed().map(broadcast::Sender::subscribe);
    let mut tail = Tail {
        store: state.store().clone(),
        app_id: app.id,
        script: query.script.filter(|script| !script.is_empty()),
        last_id: 0,
        backlog: VecDeque::new(),
        feed,
        closing: state.tails_closing(),
        behind: false,
        access,
    };
    match after {
        Some(after) => {
            tail.last_id = after;
            if !tail.catch_up().await {
                return Err(ApiError::Internal);
            }
        }
        None => tail.last_id = state.store().newest_invocation_id(app.id).await?,
    }
    let stream = futures_util::stream::unfold(tail, |mut tail| async move {
        let record = tail.next().await?;
        Some((Ok::<Event, Infallible>(event(record)), tail))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// The query of `GET /apps/{app}/invocations/stats`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatsQuery {
    window: Option<String>,
    script: Option<String>,
}

/// Per-script series for the dashboard's charts.
#[derive(Debug, Serialize)]
pub(crate) struct InvocationStats {
    window: String,
    bucket_seconds: u64,
    since: Timestamp,
    until: Timestamp,
    series: Vec<InvocationSeries>,
}

/// The windows the charts offer, with their bucket size in seconds.
const WINDOWS: &[(&str, u64, u64)] = &[
    ("1h", 60 * 60, 60),
    ("24h", 24 * 60 * 60, 60 * 60),
    ("7d", 7 * 24 * 60 * 60, 6 * 60 * 60),
];

pub(crate) async fn invocation_stats(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> ApiResult<Json<InvocationStats>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ReadApp).await?;
    let Query(query) = query.map_err(|rejection| query_error(&rejection))?;
    let window = query.window.as_deref().unwrap_or("1h");
    let &(_, window_seconds, bucket_seconds) = WINDOWS
        .iter()
        .find(|(name, _, _)| *name == window)
        .ok_or_else(|| ApiError::invalid("window", "must be `1h`, `24h` or `7d`"))?;
    let until = Timestamp::now();
    let since = until.before(Duration::from_secs(window_seconds));
    let series = state
        .store()
        .invocation_stats(
            app.id,
            query.script.as_deref().filter(|script| !script.is_empty()),
            since,
            until,
            Duration::from_secs(bucket_seconds),
        )
        .await?;
    Ok(Json(InvocationStats {
        window: window.to_owned(),
        bucket_seconds,
        since,
        until,
        series,
    }))
}
