//! Cron schedules (`/apps/{app}/schedules`) and the status of async
//! invocations (`/apps/{app}/async/{id}`).
//!
//! Editors and above manage schedules; viewers read them and async
//! statuses. Every change is told to the scheduler through a
//! [`ScheduleObserver`], so it recomputes when to wake at once.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::policy::Action;
use super::{ApiState, JsonBody, audit};
use crate::{
    AppId, AsyncInvocation, AsyncStatus, NewSchedule, Schedule, ScheduleId, ScheduleUpdate,
    ScriptId, StoreError, Timestamp,
};

/// Told of every schedule created, changed or deleted through the API, right
/// after the store has it, so that the scheduler re-reads when to wake.
pub trait ScheduleObserver: Send + Sync + 'static {
    /// Schedules changed.
    fn schedules_changed(&self);
}

fn notify_scheduler(state: &ApiState) {
    if let Some(observer) = state.schedule_observer() {
        observer.schedules_changed();
    }
}

/// The id of the script `name` of the app, or `422 invalid_input` naming
/// `script`.
async fn script_id(state: &ApiState, app_id: AppId, name: &str) -> ApiResult<ScriptId> {
    match state.store().script(app_id, name).await {
        Ok(script) => Ok(script.id),
        Err(StoreError::NotFound { .. }) => Err(ApiError::invalid(
            "script",
            format!("the app has no script `{name}`"),
        )),
        Err(error) => Err(error.into()),
    }
}

/// A schedule id from the path; anything else names no schedule.
fn schedule_id(text: &str) -> ApiResult<ScheduleId> {
    text.parse::<i64>()
        .map(ScheduleId)
        .map_err(|_| ApiError::not_found(format!("schedule `{text}`")))
}

fn summary(schedule: &Schedule) -> Value {
    json!({
        "script": schedule.script,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "payload": schedule.payload,
        "enabled": schedule.enabled,
    })
}

pub(crate) async fn list_schedules(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<Json<Vec<Schedule>>> {
    let (app, _) = super::apps::authorize(&state, &caller, &slug, Action::ReadApp).await?;
    Ok(Json(state.store().list_schedules(app.id).await?))
}

/// `POST /apps/{app}/schedules`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateScheduleRequest {
    script: String,
    cron: String,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    payload: Option<Value>,
    #[serde(default)]
    enabled: Option<bool>,
}

pub(crate) async fn create_schedule(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
    JsonBody(request): JsonBody<CreateScheduleRequest>,
) -> ApiResult<(StatusCode, Json<Schedule>)> {
    let (app, _) = super::apps::authorize(&state, &caller, &slug, Action::ManageSchedules).await?;
    let script_id = script_id(&state, app.id, &request.script).await?;
    let new = NewSchedule {
        script_id,
        cron: request.cron,
        timezone: request.timezone,
        payload: request.payload,
        enabled: request.enabled.unwrap_or(true),
        created_by: Some(caller.user.id),
    };
    let schedule = state
        .store()
        .create_schedule(app.id, &new, Timestamp::now())
        .await?;
    notify_scheduler(&state);
    audit(
        &state,
        caller.user.id,
        "schedule.create",
        format!("app:{}/schedule:{}", app.slug, schedule.id),
        None,
        Some(summary(&schedule)),
    )
    .await;
    Ok((StatusCode::CREATED, Json(schedule)))
}

pub(crate) async fn get_schedule(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, id)): Path<(String, String)>,
) -> ApiResult<Json<Schedule>> {
    let (app, _) = super::apps::authorize(&state, &caller, &slug, Action::ReadApp).await?;
    Ok(Json(
        state.store().schedule(app.id, schedule_id(&id)?).await?,
    ))
}

/// A field that is present, even as `null` (which [`Option`] alone cannot
/// tell from a missing one).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// `PATCH /apps/{app}/schedules/{id}`: the fields to change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateScheduleRequest {
    #[serde(default)]
    script: Option<String>,
    #[serde(default)]
    cron: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
    /// `null` removes the payload.
    #[serde(default, deserialize_with = "present")]
    payload: Option<Value>,
    #[serde(default)]
    enabled: Option<bool>,
}

