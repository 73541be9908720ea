//! The `api_keys` table: a tenant's API keys, each for one module, stored
//! only as hashes.

use serde::Serialize;
use sqlx::SqliteConnection;

/// An API key as listed (never the key, never its hash).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ApiKeyRow {
    /// `key_` and 16 hex digits.
    pub id: String,
    /// The tenant it acts for.
    #[serde(skip)]
    pub tenant_id: String,
    /// The one module it reaches.
    #[sqlx(rename = "module_slug")]
    pub module: String,
    /// Its name (1 to 100 characters).
    pub name: String,
    /// Whether it may only read (GET and HEAD).
    pub read_only: bool,
    /// RFC 3339.
    pub created_at: String,
    /// Unix seconds of the last call made with it (advanced at most once a
    /// minute).
    #[serde(skip)]
    pub last_used: Option<i64>,
    /// RFC 3339, when revoked.
    pub revoked_at: Option<String>,
}

const COLUMNS: &str =
    "id, tenant_id, module_slug, name, read_only, created_at, last_used, revoked_at";

/// Records `key`, whose secret hashes to `hash`.
///
/// # Errors
/// Database errors.
pub async fn insert(
    conn: &mut SqliteConnection,
    key: &ApiKeyRow,
    hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO api_keys ({COLUMNS}, key_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(&key.id)
    .bind(&key.tenant_id)
    .bind(&key.module)
    .bind(&key.name)
    .bind(key.read_only)
    .bind(&key.created_at)
    .bind(key.last_used)
    .bind(&key.revoked_at)
    .bind(hash)
    .execute(conn)
    .await?;
    Ok(())
}

/// The unrevoked key whose secret hashes to `hash`.
///
/// # Errors
/// Database errors.
pub async fn active_by_hash(
    conn: &mut SqliteConnection,
    hash: &str,
) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL"
    ))
    .bind(hash)
    .fetch_optional(conn)
    .await
}

/// The keys of `tenant_id`, oldest first.
///
/// # Errors
/// Database errors.
pub async fn list(
    conn: &mut SqliteConnection,
    tenant_id: &str,
) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id"
    ))
    .bind(tenant_id)
    .fetch_all(conn)
    .await
}

/// Revokes key `id` of `tenant_id` at `at` (RFC 3339; a key revoked
/// before keeps its first time). Returns the key as it now stands.
///
/// # Errors
/// Database errors.
pub async fn revoke(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    id: &str,
    at: &str,
) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    sqlx::query(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND tenant_id = ?",
    )
    .bind(at)
    .bind(id)
    .bind(tenant_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM api_keys WHERE id = ? AND tenant_id = ?"
    ))
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(conn)
    .await
}

/// Records that key `id` was used at `at` (unix seconds).
///
/// # Errors
/// Database errors.
pub async fn touch(conn: &mut SqliteConnection, id: &str, at: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE api_keys SET last_used = ? WHERE id = ? AND COALESCE(last_used, 0) < ?")
        .bind(at)
        .bind(id)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}
