//! The `mail_notice_cursor` table: the last billing outbox event the host
//! has turned into email notices (see `crate::mail::notices`).

use sqlx::SqliteConnection;

/// The id of the last outbox event handled (0 before the first).
///
/// # Errors
/// Database failures.
pub async fn cursor(conn: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
    let last: Option<i64> =
        sqlx::query_scalar("SELECT last_outbox_id FROM mail_notice_cursor WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await?;
    Ok(last.unwrap_or(0))
}

/// Records that every outbox event up to `last` was handled (never moves
/// back).
///
/// # Errors
/// Database failures.
pub async fn advance(conn: &mut SqliteConnection, last: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO mail_notice_cursor (id, last_outbox_id) VALUES (1, ?) \
         ON CONFLICT (id) DO UPDATE SET last_outbox_id = max(last_outbox_id, excluded.last_outbox_id)",
    )
    .bind(last)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
