//! Who is calling: session cookies, API tokens, CSRF, and the auth and token
//! routes.

use axum::Json;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::{ApiError, ApiResult};
use super::throttle::AttemptKeys;
use super::{ApiState, JsonBody, policy};
use crate::auth::{generate_token, hash_token, verify_login_password};
use crate::{ApiToken, ApiTokenId, InstanceRole, NewSession, SessionId, Timestamp, User};

/// The name of the session cookie. Its path is `/api`, so the browser never
/// sends it to script endpoints, whose authors could otherwise read it.
pub const SESSION_COOKIE: &str = "picloud_session";

/// The header that carries the CSRF token of a cookie session.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The prefix of API tokens (`pc_...`).
pub const API_TOKEN_PREFIX: &str = "pc";

/// How the caller proved who it is.
#[derive(Clone, Debug)]
pub enum Credential {
    /// A dashboard session cookie.
    Session {
        /// The session.
        id: SessionId,
        /// The session's CSRF token.
        csrf_token: String,
    },
    /// An API token.
    ApiToken {
        /// The token.
        id: ApiTokenId,
    },
}

/// An authenticated caller: an active user and its credential. Extracting it
/// fails with `401 unauthenticated` when there is no valid credential, and
/// with `403 csrf_failed` for a state-changing cookie request without the
/// session's CSRF token.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The user, as of this request.
    pub user: User,
    /// How it authenticated.
    pub credential: Credential,
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> ApiResult<Self> {
        let store = state.store();
        if let Some(authorization) = parts.headers.get(header::AUTHORIZATION) {
            // A wrong Authorization header is refused even if a cookie is
            // present too: the caller said which credential it means.
            let token = authorization
                .to_str()
                .ok()
                .and_then(|value| value.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|token| token.starts_with(&format!("{API_TOKEN_PREFIX}_")))
                .ok_or(ApiError::Unauthenticated)?;
            let found = store
                .api_token_by_hash(&hash_token(token))
                .await?
                .ok_or(ApiError::Unauthenticated)?;
            let recently_used = found.token.last_used_at.is_some_and(|used| {
                used > Timestamp::now().before(std::time::Duration::from_secs(60))
            });
            if !recently_used {
                // Once a minute at most: a management call should not always write.
                if let Err(error) = store.touch_api_token(found.token.id).await {
                    tracing::warn!(%error, "cannot record the use of an API token");
                }
            }
            return Ok(Caller {
                user: found.user,
                credential: Credential::ApiToken { id: found.token.id },
            });
        }
        let token = session_cookie(&parts.headers).ok_or(ApiError::Unauthenticated)?;
        let found = store
            .session_by_token_hash(&hash_token(token))
            .await?
            .ok_or(ApiError::Unauthenticated)?;
        let changes_state = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if changes_state {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default();
            if !crate::auth::constant_time_eq(sent.as_bytes(), found.session.csrf_token.as_bytes())
            {
                return Err(ApiError::CsrfFailed);
            }
        }
        Ok(Caller {
            user: found.user,
            credential: Credential::Session {
                id: found.session.id,
                csrf_token: found.session.csrf_token,
            },
        })
    }
}

/// The value of the session cookie, if the request carries one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// `POST /auth/login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    login: String,
    password: String,
}

/// Who the caller is, as `GET /auth/me` and `POST /auth/login` answer.
#[derive(Debug, Serialize)]
pub(crate) struct Me {
    user: User,
    instance_role: InstanceRole,
    permissions: Vec<&'static str>,
    /// Present for cookie sessions: echo it in `x-csrf-token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
    /// `session` or `api_token`.
    authenticated_by: &'static str,
}

fn me(user: User, csrf_token: Option<String>) -> Me {
    Me {
        instance_role: user.instance_role,
        permissions: policy::instance_permissions(&user),
        authenticated_by: if csrf_token.is_some() {
            "session"
        } else {
            "api_token"
        },
        csrf_token,
        user,
    }
}

/// The address of the client, when the server provides it (axum's
/// [`ConnectInfo`](axum::extract::ConnectInfo) of the connection's peer).
pub(crate) struct ClientAddress(pub Option<IpAddr>);

impl FromRequestParts<ApiState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(peer)| peer.ip()),
        ))
    }
}

