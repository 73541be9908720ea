//! Downloads of module files through signed URLs (`GET /f/{token}`): the
//! service behind the edge's handler.
//!
//! The token is checked first (MAC, then expiry, by the host clock); then
//! the tenant, the file's row (of the module the token names) and its blob
//! are found. Every way of failing — a tampered or expired token, a tenant
//! or file that is gone, a blob that is missing — answers the same
//! [`SoukError::NotFound`], so a caller learns nothing that helps guessing.

use crate::capabilities::files::FileService;
use crate::capabilities::files::rows::{self, FileRow};
use crate::clock::Clock;
use crate::error::SoukError;
use crate::tenancy::Tenancy;

/// What a valid token opens: the file's row and its bytes on disk.
pub struct Download {
    /// The file as stored (name, sniffed type, size, sha256).
    pub file: FileRow,
    /// The blob, open for reading from its start.
    pub body: tokio::fs::File,
}

/// The download service, borrowing the parts it needs (built per request
/// by `Souk::downloads`).
pub struct Downloads<'a> {
    /// Finds the tenant and its database.
    pub tenancy: &'a Tenancy,
    /// The blob stores and the URL signer.
    pub files: &'a FileService,
    /// The host's clock, for expiry.
    pub clock: &'a dyn Clock,
}

fn gone() -> SoukError {
    SoukError::NotFound("no such file, or the link has expired".to_owned())
}

impl Downloads<'_> {
    /// Opens the file `token` grants.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] for every refusal (see the module's doc);
    /// database failures as they are.
    pub async fn open(&self, token: &str) -> Result<Download, SoukError> {
        let grant = self
            .files
            .signer
            .verify(token, self.clock.now())
            .ok_or_else(gone)?;
        let tenant = self
            .tenancy
            .by_id(&grant.tenant_id)
            .await
            .map_err(|e| match e {
                SoukError::NotFound(_) => gone(),
                other => other,
            })?;
        let pool = self.tenancy.database(&tenant).await?;
        let mut conn = pool.acquire().await?;
        let file = rows::get(&mut conn, &grant.module, &grant.file_id)
            .await?
            .ok_or_else(gone)?;
        drop(conn);
        let body = match self.files.blobs.open(&tenant.id, &file.sha256).await {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(tenant = %tenant.slug, file = %file.id, error = %e, "a file's blob cannot be opened");
                return Err(gone());
            }
        };
        Ok(Download { file, body })
    }
}
