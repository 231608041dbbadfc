//! What scripts read at run time, managed through the API: an app's
//! variables, its secrets (write-only: no answer ever holds a value), its
//! outbound-HTTP allow-list, and a debugging view of its key-value store.
//!
//! Viewers read (secret names only); editors and above change
//! ([`Action::ManageConfig`]).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::apps::authorize;
use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::policy::Action;
use super::{ApiState, JsonBody, audit};
use crate::{AppVar, KvEntry, KvUsage, SecretInfo, Timestamp};

/// The page size of `GET /apps/{app}/kv` when `limit` is not given.
const DEFAULT_KV_PAGE: u32 = 100;

/// A variable as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct VarView {
    name: String,
    value: String,
    updated_at: Timestamp,
}

impl From<AppVar> for VarView {
    fn from(variable: AppVar) -> Self {
        VarView {
            name: variable.name,
            value: variable.value,
            updated_at: variable.updated_at,
        }
    }
}

/// `{"items": [...]}`.
#[derive(Debug, Serialize)]
pub(crate) struct Items<T> {
    items: Vec<T>,
}

/// `PUT /apps/{app}/vars/{name}` and `PUT /apps/{app}/secrets/{name}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetValueRequest {
    value: String,
}

/// Never prints the value: the same type carries secrets.
impl std::fmt::Debug for SetValueRequest {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SetValueRequest { .. }")
    }
}

/// `GET` and `PUT /apps/{app}/http-allowlist`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AllowList {
    hosts: Vec<String>,
}

pub(crate) async fn list_vars(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<Json<Items<VarView>>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ReadApp).await?;
    let items = state.store().list_vars(app.id).await?;
    Ok(Json(Items {
        items: items.into_iter().map(VarView::from).collect(),
    }))
}

pub(crate) async fn set_var(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, name)): Path<(String, String)>,
    JsonBody(request): JsonBody<SetValueRequest>,
) -> ApiResult<Json<VarView>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ManageConfig).await?;
    let variable = state
        .store()
        .set_var(app.id, &name, &request.value, Some(caller.user.id))
        .await?;
    Ok(Json(variable.into()))
}

pub(crate) async fn delete_var(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ManageConfig).await?;
    state
        .store()
        .delete_var(app.id, &name, Some(caller.user.id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn list_secrets(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<Json<Items<SecretInfo>>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ReadApp).await?;
    Ok(Json(Items {
        items: state.store().list_secrets(app.id).await?,
    }))
}

pub(crate) async fn set_secret(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, name)): Path<(String, String)>,
    JsonBody(request): JsonBody<SetValueRequest>,
) -> ApiResult<Json<SecretInfo>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ManageConfig).await?;
    let key = state.secret_key().ok_or_else(|| ApiError::Unavailable {
        message: "this server has no secrets key configured".into(),
    })?;
    let info = state
        .store()
        .set_secret(app.id, &name, &request.value, key, Some(caller.user.id))
        .await?;
    Ok(Json(info))
}

pub(crate) async fn delete_secret(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ManageConfig).await?;
    state
        .store()
        .delete_secret(app.id, &name, Some(caller.user.id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn get_http_allowlist(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<Json<AllowList>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ReadApp).await?;
    Ok(Json(AllowList {
        hosts: state.store().list_http_allow(app.id).await?,
    }))
}

pub(crate) async fn set_http_allowlist(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
    JsonBody(request): JsonBody<AllowList>,
) -> ApiResult<Json<AllowList>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ManageConfig).await?;
    let hosts = state
        .store()
        .set_http_allow(app.id, request.hosts, Some(caller.user.id))
        .await?;
    Ok(Json(AllowList { hosts }))
}

/// The query of `GET /apps/{app}/kv`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KvListQuery {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

/// A page of key-value entries as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct KvPageView {
    items: Vec<KvEntryView>,
    next: Option<String>,
}

/// A key-value entry as the API shows it, with its expiry as a time.
#[derive(Debug, Serialize)]
pub(crate) struct KvEntryView {
    key: String,
    value: serde_json::Value,
    expires_at: Option<Timestamp>,
}

impl From<KvEntry> for KvEntryView {
    fn from(entry: KvEntry) -> Self {
        KvEntryView {
            key: entry.key,
            value: entry.value,
            expires_at: entry.expires_at.map(Timestamp::from_unix_millis),
        }
    }
}

pub(crate) async fn list_kv(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
    query: Result<Query<KvListQuery>, QueryRejection>,
) -> ApiResult<Json<KvPageView>> {
    let Query(query) = query.map_err(|rejection| {
        let message = rejection.body_text();
        for field in ["limit", "prefix", "after"] {
            if message.contains(field) {
                return ApiError::invalid(field, message);
            }
        }
        ApiError::BadRequest { message }
    })?;
    let limit = query.limit.unwrap_or(DEFAULT_KV_PAGE);
    if !(1..=crate::MAX_KV_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be from 1 to {}", crate::MAX_KV_PAGE),
        ));
    }
    let (app, _) = authorize(&state, &caller, &slug, Action::ReadApp).await?;
    let page = state
        .store()
        .kv_list(
            app.id,
            &query.prefix,
            query.after.as_deref(),
            limit,
            Timestamp::now().unix_millis(),
        )
        .await?;
    Ok(Json(KvPageView {
        items: page.entries.into_iter().map(KvEntryView::from).collect(),
        next: page.next,
    }))
}

pub(crate) async fn delete_kv(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, key)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ManageConfig).await?;
    if state.store().kv_delete(app.id, &key).await? {
        audit(
            &state,
            caller.user.id,
            "kv.delete",
            format!("app:{}/kv:{key}", app.slug),
            None,
            None,
        )
        .await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("key `{}`", key.escape_debug())))
    }
}

pub(crate) async fn kv_usage(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<Json<KvUsage>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ReadApp).await?;
    Ok(Json(state.store().kv_usage(app.id).await?))
}
