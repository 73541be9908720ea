//! The `installations` table (which module version each tenant has) and
//! the `migration_ledger` (which of its migrations ran in the tenant's
//! database).

use serde::Serialize;
use sqlx::SqliteConnection;

use super::{StoreError, duplicate_or_db};

/// A module installed for a tenant.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Installation {
    /// Module slug.
    pub module: String,
    /// Semantic version installed now; an upgrade changes it.
    pub version: String,
    /// Package digest of that version.
    pub digest: String,
    /// First installed (RFC 3339); an upgrade keeps it.
    pub installed_at: String,
    /// Last changed by an install or upgrade (RFC 3339).
    pub updated_at: String,
    /// Why the installed version was revoked by its publisher, if it was:
    /// the host refuses to run it. Read from the version, never written
    /// with the installation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
    /// Revision of the tenant's subscription to the module (none without
    /// one): read with the installation so the request path notices a
    /// subscription change made by any process without another query.
    #[serde(skip)]
    pub subscription_revision: Option<i64>,
}

/// One applied migration as the ledger records it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LedgerEntry {
    /// The migration's id, unique within its module.
    pub migration_id: String,
    /// Its place among the module's migrations (0 for one the module no
    /// longer declared when it was recorded).
    pub position: i64,
    /// The module version that applied it.
    pub applied_by: String,
    /// When it was applied (RFC 3339).
    pub applied_at: String,
    /// `sha256:` checksum of what ran (see the installer's
    /// `migration_checksum`); `None` for migrations applied before the
    /// ledger kept checksums.
    pub checksum: Option<String>,
}

/// Installations with the revocation status of their version and the
/// revision of their subscription, in one query, because the request path
/// needs all three.
const SELECT_INSTALLATION: &str = "SELECT i.module_slug AS module, i.version, i.digest, \
     i.installed_at, i.updated_at, v.revoked_reason AS revoked, s.revision AS subscription_revision \
     FROM installations i \
     LEFT JOIN module_versions v ON v.slug = i.module_slug AND v.version = i.version \
     LEFT JOIN subscriptions s ON s.tenant_id = i.tenant_id AND s.module_slug = i.module_slug";

/// The installations of `tenant_id`, by module slug.
///
/// # Errors
/// Database errors.
pub async fn list(
    conn: &mut SqliteConnection,
    tenant_id: &str,
) -> Result<Vec<Installation>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT_INSTALLATION} WHERE i.tenant_id = ? ORDER BY i.module_slug"
    ))
    .bind(tenant_id)
    .fetch_all(conn)
    .await
}

/// The installation of `module` for `tenant_id`, if any.
///
/// # Errors
/// Database errors.
pub async fn find(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    module: &str,
) -> Result<Option<Installation>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT_INSTALLATION} WHERE i.tenant_id = ? AND i.module_slug = ?"
    ))
    .bind(tenant_id)
    .bind(module)
    .fetch_optional(conn)
    .await
}

/// Records `installation` for `tenant_id` (its `revoked` and
/// `subscription_revision` are not stored here). The inverse is [`remove`].
///
/// # Errors
/// [`StoreError::Duplicate`] when the tenant has the module installed
/// already (another operation installed it first).
pub async fn insert(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    installation: &Installation,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO installations (tenant_id, module_slug, version, digest, installed_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(tenant_id)
    .bind(&installation.module)
    .bind(&installation.version)
    .bind(&installation.digest)
    .bind(&installation.installed_at)
    .bind(&installation.updated_at)
    .execute(conn)
    .await
    .map_err(duplicate_or_db)?;
    Ok(())
}

/// Moves the installation `read` of `tenant_id` to the version, digest and
/// update time of `new` (same module). The inverse is the same call with
/// the two swapped.
///
/// # Errors
/// [`StoreError::Changed`] when the stored installation is no longer
/// `read`'s version and digest (another operation changed or removed it).
pub async fn update(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    read: &Installation,
    new: &Installation,
) -> Result<(), StoreError> {
    let updated = sqlx::query(
        "UPDATE installations SET version = ?, digest = ?, updated_at = ? \
         WHERE tenant_id = ? AND module_slug = ? AND version = ? AND digest = ?",
    )
    .bind(&new.version)
    .bind(&new.digest)
    .bind(&new.updated_at)
    .bind(tenant_id)
    .bind(&read.module)
    .bind(&read.version)
    .bind(&read.digest)
    .execute(conn)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(StoreError::Changed);
    }
    Ok(())
}

