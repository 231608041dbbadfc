//! Static files per app, kept under `<data_dir>/files/<app id>/`.
//!
//! Every access goes through a [`cap_std::fs::Dir`] opened on the app's own
//! folder: ambient authority is used once, to open the `files` root, and
//! every path after that is resolved by cap-std relative to a directory
//! handle, which refuses `..`, absolute paths and symlinks that lead out of
//! it. On top of that, [`validate_path`] only admits plain relative names
//! (`css/site.css`): components of `A-Z a-z 0-9 . _ -`, never `.` or `..`, so
//! a name that reached this module still percent-encoded (`%2e%2e`) is
//! refused rather than decoded.
//!
//! Writes go to a temporary name in the target's folder and are renamed over
//! the target, so a refused or failed upload leaves the old file intact.
//! Quotas ([`FileQuota`]) are checked under one lock before anything is
//! written.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};

use crate::{AppId, Timestamp};

/// Longest accepted path, in bytes.
pub const MAX_PATH_BYTES: usize = 512;
/// Longest accepted path component, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 128;
/// Most components (folders + name) in a path.
pub const MAX_PATH_DEPTH: usize = 16;

/// Temporary upload names start with this character, which no valid path
/// component contains: they can never collide with, or be served as, a file.
const TEMPORARY_PREFIX: &str = "~upload-";

/// Size limits per app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileQuota {
    /// Largest single file, in bytes. Default 10 MiB.
    pub max_file_bytes: u64,
    /// Largest total of an app's files, in bytes. Default 100 MiB.
    pub max_total_bytes: u64,
    /// Most files per app. Default 1,000.
    pub max_files: u64,
}

impl Default for FileQuota {
    fn default() -> Self {
        FileQuota {
            max_file_bytes: 10 * 1024 * 1024,
            max_total_bytes: 100 * 1024 * 1024,
            max_files: 1000,
        }
    }
}

/// Why a file operation failed. [`FileError::code`] is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The path is not a plain relative name.
    #[error("invalid file path `{path}`: {reason}")]
    InvalidPath {
        /// The path as given (control characters escaped).
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The file is larger than [`FileQuota::max_file_bytes`].
    #[error("the file is {size} bytes, more than the limit of {limit} bytes per file")]
    FileTooLarge {
        /// The file's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Storing the file would exceed the app's total size or file count.
    #[error("storing this file would exceed the app's quota of {limit} {what}")]
    QuotaExceeded {
        /// `bytes` or `files`.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// The path names a folder, or one of its folders is a file.
    #[error("`{path}` conflicts with an existing {existing}")]
    Conflict {
        /// The path.
        path: String,
        /// `folder` or `file`.
        existing: &'static str,
    },
    /// The file system failed; the details are logged.
    #[error("the file store failed: {message}")]
    Io {
        /// What failed.
        message: String,
    },
}

impl FileError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            FileError::InvalidPath { .. } => "invalid_path",
            FileError::FileTooLarge { .. } => "file_too_large",
            FileError::QuotaExceeded { .. } => "quota_exceeded",
            FileError::Conflict { .. } => "conflict",
            FileError::Io { .. } => "internal_error",
        }
    }

    fn io(context: &str, error: std::io::Error) -> FileError {
        tracing::error!(%error, context, "file store error");
        FileError::Io {
            message: context.to_owned(),
        }
    }
}

