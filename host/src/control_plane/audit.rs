//! The `audit_events` table: every install, upgrade, uninstall and
//! restore — who, when, what.

use serde::Serialize;
use sqlx::SqliteConnection;

/// One audit event.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditEvent {
    /// Sequence number, increasing across all tenants (never reused).
    pub id: i64,
    /// When it happened (RFC 3339, from the host's clock).
    pub at: String,
    /// The module it concerns; none for a people event (sign-ins, users,
    /// sessions, API keys: those name their module in `detail`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module_slug: Option<String>,
    /// `install`, `upgrade`, `uninstall` or `restore`; people events:
    /// `login`, `login_failed`, `logout`, `user_create`, `user_update`,
    /// `user_delete`, `invitation_accept`, `session_revoke`,
    /// `api_key_create`, `api_key_revoke`; payments: `payment_manual` (a
    /// bank transfer the operator recorded), `payment_refund`, `payment_void`
    /// (an open invoice the operator voided).
    pub action: String,
    /// The version installed before (none for an install or restore).
    pub from_version: Option<String>,
    /// The version installed after (none for an uninstall).
    pub to_version: Option<String>,
    /// Who: `operator`, `tenant_token`, `user` or `anonymous`.
    pub actor_kind: String,
    /// Who: the token id (`operator` for the operator).
    pub actor_id: String,
    /// Who: the token's name.
    pub actor_name: String,
    /// What else happened (the archive written, why it was forced or
    /// rolled back).
    pub detail: Option<String>,
}

/// An event to record.
#[derive(Debug, Clone)]
pub struct NewAuditEvent<'a> {
    /// When (RFC 3339).
    pub at: &'a str,
    /// The tenant it concerns.
    pub tenant_id: &'a str,
    /// The module it concerns.
    pub module: &'a str,
    /// One of the actions [`AuditEvent::action`] lists.
    pub action: &'a str,
    /// The version installed before; `None` for an install or restore.
    pub from: Option<&'a str>,
    /// The version installed after; `None` for an uninstall.
    pub to: Option<&'a str>,
    /// Who: kind, as [`AuditEvent::actor_kind`] spells it.
    pub actor_kind: Option<&'a str>,
    /// Who: the caller's stable id (a token id, or `operator`).
    pub actor_id: &'a str,
    /// Who: the caller's display name (the token's name, or `operator`).
    pub actor_name: &'a str,
    /// Free text for the log (the archive written, why it was forced or
    /// rolled back); `None` when there is nothing more to say.
    pub detail: Option<&'a str>,
}

/// Records `event`; returns its id, which [`remove`] takes to undo it.
///
/// # Errors
/// Database errors.
pub async fn record(
    conn: &mut SqliteConnection,
    event: &NewAuditEvent<'_>,
) -> Result<i64, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO audit_events (at, tenant_id, module_slug, action, from_version, to_version, \
         actor_kind, actor_id, actor_name, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(event.at)
    .bind(event.tenant_id)
    .bind(event.module)
    .bind(event.action)
    .bind(event.from)
    .bind(event.to)
    .bind(event.actor_kind)
    .bind(event.actor_id)
    .bind(event.actor_name)
    .bind(event.detail)
    .execute(conn)
    .await?;
    Ok(done.last_insert_rowid())
}

/// Records an event that concerns no module (a people event: see
/// [`AuditEvent::action`]); returns its id.
///
/// # Errors
/// Database errors.
pub async fn record_host_event(
    conn: &mut SqliteConnection,
    event: &NewAuditEvent<'_>,
) -> Result<i64, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO audit_events (at, tenant_id, module_slug, action, actor_kind, actor_id, \
         actor_name, detail) VALUES (?, ?, NULL, ?, ?, ?, ?, ?)",
    )
    .bind(event.at)
    .bind(event.tenant_id)
    .bind(event.action)
    .bind(event.actor_kind)
    .bind(event.actor_id)
    .bind(event.actor_name)
    .bind(event.detail)
    .execute(conn)
    .await?;
    Ok(done.last_insert_rowid())
}

/// Removes event `id` (its operation did not happen after all). The
/// inverse of [`record`].
///
/// # Errors
/// Database errors.
pub async fn remove(conn: &mut SqliteConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM audit_events WHERE id = ?")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The audit log of `tenant_id`, oldest first.
///
/// # Errors
/// Database errors.
pub async fn list(
    conn: &mut SqliteConnection,
    tenant_id: &str,
) -> Result<Vec<AuditEvent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, at, module_slug, action, from_version, to_version, actor_kind, actor_id, actor_name, detail \
         FROM audit_events WHERE tenant_id = ? ORDER BY id",
    )
    .bind(tenant_id)
    .fetch_all(conn)
    .await
}
