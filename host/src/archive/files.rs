//! A module's stored files in its archive.
//!
//! The archive's header lists the module's files (`files`: id, name, type,
//! size, sha256, creation time, in the order they were stored), so they are
//! covered by the archive's checksum; the bytes go beside the archive file,
//! one blob per distinct sha256 in `<archive id>.files/`, written before the
//! archive is recorded. A restore checks every blob against its sha256 and
//! size before it copies it into the tenant's blob store, and inserts the
//! rows in the install's transaction. Archives without the field (all
//! archives written before files existed) restore no files.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::SqliteConnection;

use super::ArchiveError;
use crate::capabilities::files::blobs::{BlobStore, is_sha256};
use crate::capabilities::files::rows::{self, FileRow};

/// One file as the archive header lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchivedFile {
    /// The file's id (kept: a module may have stored it in its rows).
    pub id: String,
    /// The name given when it was stored.
    pub name: String,
    /// The sniffed type.
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the bytes, lower-case hex: the blob's name beside the
    /// archive.
    pub sha256: String,
    /// When it was stored (RFC 3339).
    pub created_at: String,
}

/// The directory beside archive file `archive_path` holding its blobs.
pub fn blobs_dir(archive_path: &Path) -> PathBuf {
    let stem = archive_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("archive");
    archive_path.with_file_name(format!("{stem}.files"))
}

/// The module's files, oldest first, as the header lists them (read in the
/// uninstall's transaction).
///
/// # Errors
/// Database errors.
pub async fn list(
    conn: &mut SqliteConnection,
    module: &str,
) -> Result<Vec<ArchivedFile>, sqlx::Error> {
    Ok(rows::all_of(conn, module)
        .await?
        .into_iter()
        .map(|r| ArchivedFile {
            id: r.id,
            name: r.name,
            content_type: r.content_type,
            size: r.size,
            sha256: r.sha256,
            created_at: r.created_at,
        })
        .collect())
}

/// Copies the blobs of `files` from `tenant_id`'s store to `dir` (each
/// distinct sha256 once, synced).
///
/// # Errors
/// I/O errors (a blob missing from the store included); the caller removes
/// `dir`.
pub async fn copy_out(
    blobs: &BlobStore,
    tenant_id: &str,
    files: &[ArchivedFile],
    dir: &Path,
) -> Result<(), ArchiveError> {
    if files.is_empty() {
        return Ok(());
    }
    tokio::fs::create_dir_all(dir).await?;
    let mut copied = std::collections::HashSet::new();
    for file in files {
        if !copied.insert(file.sha256.as_str()) {
            continue;
        }
        let from = blobs.path(tenant_id, &file.sha256)?;
        let to = dir.join(&file.sha256);
        tokio::task::spawn_blocking(move || {
            std::fs::copy(&from, &to)?;
            std::fs::File::open(&to)?.sync_all()
        })
        .await
        .map_err(std::io::Error::other)??;
    }
    Ok(())
}

/// Blobs an unfinished restore pinned in the tenant's store; unpinned on
/// drop (after the install's commit, or its rollback).
pub struct RestoredBlobs<'a> {
    blobs: &'a BlobStore,
    tenant_id: String,
    pinned: Vec<String>,
}

impl Drop for RestoredBlobs<'_> {
    fn drop(&mut self) {
        for sha in &self.pinned {
            self.blobs.unpin(&self.tenant_id, sha);
        }
    }
}

/// Checks every blob of `files` in `dir` (the archive `archive`'s blob
/// directory) against its sha256 and size, and copies it into `tenant_id`'s
/// store, pinned until the answer is dropped.
///
/// # Errors
/// [`ArchiveError::Damaged`] for a missing, changed or malformed blob;
/// I/O errors writing the store.
pub async fn copy_in<'a>(
    blobs: &'a BlobStore,
    tenant_id: &str,
    archive: &str,
    files: &[ArchivedFile],
    dir: &Path,
) -> Result<RestoredBlobs<'a>, ArchiveError> {
    let mut restored = RestoredBlobs {
        blobs,
        tenant_id: tenant_id.to_owned(),
        pinned: Vec::new(),
    };
    let damaged = |file: &ArchivedFile, reason: &str| ArchiveError::Damaged {
        archive: archive.to_owned(),
        reason: format!("file {} ({}): {reason}", file.id, file.name),
    };
    for file in files {
        if !is_sha256(&file.sha256) {
            return Err(damaged(file, "its sha256 is malformed"));
        }
        if restored.pinned.contains(&file.sha256) {
            continue;
        }
        let bytes = match tokio::fs::read(dir.join(&file.sha256)).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(damaged(file, "its bytes are missing beside the archive"));
            }
            Err(e) => return Err(e.into()),
        };
        let sha = hex::encode(Sha256::digest(&bytes));
        if sha != file.sha256 || bytes.len() as u64 != file.size {
            return Err(damaged(file, "its bytes were changed"));
        }
        blobs.pin(tenant_id, &sha).await;
        restored.pinned.push(sha.clone());
        blobs.write(tenant_id, &sha, bytes.into()).await?;
    }
    Ok(restored)
}

/// Inserts the rows of `files` for `module` (the install's transaction),
/// oldest first, so `list` keeps their order.
///
/// # Errors
/// Database errors (an id taken by another module's file included).
pub async fn restore_rows(
    conn: &mut SqliteConnection,
    module: &str,
    files: &[ArchivedFile],
) -> Result<(), sqlx::Error> {
    for file in files {
        rows::insert(
            conn,
            &FileRow {
                seq: 0,
                id: file.id.clone(),
                module: module.to_owned(),
                name: file.name.clone(),
                content_type: file.content_type.clone(),
                size: file.size,
                sha256: file.sha256.clone(),
                created_at: file.created_at.clone(),
            },
        )
        .await?;
    }
    Ok(())
}
