//! Files the host stores for the module (API 0.3.0): logos, attachments,
//! generated PDFs. The bytes live outside the tenant database; the host
//! sniffs their type, counts them against the plan's storage limit, and
//! serves them to clients through short-lived signed URLs, never through
//! the module's memory.
//!
//! The manifest says which types the module may store and which
//! `kind: storage` limit counts them:
//!
//! ```yaml
//! limits:
//!   - key: attachment_bytes
//!     kind: storage
//! files:
//!   types: [image/png, image/jpeg, application/pdf]
//!   limit: attachment_bytes
//! ```
//!
//! ```
//! use souk_sdk::{Problem, Request, Response, files};
//!
//! fn upload(request: &Request) -> Result<Response, Problem> {
//!     let name = request.query("name").unwrap_or_else(|| "upload".into());
//!     // A refusal becomes the right problem: 415 for a type the bytes or
//!     // the manifest refuse, 413 past the host's size limit, 402 past the
//!     // plan's storage limit.
//!     let file = files::put(&name, "image/png", request.body())?;
//!     let url = files::signed_url(&file.id, 300)?;
//!     Ok(Response::json(201, &serde_json::json!({"file": file, "url": url})))
//! }
//! # let _ = upload;
//! ```
//!
//! # What the host checks
//! - **Type**: the bytes are sniffed (magic numbers; SVG by its first
//!   element); the declared type must match them and be listed under
//!   `files.types`. HTML and script-bearing SVG are never stored.
//! - **Size**: at most the host's per-file limit (`--max-file-bytes`,
//!   10 MiB by default); [`FileError::TooLarge`] carries it.
//! - **Storage**: the file's bytes are taken from the storage limit in the
//!   call's transaction (a call that fails stores nothing and counts
//!   nothing); [`delete`] gives them back.
//!
//! # Native builds
//! Outside a wasm32 component for API 0.3.0 (natively, or built with the
//! `api-0-2` feature) there is no host to store files: every function
//! answers [`FileError::Unavailable`].

use serde::{Deserialize, Serialize};

pub use crate::entitlements::Denial;
use crate::http::{IntoResponse, Problem, Response};
use crate::runtime;

/// What the host knows of a stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// The file's id (opaque; keep it in your own tables).
    pub id: String,
    /// The name given when it was stored (paths and control characters
    /// removed by the host).
    pub name: String,
    /// The type the host sniffed from the bytes.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
    /// When it was stored (RFC 3339, UTC).
    pub created_at: String,
}

/// One page of [`list`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePage {
    /// The files, newest first.
    pub files: Vec<FileInfo>,
    /// Pass to [`list`] for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Why a file operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FileError {
    /// No file of this module has that id (another module's or tenant's
    /// file is not found either).
    #[error("no such file")]
    NotFound,
    /// The bytes are not the declared type, or the manifest does not allow
    /// it (the message names both).
    #[error("{0}")]
    TypeNotAllowed(String),
    /// Larger than the host's per-file limit (the limit, in bytes).
    #[error("the file is larger than the host's limit of {0} bytes")]
    TooLarge(u64),
    /// The plan's storage limit would be exceeded.
    #[error("{}", .0.detail())]
    Denied(Denial),
    /// An argument was refused (the message says which and why).
    #[error("{0}")]
    Invalid(String),
    /// The host could not do it now; the call may be retried.
    #[error("{0}")]
    Unavailable(String),
}

/// The refusal as a problem document: 404, 415, 413, the plan's 402 (the
/// same document the host's own gate sends), 400 or 503.
impl From<FileError> for Problem {
    fn from(error: FileError) -> Self {
        match &error {
            FileError::NotFound => Problem::not_found(error.to_string()),
            FileError::TypeNotAllowed(_) => {
                Problem::from_status(415).with_detail(error.to_string())
            }
            FileError::TooLarge(limit) => Problem::from_status(413)
                .with_detail(error.to_string())
                .with_extension("limit", (*limit).into()),
            FileError::Denied(denial) => Problem::from(denial),
            FileError::Invalid(_) => Problem::bad_request(error.to_string()),
            FileError::Unavailable(_) => Problem::from_status(503).with_detail(error.to_string()),
        }
    }
}

