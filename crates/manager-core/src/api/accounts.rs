//! Users, app memberships and the audit log: the account routes.
//!
//! Every change here is stored together with its audit entry in one
//! transaction (the store's `*_audited` methods), so the log cannot miss a
//! change that happened nor record one that did not.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::apps::authorize;
use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::policy::{self, Action};
use super::{ApiState, JsonBody};
use crate::auth::hash_password;
use crate::{
    AppMember, AppRole, AuditEntry, AuditId, InstanceRole, NewUser, StoreError, Timestamp, User,
    UserId, UserUpdate,
};

/// The shortest password `POST /admin/users` accepts, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Refuses with `403` naming `action` unless `caller` may do it.
fn require(caller: &Caller, action: Action) -> ApiResult<()> {
    if policy::can(&caller.user, action, None) {
        Ok(())
    } else {
        Err(ApiError::Forbidden {
            permission: action.name(),
        })
    }
}

fn parse_instance_role(text: &str) -> ApiResult<InstanceRole> {
    text.parse()
        .map_err(|_| ApiError::invalid("instance_role", "must be `owner`, `admin` or `member`"))
}

fn parse_app_role(text: &str) -> ApiResult<AppRole> {
    text.parse()
        .map_err(|_| ApiError::invalid("role", "must be `viewer`, `editor` or `app_admin`"))
}

/// `GET /admin/users` and `GET /admin/admins`: the user directory.
pub(crate) async fn list_users(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<Json<Vec<User>>> {
    require(&caller, Action::ManageUsers)?;
    Ok(Json(state.store().list_users().await?))
}

/// `POST /admin/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUserRequest {
    username: String,
    email: String,
    password: String,
    #[serde(default)]
    instance_role: Option<String>,
}

pub(crate) async fn create_user(
    State(state): State<ApiState>,
    caller: Caller,
    JsonBody(request): JsonBody<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<User>)> {
    require(&caller, Action::ManageUsers)?;
    let instance_role = match &request.instance_role {
        Some(role) => parse_instance_role(role)?,
        None => InstanceRole::Member,
    };
    if instance_role == InstanceRole::Owner {
        require(&caller, Action::ManageOwners)?;
    }
    crate::validate::username(&request.username)?;
    crate::validate::email(&request.email)?;
    if request.password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::invalid(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    let password = request.password;
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|error| {
            tracing::error!(%error, "cannot hash a password");
            ApiError::Internal
        })?;
    let user = state
        .store()
        .create_user_audited(
            &NewUser {
                username: request.username,
                email: request.email.trim().to_owned(),
                password_hash,
                instance_role,
            },
            Some(caller.user.id),
        )
        .await?;
    tracing::info!(by = %caller.user.username, user = %user.username, "user created");
    Ok((StatusCode::CREATED, Json(user)))
}

/// `PATCH /admin/users/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateUserRequest {
    #[serde(default)]
    instance_role: Option<String>,
    #[serde(default)]
    active: Option<bool>,
}

pub(crate) async fn update_user(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<UpdateUserRequest>,
) -> ApiResult<Json<User>> {
    require(&caller, Action::ManageUsers)?;
    let not_found = || ApiError::not_found(format!("user `{id}`"));
    let user_id = UserId(id.parse().map_err(|_| not_found())?);
    let update = UserUpdate {
        instance_role: request
            .instance_role
            .as_deref()
            .map(parse_instance_role)
            .transpose()?,
        active: request.active,
    };
    if update == UserUpdate::default() {
        return Err(ApiError::invalid(
            "instance_role",
            "send `instance_role`, `active` or both",
        ));
    }
    let target = match state.store().user(user_id).await {
        Ok(user) => user,
        Err(StoreError::NotFound { .. }) => return Err(not_found()),
        Err(error) => return Err(error.into()),
    };
    policy::may_change_user(&caller.user, &target, update.instance_role).map_err(|action| {
        ApiError::Forbidden {
            permission: action.name(),
        }
    })?;
    let (_, after) = state
        .store()
        .update_user_audited(user_id, &update, Some(caller.user.id))
        .await?;
    tracing::info!(by = %caller.user.username, user = %after.username, ?update, "user changed");
    Ok(Json(after))
}

/// A member of an app as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct MemberView {
    user_id: UserId,
    username: String,
    email: String,
    instance_role: InstanceRole,
    app_role: AppRole,
    joined_at: Timestamp,
    active: bool,
}

impl From<AppMember> for MemberView {
    fn from(member: AppMember) -> Self {
        MemberView {
            user_id: member.user_id,
            username: member.username,
            email: member.email,
            instance_role: member.instance_role,
            app_role: member.role,
            joined_at: member.joined_at,
            active: member.active,
        }
    }
}

pub(crate) async fn list_members(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> ApiResult<Json<Vec<MemberView>>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ManageMembers).await?;
    let members = state.store().list_members(app.id).await?;
    Ok(Json(members.into_iter().map(MemberView::from).collect()))
}

/// `POST /apps/{app}/members`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddMemberRequest {
    /// A user id (number), an e-mail address (with `@`) or a username.
    user: Value,
    role: String,
}

