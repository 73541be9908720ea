//! The `tenants` table: the organisations using the host.

use serde::Serialize;
use sqlx::SqliteConnection;

use super::{StoreError, duplicate_or_db};

/// A tenant.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Tenant {
    /// Internal id (`t_` and 16 hex digits); names the tenant's database
    /// file and never changes.
    pub id: String,
    /// Public identifier used in URLs; unique.
    pub slug: String,
    /// Display name (1 to 200 characters).
    pub name: String,
    /// When it was created (RFC 3339, from the host's clock).
    pub created_at: String,
}

const COLUMNS: &str = "id, slug, name, created_at";

/// Records `tenant`.
///
/// # Errors
/// [`StoreError::Duplicate`] when its id or slug is taken.
pub async fn insert(conn: &mut SqliteConnection, tenant: &Tenant) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO tenants (id, slug, name, created_at) VALUES (?, ?, ?, ?)")
        .bind(&tenant.id)
        .bind(&tenant.slug)
        .bind(&tenant.name)
        .bind(&tenant.created_at)
        .execute(conn)
        .await
        .map_err(duplicate_or_db)?;
    Ok(())
}

/// Every tenant, oldest first (by slug among tenants created at the same
/// instant).
///
/// # Errors
/// Database errors.
pub async fn list(conn: &mut SqliteConnection) -> Result<Vec<Tenant>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM tenants ORDER BY created_at, slug"
    ))
    .fetch_all(conn)
    .await
}

/// The tenant with `slug`, if any.
///
/// # Errors
/// Database errors.
pub async fn by_slug(
    conn: &mut SqliteConnection,
    slug: &str,
) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM tenants WHERE slug = ?"))
        .bind(slug)
        .fetch_optional(conn)
        .await
}

/// The tenant with internal id `id`, if any.
///
/// # Errors
/// Database errors.
pub async fn by_id(conn: &mut SqliteConnection, id: &str) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM tenants WHERE id = ?"))
        .bind(id)
        .fetch_optional(conn)
        .await
}
