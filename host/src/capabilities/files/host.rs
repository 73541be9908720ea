//! The `files` interface of API 0.3.0, implemented over a [`FilesView`]:
//! the operations over the host's types first, then the thin conversion to
//! the WIT's.
//!
//! A database failure while a file row or its usage is written traps the
//! call (its transaction rolls back, nothing is half stored), as the
//! `entitlements` capability does; a disk failure before anything was
//! counted answers `unavailable`.

use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::rows::{self, FileRow};
use super::signed::{Grant, MAX_TTL_SECONDS};
use super::sniff::{self, MAX_NAME_BYTES};
use super::{FileFailure, FilesAccess, FilesView, MAX_PAGE};
use crate::capabilities::entitlements::call::CallUsageError;
use crate::clock::rfc3339;
use crate::entitlements::Denial;

/// An operation's outcome: a trap (`Err`), or the module's answer.
type Outcome<T> = wasmtime::Result<Result<T, FileFailure>>;

fn trap(what: &str, error: impl std::fmt::Display) -> wasmtime::Error {
    wasmtime::Error::msg(format!("files: {what}: {error}"))
}

/// Longest file id a module may pass (ids the host makes are 34 bytes).
const MAX_ID_BYTES: usize = 64;

fn check_id(id: &str) -> Result<(), FileFailure> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(FileFailure::NotFound);
    }
    Ok(())
}