/// A client address for a log line: the IP, or `unknown`.
fn shown(address: Option<IpAddr>) -> String {
    address.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

pub(crate) async fn login(
    State(state): State<ApiState>,
    ClientAddress(address): ClientAddress,
    JsonBody(request): JsonBody<LoginRequest>,
) -> ApiResult<Response> {
    let attempt = AttemptKeys::new(&request.login, address);
    if let Err(wait) = state.login_throttle().check(&attempt, Instant::now()) {
        tracing::warn!(login = %request.login, address = %shown(address), "log-in refused: too many failures");
        return Err(ApiError::TooManyAttempts {
            retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        });
    }
    let store = state.store();
    let credentials = store.user_credentials(request.login.trim()).await?;
    let stored_hash = credentials
        .as_ref()
        .filter(|credentials| credentials.user.active)
        .map(|credentials| credentials.password_hash.clone());
    let password = request.password;
    let verified = tokio::task::spawn_blocking(move || {
        verify_login_password(&password, stored_hash.as_deref())
    })
    .await
    .map_err(|_| ApiError::Internal)?;
    let Some(credentials) = credentials.filter(|_| verified) else {
        state
            .login_throttle()
            .record_failure(&attempt, Instant::now());
        tracing::info!(login = %request.login, address = %shown(address), "failed log-in");
        return Err(ApiError::InvalidCredentials);
    };
    state.login_throttle().record_success(&attempt);
    let token = generate_token("pcs");
    let csrf_token = generate_token("csrf");
    let session_lifetime = state.config().session_lifetime;
    let session = store
        .create_session(&NewSession {
            token_hash: hash_token(&token),
            user_id: credentials.user.id,
            csrf_token: csrf_token.clone(),
            expires_at: Timestamp::now().after(session_lifetime),
        })
        .await?;
    tracing::info!(user = %credentials.user.username, "logged in");
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/api; HttpOnly; SameSite=Lax; Max-Age={}{}",
        session_lifetime.as_secs(),
        if state.config().secure_cookies {
            "; Secure"
        } else {
            ""
        }
    );
    let mut response = Json(json!({
        "session": { "expires_at": session.expires_at },
        "csrf_token": csrf_token,
        "user": credentials.user,
        "instance_role": credentials.user.instance_role,
        "permissions": policy::instance_permissions(&credentials.user),
    }))
    .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| ApiError::Internal)?,
    );
    Ok(response)
}

pub(crate) async fn logout(State(state): State<ApiState>, caller: Caller) -> ApiResult<Response> {
    if let Credential::Session { id, .. } = caller.credential {
        state.store().delete_session(id).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("picloud_session=; Path=/api; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    Ok(response)
}

pub(crate) async fn who_am_i(caller: Caller) -> Json<Me> {
    let csrf_token = match caller.credential {
        Credential::Session { csrf_token, .. } => Some(csrf_token),
        Credential::ApiToken { .. } => None,
    };
    Json(me(caller.user, csrf_token))
}

/// `POST /tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTokenRequest {
    name: String,
}

/// A new token: the record and, this once, the secret.
#[derive(Debug, Serialize)]
pub(crate) struct CreatedToken {
    #[serde(flatten)]
    token: ApiToken,
    /// The bearer secret; shown only in this answer.
    secret: String,
}

pub(crate) async fn create_token(
    State(state): State<ApiState>,
    caller: Caller,
    JsonBody(request): JsonBody<CreateTokenRequest>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let secret = generate_token(API_TOKEN_PREFIX);
    let token = state
        .store()
        .create_api_token(caller.user.id, request.name.trim(), &hash_token(&secret))
        .await?;
    tracing::info!(user = %caller.user.username, token = %token.id, "API token created");
    Ok((StatusCode::CREATED, Json(CreatedToken { token, secret })))
}

pub(crate) async fn list_tokens(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ApiToken>>> {
    Ok(Json(state.store().list_api_tokens(caller.user.id).await?))
}

pub(crate) async fn revoke_token(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("API token `{id}`")))?;
    state
        .store()
        .revoke_api_token(caller.user.id, ApiTokenId(id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; picloud_session=pcs_abc ; x=y"),
        );
        assert_eq!(session_cookie(&headers), Some("pcs_abc"));
        assert!(crate::auth::constant_time_eq(b"abc", b"abc"));
        assert!(!crate::auth::constant_time_eq(b"abc", b"abd"));
        assert!(!crate::auth::constant_time_eq(b"abc", b"ab"));
    }
}
