//! Serving apps' static files: `GET`/`HEAD /{app}/_static/{*path}`, and
//! `/_static/{*path}` on a host that is one of an app's domains.
//!
//! The files themselves are kept by [`AppFiles`], which opens every path
//! through a directory handle on the app's own folder. This module adds the
//! HTTP: the content type from the extension, `ETag`/`If-None-Match` (`304`),
//! `Last-Modified`/`If-Modified-Since`, and single byte ranges (`206`, `416`).
//! A name that is not a plain relative path is `400 invalid_path`; a file
//! that does not exist is `404 not_found`; neither ever reads outside the app.
//!
//! Script names start with a letter or digit, so `_static` can never shadow
//! (or be shadowed by) a script. On an app's domain, though, the first
//! segment names a script, so `/{script}/_static/...` there is that script's
//! sub-path and goes to the script ingress.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use picloud_manager_core::files::{AppFiles, FileError, StoredFile, validate_path};
use picloud_manager_core::{AppId, Store, StoreError};
use picloud_orchestrator_core::RouteTable;
use serde_json::json;
use tower::ServiceExt;

/// How long the answer to "which app has this slug" is kept for an app
/// that has no active script (and so is not in the routing table), found or
/// not. A new app's files may answer `404` for this long if its slug was
/// asked for just before it was created.
pub const SLUG_LOOKUP_TTL: Duration = Duration::from_secs(2);

/// What the static file routes need.
#[derive(Clone)]
pub struct StaticFiles {
    /// The apps' files.
    pub files: AppFiles,
    /// The store, to find an app that has no active script by its slug.
    pub store: Store,
    /// Recent store lookups by slug (see [`SLUG_LOOKUP_TTL`]), so that a
    /// flood of requests for one unknown or script-less app costs one
    /// query, not one each.
    pub slugs: SlugCache,
    /// The routing table: slugs of apps with scripts, and domains.
    pub routes: Arc<RouteTable>,
    /// The script ingress, for `/{script}/_static/...` on an app's domain.
    pub ingress: Router,
}

/// The routes, ready to merge before the script ingress (whose
/// `/{first}/{*rest}` pattern they take precedence over).
pub fn router(state: StaticFiles) -> Router {
    Router::new()
        .route("/{first}/_static/{*path}", any(serve_by_slug))
        .route("/_static/{*path}", get(serve_by_domain))
        .with_state(state)
}

async fn serve_by_slug(
    State(state): State<StaticFiles>,
    Path((slug, path)): Path<(String, String)>,
    request: Request,
) -> Response {
    let on_a_domain = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|host| state.routes.load().app_for_host(host).is_some());
    if on_a_domain {
        let answered = state.ingress.clone().oneshot(request).await;
        return answered.unwrap_or_else(|never| match never {});
    }
    let (method, headers) = (request.method().clone(), request.headers().clone());
    if method != Method::GET && method != Method::HEAD {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "static files answer GET and HEAD only".into(),
        );
    }
    match app_id(&state, &slug).await {
        Ok(Some(app_id)) => serve(&state, app_id, &path, &method, &headers).await,
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("app `{slug}` not found"),
        ),
        Err(response) => response,
    }
}

async fn serve_by_domain(
    State(state): State<StaticFiles>,
    Path(path): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let slug = state.routes.load().app_for_host(host).map(str::to_owned);
    let Some(slug) = slug else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no app serves this path".into(),
        );
    };
    match app_id(&state, &slug).await {
        Ok(Some(app_id)) => serve(&state, app_id, &path, &method, &headers).await,
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no app serves this path".into(),
        ),
        Err(response) => response,
    }
}

/// App ids by slug, as recently found in the store (`None`: no such app).
pub type SlugCache = moka::future::Cache<String, Option<AppId>>;

/// An empty [`SlugCache`], bounded in entries and in age.
pub fn slug_cache() -> SlugCache {
    moka::future::Cache::builder()
        .max_capacity(10_000)
        .time_to_live(SLUG_LOOKUP_TTL)
        .build()
}