/// Removes the installation `read` of `tenant_id`. The inverse is
/// [`insert`].
///
/// # Errors
/// [`StoreError::Changed`] when the stored installation is no longer
/// `read`'s version and digest.
pub async fn remove(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    read: &Installation,
) -> Result<(), StoreError> {
    let removed = sqlx::query(
        "DELETE FROM installations WHERE tenant_id = ? AND module_slug = ? AND version = ? AND digest = ?",
    )
    .bind(tenant_id)
    .bind(&read.module)
    .bind(&read.version)
    .bind(&read.digest)
    .execute(conn)
    .await?;
    if removed.rows_affected() != 1 {
        return Err(StoreError::Changed);
    }
    Ok(())
}

/// Slugs of the tenants that have version `version` of `module` installed,
/// in order.
///
/// # Errors
/// Database errors.
pub async fn tenants_running(
    conn: &mut SqliteConnection,
    module: &str,
    version: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let tenants: Vec<(String,)> = sqlx::query_as(
        "SELECT t.slug FROM installations i JOIN tenants t ON t.id = i.tenant_id \
         WHERE i.module_slug = ? AND i.version = ? ORDER BY t.slug",
    )
    .bind(module)
    .bind(version)
    .fetch_all(conn)
    .await?;
    Ok(tenants.into_iter().map(|(slug,)| slug).collect())
}

/// The ledger of `module` for `tenant_id`, in the order the migrations
/// were applied.
///
/// # Errors
/// Database errors.
pub async fn ledger(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    module: &str,
) -> Result<Vec<LedgerEntry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT migration_id, position, applied_by, applied_at, checksum FROM migration_ledger \
         WHERE tenant_id = ? AND module_slug = ? ORDER BY position, applied_at",
    )
    .bind(tenant_id)
    .bind(module)
    .fetch_all(conn)
    .await
}

