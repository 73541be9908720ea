//! The `module_versions` table: every module version this host can
//! install, with what its registry says about it (signer, yanked,
//! deprecated, revoked).

use sqlx::SqliteConnection;

use super::{StoreError, duplicate_or_db};

/// One stored module version. Versions are immutable once recorded except
/// for their registry status (the last four fields).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionRow {
    /// Module slug.
    pub slug: String,
    /// Semantic version, as text.
    pub version: String,
    /// Display name, from the manifest.
    pub name: String,
    /// Description, from the manifest.
    pub description: String,
    /// Category, from the manifest.
    pub category: String,
    /// WIT API version the component targets.
    pub api: String,
    /// Package digest (`sha256:...`).
    pub digest: String,
    /// The manifest's YAML text as packaged.
    pub manifest: String,
    /// Where the package file is kept (absolute path on this host).
    pub package_path: String,
    /// When this host added it (RFC 3339).
    pub added_at: String,
    /// The registry key that signed it; `None` until a registry did.
    pub signer: Option<String>,
    /// Why its publisher yanked it (not chosen for new installs).
    pub yanked_reason: Option<String>,
    /// Why its publisher deprecated it.
    pub deprecated_reason: Option<String>,
    /// Why its publisher revoked it (the host will not run it).
    pub revoked_reason: Option<String>,
}

/// A version to record; its registry status starts empty.
#[derive(Debug, Clone)]
pub struct NewVersion<'a> {
    /// Module slug.
    pub slug: &'a str,
    /// Semantic version, as text.
    pub version: &'a str,
    /// Display name, from the manifest.
    pub name: &'a str,
    /// Description, from the manifest.
    pub description: &'a str,
    /// Marketplace category, from the manifest.
    pub category: &'a str,
    /// WIT API version the component targets, `major.minor.patch`.
    pub api: &'a str,
    /// Package digest (`sha256:...`).
    pub digest: &'a str,
    /// The manifest's YAML text.
    pub manifest: &'a str,
    /// Where the package file was written.
    pub package_path: &'a str,
    /// When it is added (RFC 3339).
    pub added_at: &'a str,
}

/// What a registry says about a version.
#[derive(Debug, Clone, Copy)]
pub struct RegistryStatus<'a> {
    /// The key that signed it.
    pub signer: &'a str,
    /// Why it is yanked, if it is.
    pub yanked: Option<&'a str>,
    /// Why it is deprecated, if it is.
    pub deprecated: Option<&'a str>,
    /// Why it is revoked, if it is.
    pub revoked: Option<&'a str>,
}

const COLUMNS: &str = "slug, version, name, description, category, api, digest, manifest, \
     package_path, added_at, signer, yanked_reason, deprecated_reason, revoked_reason";

/// Records a new version.
///
/// # Errors
/// [`StoreError::Duplicate`] when the (slug, version) exists already.
pub async fn insert(conn: &mut SqliteConnection, new: &NewVersion<'_>) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO module_versions ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL)"
    ))
    .bind(new.slug)
    .bind(new.version)
    .bind(new.name)
    .bind(new.description)
    .bind(new.category)
    .bind(new.api)
    .bind(new.digest)
    .bind(new.manifest)
    .bind(new.package_path)
    .bind(new.added_at)
    .execute(conn)
    .await
    .map_err(duplicate_or_db)?;
    Ok(())
}

/// Version `version` of `slug`, if recorded.
///
/// # Errors
/// Database errors.
pub async fn find(
    conn: &mut SqliteConnection,
    slug: &str,
    version: &str,
) -> Result<Option<VersionRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM module_versions WHERE slug = ? AND version = ?"
    ))
    .bind(slug)
    .bind(version)
    .fetch_optional(conn)
    .await
}

/// Every recorded version of `slug`, in no particular order.
///
/// # Errors
/// Database errors.
pub async fn of_module(
    conn: &mut SqliteConnection,
    slug: &str,
) -> Result<Vec<VersionRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM module_versions WHERE slug = ?"
    ))
    .bind(slug)
    .fetch_all(conn)
    .await
}

/// Every recorded version, by slug.
///
/// # Errors
/// Database errors.
pub async fn all(conn: &mut SqliteConnection) -> Result<Vec<VersionRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM module_versions ORDER BY slug"
    ))
    .fetch_all(conn)
    .await
}

/// Every version that is not revoked (what the resolver may choose from).
///
/// # Errors
/// Database errors.
pub async fn not_revoked(conn: &mut SqliteConnection) -> Result<Vec<VersionRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM module_versions WHERE revoked_reason IS NULL"
    ))
    .fetch_all(conn)
    .await
}

/// Versions no registry key has signed yet, by slug, oldest first.
///
/// # Errors
/// Database errors.
pub async fn unsigned(conn: &mut SqliteConnection) -> Result<Vec<VersionRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM module_versions WHERE signer IS NULL ORDER BY slug, added_at"
    ))
    .fetch_all(conn)
    .await
}

/// Sets the registry status of a version; returns whether the version is
/// recorded here (a registry also lists versions this host never added).
///
/// # Errors
/// Database errors.
pub async fn set_registry_status(
    conn: &mut SqliteConnection,
    slug: &str,
    version: &str,
    status: RegistryStatus<'_>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE module_versions SET signer = ?, yanked_reason = ?, deprecated_reason = ?, \
         revoked_reason = ? WHERE slug = ? AND version = ?",
    )
    .bind(status.signer)
    .bind(status.yanked)
    .bind(status.deprecated)
    .bind(status.revoked)
    .bind(slug)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Why version `version` of `slug` was revoked; `None` when it is not
/// revoked or not recorded.
///
/// # Errors
/// Database errors.
pub async fn revoked_reason(
    conn: &mut SqliteConnection,
    slug: &str,
    version: &str,
) -> Result<Option<String>, sqlx::Error> {
    let reason: Option<(Option<String>,)> =
        sqlx::query_as("SELECT revoked_reason FROM module_versions WHERE slug = ? AND version = ?")
            .bind(slug)
            .bind(version)
            .fetch_optional(conn)
            .await?;
    Ok(reason.and_then(|(reason,)| reason))
}
