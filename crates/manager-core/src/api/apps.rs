//! Apps, scripts, versions, deploys, rollbacks and domains.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::hooks::CheckError;
use super::policy::{self, Action};
use super::{ApiState, JsonBody, RawBody, audit};
use crate::{
    ActiveScript, App, AppRole, AppUpdate, Domain, ScriptSummary, ScriptVersion, Timestamp, UserId,
    VersionSummary, validate,
};

/// An app as the API returns it: with the caller's effective role.
#[derive(Debug, Serialize)]
pub(crate) struct AppView {
    #[serde(flatten)]
    app: App,
    my_role: AppRole,
}

/// The app with slug `slug` and the caller's role on it, if the caller may do
/// `action` there. An app the caller may not see at all is `404`, as if it
/// did not exist; one it may see but not change is `403`.
pub(super) async fn authorize(
    state: &ApiState,
    caller: &Caller,
    slug: &str,
    action: Action,
) -> ApiResult<(App, AppRole)> {
    let not_found = || ApiError::not_found(format!("app `{slug}`"));
    let app = match state.store().app_by_slug(slug).await {
        Ok(app) => app,
        Err(crate::StoreError::NotFound { .. }) => return Err(not_found()),
        Err(error) => return Err(error.into()),
    };
    let membership = match caller.user.instance_role {
        crate::InstanceRole::Member => state.store().membership(app.id, caller.user.id).await?,
        _ => None,
    };
    let role = policy::effective_app_role(&caller.user, membership)
        .filter(|role| policy::can(&caller.user, Action::ReadApp, Some(*role)))
        .ok_or_else(not_found)?;
    if !policy::can(&caller.user, action, Some(role)) {
        return Err(ApiError::Forbidden {
            permission: action.name(),
        });
    }
    Ok((app, role))
}

pub(crate) async fn list_apps(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<Json<Vec<AppView>>> {
    let views = match caller.user.instance_role {
        crate::InstanceRole::Member => state
            .store()
            .list_apps_of_member(caller.user.id)
            .await?
            .into_iter()
            .filter_map(|with_role| {
                let my_role = policy::effective_app_role(&caller.user, Some(with_role.role))?;
                Some(AppView {
                    app: with_role.app,
                    my_role,
                })
            })
            .collect(),
        _ => state
            .store()
            .list_apps()
            .await?
            .into_iter()
            .filter_map(|app| {
                let my_role = policy::effective_app_role(&caller.user, None)?;
                Some(AppView { app, my_role })
            })
            .collect(),
    };
    Ok(Json(views))
}

/// `POST /apps`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateAppRequest {
    slug: String,
    #[serde(default)]
    name: Option<String>,
}

pub(crate) async fn create_app(
    State(state): State<ApiState>,
    caller: Caller,
    JsonBody(request): JsonBody<CreateAppRequest>,
) -> ApiResult<(StatusCode, Json<AppView>)> {
    if !policy::can(&caller.user, Action::CreateApp, None) {
        return Err(ApiError::Forbidden {
            permission: Action::CreateApp.name(),
        });
    }
    let name = request.name.unwrap_or_else(|| request.slug.clone());
    let app = state.store().create_app(&request.slug, &name).await?;
    audit(
        &state,
        caller.user.id,
        "app.create",
        format!("app:{}", app.slug),
        None,
        Some(json!({ "slug": app.slug, "name": app.name })),
    )
    .await;
    let my_role = policy::effective_app_role(&caller.user, None).unwrap_or(AppRole::AppAdmin);
    Ok((StatusCode::CREATED, Json(AppView { app, my_role })))
}

pub(crate) async fn get_app(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<Json<AppView>> {
    let (app, my_role) = authorize(&state, &caller, &slug, Action::ReadApp).await?;
    Ok(Json(AppView { app, my_role }))
}

/// `PATCH /apps/{app}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateAppRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    settings: Option<serde_json::Value>,
}

pub(crate) async fn update_app(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
    JsonBody(request): JsonBody<UpdateAppRequest>,
) -> ApiResult<Json<AppView>> {
    let (before, my_role) = authorize(&state, &caller, &slug, Action::UpdateApp).await?;
    let update = AppUpdate {
        name: request.name,
        settings: request.settings,
    };
    let app = {
        let _routes = state.route_updates().lock().await;
        let app = state.store().update_app(before.id, &update).await?;
        if app.settings != before.settings {
            // New limits apply to the next request of every script.
            for script in state.store().active_scripts_of_app(app.id).await? {
                state.routes().script_activated(&script);
            }
            state.announce_routes().await;
        }
        app
    };
    audit(
        &state,
        caller.user.id,
        "app.update",
        format!("app:{}", app.slug),
        Some(json!({ "name": before.name, "settings": before.settings })),
        Some(json!({ "name": app.name, "settings": app.settings })),
    )
    .await;
    Ok(Json(AppView { app, my_role }))
}