impl From<FileError> for Response {
    fn from(error: FileError) -> Self {
        Response::problem(&Problem::from(error))
    }
}

impl IntoResponse for FileError {
    fn into_response(self) -> Response {
        self.into()
    }
}

/// Stores `bytes` as a new file named `name`; `content_type` is what the
/// module believes the file is, refused when the bytes say otherwise.
///
/// # Errors
/// [`FileError::TypeNotAllowed`], [`FileError::TooLarge`],
/// [`FileError::Denied`] (storage limit), [`FileError::Invalid`] (an empty
/// file, a name with nothing left once cleaned), [`FileError::Unavailable`].
pub fn put(name: &str, content_type: &str, bytes: &[u8]) -> Result<FileInfo, FileError> {
    runtime::files_put(name, content_type, bytes)
}

/// The metadata of file `id`.
///
/// # Errors
/// [`FileError::NotFound`], [`FileError::Unavailable`].
pub fn get(id: &str) -> Result<FileInfo, FileError> {
    runtime::files_get(id)
}

/// The bytes of file `id`.
///
/// # Errors
/// [`FileError::NotFound`], [`FileError::Unavailable`].
pub fn read(id: &str) -> Result<Vec<u8>, FileError> {
    runtime::files_read(id)
}

/// Deletes file `id`; its bytes no longer count against the plan.
///
/// # Errors
/// [`FileError::NotFound`], [`FileError::Unavailable`].
pub fn delete(id: &str) -> Result<(), FileError> {
    runtime::files_delete(id)
}

/// The module's files, newest first, `limit` (1 to 100) per page; pass the
/// previous page's `next_cursor` for the next.
///
/// # Errors
/// [`FileError::Invalid`] for a limit out of range or a cursor no page
/// returned, [`FileError::Unavailable`].
pub fn list(cursor: Option<&str>, limit: u32) -> Result<FilePage, FileError> {
    runtime::files_list(cursor, limit)
}

/// A URL path (`/f/...`) through which anyone holding it may download file
/// `id` for `ttl_seconds` (1 to 86400). The host serves it with the sniffed
/// type, `X-Content-Type-Options: nosniff`, and `attachment` unless the
/// type is an image or PDF a browser may show safely.
///
/// # Errors
/// [`FileError::NotFound`], [`FileError::Invalid`] (ttl out of range),
/// [`FileError::Unavailable`].
pub fn signed_url(id: &str, ttl_seconds: u32) -> Result<String, FileError> {
    runtime::files_signed_url(id, ttl_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_become_the_matching_problems() {
        assert_eq!(Problem::from(FileError::NotFound).status(), 404);
        assert_eq!(
            Problem::from(FileError::TypeNotAllowed("x".into())).status(),
            415
        );
        let too_large = Problem::from(FileError::TooLarge(10));
        assert_eq!(too_large.status(), 413);
        assert!(too_large.to_json().contains("\"limit\":10"));
        let denied = Problem::from(FileError::Denied(Denial::no_subscription(
            "attachment_bytes",
        )));
        assert_eq!(
            denied.status(),
            Denial::no_subscription("attachment_bytes").status()
        );
        assert_eq!(Problem::from(FileError::Invalid("x".into())).status(), 400);
        assert_eq!(
            Problem::from(FileError::Unavailable("x".into())).status(),
            503
        );
    }

    #[test]
    fn outside_a_component_there_is_no_host() {
        assert!(matches!(
            put("a.png", "image/png", b"x"),
            Err(FileError::Unavailable(_))
        ));
        assert!(matches!(list(None, 10), Err(FileError::Unavailable(_))));
    }
}
