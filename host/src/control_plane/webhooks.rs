//! The `webhook_endpoints` table: the URLs a tenant has events of a module
//! delivered to, with their signing secrets.
//!
//! Secrets are stored as they are, because the host signs every delivery
//! with them (a hash would not do); the API shows a secret only when it is
//! made (create, rotate) and [`Endpoint`] never serializes it.

use serde::Serialize;
use sqlx::SqliteConnection;

/// A webhook endpoint as stored.
#[derive(Clone, Serialize, sqlx::FromRow)]
pub struct Endpoint {
    /// `whk_` and 16 hex digits.
    pub id: String,
    /// The tenant it belongs to (never shown).
    #[serde(skip)]
    pub tenant_id: String,
    /// The module whose events it receives.
    #[serde(rename = "module")]
    pub module_slug: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The event types it receives, as a JSON array; `None`: every type the
    /// module emits.
    #[serde(skip)]
    pub event_types: Option<String>,
    /// A note from the tenant.
    pub description: String,
    /// Whether deliveries are made (a disabled endpoint's deliveries wait).
    pub enabled: bool,
    /// The signing secret (never serialized).
    #[serde(skip)]
    pub secret: String,
    /// The secret before the last rotation (never serialized).
    #[serde(skip)]
    pub previous_secret: Option<String>,
    /// Until when the previous secret signs too (RFC 3339).
    pub previous_secret_until: Option<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last changed (RFC 3339).
    pub updated_at: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .field("module", &self.module_slug)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The event types it receives; `None`: all the module emits.
    pub fn types(&self) -> Option<Vec<String>> {
        self.event_types
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
    }

    /// Whether it receives events of `event_type`.
    pub fn receives(&self, event_type: &str) -> bool {
        self.types()
            .is_none_or(|types| types.iter().any(|t| t == event_type))
    }
}

const COLUMNS: &str = "id, tenant_id, module_slug, url, event_types, description, enabled, \
     secret, previous_secret, previous_secret_until, created_at, updated_at";

/// Records a new endpoint.
///
/// # Errors
/// Database errors.
pub async fn insert(conn: &mut SqliteConnection, e: &Endpoint) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO webhook_endpoints ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(&e.id)
    .bind(&e.tenant_id)
    .bind(&e.module_slug)
    .bind(&e.url)
    .bind(&e.event_types)
    .bind(&e.description)
    .bind(e.enabled)
    .bind(&e.secret)
    .bind(&e.previous_secret)
    .bind(&e.previous_secret_until)
    .bind(&e.created_at)
    .bind(&e.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes every field of `e` but its id, tenant, module and creation time.
///
/// # Errors
/// Database errors.
pub async fn update(conn: &mut SqliteConnection, e: &Endpoint) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_endpoints SET url = ?, event_types = ?, description = ?, enabled = ?, \
         secret = ?, previous_secret = ?, previous_secret_until = ?, updated_at = ? \
         WHERE id = ? AND tenant_id = ?",
    )
    .bind(&e.url)
    .bind(&e.event_types)
    .bind(&e.description)
    .bind(e.enabled)
    .bind(&e.secret)
    .bind(&e.previous_secret)
    .bind(&e.previous_secret_until)
    .bind(&e.updated_at)
    .bind(&e.id)
    .bind(&e.tenant_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes endpoint `id` of `tenant_id`; answers whether it existed.
///
/// # Errors
/// Database errors.
pub async fn remove(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    id: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = ? AND tenant_id = ?")
        .bind(id)
        .bind(tenant_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Endpoint `id` of `tenant_id`'s `module`, if there is one.
///
/// # Errors
/// Database errors.
pub async fn find(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    module: &str,
    id: &str,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE id = ? AND tenant_id = ? AND module_slug = ?"
    ))
    .bind(id)
    .bind(tenant_id)
    .bind(module)
    .fetch_optional(conn)
    .await
}

/// Endpoint `id` of `tenant_id`, whatever its module.
///
/// # Errors
/// Database errors.
pub async fn by_id(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    id: &str,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE id = ? AND tenant_id = ?"
    ))
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(conn)
    .await
}

/// The endpoints of `tenant_id`'s `module`, oldest first.
///
/// # Errors
/// Database errors.
pub async fn list(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    module: &str,
) -> Result<Vec<Endpoint>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE tenant_id = ? AND module_slug = ? ORDER BY created_at, id"
    ))
    .bind(tenant_id)
    .bind(module)
    .fetch_all(conn)
    .await
}

/// Every endpoint of `tenant_id`, oldest first.
///
/// # Errors
/// Database errors.
pub async fn list_for_tenant(
    conn: &mut SqliteConnection,
    tenant_id: &str,
) -> Result<Vec<Endpoint>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE tenant_id = ? ORDER BY created_at, id"
    ))
    .bind(tenant_id)
    .fetch_all(conn)
    .await
}

/// How many endpoints `tenant_id`'s `module` has.
///
/// # Errors
/// Database errors.
pub async fn count(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    module: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM webhook_endpoints WHERE tenant_id = ? AND module_slug = ?",
    )
    .bind(tenant_id)
    .bind(module)
    .fetch_one(conn)
    .await
}
