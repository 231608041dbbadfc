//! An app's static files: list (viewers), upload and delete (editors).
//!
//! Uploads are the raw request body; the `Content-Type` header is ignored
//! because the type is derived from the extension when the file is served.
//! The API's usual body limit does not apply to `PUT`: the limit is the
//! per-file quota, enforced while the body is read.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::ApiState;
use super::apps::authorize;
use super::audit;
use super::auth::Caller;
use super::error::ApiError;
use super::policy::Action;
use crate::files::{AppFiles, FileError, FileMeta, FileQuota, FileUsage};

/// An error of the files routes: the API's own, or a file store error with
/// its own stable code (`invalid_path`, `file_too_large`, `quota_exceeded`,
/// `conflict`).
pub(crate) enum FilesError {
    Api(ApiError),
    File(FileError),
    /// Refused before the whole body was read: the connection is closed
    /// after the answer, so the client does not send the rest as the next
    /// request or reuse a connection the server drops.
    BodyLeftUnread(Box<FilesError>),
}

impl From<ApiError> for FilesError {
    fn from(error: ApiError) -> Self {
        FilesError::Api(error)
    }
}

impl From<FileError> for FilesError {
    fn from(error: FileError) -> Self {
        FilesError::File(error)
    }
}

impl From<crate::StoreError> for FilesError {
    fn from(error: crate::StoreError) -> Self {
        FilesError::Api(error.into())
    }
}

impl IntoResponse for FilesError {
    fn into_response(self) -> Response {
        let error = match self {
            FilesError::Api(error) => return error.into_response(),
            FilesError::BodyLeftUnread(error) => {
                let mut response = error.into_response();
                response.headers_mut().insert(
                    header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
                return response;
            }
            FilesError::File(FileError::Io { .. }) => return ApiError::Internal.into_response(),
            FilesError::File(error) => error,
        };
        let status = match &error {
            FileError::InvalidPath { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            FileError::FileTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            FileError::QuotaExceeded { .. } => StatusCode::INSUFFICIENT_STORAGE,
            FileError::Conflict { .. } => StatusCode::CONFLICT,
            FileError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut body = json!({ "code": error.code(), "message": error.to_string() });
        match &error {
            FileError::InvalidPath { .. } => body["field"] = json!("path"),
            FileError::FileTooLarge { limit, .. } | FileError::QuotaExceeded { limit, .. } => {
                body["limit"] = json!(limit)
            }
            _ => {}
        }
        (status, Json(json!({ "error": body }))).into_response()
    }
}

type FilesResult<T> = Result<T, FilesError>;

fn files_of(state: &ApiState) -> FilesResult<(&AppFiles, &FileQuota)> {
    state.files().ok_or_else(|| {
        FilesError::Api(ApiError::Unavailable {
            message: "static files are not enabled on this server".into(),
        })
    })
}

/// `GET /apps/{app}/files`.
#[derive(Debug, Serialize)]
pub(crate) struct FileList {
    files: Vec<FileMeta>,
    usage: FileUsage,
    quota: FileQuota,
}

pub(crate) async fn list_files(
    State(state): State<ApiState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> FilesResult<Json<FileList>> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ReadApp).await?;
    let (files, quota) = files_of(&state)?;
    let listed = files.list(app.id, "").await?;
    let usage = FileUsage {
        files: listed.len() as u64,
        bytes: listed.iter().map(|file| file.size).sum(),
    };
    Ok(Json(FileList {
        files: listed,
        usage,
        quota: *quota,
    }))
}

pub(crate) async fn put_file(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, path)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> FilesResult<(StatusCode, Json<FileMeta>)> {
    let left_unread = |error: FilesError| FilesError::BodyLeftUnread(Box::new(error));
    let (app, _) = authorize(&state, &caller, &slug, Action::ManageFiles)
        .await
        .map_err(|error| left_unread(error.into()))?;
    let (files, quota) = files_of(&state).map_err(left_unread)?;
    crate::files::validate_path(&path).map_err(|error| left_unread(error.into()))?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let too_large = |size| {
        left_unread(FilesError::File(FileError::FileTooLarge {
            size,
            limit: quota.max_file_bytes,
        }))
    };
    if let Some(size) = declared
        && size > quota.max_file_bytes
    {
        return Err(too_large(size));
    }
    let limit = usize::try_from(quota.max_file_bytes).unwrap_or(usize::MAX);
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|error| {
        if hit_length_limit(&error) {
            too_large(quota.max_file_bytes + 1)
        } else {
            FilesError::Api(ApiError::BadRequest {
                message: format!("cannot read the request body: {error}"),
            })
        }
    })?;
    let existed = files.get(app.id, &path).await?.is_some();
    let meta = files.put(app.id, &path, bytes.to_vec(), quota).await?;
    audit(
        &state,
        caller.user.id,
        "file.put",
        format!("app:{}/file:{}", app.slug, meta.path),
        None,
        Some(json!({ "size": meta.size, "etag": meta.etag })),
    )
    .await;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(meta)))
}

pub(crate) async fn delete_file(
    State(state): State<ApiState>,
    caller: Caller,
    Path((slug, path)): Path<(String, String)>,
) -> FilesResult<StatusCode> {
    let (app, _) = authorize(&state, &caller, &slug, Action::ManageFiles).await?;
    let (files, _) = files_of(&state)?;
    if !files.delete(app.id, &path).await? {
        return Err(ApiError::not_found(format!("file `{path}`")).into());
    }
    audit(
        &state,
        caller.user.id,
        "file.delete",
        format!("app:{}/file:{path}", app.slug),
        None,
        None,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether reading a body failed because it passed the limit: the error
/// (`http-body-util`'s `LengthLimitError`) is found by its message, as this
/// crate does not depend on that crate.
fn hit_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(current) = source {
        if current.to_string().contains("length limit exceeded") {
            return true;
        }
        source = current.source();
    }
    false
}
