//! The `tenant_tokens` table: tenant API tokens, stored only as hashes.

use serde::Serialize;
use sqlx::SqliteConnection;

/// A tenant token as listed (never the secret, never its hash).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TokenInfo {
    /// Token id (`tok_` and 16 hex digits).
    pub id: String,
    /// Name given at creation (1 to 100 characters).
    pub name: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Revocation time (RFC 3339), if revoked; a revoked token never works
    /// again.
    pub revoked_at: Option<String>,
}

/// A token that still works, as authentication needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActiveToken {
    /// Token id (`tok_` and 16 hex digits), as [`TokenInfo::id`].
    pub id: String,
    /// The tenant it acts for.
    pub tenant_id: String,
    /// The name given at creation.
    pub name: String,
}

const COLUMNS: &str = "id, name, created_at, revoked_at";

/// Records `info` as a token of `tenant_id` whose secret hashes to `hash`.
///
/// # Errors
/// Database errors.
pub async fn insert(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    info: &TokenInfo,
    hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tenant_tokens (id, tenant_id, name, token_hash, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&info.id)
    .bind(tenant_id)
    .bind(&info.name)
    .bind(hash)
    .bind(&info.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The unrevoked token whose secret hashes to `hash`, if any.
///
/// # Errors
/// Database errors.
pub async fn active_by_hash(
    conn: &mut SqliteConnection,
    hash: &str,
) -> Result<Option<ActiveToken>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, tenant_id, name FROM tenant_tokens WHERE token_hash = ? AND revoked_at IS NULL",
    )
    .bind(hash)
    .fetch_optional(conn)
    .await
}

/// The tokens of `tenant_id`, oldest first.
///
/// # Errors
/// Database errors.
pub async fn list(
    conn: &mut SqliteConnection,
    tenant_id: &str,
) -> Result<Vec<TokenInfo>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM tenant_tokens WHERE tenant_id = ? ORDER BY created_at, id"
    ))
    .bind(tenant_id)
    .fetch_all(conn)
    .await
}

/// Revokes token `token_id` of `tenant_id` at `at` (RFC 3339); a token
/// revoked before keeps its first revocation time. Returns the token as it
/// now stands, `None` when the tenant has no such token.
///
/// # Errors
/// Database errors.
pub async fn revoke(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    token_id: &str,
    at: &str,
) -> Result<Option<TokenInfo>, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE tenant_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND tenant_id = ?",
    )
    .bind(at)
    .bind(token_id)
    .bind(tenant_id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM tenant_tokens WHERE id = ?"))
        .bind(token_id)
        .fetch_optional(conn)
        .await
}