pub(crate) async fn delete_app(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<StatusCode> {
    let (app, _) = authorize(&state, &caller, &slug, Action::DeleteApp).await?;
    {
        let _routes = state.route_updates().lock().await;
        state.store().delete_app(app.id).await?;
        state.routes().app_removed(&app.slug);
        state.announce_routes().await;
    }
    // The app is gone from the database; its files go with it. A failure
    // here leaves only disk space behind (app ids are never reused).
    if let Some((files, _)) = state.files()
        && let Err(error) = files.remove_app(app.id).await
    {
        tracing::warn!(app = %app.slug, %error, "cannot remove the deleted app's files");
    }
    audit(
        &state,
        caller.user.id,
        "app.delete",
        format!("app:{}", app.slug),
        Some(json!({ "slug": app.slug, "name": app.name })),
        None,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn list_scripts(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<Json<Vec<ScriptSummary>>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ReadApp).await?;
    Ok(Json(state.store().list_scripts(app.id).await?))
}

/// A script with its active version's source.
#[derive(Debug, Serialize)]
pub(crate) struct ScriptView {
    #[serde(flatten)]
    summary: ScriptSummary,
    /// The source of the active version.
    active_source: Option<String>,
}

pub(crate) async fn get_script(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, name)): Path<(String, String)>,
) -> ApiResult<Json<ScriptView>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ReadApp).await?;
    let summary = state
        .store()
        .list_scripts(app.id)
        .await?
        .into_iter()
        .find(|script| script.name == name)
        .ok_or_else(|| ApiError::not_found(format!("script `{slug}/{name}`")))?;
    let active_source = match summary.active_version_number {
        Some(number) => Some(state.store().version(summary.id, number).await?.source),
        None => None,
    };
    Ok(Json(ScriptView {
        summary,
        active_source,
    }))
}

/// A version that has just become active (deploy or rollback).
#[derive(Debug, Serialize)]
pub(crate) struct ActivatedVersion {
    app: String,
    script: String,
    /// The version number, 1, 2, 3...
    version: i64,
    version_id: crate::VersionId,
    hash: String,
    author_id: UserId,
    created_at: Timestamp,
    active: bool,
}

impl ActivatedVersion {
    fn new(app: &App, script: &str, version: &ScriptVersion) -> Self {
        ActivatedVersion {
            app: app.slug.clone(),
            script: script.to_owned(),
            version: version.number,
            version_id: version.id,
            hash: version.hash.clone(),
            author_id: version.author_id,
            created_at: version.created_at,
            active: true,
        }
    }
}

fn active_script(app: &App, script: &str, version: ScriptVersion) -> ActiveScript {
    ActiveScript {
        app_id: app.id,
        app_slug: app.slug.clone(),
        script_id: version.script_id,
        script_name: script.to_owned(),
        version_id: version.id,
        number: version.number,
        hash: version.hash,
        source: version.source,
        app_settings: app.settings.clone(),
    }
}

/// The body of a deploy: `{"source": "..."}` as JSON, or the source itself
/// as any other content type (`text/plain`).
fn deploy_source(headers: &HeaderMap, body: &[u8]) -> ApiResult<String> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if is_json {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct DeployRequest {
            source: String,
        }
        let request: DeployRequest =
            serde_json::from_slice(body).map_err(|error| ApiError::BadRequest {
                message: format!("the body is not a deploy request: {error}"),
            })?;
        Ok(request.source)
    } else {
        String::from_utf8(body.to_vec()).map_err(|_| ApiError::invalid("source", "must be UTF-8"))
    }
}