impl FilesView<'_> {
    fn access(&self) -> Result<&FilesAccess, FileFailure> {
        self.files.as_ref().ok_or_else(|| {
            FileFailure::Unavailable("files are not available to this call (lifecycle hooks and calls for no tenant have none)".into())
        })
    }

    /// The call's transaction, for the host's own statements.
    async fn conn(&mut self) -> wasmtime::Result<&mut sqlx::SqliteConnection> {
        match self.db.host_connection().await {
            Some(conn) => conn.map_err(|e| trap("the tenant database failed", e)),
            None => Err(trap("no transaction", "this call has no database")),
        }
    }

    async fn put(
        &mut self,
        name: String,
        content_type: String,
        bytes: Vec<u8>,
    ) -> Outcome<FileRow> {
        let access = match self.access() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let Some(decl) = access.decl.clone() else {
            return Ok(Err(FileFailure::TypeNotAllowed(
                "this module's manifest declares no `files` section, so it may store no files"
                    .into(),
            )));
        };
        let max = access.service.max_file_bytes;
        let size = bytes.len() as u64;
        if size > max {
            return Ok(Err(FileFailure::TooLarge(max)));
        }
        if bytes.is_empty() {
            return Ok(Err(FileFailure::Invalid("a file must not be empty".into())));
        }
        let Some(name) = sniff::sanitise_name(&name) else {
            return Ok(Err(FileFailure::Invalid(format!(
                "a file name must keep at least one character once paths and control characters are removed (at most {MAX_NAME_BYTES} bytes are kept)"
            ))));
        };
        // Sniffing and hashing are linear in the file (up to the per-file
        // limit): off the call's thread.
        let bytes: Arc<[u8]> = Arc::from(bytes);
        let checked = bytes.clone();
        let limit = decl.limit.clone();
        let sniffed = tokio::task::spawn_blocking(move || {
            sniff::check_type(&content_type, &checked, &decl)
                .map(|stored| (stored, hex::encode(Sha256::digest(&checked))))
        })
        .await
        .map_err(|e| trap("sniffing", e))?;
        let (stored, sha256) = match sniffed {
            Ok(found) => found,
            Err(e) => return Ok(Err(FileFailure::TypeNotAllowed(e.to_string()))),
        };
        // A file the plan has no room for is refused before its blob is
        // written (the count below is what holds, atomically).
        if let (Some(key), Some(entitlements)) = (limit.as_deref(), self.entitlements.as_ref())
            && let crate::entitlements::Decision::Denied(denial) =
                entitlements.check_limit(key, size)
        {
            return Ok(Err(FileFailure::Denied(denial)));
        }
        let access = match self.access() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let (blobs, tenant_id, module, now) = (
            access.service.blobs.clone(),
            access.tenant_id.clone(),
            access.module.clone(),
            access.now,
        );
        blobs.pin(&tenant_id, &sha256).await;
        if let Some(files) = self.files.as_mut() {
            files.pinned.push(sha256.clone());
        }
        if let Err(e) = blobs.write(&tenant_id, &sha256, bytes).await {
            tracing::error!(tenant = %tenant_id, module = %module, error = %e, "cannot write a file blob");
            return Ok(Err(FileFailure::Unavailable(
                "the host could not store the file now; try again later".into(),
            )));
        }
        if let Some(key) = limit.as_deref() {
            let Some(entitlements) = self.entitlements.as_mut() else {
                return Ok(Err(FileFailure::Denied(Denial::no_subscription(key))));
            };
            match entitlements.consume(self.db, key, size, None).await {
                Ok(_) => {}
                Err(CallUsageError::Denied(denial)) => return Ok(Err(FileFailure::Denied(denial))),
                Err(CallUsageError::Host(e)) => return Err(trap("usage not recorded", e)),
                Err(other) => return Ok(Err(FileFailure::Invalid(other.to_string()))),
            }
        }
        let mut row = FileRow {
            seq: 0,
            id: format!("f_{}", hex::encode(rand::random::<[u8; 16]>())),
            module,
            name,
            content_type: stored.mime().to_owned(),
            size,
            sha256,
            created_at: rfc3339(now),
        };
        let conn = self.conn().await?;
        row.seq = rows::insert(conn, &row)
            .await
            .map_err(|e| trap("file not recorded", e))?;
        Ok(Ok(row))
    }

    async fn find(&mut self, id: &str) -> Outcome<FileRow> {
        let module = match self.access() {
            Ok(a) => a.module.clone(),
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = check_id(id) {
            return Ok(Err(e));
        }
        let conn = self.conn().await?;
        Ok(rows::get(conn, &module, id)
            .await
            .map_err(|e| trap("reading a file row", e))?
            .ok_or(FileFailure::NotFound))
    }

    async fn read(&mut self, id: &str) -> Outcome<Vec<u8>> {
        let row = match self.find(id).await? {
            Ok(row) => row,
            Err(e) => return Ok(Err(e)),
        };
        let access = match self.access() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let path = match access.service.blobs.path(&access.tenant_id, &row.sha256) {
            Ok(path) => path,
            Err(e) => return Err(trap("a file row names no blob", e)),
        };
        match tokio::fs::read(&path).await {
            Ok(bytes) if bytes.len() as u64 == row.size => Ok(Ok(bytes)),
            Ok(_) => Err(trap(
                "a file's bytes",
                "the blob's size differs from its row",
            )),
            Err(e) => {
                tracing::error!(tenant = %access.tenant_id, file = %row.id, error = %e, "cannot read a file blob");
                Ok(Err(FileFailure::Unavailable(
                    "the host could not read the file now; try again later".into(),
                )))
            }
        }
    }

    async fn delete(&mut self, id: &str) -> Outcome<()> {
        let row = match self.find(id).await? {
            Ok(row) => row,
            Err(e) => return Ok(Err(e)),
        };
        let (module, limit) = match self.access() {
            Ok(a) => (
                a.module.clone(),
                a.decl.as_ref().and_then(|d| d.limit.clone()),
            ),
            Err(e) => return Ok(Err(e)),
        };
        let conn = self.conn().await?;
        rows::delete(conn, &module, &row.id)
            .await
            .map_err(|e| trap("deleting a file row", e))?;
        if let (Some(key), Some(entitlements)) = (limit, self.entitlements.as_mut())
            && row.size > 0
        {
            let key: String = key;
            match entitlements.release(self.db, &key, row.size, None).await {
                Ok(_) | Err(CallUsageError::UnknownKey(_)) => {}
                Err(CallUsageError::Host(e)) => return Err(trap("usage not recorded", e)),
                Err(other) => return Err(trap("usage not recorded", other)),
            }
        }
        if let Some(files) = self.files.as_mut() {
            files.deleted.push(row.sha256);
        }
        Ok(Ok(()))
    }

    async fn list(
        &mut self,
        cursor: Option<String>,
        limit: u32,
    ) -> Outcome<(Vec<FileRow>, Option<String>)> {
        let module = match self.access() {
            Ok(a) => a.module.clone(),
            Err(e) => return Ok(Err(e)),
        };
        if !(1..=MAX_PAGE).contains(&limit) {
            return Ok(Err(FileFailure::Invalid(format!(
                "limit must be 1 to {MAX_PAGE}, not {limit}"
            ))));
        }
        let before = match cursor.as_deref().map(str::parse::<i64>) {
            None => None,
            Some(Ok(seq)) if seq > 0 => Some(seq),
            Some(_) => {
                return Ok(Err(FileFailure::Invalid(
                    "cursor is not one a previous `list` returned".into(),
                )));
            }
        };
        let conn = self.conn().await?;
        let mut page = rows::page(conn, &module, before, limit + 1)
            .await
            .map_err(|e| trap("listing files", e))?;
        let next = if page.len() > limit as usize {
            page.truncate(limit as usize);
            page.last().map(|r| r.seq.to_string())
        } else {
            None
        };
        Ok(Ok((page, next)))
    }

    async fn signed_url(&mut self, id: &str, ttl_seconds: u32) -> Outcome<String> {
        if !(1..=MAX_TTL_SECONDS).contains(&ttl_seconds) {
            return Ok(Err(FileFailure::Invalid(format!(
                "ttl-seconds must be 1 to {MAX_TTL_SECONDS}, not {ttl_seconds}"
            ))));
        }
        let row = match self.find(id).await? {
            Ok(row) => row,
            Err(e) => return Ok(Err(e)),
        };
        let access = match self.access() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let token = access.service.signer.sign(&Grant {
            tenant_id: access.tenant_id.clone(),
            module: access.module.clone(),
            file_id: row.id,
            expires: access.now.unix_timestamp() + i64::from(ttl_seconds),
        });
        Ok(Ok(format!("/f/{token}")))
    }
}

