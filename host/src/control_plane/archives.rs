//! The `archives` table: which archive files (a module's data, exported
//! before an uninstall) the host keeps for which tenant.

use sqlx::SqliteConnection;

/// An archive as the control plane records it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ArchiveRecord {
    /// Archive id (`arc_` and 16 hex digits).
    pub id: String,
    /// The module whose data it holds.
    pub module_slug: String,
    /// The module version that wrote the data.
    pub version: String,
    /// Where the file is on this host (absolute path).
    pub path: String,
    /// When it was written (RFC 3339).
    pub created_at: String,
}

/// Records `record` as an archive of `tenant_id`. The inverse is
/// [`remove`].
///
/// # Errors
/// Database errors.
pub async fn insert(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    record: &ArchiveRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO archives (id, tenant_id, module_slug, version, path, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&record.id)
    .bind(tenant_id)
    .bind(&record.module_slug)
    .bind(&record.version)
    .bind(&record.path)
    .bind(&record.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Archive `id` of `tenant_id`, if the tenant has it.
///
/// # Errors
/// Database errors.
pub async fn find(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    id: &str,
) -> Result<Option<ArchiveRecord>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, module_slug, version, path, created_at FROM archives WHERE id = ? AND tenant_id = ?",
    )
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(conn)
    .await
}

/// The archives of `tenant_id`, newest first.
///
/// # Errors
/// Database errors.
pub async fn list(
    conn: &mut SqliteConnection,
    tenant_id: &str,
) -> Result<Vec<ArchiveRecord>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, module_slug, version, path, created_at FROM archives WHERE tenant_id = ? \
         ORDER BY created_at DESC, id",
    )
    .bind(tenant_id)
    .fetch_all(conn)
    .await
}

/// Removes the record of archive `id` of `tenant_id` (not its file).
///
/// # Errors
/// Database errors.
pub async fn remove(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM archives WHERE id = ? AND tenant_id = ?")
        .bind(id)
        .bind(tenant_id)
        .execute(conn)
        .await?;
    Ok(())
}