/// Adds `entries` to the ledger of `module` for `tenant_id`. The inverse is
/// [`forget`] with the same entries.
///
/// # Errors
/// [`StoreError::Duplicate`] when one of them is recorded already (another
/// operation applied it first).
pub async fn record(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    module: &str,
    entries: &[LedgerEntry],
) -> Result<(), StoreError> {
    for entry in entries {
        sqlx::query(
            "INSERT INTO migration_ledger (tenant_id, module_slug, migration_id, position, applied_by, applied_at, checksum) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(tenant_id)
        .bind(module)
        .bind(&entry.migration_id)
        .bind(entry.position)
        .bind(&entry.applied_by)
        .bind(&entry.applied_at)
        .bind(&entry.checksum)
        .execute(&mut *conn)
        .await
        .map_err(duplicate_or_db)?;
    }
    Ok(())
}

/// Removes `entries` from the ledger of `module` for `tenant_id`.
///
/// # Errors
/// Database errors.
pub async fn forget(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    module: &str,
    entries: &[LedgerEntry],
) -> Result<(), sqlx::Error> {
    for entry in entries {
        sqlx::query(
            "DELETE FROM migration_ledger WHERE tenant_id = ? AND module_slug = ? AND migration_id = ?",
        )
        .bind(tenant_id)
        .bind(module)
        .bind(&entry.migration_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Removes the whole ledger of `module` for `tenant_id` (the module is
/// being removed). The inverse is [`record`] with the entries [`ledger`]
/// read before.
///
/// # Errors
/// Database errors.
pub async fn forget_all(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    module: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM migration_ledger WHERE tenant_id = ? AND module_slug = ?")
        .bind(tenant_id)
        .bind(module)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control_plane::ControlPlane;
    use crate::control_plane::tenants::{self, Tenant};
    use crate::control_plane::versions::{self, NewVersion};

    const AT: &str = "2026-03-01T00:00:00Z";

    async fn control_plane_with_one_version() -> ControlPlane {
        let control = ControlPlane::in_memory().await.expect("control plane");
        let mut conn = control.pool().acquire().await.expect("conn");
        let tenant = Tenant {
            id: "t_1".into(),
            slug: "acme".into(),
            name: "Acme".into(),
            created_at: AT.into(),
        };
        tenants::insert(&mut conn, &tenant).await.expect("tenant");
        for version in ["1.0.0", "1.1.0"] {
            let new = NewVersion {
                slug: "notes",
                version,
                name: "Notes",
                description: "",
                category: "",
                api: "0.2.0",
                digest: "sha256:00",
                manifest: "",
                package_path: "/nowhere",
                added_at: AT,
            };
            versions::insert(&mut conn, &new).await.expect("version");
        }
        drop(conn);
        control
    }

    fn installation(version: &str, digest: &str) -> Installation {
        Installation {
            module: "notes".into(),
            version: version.into(),
            digest: digest.into(),
            installed_at: AT.into(),
            updated_at: AT.into(),
            revoked: None,
            subscription_revision: None,
        }
    }

    fn entry(id: &str, position: i64, checksum: Option<&str>) -> LedgerEntry {
        LedgerEntry {
            migration_id: id.into(),
            position,
            applied_by: "1.0.0".into(),
            applied_at: AT.into(),
            checksum: checksum.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn every_write_has_an_inverse_and_lost_races_are_typed() {
        let control = control_plane_with_one_version().await;
        let mut conn = control.pool().acquire().await.expect("conn");
        let v1 = installation("1.0.0", "sha256:a");
        insert(&mut conn, "t_1", &v1).await.expect("insert");
        assert!(matches!(
            insert(&mut conn, "t_1", &v1).await,
            Err(StoreError::Duplicate)
        ));

        let v2 = installation("1.1.0", "sha256:b");
        update(&mut conn, "t_1", &v1, &v2).await.expect("update");
        assert!(
            matches!(
                update(&mut conn, "t_1", &v1, &v2).await,
                Err(StoreError::Changed)
            ),
            "an update from a stale read is refused"
        );
        update(&mut conn, "t_1", &v2, &v1)
            .await
            .expect("update back");
        let found = find(&mut conn, "t_1", "notes").await.expect("find");
        assert_eq!(found.map(|i| i.version).as_deref(), Some("1.0.0"));

        let entries = [entry("0001", 0, Some("sha256:x")), entry("0002", 1, None)];
        record(&mut conn, "t_1", "notes", &entries)
            .await
            .expect("record");
        assert!(matches!(
            record(&mut conn, "t_1", "notes", &entries[..1]).await,
            Err(StoreError::Duplicate)
        ));
        let read = ledger(&mut conn, "t_1", "notes").await.expect("ledger");
        forget_all(&mut conn, "t_1", "notes")
            .await
            .expect("forget all");
        record(&mut conn, "t_1", "notes", &read)
            .await
            .expect("put back");
        let again = ledger(&mut conn, "t_1", "notes").await.expect("ledger");
        let fields = |l: &[LedgerEntry]| {
            l.iter()
                .map(|e| {
                    (
                        e.migration_id.clone(),
                        e.position,
                        e.applied_by.clone(),
                        e.applied_at.clone(),
                        e.checksum.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(fields(&read), fields(&again), "put back exactly as read");
        forget(&mut conn, "t_1", "notes", &entries[1..])
            .await
            .expect("forget one");
        let left = ledger(&mut conn, "t_1", "notes").await.expect("ledger");
        assert_eq!(fields(&left), fields(&read[..1]));

        remove(&mut conn, "t_1", &v1).await.expect("remove");
        assert!(matches!(
            remove(&mut conn, "t_1", &v1).await,
            Err(StoreError::Changed)
        ));
        assert!(list(&mut conn, "t_1").await.expect("list").is_empty());
    }
}

/// One installation of any tenant, as the schedules runner lists them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantInstallation {
    /// The tenant's id.
    pub tenant_id: String,
    /// Module slug.
    pub module: String,
    /// Version installed now.
    pub version: String,
    /// First installed (RFC 3339).
    pub installed_at: String,
}

/// Every installation of every tenant, by tenant and module.
///
/// # Errors
/// Database errors.
pub async fn all(conn: &mut SqliteConnection) -> Result<Vec<TenantInstallation>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tenant_id, module_slug AS module, version, installed_at FROM installations \
         ORDER BY tenant_id, module_slug",
    )
    .fetch_all(conn)
    .await
}