/// The user a member request names: a JSON number is an id, a string with
/// `@` an e-mail address, any other string a username. `None` if none matches.
async fn find_user(state: &ApiState, reference: &Value) -> ApiResult<Option<User>> {
    let found = match reference {
        Value::Number(number) => match number.as_i64() {
            Some(id) => state.store().user(UserId(id)).await,
            None => return Ok(None),
        },
        Value::String(text) if text.contains('@') => state.store().user_by_email(text.trim()).await,
        Value::String(text) => state.store().user_by_username(text.trim()).await,
        _ => {
            return Err(ApiError::invalid(
                "user",
                "must be a user id, a username or an e-mail address",
            ));
        }
    };
    match found {
        Ok(user) => Ok(Some(user)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

pub(crate) async fn add_member(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
    JsonBody(request): JsonBody<AddMemberRequest>,
) -> ApiResult<(StatusCode, Json<MemberView>)> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ManageMembers).await?;
    let role = parse_app_role(&request.role)?;
    // Unknown and not addable (owner, admin, deactivated) answer alike, so
    // an app admin learns nothing about accounts it may not add.
    let user = find_user(&state, &request.user)
        .await?
        .filter(|user| user.active && user.instance_role == InstanceRole::Member)
        .ok_or(ApiError::NoAddableUser)?;
    let member = state
        .store()
        .add_member_audited(app.id, user.id, role, Some(caller.user.id))
        .await
        .map_err(|error| match error {
            // The user changed between the check and the insert.
            StoreError::Invalid { .. } => ApiError::NoAddableUser,
            other => other.into(),
        })?;
    tracing::info!(by = %caller.user.username, app = %app.slug, user = %member.username, %role, "member added");
    Ok((StatusCode::CREATED, Json(member.into())))
}

/// The member named in a path: a user id or a username.
async fn member_in_path(
    state: &ApiState,
    app: &crate::App,
    reference: &str,
) -> ApiResult<AppMember> {
    let not_found = || ApiError::not_found(format!("member `{reference}` of app `{}`", app.slug));
    let user = match reference.parse::<i64>() {
        Ok(id) => state.store().user(UserId(id)).await,
        Err(_) => state.store().user_by_username(reference).await,
    };
    let user = match user {
        Ok(user) => user,
        Err(StoreError::NotFound { .. }) => return Err(not_found()),
        Err(error) => return Err(error.into()),
    };
    state
        .store()
        .member(app.id, user.id)
        .await?
        .ok_or_else(not_found)
}

/// `PATCH /apps/{app}/members/{user}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateMemberRequest {
    role: String,
}

pub(crate) async fn update_member(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, reference)): Path<(String, String)>,
    JsonBody(request): JsonBody<UpdateMemberRequest>,
) -> ApiResult<Json<MemberView>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ManageMembers).await?;
    let role = parse_app_role(&request.role)?;
    let member = member_in_path(&state, &app, &reference).await?;
    let (_, after) = state
        .store()
        .set_member_role_audited(app.id, member.user_id, role, Some(caller.user.id))
        .await?;
    Ok(Json(after.into()))
}

pub(crate) async fn remove_member(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, reference)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ManageMembers).await?;
    let member = member_in_path(&state, &app, &reference).await?;
    state
        .store()
        .remove_member_audited(app.id, member.user_id, Some(caller.user.id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /apps/{app}/members/lookup`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LookupRequest {
    /// An exact username or e-mail address.
    query: String,
}

/// The only thing the lookup reveals about a user.
#[derive(Debug, Serialize)]
pub(crate) struct AddableUser {
    user_id: UserId,
    username: String,
}

pub(crate) async fn lookup_member(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
    JsonBody(request): JsonBody<LookupRequest>,
) -> ApiResult<Json<AddableUser>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ManageMembers).await?;
    let user = state
        .store()
        .addable_user(app.id, &request.query)
        .await?
        .ok_or(ApiError::NoAddableUser)?;
    Ok(Json(AddableUser {
        user_id: user.id,
        username: user.username,
    }))
}

/// One page of the audit log.
#[derive(Debug, Serialize)]
pub(crate) struct AuditPage {
    /// Newest first.
    entries: Vec<AuditEntry>,
    /// Pass as `before` to get the next (older) page; `null` on the last page.
    next_before: Option<AuditId>,
}

/// The default number of audit entries per page.
const DEFAULT_AUDIT_PAGE: u32 = 100;

pub(crate) async fn list_audit(
    State(state): State<ApiState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<AuditPage>> {
    require(&caller, Action::ReadAudit)?;
    let mut before = None;
    let mut limit = DEFAULT_AUDIT_PAGE;
    for pair in query.as_deref().unwrap_or_default().split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "" => {}
            "before" => {
                before = Some(AuditId(value.parse().map_err(|_| {
                    ApiError::invalid("before", "must be an audit entry id")
                })?));
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=crate::MAX_AUDIT_PAGE).contains(limit))
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "limit",
                            format!("must be from 1 to {}", crate::MAX_AUDIT_PAGE),
                        )
                    })?;
            }
            other => {
                return Err(ApiError::invalid(
                    other.to_owned(),
                    "unknown query parameter; use `before` and `limit`",
                ));
            }
        }
    }
    let entries = state.store().list_audit(before, limit).await?;
    let next_before = if entries.len() == limit as usize {
        entries.last().map(|entry| entry.id)
    } else {
        None
    };
    Ok(Json(AuditPage {
        entries,
        next_before,
    }))
}