/// Checks that `path` is a plain relative file name: `/`-separated
/// components of `A-Z a-z 0-9 . _ -`, none empty, `.` or `..`, at most
/// [`MAX_COMPONENT_BYTES`] each, [`MAX_PATH_DEPTH`] deep and
/// [`MAX_PATH_BYTES`] long.
pub fn validate_path(path: &str) -> Result<(), FileError> {
    let invalid = |reason| FileError::InvalidPath {
        path: path.escape_debug().take(MAX_PATH_BYTES).collect(),
        reason,
    };
    if path.is_empty() {
        return Err(invalid("it is empty"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(invalid("it is longer than 512 bytes"));
    }
    if path.starts_with('/') {
        return Err(invalid("it must be relative (no leading '/')"));
    }
    if path.contains('\\') {
        return Err(invalid("use '/' to separate folders, not '\\'"));
    }
    if path.contains('\0') {
        return Err(invalid("it contains a NUL character"));
    }
    let components: Vec<&str> = path.split('/').collect();
    if components.len() > MAX_PATH_DEPTH {
        return Err(invalid("it is nested more than 16 levels deep"));
    }
    for component in components {
        if component.is_empty() {
            return Err(invalid(
                "it has an empty component ('//' or a trailing '/')",
            ));
        }
        if component == "." || component == ".." {
            return Err(invalid("'.' and '..' are not allowed"));
        }
        if component.len() > MAX_COMPONENT_BYTES {
            return Err(invalid("a component is longer than 128 bytes"));
        }
        if !component
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
        {
            return Err(invalid(
                "components may only contain A-Z, a-z, 0-9, '.', '_' and '-'",
            ));
        }
    }
    Ok(())
}

/// What is known about a stored file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileMeta {
    /// The path within the app.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Last change.
    pub modified: Timestamp,
    /// An entity tag, quoted, that changes whenever the file is replaced.
    pub etag: String,
}

/// An open stored file with its metadata.
#[derive(Debug)]
pub struct StoredFile {
    /// The file, open for reading.
    pub file: std::fs::File,
    /// Its metadata.
    pub meta: FileMeta,
}

impl StoredFile {
    /// Reads `length` bytes from `offset` (blocking; call it off the async
    /// threads).
    pub fn read_range(&mut self, offset: u64, length: u64) -> std::io::Result<Vec<u8>> {
        self.file.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::with_capacity(length.min(self.meta.size) as usize);
        (&mut self.file).take(length).read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

/// How much an app stores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileUsage {
    /// Number of files.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// The static files of every app. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppFiles {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: Dir,
    root_path: PathBuf,
    /// Held while a write checks quotas and stores, so two uploads cannot
    /// both pass the check.
    write_lock: std::sync::Mutex<()>,
    next_temporary: AtomicU64,
}

impl AppFiles {
    /// Opens (creating it if needed) the files root `<data_dir>/files`. This
    /// is the only use of ambient authority.
    pub fn open(data_dir: &std::path::Path) -> std::io::Result<AppFiles> {
        let root_path = data_dir.join("files");
        std::fs::create_dir_all(&root_path)?;
        let root = Dir::open_ambient_dir(&root_path, ambient_authority())?;
        Ok(AppFiles {
            inner: Arc::new(Inner {
                root,
                root_path,
                write_lock: std::sync::Mutex::new(()),
                next_temporary: AtomicU64::new(0),
            }),
        })
    }

    /// The root folder, for logs.
    pub fn root_path(&self) -> &std::path::Path {
        &self.inner.root_path
    }

    /// Stores `bytes` at `path` in the app's folder, replacing any file
    /// there, if `quota` allows. On any error the old file is intact.
    pub async fn put(
        &self,
        app_id: AppId,
        path: &str,
        bytes: Vec<u8>,
        quota: &FileQuota,
    ) -> Result<FileMeta, FileError> {
        validate_path(path)?;
        let size = bytes.len() as u64;
        if size > quota.max_file_bytes {
            return Err(FileError::FileTooLarge {
                size,
                limit: quota.max_file_bytes,
            });
        }
        let this = self.clone();
        let path = path.to_owned();
        let quota = *quota;
        blocking(move || this.put_blocking(app_id, &path, &bytes, &quota)).await
    }

    fn put_blocking(
        &self,
        app_id: AppId,
        path: &str,
        bytes: &[u8],
        quota: &FileQuota,
    ) -> Result<FileMeta, FileError> {
        let _guard = self
            .inner
            .write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let app = self.app_dir(app_id, true)?.expect("created on demand");
        let usage = usage_of(&app)?;
        let existing = match app.symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {
                return Err(FileError::Conflict {
                    path: path.to_owned(),
                    existing: "folder",
                });
            }
            Ok(meta) if meta.is_file() => Some(meta.len()),
            // A symlink or anything else: replaced by the rename below.
            Ok(_) => None,
            Err(_) => None,
        };
        let new_total = usage.bytes - existing.unwrap_or(0) + bytes.len() as u64;
        if new_total > quota.max_total_bytes {
            return Err(FileError::QuotaExceeded {
                what: "bytes",
                limit: quota.max_total_bytes,
            });
        }
        if existing.is_none() && usage.files + 1 > quota.max_files {
            return Err(FileError::QuotaExceeded {
                what: "files",
                limit: quota.max_files,
            });
        }
        let (folder, _name) = match path.rsplit_once('/') {
            Some((folder, name)) => (Some(folder), name),
            None => (None, path),
        };
        if let Some(folder) = folder {
            app.create_dir_all(folder).map_err(|error| {
                if error.kind() == std::io::ErrorKind::AlreadyExists
                    || error.kind() == std::io::ErrorKind::NotADirectory
                {
                    FileError::Conflict {
                        path: path.to_owned(),
                        existing: "file",
                    }
                } else {
                    conflict_or_io(path, "cannot create the folder", error)
                }
            })?;
        }
        let temporary_name = format!(
            "{TEMPORARY_PREFIX}{}-{}",
            std::process::id(),
            self.inner.next_temporary.fetch_add(1, Ordering::Relaxed)
        );
        let temporary = match folder {
            Some(folder) => format!("{folder}/{temporary_name}"),
            None => temporary_name,
        };
        let written = (|| {
            let mut file = app.create(&temporary)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            app.rename(&temporary, &app, path)
        })();
        if let Err(error) = written {
            let _ = app.remove_file(&temporary);
            return Err(conflict_or_io(path, "cannot write the file", error));
        }
        meta_of(&app, path)?.ok_or_else(|| FileError::Io {
            message: "the file vanished after writing".into(),
        })
    }

    /// The file at `path`, open for reading, or `None` if there is none (a
    /// folder, a symlink out of the app's folder, or an invalid name is
    /// `None` too — or `Err` for an invalid name).
    pub async fn get(&self, app_id: AppId, path: &str) -> Result<Option<StoredFile>, FileError> {
        validate_path(path)?;
        let this = self.clone();
        let path = path.to_owned();
        blocking(move || {
            let Some(app) = this.app_dir(app_id, false)? else {
                return Ok(None);
            };
            let file = match app.open(&path) {
                Ok(file) => file,
                Err(_) => return Ok(None),
            };
            let metadata = file
                .metadata()
                .map_err(|error| FileError::io("cannot read metadata", error))?;
            if !metadata.is_file() {
                return Ok(None);
            }
            let file = file.into_std();
            let meta = describe(
                &path,
                metadata.len(),
                file.metadata().ok().and_then(|m| m.modified().ok()),
            );
            Ok(Some(StoredFile { file, meta }))
        })
        .await
    }

    /// The whole content of the file at `path`, for scripts; `None` if
    /// there is none.
    pub async fn read(
        &self,
        app_id: AppId,
        path: &str,
    ) -> Result<Option<(Vec<u8>, FileMeta)>, FileError> {
        let Some(mut stored) = self.get(app_id, path).await? else {
            return Ok(None);
        };
        blocking(move || {
            let size = stored.meta.size;
            let bytes = stored
                .read_range(0, size)
                .map_err(|error| FileError::io("cannot read the file", error))?;
            Ok(Some((bytes, stored.meta)))
        })
        .await
    }

    /// The app's files whose path starts with `prefix` (empty for all),
    /// sorted by path.
    pub async fn list(&self, app_id: AppId, prefix: &str) -> Result<Vec<FileMeta>, FileError> {
        let this = self.clone();
        let prefix = prefix.to_owned();
        blocking(move || {
            let Some(app) = this.app_dir(app_id, false)? else {
                return Ok(Vec::new());
            };
            let mut files = Vec::new();
            walk(&app, "", &mut |path, metadata| {
                if path.starts_with(&prefix) {
                    files.push(describe(
                        path,
                        metadata.len(),
                        metadata
                            .modified()
                            .ok()
                            .map(cap_std::time::SystemTime::into_std),
                    ));
                }
            })?;
            files.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(files)
        })
        .await
    }

    /// Deletes the file at `path`; `false` if there was none. Folders left
    /// empty are removed.
    pub async fn delete(&self, app_id: AppId, path: &str) -> Result<bool, FileError> {
        validate_path(path)?;
        let this = self.clone();
        let path = path.to_owned();
        blocking(move || {
            let _guard = this
                .inner
                .write_lock
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let Some(app) = this.app_dir(app_id, false)? else {
                return Ok(false);
            };
            match app.symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => return Ok(false),
                Ok(_) => {}
                Err(_) => return Ok(false),
            }
            match app.remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(error) => return Err(FileError::io("cannot delete the file", error)),
            }
            let mut folder = path.as_str();
            while let Some((parent, _)) = folder.rsplit_once('/') {
                if app.remove_dir(parent).is_err() {
                    break;
                }
                folder = parent;
            }
            Ok(true)
        })
        .await
    }

    /// How many files the app stores and their total size.
    pub async fn usage(&self, app_id: AppId) -> Result<FileUsage, FileError> {
        let this = self.clone();
        blocking(move || match this.app_dir(app_id, false)? {
            Some(app) => usage_of(&app),
            None => Ok(FileUsage::default()),
        })
        .await
    }

    /// Deletes all of an app's files (when the app is deleted).
    pub async fn remove_app(&self, app_id: AppId) -> Result<(), FileError> {
        let this = self.clone();
        blocking(move || {
            let _guard = this
                .inner
                .write_lock
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match this.inner.root.remove_dir_all(app_id.0.to_string()) {
                Ok(()) => Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(error) => Err(FileError::io("cannot remove the app's files", error)),
            }
        })
        .await
    }

    /// The app's folder, opened through the root handle; created when
    /// `create`, else `None` if it does not exist.
    fn app_dir(&self, app_id: AppId, create: bool) -> Result<Option<Dir>, FileError> {
        let name = app_id.0.to_string();
        if create {
            match self.inner.root.create_dir(&name) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(FileError::io("cannot create the app's folder", error)),
            }
        }
        match self.inner.root.open_dir(&name) {
            Ok(dir) => Ok(Some(dir)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(FileError::io("cannot open the app's folder", error)),
        }
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|error| {
            tracing::error!(%error, "a file store task failed");
            Err(FileError::Io {
                message: "a file store task failed".into(),
            })
        })
}

