//! The `users` and `user_invitations` tables: a tenant's users and their
//! one-time invitations (stored as token hashes).

use sqlx::SqliteConnection;

use super::{StoreError, duplicate_or_db};

/// A user as stored (the password hash included: never serialize this).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    /// `usr_` and 16 hex digits.
    pub id: String,
    /// The tenant the user belongs to.
    pub tenant_id: String,
    /// The address as given (trimmed).
    pub email: String,
    /// The address lower-cased: unique per tenant.
    pub email_key: String,
    /// The name shown for the user.
    pub display_name: String,
    /// `admin` or `member`.
    pub role: String,
    /// `invited`, `active` or `disabled`.
    pub status: String,
    /// A linked Membership member number.
    pub member_number: Option<String>,
    /// The argon2id PHC string; `None` until an invitation is accepted.
    pub password_hash: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

const COLUMNS: &str = "id, tenant_id, email, email_key, display_name, role, status, \
                       member_number, password_hash, created_at, updated_at";

/// Records `user`.
///
/// # Errors
/// [`StoreError::Duplicate`] when the tenant has a user with that address.
pub async fn insert(conn: &mut SqliteConnection, user: &UserRow) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO users ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(&user.id)
    .bind(&user.tenant_id)
    .bind(&user.email)
    .bind(&user.email_key)
    .bind(&user.display_name)
    .bind(&user.role)
    .bind(&user.status)
    .bind(&user.member_number)
    .bind(&user.password_hash)
    .bind(&user.created_at)
    .bind(&user.updated_at)
    .execute(conn)
    .await
    .map_err(duplicate_or_db)?;
    Ok(())
}

/// User `id` of `tenant_id`.
///
/// # Errors
/// Database errors.
pub async fn by_id(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    id: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE id = ? AND tenant_id = ?"
    ))
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(conn)
    .await
}

/// The user of `tenant_id` whose lower-cased address is `email_key`.
///
/// # Errors
/// Database errors.
pub async fn by_email(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    email_key: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE tenant_id = ? AND email_key = ?"
    ))
    .bind(tenant_id)
    .bind(email_key)
    .fetch_optional(conn)
    .await
}

/// Up to `limit` users of `tenant_id` in creation order, starting after
/// user `after` (a cursor from an earlier page; one that is not the
/// tenant's user gives an empty page).
///
/// # Errors
/// Database errors.
pub async fn page(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<UserRow>, sqlx::Error> {
    let query = match after {
        None => format!(
            "SELECT {COLUMNS} FROM users WHERE tenant_id = ? ORDER BY created_at, id LIMIT ?"
        ),
        Some(_) => format!(
            "SELECT {COLUMNS} FROM users WHERE tenant_id = ? AND (created_at, id) > \
             (SELECT created_at, id FROM users AS cursor WHERE cursor.id = ? AND cursor.tenant_id = ?) \
             ORDER BY created_at, id LIMIT ?"
        ),
    };
    let mut q = sqlx::query_as(&query).bind(tenant_id);
    if let Some(after) = after {
        q = q.bind(after).bind(tenant_id);
    }
    q.bind(limit).fetch_all(conn).await
}

/// Writes the changeable fields of `user` (display name, role, status,
/// member number, password hash, updated time). Returns whether the user
/// still existed.
///
/// # Errors
/// Database errors.
pub async fn save(conn: &mut SqliteConnection, user: &UserRow) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE users SET display_name = ?, role = ?, status = ?, member_number = ?, \
         password_hash = ?, updated_at = ? WHERE id = ? AND tenant_id = ?",
    )
    .bind(&user.display_name)
    .bind(&user.role)
    .bind(&user.status)
    .bind(&user.member_number)
    .bind(&user.password_hash)
    .bind(&user.updated_at)
    .bind(&user.id)
    .bind(&user.tenant_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes user `id` of `tenant_id` with its invitations and sessions.
/// Returns whether there was one.
///
/// # Errors
/// Database errors.
pub async fn delete(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    id: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM users WHERE id = ? AND tenant_id = ?")
        .bind(id)
        .bind(tenant_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// An invitation as read back for acceptance.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InvitationRow {
    /// The invited user.
    pub user_id: String,
    /// The user's tenant.
    pub tenant_id: String,
    /// Unix seconds after which it no longer works.
    pub expires_at: i64,
    /// When it was used (RFC 3339), if it was.
    pub used_at: Option<String>,
}

/// Records a new invitation for `user_id`, replacing any earlier one that
/// was not used.
///
/// # Errors
/// Database errors.
pub async fn invite(
    conn: &mut SqliteConnection,
    user_id: &str,
    token_hash: &str,
    created_at: &str,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM user_invitations WHERE user_id = ? AND used_at IS NULL")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO user_invitations (token_hash, user_id, created_at, expires_at) \
         VALUES (?, ?, ?, ?)",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(created_at)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The invitation whose token hashes to `token_hash`.
///
/// # Errors
/// Database errors.
pub async fn invitation(
    conn: &mut SqliteConnection,
    token_hash: &str,
) -> Result<Option<InvitationRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT i.user_id, u.tenant_id, i.expires_at, i.used_at FROM user_invitations i \
         JOIN users u ON u.id = i.user_id WHERE i.token_hash = ?",
    )
    .bind(token_hash)
    .fetch_optional(conn)
    .await
}

/// Marks the invitation used at `at`; `false` when it already was (so
/// two concurrent acceptances cannot both succeed).
///
/// # Errors
/// Database errors.
pub async fn use_invitation(
    conn: &mut SqliteConnection,
    token_hash: &str,
    at: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE user_invitations SET used_at = ? WHERE token_hash = ? AND used_at IS NULL",
    )
    .bind(at)
    .bind(token_hash)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
