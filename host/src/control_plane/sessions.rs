//! The `user_sessions` table: users' sign-in sessions, stored as hashes
//! of their tokens (and of their CSRF tokens).

use serde::Serialize;
use sqlx::SqliteConnection;

use super::users::UserRow;

/// A session as stored (no secret).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SessionRow {
    /// `ses_` and 16 hex digits.
    pub id: String,
    /// Whose session it is.
    pub user_id: String,
    /// RFC 3339.
    pub created_at: String,
    /// Unix seconds of the last request seen (advanced at most once a
    /// minute).
    pub last_seen: i64,
    /// Unix seconds: the absolute expiry.
    pub expires_at: i64,
    /// RFC 3339, when revoked (signed out).
    pub revoked_at: Option<String>,
    /// The client address at sign-in.
    pub client: Option<String>,
}

/// A session that was not revoked, with its user and its CSRF token's
/// hash.
#[derive(Debug, Clone)]
pub struct LiveSession {
    /// The session.
    pub session: SessionRow,
    /// Its CSRF token's hash.
    pub csrf_hash: String,
    /// Its user, as now stored.
    pub user: UserRow,
}

const COLUMNS: &str = "id, user_id, created_at, last_seen, expires_at, revoked_at, client";

/// Records `session`, whose token and CSRF token hash to `token_hash` and
/// `csrf_hash`.
///
/// # Errors
/// Database errors.
pub async fn insert(
    conn: &mut SqliteConnection,
    session: &SessionRow,
    token_hash: &str,
    csrf_hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO user_sessions (id, user_id, token_hash, csrf_hash, created_at, last_seen, \
         expires_at, client) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&session.id)
    .bind(&session.user_id)
    .bind(token_hash)
    .bind(csrf_hash)
    .bind(&session.created_at)
    .bind(session.last_seen)
    .bind(session.expires_at)
    .bind(&session.client)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Joined {
    #[sqlx(flatten)]
    session: SessionRow,
    csrf_hash: String,
    #[sqlx(rename = "u_id")]
    u_id: String,
    tenant_id: String,
    email: String,
    email_key: String,
    display_name: String,
    role: String,
    status: String,
    member_number: Option<String>,
    password_hash: Option<String>,
    u_created_at: String,
    updated_at: String,
}

/// The unrevoked session whose token hashes to `token_hash`, with its user.
///
/// # Errors
/// Database errors.
pub async fn live_by_hash(
    conn: &mut SqliteConnection,
    token_hash: &str,
) -> Result<Option<LiveSession>, sqlx::Error> {
    let row: Option<Joined> = sqlx::query_as(
        "SELECT s.id, s.user_id, s.created_at, s.last_seen, s.expires_at, s.revoked_at, s.client, \
         s.csrf_hash, u.id AS u_id, u.tenant_id, u.email, u.email_key, u.display_name, u.role, \
         u.status, u.member_number, u.password_hash, u.created_at AS u_created_at, u.updated_at \
         FROM user_sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.token_hash = ? AND s.revoked_at IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|j| LiveSession {
        session: j.session,
        csrf_hash: j.csrf_hash,
        user: UserRow {
            id: j.u_id,
            tenant_id: j.tenant_id,
            email: j.email,
            email_key: j.email_key,
            display_name: j.display_name,
            role: j.role,
            status: j.status,
            member_number: j.member_number,
            password_hash: j.password_hash,
            created_at: j.u_created_at,
            updated_at: j.updated_at,
        },
    }))
}

/// The sessions of `user_id`, newest first (revoked ones included).
///
/// # Errors
/// Database errors.
pub async fn for_user(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> Result<Vec<SessionRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM user_sessions WHERE user_id = ? ORDER BY created_at DESC, id"
    ))
    .bind(user_id)
    .fetch_all(conn)
    .await
}

/// Revokes session `id` of `user_id` at `at` (a session revoked before
/// keeps its first time). Returns the session as it now stands.
///
/// # Errors
/// Database errors.
pub async fn revoke(
    conn: &mut SqliteConnection,
    user_id: &str,
    id: &str,
    at: &str,
) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query(
        "UPDATE user_sessions SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND user_id = ?",
    )
    .bind(at)
    .bind(id)
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM user_sessions WHERE id = ? AND user_id = ?"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

/// Revokes every live session of `user_id` at `at` (the user was disabled).
///
/// # Errors
/// Database errors.
pub async fn revoke_all(
    conn: &mut SqliteConnection,
    user_id: &str,
    at: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE user_sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
    )
    .bind(at)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Records that session `id` was used at `at` (unix seconds).
///
/// # Errors
/// Database errors.
pub async fn touch(conn: &mut SqliteConnection, id: &str, at: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE user_sessions SET last_seen = ? WHERE id = ? AND last_seen < ?")
        .bind(at)
        .bind(id)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}