/// The app's id: from the routing table when it has scripts (no database
/// access), else from the store through the [`SlugCache`]. A name that is
/// not a valid slug never reaches the store; concurrent lookups of one slug
/// share one query.
async fn app_id(state: &StaticFiles, slug: &str) -> Result<Option<AppId>, Response> {
    if let Some(app) = state.routes.load().app(slug) {
        return Ok(Some(AppId(app.id)));
    }
    if picloud_manager_core::validate::app_slug(slug).is_err() {
        return Ok(None);
    }
    let lookup = async {
        match state.store.app_by_slug(slug).await {
            Ok(app) => Ok(Some(app.id)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(store_error) => Err(store_error),
        }
    };
    match state.slugs.try_get_with_by_ref(slug, lookup).await {
        Ok(app_id) => Ok(app_id),
        Err(store_error) => {
            tracing::error!(error = %store_error, "cannot look up an app for a static file");
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the server cannot look up the app right now".into(),
            ))
        }
    }
}

async fn serve(
    state: &StaticFiles,
    app_id: AppId,
    path: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    if let Err(invalid) = validate_path(path) {
        return error(StatusCode::BAD_REQUEST, invalid.code(), invalid.to_string());
    }
    let stored = match state.files.get(app_id, path).await {
        Ok(Some(stored)) => stored,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("file `{path}` not found"),
            );
        }
        Err(FileError::InvalidPath { .. }) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                format!("invalid file path `{}`", path.escape_debug()),
            );
        }
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error".into(),
            );
        }
    };
    respond(stored, method, headers).await
}

async fn respond(mut stored: StoredFile, method: &Method, request: &HeaderMap) -> Response {
    let size = stored.meta.size;
    let modified =
        UNIX_EPOCH + Duration::from_millis(stored.meta.modified.unix_millis().max(0) as u64);
    let last_modified = httpdate::fmt_http_date(modified);
    let content_type = content_type(&stored.meta.path);
    let mut response_headers = HeaderMap::new();
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            response_headers.insert(name, value);
        }
    };
    set(header::ETAG, &stored.meta.etag);
    set(header::LAST_MODIFIED, &last_modified);
    set(header::CACHE_CONTROL, "no-cache");
    set(header::ACCEPT_RANGES, "bytes");
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");

    if not_modified(request, &stored.meta.etag, modified) {
        return (StatusCode::NOT_MODIFIED, response_headers).into_response();
    }
    set(header::CONTENT_TYPE, &content_type);

    let (status, start, length) = match request
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
    {
        Some(range) => match parse_range(range, size) {
            RangeRequest::Satisfiable { start, end } => {
                set(
                    header::CONTENT_RANGE,
                    &format!("bytes {start}-{end}/{size}"),
                );
                (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
            }
            RangeRequest::Unsatisfiable => {
                set(header::CONTENT_RANGE, &format!("bytes */{size}"));
                response_headers.remove(header::CONTENT_TYPE);
                let mut response = error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range_not_satisfiable",
                    format!("the range `{range}` is outside the file's {size} bytes"),
                );
                response.headers_mut().extend(response_headers);
                return response;
            }
            RangeRequest::Ignored => (StatusCode::OK, 0, size),
        },
        None => (StatusCode::OK, 0, size),
    };
    set(header::CONTENT_LENGTH, &length.to_string());
    if method == Method::HEAD {
        return (status, response_headers).into_response();
    }
    let read = tokio::task::spawn_blocking(move || stored.read_range(start, length)).await;
    match read {
        Ok(Ok(bytes)) => (status, response_headers, Body::from(bytes)).into_response(),
        Ok(Err(read_error)) => {
            tracing::error!(error = %read_error, "cannot read a static file");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error".into(),
            )
        }
        Err(join_error) => {
            tracing::error!(error = %join_error, "a static file read task failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error".into(),
            )
        }
    }
}

/// The `Content-Type` for a path, from its extension; text types are UTF-8.
fn content_type(path: &str) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let essence = mime.essence_str();
    if mime.type_() == mime_guess::mime::TEXT
        || matches!(
            essence,
            "application/javascript" | "application/json" | "image/svg+xml"
        )
    {
        format!("{essence}; charset=utf-8")
    } else {
        essence.to_owned()
    }
}

/// Whether the client's copy is current: `If-None-Match` when sent (a list
/// of tags or `*`, weak tags compared weakly), else `If-Modified-Since`.
fn not_modified(request: &HeaderMap, etag: &str, modified: std::time::SystemTime) -> bool {
    if let Some(if_none_match) = request.get(header::IF_NONE_MATCH) {
        let Ok(tags) = if_none_match.to_str() else {
            return false;
        };
        return tags
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag);
    }
    if let Some(since) = request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| httpdate::parse_http_date(value).ok())
    {
        // HTTP dates have whole seconds.
        let modified_secs = modified
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let since_secs = since
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        return modified_secs <= since_secs;
    }
    false
}

