//! The one error type of the management API and its HTTP form.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::StoreError;

/// Why a management request failed. Each variant has one status and one
/// stable `code` ([`ApiError::code`]); the body is always
/// `{"error": {"code", "message", ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No valid session cookie or API token (`401 unauthenticated`).
    #[error("authentication required: log in or send `Authorization: Bearer <token>`")]
    Unauthenticated,
    /// A login with an unknown user or a wrong password; the two are
    /// deliberately indistinguishable (`401 invalid_credentials`).
    #[error("unknown user or wrong password")]
    InvalidCredentials,
    /// A state-changing request authenticated by a session cookie did not
    /// echo the session's CSRF token in `x-csrf-token` (`403 csrf_failed`).
    #[error("missing or wrong `x-csrf-token` header for this session")]
    CsrfFailed,
    /// The caller may see the resource but not do this (`403 forbidden`).
    #[error("forbidden: this needs the `{permission}` permission")]
    Forbidden {
        /// The permission that is missing, as [`Action::name`](super::policy::Action::name) spells it.
        permission: &'static str,
    },
    /// The resource does not exist, or the caller may not know it does
    /// (`404 not_found`).
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, in words.
        what: String,
    },
    /// The member lookup found no user that could be added to the app: the
    /// same answer whether no user matches or the one that matches may not
    /// be added (`404 no_addable_user`).
    #[error("no user that can be added to this app matches")]
    NoAddableUser,
    /// Too many failed log-ins for this account or from this address; retry
    /// after `retry_after_secs` (`429 too_many_attempts`, with `Retry-After`).
    #[error("too many failed log-ins; retry in {retry_after_secs} s")]
    TooManyAttempts {
        /// How long to wait, in seconds.
        retry_after_secs: u64,
    },
    /// The change would break a uniqueness rule (`409 conflict`).
    #[error("{what}")]
    Conflict {
        /// The rule, in words.
        what: String,
    },
    /// An input field is wrong (`422 invalid_input`, with `field`).
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field, as the API names it.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A deployed script does not compile (`422 compile_error`, with
    /// `line` and `column` when known). Nothing was stored.
    #[error("the script does not compile: {message}")]
    Compile {
        /// The compiler's message, without the position.
        message: String,
        /// Line, from 1.
        line: Option<u32>,
        /// Column, from 1.
        column: Option<u32>,
    },
    /// The request body is not what the route takes (`400 bad_request`).
    #[error("{message}")]
    BadRequest {
        /// What is wrong with it.
        message: String,
    },
    /// The request body is larger than allowed (`413 payload_too_large`).
    #[error("the request body is larger than the limit of {limit_bytes} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit_bytes: usize,
    },
    /// A dependency is saturated or not ready; retry later
    /// (`503 unavailable`).
    #[error("{message}")]
    Unavailable {
        /// What is busy.
        message: String,
    },
    /// The route exists but not with this method (`405 method_not_allowed`).
    #[error("this route does not accept that method")]
    MethodNotAllowed,
    /// Anything else. The details are logged, never sent
    /// (`500 internal_error`).
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::CsrfFailed | ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } | ApiError::NoAddableUser => StatusCode::NOT_FOUND,
            ApiError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Invalid { .. } | ApiError::Compile { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable code of the answer.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::CsrfFailed => "csrf_failed",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::NotFound { .. } => "not_found",
            ApiError::NoAddableUser => "no_addable_user",
            ApiError::TooManyAttempts { .. } => "too_many_attempts",
            ApiError::Conflict { .. } => "conflict",
            ApiError::Invalid { .. } => "invalid_input",
            ApiError::Compile { .. } => "compile_error",
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Internal => "internal_error",
        }
    }

    /// Every code this API answers with, for the documentation test.
    pub const CODES: &'static [&'static str] = &[
        "unauthenticated",
        "invalid_credentials",
        "csrf_failed",
        "forbidden",
        "not_found",
        "no_addable_user",
        "too_many_attempts",
        "conflict",
        "invalid_input",
        "compile_error",
        "bad_request",
        "payload_too_large",
        "unavailable",
        "method_not_allowed",
        "internal_error",
    ];

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        ApiError::NotFound { what: what.into() }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The JSON body of the answer.
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), json!(self.code()));
        error.insert("message".into(), json!(self.to_string()));
        match self {
            ApiError::Invalid { field, .. } => {
                error.insert("field".into(), json!(field));
            }
            ApiError::Compile {
                message,
                line,
                column,
            } => {
                error.insert("line".into(), json!(line));
                error.insert("column".into(), json!(column));
                error.insert("detail".into(), json!(message));
            }
            ApiError::Forbidden { permission } => {
                error.insert("permission".into(), json!(permission));
            }
            _ => {}
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        if let ApiError::TooManyAttempts { retry_after_secs } = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_secs.max(1)),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { what } => ApiError::NotFound { what },
            StoreError::Conflict { what } => ApiError::Conflict { what },
            StoreError::Invalid { field, message } => ApiError::invalid(field, message),
            other => {
                tracing::error!(error = %other, "store error in the management API");
                ApiError::Internal
            }
        }
    }
}

/// The result type of the API's handlers.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_code_message_and_context() {
        let error = ApiError::Compile {
            message: "unexpected end".into(),
            line: Some(3),
            column: Some(7),
        };
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = error.body();
        assert_eq!(body["error"]["code"], "compile_error");
        assert_eq!(body["error"]["line"], 3);
        assert_eq!(body["error"]["column"], 7);
        let invalid = ApiError::invalid("slug", "too long").body();
        assert_eq!(invalid["error"]["field"], "slug");
        for code in ApiError::CODES {
            assert!(!code.is_empty());
        }
    }
}