pub(crate) async fn update_schedule(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, id)): Path<(String, String)>,
    JsonBody(request): JsonBody<UpdateScheduleRequest>,
) -> ApiResult<Json<Schedule>> {
    let (app, _) = super::apps::authorize(&state, &caller, &slug, Action::ManageSchedules).await?;
    let id = schedule_id(&id)?;
    let before = state.store().schedule(app.id, id).await?;
    let script_id = match &request.script {
        Some(name) => Some(script_id(&state, app.id, name).await?),
        None => None,
    };
    let update = ScheduleUpdate {
        script_id,
        cron: request.cron,
        timezone: request.timezone,
        payload: request
            .payload
            .map(|payload| Some(payload).filter(|payload| !payload.is_null())),
        enabled: request.enabled,
    };
    let schedule = state
        .store()
        .update_schedule(app.id, id, &update, Timestamp::now())
        .await?;
    notify_scheduler(&state);
    audit(
        &state,
        caller.user.id,
        "schedule.update",
        format!("app:{}/schedule:{}", app.slug, schedule.id),
        Some(summary(&before)),
        Some(summary(&schedule)),
    )
    .await;
    Ok(Json(schedule))
}

pub(crate) async fn delete_schedule(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (app, _) = super::apps::authorize(&state, &caller, &slug, Action::ManageSchedules).await?;
    let id = schedule_id(&id)?;
    let before = state.store().schedule(app.id, id).await?;
    state.store().delete_schedule(app.id, id).await?;
    notify_scheduler(&state);
    audit(
        &state,
        caller.user.id,
        "schedule.delete",
        format!("app:{}/schedule:{}", app.slug, id),
        Some(summary(&before)),
        None,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The script's response to an async invocation, as the API shows it: the
/// body as text when it is UTF-8, else in base64.
#[derive(Debug, Serialize)]
pub(crate) struct AsyncResultView {
    status: u16,
    headers: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

/// An async invocation's status page.
#[derive(Debug, Serialize)]
pub(crate) struct AsyncView {
    invocation_id: String,
    script: String,
    request_id: String,
    status: AsyncStatus,
    attempts: u32,
    max_attempts: u32,
    /// When it runs next, while it is queued.
    next_attempt_at: Option<Timestamp>,
    result: Option<AsyncResultView>,
    error: Option<String>,
    created_at: Timestamp,
    finished_at: Option<Timestamp>,
}

impl From<AsyncInvocation> for AsyncView {
    fn from(invocation: AsyncInvocation) -> Self {
        let result = invocation.result.map(|result| {
            let (body, body_base64) = match String::from_utf8(result.body) {
                Ok(text) => (Some(text), None),
                Err(error) => {
                    use base64::Engine as _;
                    let encoded =
                        base64::engine::general_purpose::STANDARD.encode(error.into_bytes());
                    (None, Some(encoded))
                }
            };
            AsyncResultView {
                status: result.status,
                headers: result.headers,
                body,
                body_base64,
            }
        });
        AsyncView {
            invocation_id: invocation.id,
            script: invocation.script,
            request_id: invocation.request_id,
            status: invocation.status,
            attempts: invocation.attempts,
            max_attempts: invocation.max_attempts,
            next_attempt_at: (invocation.status == AsyncStatus::Queued)
                .then_some(invocation.next_attempt_at),
            result,
            error: invocation.error,
            created_at: invocation.created_at,
            finished_at: invocation.finished_at,
        }
    }
}

pub(crate) async fn get_async(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, id)): Path<(String, String)>,
) -> ApiResult<Json<AsyncView>> {
    let (app, _) = super::apps::authorize(&state, &caller, &slug, Action::ReadApp).await?;
    let invocation = state.store().async_invocation(app.id, &id).await?;
    Ok(Json(AsyncView::from(invocation)))
}