/// What a `Range` header asks for.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// Bytes `start..=end`.
    Satisfiable { start: u64, end: u64 },
    /// A well-formed range entirely outside the file: `416`.
    Unsatisfiable,
    /// Malformed, not bytes, or several ranges: the whole file, `200`.
    Ignored,
}

/// Parses a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range.
fn parse_range(header: &str, size: u64) -> RangeRequest {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignored;
    };
    if spec.contains(',') {
        return RangeRequest::Ignored;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Ignored;
    };
    let parse = |text: &str| -> Option<Option<u64>> {
        let text = text.trim();
        if text.is_empty() {
            Some(None)
        } else if text.bytes().all(|byte| byte.is_ascii_digit()) {
            text.parse().ok().map(Some)
        } else {
            None
        }
    };
    let (Some(first), Some(last)) = (parse(first), parse(last)) else {
        return RangeRequest::Ignored;
    };
    match (first, last) {
        (Some(start), last) => {
            if let Some(last) = last
                && last < start
            {
                return RangeRequest::Ignored;
            }
            if start >= size {
                return RangeRequest::Unsatisfiable;
            }
            let end = last.map_or(size - 1, |last| last.min(size - 1));
            RangeRequest::Satisfiable { start, end }
        }
        (None, Some(suffix)) => {
            if suffix == 0 || size == 0 {
                return RangeRequest::Unsatisfiable;
            }
            RangeRequest::Satisfiable {
                start: size.saturating_sub(suffix),
                end: size - 1,
            }
        }
        (None, None) => RangeRequest::Ignored,
    }
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(
            parse_range("bytes=0-4", 10),
            Satisfiable { start: 0, end: 4 }
        );
        assert_eq!(
            parse_range("bytes=5-", 10),
            Satisfiable { start: 5, end: 9 }
        );
        assert_eq!(
            parse_range("bytes=-3", 10),
            Satisfiable { start: 7, end: 9 }
        );
        assert_eq!(
            parse_range("bytes=-30", 10),
            Satisfiable { start: 0, end: 9 }
        );
        assert_eq!(
            parse_range("bytes=8-100", 10),
            Satisfiable { start: 8, end: 9 }
        );
        assert_eq!(parse_range("bytes=10-", 10), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 10), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-2", 10), Ignored);
        assert_eq!(parse_range("bytes=0-1,3-4", 10), Ignored);
        assert_eq!(parse_range("items=0-1", 10), Ignored);
        assert_eq!(parse_range("bytes=a-b", 10), Ignored);
        assert_eq!(parse_range("bytes=-", 10), Ignored);
        assert_eq!(parse_range("bytes=+1-2", 10), Ignored);
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("site.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("logo.png"), "image/png");
        assert_eq!(content_type("no-extension"), "application/octet-stream");
    }

    #[test]
    fn conditional_requests() {
        let etag = "\"a-1\"";
        let modified = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let headers = |name: header::HeaderName, value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_str(value).unwrap());
            headers
        };
        assert!(not_modified(
            &headers(header::IF_NONE_MATCH, "\"a-1\""),
            etag,
            modified
        ));
        assert!(not_modified(
            &headers(header::IF_NONE_MATCH, "\"x\", W/\"a-1\""),
            etag,
            modified
        ));
        assert!(not_modified(
            &headers(header::IF_NONE_MATCH, "*"),
            etag,
            modified
        ));
        assert!(!not_modified(
            &headers(header::IF_NONE_MATCH, "\"b\""),
            etag,
            modified
        ));
        let date = httpdate::fmt_http_date(modified);
        assert!(not_modified(
            &headers(header::IF_MODIFIED_SINCE, &date),
            etag,
            modified
        ));
        let earlier = httpdate::fmt_http_date(modified - Duration::from_secs(10));
        assert!(!not_modified(
            &headers(header::IF_MODIFIED_SINCE, &earlier),
            etag,
            modified
        ));
        assert!(!not_modified(&HeaderMap::new(), etag, modified));
    }
}