fn conflict_or_io(path: &str, context: &str, error: std::io::Error) -> FileError {
    match error.kind() {
        std::io::ErrorKind::IsADirectory | std::io::ErrorKind::DirectoryNotEmpty => {
            FileError::Conflict {
                path: path.to_owned(),
                existing: "folder",
            }
        }
        std::io::ErrorKind::NotADirectory => FileError::Conflict {
            path: path.to_owned(),
            existing: "file",
        },
        _ => FileError::io(context, error),
    }
}

fn describe(path: &str, size: u64, modified: Option<SystemTime>) -> FileMeta {
    let since_epoch = modified
        .and_then(|modified| modified.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    FileMeta {
        path: path.to_owned(),
        size,
        modified: Timestamp::from_unix_millis(since_epoch.as_millis() as i64),
        etag: format!("\"{size:x}-{:x}\"", since_epoch.as_nanos()),
    }
}

fn meta_of(app: &Dir, path: &str) -> Result<Option<FileMeta>, FileError> {
    match app.metadata(path) {
        Ok(metadata) if metadata.is_file() => Ok(Some(describe(
            path,
            metadata.len(),
            metadata
                .modified()
                .ok()
                .map(cap_std::time::SystemTime::into_std),
        ))),
        Ok(_) => Ok(None),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(FileError::io("cannot read metadata", error)),
    }
}

fn usage_of(app: &Dir) -> Result<FileUsage, FileError> {
    let mut usage = FileUsage::default();
    walk(app, "", &mut |_, metadata| {
        usage.files += 1;
        usage.bytes += metadata.len();
    })?;
    Ok(usage)
}

/// Visits every regular file below `folder` (symlinks and temporary uploads
/// are skipped), with its path relative to the app's folder.
fn walk(
    app: &Dir,
    folder: &str,
    visit: &mut dyn FnMut(&str, &cap_std::fs::Metadata),
) -> Result<(), FileError> {
    let entries = if folder.is_empty() {
        app.entries()
    } else {
        app.read_dir(folder)
    }
    .map_err(|error| FileError::io("cannot list a folder", error))?;
    for entry in entries {
        let entry = entry.map_err(|error| FileError::io("cannot list a folder", error))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with(TEMPORARY_PREFIX) {
            continue;
        }
        let path = if folder.is_empty() {
            name
        } else {
            format!("{folder}/{name}")
        };
        let file_type = entry
            .file_type()
            .map_err(|error| FileError::io("cannot read a file type", error))?;
        if file_type.is_dir() {
            walk(app, &path, visit)?;
        } else if file_type.is_file() {
            let metadata = entry
                .metadata()
                .map_err(|error| FileError::io("cannot read metadata", error))?;
            visit(&path, &metadata);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> (tempfile::TempDir, AppFiles) {
        let directory = tempfile::tempdir().unwrap();
        let files = AppFiles::open(directory.path()).unwrap();
        (directory, files)
    }

    const APP: AppId = AppId(1);
    const OTHER_APP: AppId = AppId(2);

    #[test]
    fn plain_relative_names_are_valid() {
        for path in [
            "index.html",
            "css/site.css",
            "a/b/c/d.min.js",
            ".well-known/security.txt",
            "file_with-dashes.v2",
            "..hidden",
            "x...",
        ] {
            assert_eq!(validate_path(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn escaping_and_odd_names_are_refused() {
        let long_component = "a".repeat(129);
        let long_path = ["abc"; 200].join("/");
        let deep_path = ["a"; 17].join("/");
        for path in [
            "",
            "../etc/passwd",
            "a/../../b",
            "a/..",
            "./a",
            "a/./b",
            "..",
            ".",
            "/etc/passwd",
            "//etc/passwd",
            "a//b",
            "a/",
            "%2e%2e/etc/passwd",
            "..%2fetc",
            "a%2fb",
            "a\\..\\b",
            "..\\..\\windows",
            "a\0b",
            "a b",
            "é.txt",
            "a/ｂ",
            "C:",
            long_component.as_str(),
            long_path.as_str(),
            deep_path.as_str(),
        ] {
            let error = validate_path(path).unwrap_err();
            assert_eq!(error.code(), "invalid_path", "{path}");
        }
    }

    #[tokio::test]
    async fn put_get_list_delete() {
        let (_directory, files) = files();
        let quota = FileQuota::default();
        let meta = files
            .put(APP, "css/site.css", b"body{}".to_vec(), &quota)
            .await
            .unwrap();
        assert_eq!(meta.size, 6);
        assert!(meta.etag.starts_with('"'));
        files
            .put(APP, "index.html", b"<h1>hi</h1>".to_vec(), &quota)
            .await
            .unwrap();
        let (bytes, read_meta) = files.read(APP, "css/site.css").await.unwrap().unwrap();
        assert_eq!(bytes, b"body{}");
        assert_eq!(read_meta, meta);
        let mut stored = files.get(APP, "index.html").await.unwrap().unwrap();
        assert_eq!(stored.read_range(4, 2).unwrap(), b"hi");
        let listed = files.list(APP, "").await.unwrap();
        let paths: Vec<&str> = listed.iter().map(|file| file.path.as_str()).collect();
        assert_eq!(paths, ["css/site.css", "index.html"]);
        assert_eq!(files.list(APP, "css/").await.unwrap().len(), 1);
        assert_eq!(
            files.usage(APP).await.unwrap(),
            FileUsage {
                files: 2,
                bytes: 17
            }
        );
        // Apps do not see each other's files.
        assert!(files.get(OTHER_APP, "index.html").await.unwrap().is_none());
        assert!(files.list(OTHER_APP, "").await.unwrap().is_empty());
        assert!(!files.delete(OTHER_APP, "index.html").await.unwrap());
        // Delete removes the file and its emptied folder.
        assert!(files.delete(APP, "css/site.css").await.unwrap());
        assert!(!files.delete(APP, "css/site.css").await.unwrap());
        assert!(files.get(APP, "css/site.css").await.unwrap().is_none());
        assert!(!files.root_path().join("1/css").exists());
        files.remove_app(APP).await.unwrap();
        assert!(files.list(APP, "").await.unwrap().is_empty());
        files.remove_app(APP).await.unwrap();
    }

    #[tokio::test]
    async fn replacing_changes_the_etag() {
        let (_directory, files) = files();
        let quota = FileQuota::default();
        let first = files
            .put(APP, "a.txt", b"one".to_vec(), &quota)
            .await
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = files
            .put(APP, "a.txt", b"two!".to_vec(), &quota)
            .await
            .unwrap();
        assert_ne!(first.etag, second.etag);
        assert_eq!(files.usage(APP).await.unwrap().files, 1);
    }

    #[tokio::test]
    async fn escapes_are_refused_by_every_operation() {
        let (directory, files) = files();
        std::fs::write(directory.path().join("secret.txt"), "secret").unwrap();
        let quota = FileQuota::default();
        for path in [
            "../secret.txt",
            "../../secret.txt",
            "/etc/passwd",
            "%2e%2e/secret.txt",
        ] {
            assert_eq!(
                files
                    .put(APP, path, b"x".to_vec(), &quota)
                    .await
                    .unwrap_err()
                    .code(),
                "invalid_path"
            );
            assert_eq!(
                files.get(APP, path).await.unwrap_err().code(),
                "invalid_path"
            );
            assert_eq!(
                files.delete(APP, path).await.unwrap_err().code(),
                "invalid_path"
            );
        }
        assert_eq!(
            std::fs::read_to_string(directory.path().join("secret.txt")).unwrap(),
            "secret"
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn planted_symlinks_do_not_lead_out() {
        let (directory, files) = files();
        let quota = FileQuota::default();
        files
            .put(APP, "ok.txt", b"ok".to_vec(), &quota)
            .await
            .unwrap();
        let app_folder = files.root_path().join("1");
        std::fs::write(directory.path().join("outside.txt"), "outside").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", app_folder.join("passwd")).unwrap();
        std::os::unix::fs::symlink("/etc", app_folder.join("etc")).unwrap();
        std::os::unix::fs::symlink("../../outside.txt", app_folder.join("rel.txt")).unwrap();
        std::os::unix::fs::symlink(files.root_path().join("2"), app_folder.join("other")).unwrap();
        files
            .put(OTHER_APP, "theirs.txt", b"theirs".to_vec(), &quota)
            .await
            .unwrap();
        for path in ["passwd", "etc/passwd", "rel.txt", "other/theirs.txt"] {
            assert!(files.get(APP, path).await.unwrap().is_none(), "{path}");
            assert!(files.read(APP, path).await.unwrap().is_none(), "{path}");
        }
        // Writing through a symlinked folder is refused too.
        assert!(
            files
                .put(APP, "etc/evil", b"x".to_vec(), &quota)
                .await
                .is_err()
        );
        assert!(
            files
                .put(APP, "other/evil", b"x".to_vec(), &quota)
                .await
                .is_err()
        );
        assert!(!directory.path().join("files/2/evil").exists());
        // Symlinks are neither listed nor counted.
        let listed = files.list(APP, "").await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(files.usage(APP).await.unwrap().files, 1);
        // Replacing a symlink by upload replaces the link, not its target.
        files
            .put(APP, "rel.txt", b"mine".to_vec(), &quota)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(directory.path().join("outside.txt")).unwrap(),
            "outside"
        );
        assert!(files.delete(APP, "passwd").await.unwrap());
        assert!(std::path::Path::new("/etc/passwd").exists());
    }

    #[tokio::test]
    async fn quotas_fail_cleanly_and_keep_the_old_file() {
        let (_directory, files) = files();
        let quota = FileQuota {
            max_file_bytes: 10,
            max_total_bytes: 15,
            max_files: 2,
        };
        files
            .put(APP, "a.txt", b"0123456789".to_vec(), &quota)
            .await
            .unwrap();
        let error = files
            .put(APP, "a.txt", b"0123456789X".to_vec(), &quota)
            .await
            .unwrap_err();
        assert_eq!(error.code(), "file_too_large");
        let error = files
            .put(APP, "b.txt", b"012345".to_vec(), &quota)
            .await
            .unwrap_err();
        assert_eq!(error.code(), "quota_exceeded");
        files
            .put(APP, "b.txt", b"01234".to_vec(), &quota)
            .await
            .unwrap();
        let error = files
            .put(APP, "c.txt", b"".to_vec(), &quota)
            .await
            .unwrap_err();
        assert_eq!(
            error,
            FileError::QuotaExceeded {
                what: "files",
                limit: 2
            }
        );
        // Replacing counts the old size out.
        files
            .put(APP, "a.txt", b"abcdefghij".to_vec(), &quota)
            .await
            .unwrap();
        let (bytes, _) = files.read(APP, "a.txt").await.unwrap().unwrap();
        assert_eq!(bytes, b"abcdefghij");
        assert_eq!(
            files.usage(APP).await.unwrap(),
            FileUsage {
                files: 2,
                bytes: 15
            }
        );
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(files.root_path().join("1"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|name| !name.starts_with('~')), "{names:?}");
    }

    #[tokio::test]
    async fn folders_and_files_do_not_replace_each_other() {
        let (_directory, files) = files();
        let quota = FileQuota::default();
        files
            .put(APP, "a/b.txt", b"x".to_vec(), &quota)
            .await
            .unwrap();
        assert_eq!(
            files
                .put(APP, "a", b"y".to_vec(), &quota)
                .await
                .unwrap_err()
                .code(),
            "conflict"
        );
        assert_eq!(
            files
                .put(APP, "a/b.txt/c", b"y".to_vec(), &quota)
                .await
                .unwrap_err()
                .code(),
            "conflict"
        );
        assert!(files.get(APP, "a").await.unwrap().is_none());
        assert!(!files.delete(APP, "a").await.unwrap());
        assert_eq!(files.read(APP, "a/b.txt").await.unwrap().unwrap().0, b"x");
    }
}
