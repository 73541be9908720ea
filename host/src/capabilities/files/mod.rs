//! The `files` capability (API 0.3.0): bytes a module stores through the
//! host, outside the tenant database, served to clients through signed URLs.
//!
//! Per-call state: `Option<FilesAccess>`, set for requests and background
//! calls (jobs, event deliveries) by the dispatcher; `None` for lifecycle
//! hooks and detached calls — every function then answers `unavailable`. The interface reaches it, the call's database handle
//! (file rows are written in the call's transaction) and its entitlements
//! (stored bytes are counted against the module's `kind: storage` limit in
//! that same transaction) through a [`FilesView`].
//!
//! - [`sniff`]: what the bytes are, and file-name hygiene;
//! - [`blobs`]: the content-addressed blobs on disk and their collection;
//! - [`rows`]: the `_souk_files` host table;
//! - [`signed`]: download tokens for `/f/{token}`.
//!
//! A put checks, in order: the manifest declares `files`, the size (before
//! hashing), the name, the type (declared, sniffed, allowed), then writes
//! the blob, counts the bytes (a refusal is `denied`, a 402 for the
//! module), and inserts the row. After the call is settled its owner calls
//! [`FilesAccess::settle`], which collects the blobs the call's deletes
//! left unnamed (after a commit) and those its puts wrote (after a
//! rollback).

pub mod blobs;
mod host;
pub mod rows;
pub mod signed;
pub mod sniff;

use std::sync::Arc;

use souk_module_registry::FilesDecl;
use sqlx::SqlitePool;
use time::OffsetDateTime;
use wasmtime::component::{HasData, Linker};

use crate::capabilities::db::ModuleDb;
use crate::capabilities::entitlements::call::CallEntitlements;
use blobs::BlobStore;
use signed::UrlSigner;

/// Default per-file size limit: 10 MiB (`souk serve --max-file-bytes`).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;

/// Most files one `list` page holds.
pub const MAX_PAGE: u32 = 100;

/// What the host shares among every call's files access: the blob stores,
/// the URL signer and the per-file limit. Built once by the composition
/// root.
#[derive(Clone)]
pub struct FileService {
    /// The tenants' blob stores.
    pub blobs: Arc<BlobStore>,
    /// Signs download URLs.
    pub signer: Arc<UrlSigner>,
    /// Largest file a module may put, in bytes.
    pub max_file_bytes: u64,
}

/// One call's access to its module's files.
pub struct FilesAccess {
    service: FileService,
    pool: SqlitePool,
    tenant_id: String,
    module: String,
    decl: Option<FilesDecl>,
    now: OffsetDateTime,
    /// Blobs this call pinned (its puts), unpinned at settle or drop.
    pinned: Vec<String>,
    /// Blobs whose rows this call deleted, collected after the call.
    deleted: Vec<String>,
}

impl FilesAccess {
    /// The access of a call of `module` (whose manifest's `files` section
    /// is `decl`) for tenant `tenant_id`, whose database is `pool`, at
    /// `now` (the host clock's time at the call's start).
    pub fn new(
        service: FileService,
        pool: SqlitePool,
        tenant_id: &str,
        module: &str,
        decl: Option<FilesDecl>,
        now: OffsetDateTime,
    ) -> Self {
        FilesAccess {
            service,
            pool,
            tenant_id: tenant_id.to_owned(),
            module: module.to_owned(),
            decl,
            now,
            pinned: Vec::new(),
            deleted: Vec::new(),
        }
    }

    /// The call was settled (committed or rolled back): unpins what its
    /// puts wrote and removes every blob it touched that no committed row
    /// names. Failures are logged: a blob left behind is removed by the
    /// next sweep.
    pub async fn settle(mut self) {
        let pinned = std::mem::take(&mut self.pinned);
        for sha in &pinned {
            self.service.blobs.unpin(&self.tenant_id, sha);
        }
        let touched: Vec<String> = pinned
            .into_iter()
            .chain(std::mem::take(&mut self.deleted))
            .collect();
        if touched.is_empty() {
            return;
        }
        if let Err(e) = self
            .service
            .blobs
            .collect(&self.pool, &self.tenant_id, touched)
            .await
        {
            tracing::warn!(tenant = %self.tenant_id, error = %e, "file blobs not collected; the next sweep will");
        }
    }
}

impl Drop for FilesAccess {
    fn drop(&mut self) {
        for sha in &self.pinned {
            self.service.blobs.unpin(&self.tenant_id, sha);
        }
    }
}

/// Why a file operation failed, before it is put in a WIT version's terms.
#[derive(Debug)]
pub enum FileFailure {
    /// No file of this module has the id.
    NotFound,
    /// The type was refused (the message says why).
    TypeNotAllowed(String),
    /// Larger than the per-file limit (the limit).
    TooLarge(u64),
    /// The plan's storage limit (or its absence) refuses it.
    Denied(crate::entitlements::Denial),
    /// An argument was refused.
    Invalid(String),
    /// Not possible now (no tenant, a disk failure).
    Unavailable(String),
}

/// What the `files` interface reaches of a call's state.
pub struct FilesView<'a> {
    /// The call's files access; `None` answers `unavailable`.
    pub files: &'a mut Option<FilesAccess>,
    /// The call's entitlements, which count the bytes stored.
    pub entitlements: &'a mut Option<CallEntitlements>,
    /// The call's database handle, whose transaction holds the file rows.
    pub db: &'a mut ModuleDb,
}

/// The [`HasData`] of the `files` interface.
struct FilesData;

impl HasData for FilesData {
    type Data<'a> = FilesView<'a>;
}

/// Links the `files` interface (API 0.3.0); `view` picks the files access,
/// the entitlements and the database handle out of the store data.
///
/// # Errors
/// When the linker already defines the interface.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> FilesView<'_>,
) -> wasmtime::Result<()> {
    crate::wit::v0_3_0::souk::module::files::add_to_linker::<T, FilesData>(linker, view)
}