pub(crate) async fn deploy(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, name)): Path<(String, String)>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<(StatusCode, Json<ActivatedVersion>)> {
    let (app, _) = authorize(&state, &caller, &slug, Action::Deploy).await?;
    validate::script_name(&name)?;
    let source = deploy_source(&headers, &body)?;
    if source.trim().is_empty() {
        return Err(ApiError::invalid("source", "must not be empty"));
    }
    // Compile in the sandbox first: a script that does not compile is never stored.
    state
        .compiler()
        .check(&source)
        .await
        .map_err(|error| match error {
            CheckError::Compile {
                message,
                line,
                column,
            } => ApiError::Compile {
                message,
                line,
                column,
            },
            CheckError::Unavailable { message } => ApiError::Unavailable { message },
        })?;
    let version = {
        // Storing and publishing under one lock keeps the routing table in
        // the store's order when two deploys of one script race.
        let _routes = state.route_updates().lock().await;
        let version = state
            .store()
            .deploy(app.id, &name, &source, caller.user.id)
            .await?;
        state
            .routes()
            .script_activated(&active_script(&app, &name, version.clone()));
        state.announce_routes().await;
        version
    };
    audit(
        &state,
        caller.user.id,
        "script.deploy",
        format!("app:{}/script:{name}", app.slug),
        None,
        Some(json!({ "version": version.number, "hash": version.hash })),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(ActivatedVersion::new(&app, &name, &version)),
    ))
}

pub(crate) async fn delete_script(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (app, _) = authorize(&state, &caller, &slug, Action::DeleteScript).await?;
    let script = state.store().script(app.id, &name).await?;
    {
        let _routes = state.route_updates().lock().await;
        state.store().delete_script(script.id).await?;
        state.routes().script_removed(&app.slug, &name);
        state.announce_routes().await;
    }
    audit(
        &state,
        caller.user.id,
        "script.delete",
        format!("app:{}/script:{name}", app.slug),
        Some(json!({ "name": name })),
        None,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn list_versions(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<VersionSummary>>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ReadApp).await?;
    let script = state.store().script(app.id, &name).await?;
    Ok(Json(state.store().list_versions(script.id).await?))
}

pub(crate) async fn get_version(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, name, number)): Path<(String, String, String)>,
) -> ApiResult<Json<ScriptVersion>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ReadApp).await?;
    let script = state.store().script(app.id, &name).await?;
    let number: i64 = number
        .parse()
        .map_err(|_| ApiError::not_found(format!("version `{number}` of `{slug}/{name}`")))?;
    Ok(Json(state.store().version(script.id, number).await?))
}

/// `POST .../rollback`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RollbackRequest {
    version: i64,
}

pub(crate) async fn rollback(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, name)): Path<(String, String)>,
    JsonBody(request): JsonBody<RollbackRequest>,
) -> ApiResult<Json<ActivatedVersion>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::Rollback).await?;
    let script = state.store().script(app.id, &name).await?;
    let version = {
        let _routes = state.route_updates().lock().await;
        let version = state
            .store()
            .activate_version(script.id, request.version)
            .await?;
        state
            .routes()
            .script_activated(&active_script(&app, &name, version.clone()));
        state.announce_routes().await;
        version
    };
    audit(
        &state,
        caller.user.id,
        "script.rollback",
        format!("app:{}/script:{name}", app.slug),
        None,
        Some(json!({ "version": version.number })),
    )
    .await;
    Ok(Json(ActivatedVersion::new(&app, &name, &version)))
}

pub(crate) async fn list_domains(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<Json<Vec<Domain>>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ReadApp).await?;
    Ok(Json(state.store().list_domains(app.id).await?))
}

/// `POST /apps/{app}/domains`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddDomainRequest {
    host: String,
}

/// Publishes the app's current domains to the routing table.
async fn publish_domains(state: &ApiState, app: &App) -> ApiResult<()> {
    let hosts: Vec<String> = state
        .store()
        .list_domains(app.id)
        .await?
        .into_iter()
        .map(|domain| domain.host)
        .collect();
    state.routes().domains_changed(&app.slug, &hosts);
    state.announce_routes().await;
    Ok(())
}

pub(crate) async fn add_domain(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
    JsonBody(request): JsonBody<AddDomainRequest>,
) -> ApiResult<(StatusCode, Json<Domain>)> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ManageDomains).await?;
    let domain = {
        let _routes = state.route_updates().lock().await;
        let domain = state.store().add_domain(app.id, &request.host).await?;
        publish_domains(&state, &app).await?;
        domain
    };
    audit(
        &state,
        caller.user.id,
        "domain.add",
        format!("app:{}/domain:{}", app.slug, domain.host),
        None,
        Some(json!({ "host": domain.host })),
    )
    .await;
    Ok((StatusCode::CREATED, Json(domain)))
}

pub(crate) async fn remove_domain(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, host)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ManageDomains).await?;
    {
        let _routes = state.route_updates().lock().await;
        state.store().remove_domain(app.id, &host).await?;
        publish_domains(&state, &app).await?;
    }
    audit(
        &state,
        caller.user.id,
        "domain.remove",
        format!("app:{}/domain:{host}", app.slug),
        Some(json!({ "host": host })),
        None,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
