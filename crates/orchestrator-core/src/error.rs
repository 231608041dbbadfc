//! What a caller is told when a request fails: one status and one stable code
//! per failure, a short generic message, and the request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use picloud_executor_core::{InvokeError, OutputKind, ScriptLimit};

/// Why a request to a script endpoint failed.
///
/// [`status`](Self::status) and [`code`](Self::code) are what the caller
/// gets, with [`public_message`](Self::public_message); the `Display` text
/// may name script lines and limits and is for the logs only. The table of
/// statuses and codes is in `docs/http.md`: running out of time (fuel,
/// deadline, request timeout) is a `504`, every other script limit a `500`
/// with its own code, a saturated executor a `503` with `Retry-After: 1`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngressError {
    /// No app or no script answers at this path (or host).
    #[error("no script answers at this path")]
    NotFound,
    /// The request body is larger than the configured limit.
    #[error("the request body is larger than the limit of {limit_bytes} bytes")]
    PayloadTooLarge {
        /// The limit, [`IngressConfig::max_body_bytes`](crate::IngressConfig::max_body_bytes).
        limit_bytes: u64,
    },
    /// The request carries too many headers or too many header bytes.
    #[error("the request has {count} headers totalling {bytes} bytes, more than allowed")]
    HeadersTooLarge {
        /// Number of headers.
        count: usize,
        /// Bytes of header names and values.
        bytes: usize,
    },
    /// The client did not send its body before the request timeout.
    #[error("the request body was not received within {timeout_ms} ms")]
    RequestTimeout {
        /// The request timeout.
        timeout_ms: u64,
    },
    /// The request timeout expired while the script ran.
    #[error("the request did not finish within {timeout_ms} ms")]
    Timeout {
        /// The request timeout.
        timeout_ms: u64,
    },
    /// The request body could not be read (the client went away, or sent a
    /// malformed chunked body).
    #[error("cannot read the request body: {message}")]
    BadRequest {
        /// What went wrong.
        message: String,
    },
    /// The script ran and did not produce a usable response.
    #[error(transparent)]
    Invoke(#[from] InvokeError),
}

impl IngressError {
    /// The HTTP status the caller gets.
    pub fn status(&self) -> StatusCode {
        match self {
            IngressError::NotFound => StatusCode::NOT_FOUND,
            IngressError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngressError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            IngressError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            IngressError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            IngressError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            IngressError::Invoke(error) => match error {
                InvokeError::FuelExhausted { .. } | InvokeError::DeadlineExceeded { .. } => {
                    StatusCode::GATEWAY_TIMEOUT
                }
                InvokeError::PoolExhausted { .. } => StatusCode::SERVICE_UNAVAILABLE,
                InvokeError::Compile(_)
                | InvokeError::Runtime { .. }
                | InvokeError::MemoryLimitExceeded { .. }
                | InvokeError::ScriptLimit { .. }
                | InvokeError::OutputLimitExceeded { .. }
                | InvokeError::InvalidResponse { .. }
                | InvokeError::Trap { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// The stable, machine-readable code the caller gets. Script failures
    /// use [`InvokeError::code`].
    pub fn code(&self) -> &'static str {
        match self {
            IngressError::NotFound => "not_found",
            IngressError::PayloadTooLarge { .. } => "payload_too_large",
            IngressError::HeadersTooLarge { .. } => "headers_too_large",
            IngressError::RequestTimeout { .. } => "request_timeout",
            IngressError::Timeout { .. } => "timeout",
            IngressError::BadRequest { .. } => "bad_request",
            IngressError::Invoke(error) => error.code(),
        }
    }

    /// The message the caller gets: short, generic, and free of anything
    /// from inside the sandbox (no script messages, lines or host paths).
    pub fn public_message(&self) -> String {
        let message = match self {
            IngressError::NotFound => "no script answers at this path",
            IngressError::PayloadTooLarge { limit_bytes } => {
                return format!("the request body is larger than the limit of {limit_bytes} bytes");
            }
            IngressError::HeadersTooLarge { .. } => "the request headers are larger than allowed",
            IngressError::RequestTimeout { .. } => "the request body was not received in time",
            IngressError::Timeout { .. } => "the request took too long",
            IngressError::BadRequest { .. } => "the request body could not be read",
            IngressError::Invoke(error) => match error {
                InvokeError::Compile(_) => "the script could not be loaded",
                InvokeError::Runtime { .. } => "the script failed",
                InvokeError::FuelExhausted { .. } => "the script used all of its CPU budget",
                InvokeError::DeadlineExceeded { .. } => "the script ran past its deadline",
                InvokeError::MemoryLimitExceeded { .. } => "the script exceeded its memory limit",
                InvokeError::ScriptLimit {
                    limit: ScriptLimit::Operations,
                    ..
                } => "the script exceeded its operation limit",
                InvokeError::ScriptLimit {
                    limit: ScriptLimit::DataSize,
                    ..
                } => "the script built a string, array or map larger than allowed",
                InvokeError::ScriptLimit {
                    limit: ScriptLimit::CallDepth,
                    ..
                } => "the script nested its function calls too deeply",
                InvokeError::OutputLimitExceeded {
                    kind: OutputKind::Log,
                    ..
                } => "the script printed more output than allowed",
                InvokeError::OutputLimitExceeded {
                    kind: OutputKind::Response,
                    ..
                } => "the script's response is larger than allowed",
                InvokeError::InvalidResponse { .. } => "the script returned an invalid response",
                InvokeError::Trap { .. } => "the script's sandbox stopped unexpectedly",
                InvokeError::PoolExhausted { .. } => "the server is busy; retry shortly",
            },
        };
        match self {
            // Point the caller at the author's view of the error.
            IngressError::Invoke(error) if !matches!(error, InvokeError::PoolExhausted { .. }) => {
                format!("{message}; the script's logs have the details under this request id")
            }
            _ => message.to_owned(),
        }
    }

    /// Whether the failure is the script author's to fix (as opposed to the
    /// caller's or the operator's); such failures are logged at `info`, the
    /// others at `warn` (host-side) or `debug` (caller-side).
    pub(crate) fn is_script_failure(&self) -> bool {
        matches!(
            self,
            IngressError::Invoke(
                InvokeError::Runtime { .. }
                    | InvokeError::FuelExhausted { .. }
                    | InvokeError::DeadlineExceeded { .. }
                    | InvokeError::MemoryLimitExceeded { .. }
                    | InvokeError::ScriptLimit { .. }
                    | InvokeError::OutputLimitExceeded { .. }
                    | InvokeError::InvalidResponse { .. }
            ) | IngressError::Timeout { .. }
        )
    }

    /// Whether the failure points at the host (the operator's to look at).
    pub(crate) fn is_host_failure(&self) -> bool {
        matches!(
            self,
            IngressError::Invoke(
                InvokeError::Compile(_)
                    | InvokeError::Trap { .. }
                    | InvokeError::PoolExhausted { .. }
            )
        )
    }

    /// The JSON error response for this failure, carrying `request_id`.
    pub fn to_response(&self, request_id: &str) -> Response {
        let body = serde_json::json!({
            "error": {
                "code": self.code(),
                "message": self.public_message(),
                "request_id": request_id,
            }
        });
        let mut response = (self.status(), axum::Json(body)).into_response();
        if matches!(
            self,
            IngressError::Invoke(InvokeError::PoolExhausted { .. })
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