mod v0_3_0 {
    use super::{FileFailure, FileRow, FilesView, Outcome};
    use crate::wit::v0_3_0::souk::module::files as wit;
    use crate::wit::v0_3_0::souk::module::types::Denial as WitDenial;

    fn error_to_wit(failure: FileFailure) -> wit::FileError {
        match failure {
            FileFailure::NotFound => wit::FileError::NotFound,
            FileFailure::TypeNotAllowed(m) => wit::FileError::TypeNotAllowed(m),
            FileFailure::TooLarge(limit) => wit::FileError::TooLarge(limit),
            FileFailure::Denied(denial) => wit::FileError::Denied(WitDenial::from(denial)),
            FileFailure::Invalid(m) => wit::FileError::Invalid(m),
            FileFailure::Unavailable(m) => wit::FileError::Unavailable(m),
        }
    }

    fn info_to_wit(row: FileRow) -> wit::FileInfo {
        wit::FileInfo {
            id: row.id,
            name: row.name,
            content_type: row.content_type,
            size: row.size,
            sha256: row.sha256,
            created_at: row.created_at,
        }
    }

    fn answer<T, U>(
        outcome: Outcome<T>,
        map: impl FnOnce(T) -> U,
    ) -> wasmtime::Result<Result<U, wit::FileError>> {
        Ok(outcome?.map(map).map_err(error_to_wit))
    }

    impl wit::Host for FilesView<'_> {
        async fn put(
            &mut self,
            name: String,
            content_type: String,
            bytes: Vec<u8>,
        ) -> wasmtime::Result<Result<wit::FileInfo, wit::FileError>> {
            answer(
                FilesView::put(self, name, content_type, bytes).await,
                info_to_wit,
            )
        }

        async fn get(
            &mut self,
            id: String,
        ) -> wasmtime::Result<Result<wit::FileInfo, wit::FileError>> {
            answer(self.find(&id).await, info_to_wit)
        }

        async fn read(&mut self, id: String) -> wasmtime::Result<Result<Vec<u8>, wit::FileError>> {
            answer(FilesView::read(self, &id).await, |b| b)
        }

        async fn delete(&mut self, id: String) -> wasmtime::Result<Result<(), wit::FileError>> {
            answer(FilesView::delete(self, &id).await, |()| ())
        }

        async fn list(
            &mut self,
            cursor: Option<String>,
            limit: u32,
        ) -> wasmtime::Result<Result<wit::FilePage, wit::FileError>> {
            answer(
                FilesView::list(self, cursor, limit).await,
                |(rows, next)| wit::FilePage {
                    files: rows.into_iter().map(info_to_wit).collect(),
                    next_cursor: next,
                },
            )
        }

        async fn signed_url(
            &mut self,
            id: String,
            ttl_seconds: u32,
        ) -> wasmtime::Result<Result<String, wit::FileError>> {
            answer(FilesView::signed_url(self, &id, ttl_seconds).await, |u| u)
        }
    }
}
