//! The mail outbox, `_souk_mail`, a host table in every tenant database:
//! one row per message, written in the transaction of the call (or host
//! step) that queued it, so a call that rolls back queues nothing, and
//! updated by the delivery as it tries.
//!
//! A row is `queued` (waiting for its `next_attempt_at`), `sent` (the
//! relay's answer kept) or `failed` (the reason kept); rows are never
//! deleted, so `seq` (the rowid) only grows. Times are Unix
//! seconds of the host clock. Module statements cannot reach the table:
//! its name starts with `_souk_`.

use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::message::{Addressee, Content};

/// Creates the outbox and its index (idempotent; a tenant migration).
///
/// # Errors
/// Database failures.
pub async fn create_tables(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS _souk_mail (\
            seq             INTEGER PRIMARY KEY,\
            id              TEXT NOT NULL UNIQUE,\
            kind            TEXT NOT NULL CHECK (kind IN ('module', 'notice')),\
            module          TEXT,\
            dedupe_key      TEXT UNIQUE,\
            to_user         TEXT NOT NULL,\
            to_address      TEXT NOT NULL,\
            to_name         TEXT NOT NULL,\
            subject         TEXT NOT NULL,\
            text_body       TEXT NOT NULL,\
            html_body       TEXT,\
            status          TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed')),\
            attempts        INTEGER NOT NULL DEFAULT 0,\
            queued_at       INTEGER NOT NULL,\
            next_attempt_at INTEGER NOT NULL,\
            finished_at     INTEGER,\
            answer          TEXT\
        )",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "CREATE INDEX IF NOT EXISTS _souk_mail_due ON _souk_mail (next_attempt_at) \
         WHERE status = 'queued'",
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Who queued a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A module's `notify.email`; the slug.
    Module(String),
    /// A host notice, queued once per dedupe key (e.g.
    /// `trial_ending/<tenant>/<module>/<instant>/<user>`).
    Notice {
        /// Queued once per key: a second queue with it is a no-op.
        dedupe_key: String,
    },
}

/// A message to put in the outbox.
#[derive(Debug, Clone)]
pub struct NewMail<'a> {
    /// The message's id (`m_` and 32 hex digits), also its idempotency key.
    pub id: &'a str,
    /// Who queued it.
    pub origin: &'a Origin,
    /// The recipient's user id.
    pub to_user: &'a str,
    /// The recipient.
    pub to: &'a Addressee,
    /// What it says.
    pub content: &'a Content,
    /// When it was queued (host clock); it is due at once.
    pub at: OffsetDateTime,
}

/// A new message id: `m_` and 128 random bits in hex.
pub fn new_id() -> String {
    format!("m_{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// Puts `mail` in the outbox (in the caller's transaction). Returns false
/// for a notice whose dedupe key is already queued (nothing written).
///
/// # Errors
/// Database failures.
pub async fn queue(conn: &mut SqliteConnection, mail: NewMail<'_>) -> Result<bool, sqlx::Error> {
    let (kind, module, dedupe) = match mail.origin {
        Origin::Module(slug) => ("module", Some(slug.as_str()), None),
        Origin::Notice { dedupe_key } => ("notice", None, Some(dedupe_key.as_str())),
    };
    let at = mail.at.unix_timestamp();
    let done = sqlx::query(
        "INSERT INTO _souk_mail (id, kind, module, dedupe_key, to_user, to_address, to_name, \
         subject, text_body, html_body, status, queued_at, next_attempt_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?) ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(mail.id)
    .bind(kind)
    .bind(module)
    .bind(dedupe)
    .bind(mail.to_user)
    .bind(mail.to.address())
    .bind(mail.to.name())
    .bind(mail.content.subject())
    .bind(mail.content.text())
    .bind(mail.content.html())
    .bind(at)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A queued message, as the delivery reads it.
#[derive(Debug, Clone)]
pub struct QueuedMail {
    /// The message's id.
    pub id: String,
    /// The recipient.
    pub to: Addressee,
    /// What it says.
    pub content: Content,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it was queued.
    pub queued_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct QueuedRow {
    id: String,
    to_address: String,
    to_name: String,
    subject: String,
    text_body: String,
    html_body: Option<String>,
    attempts: i64,
    queued_at: i64,
}

/// Queued messages due at `now`, oldest first, at most `limit`.
///
/// A row whose recipient no longer parses (written by an older host with
/// looser rules) comes back as `Err` with its id, for the caller to fail.
///
/// # Errors
/// Database failures.
pub async fn due(
    conn: &mut SqliteConnection,
    now: OffsetDateTime,
    limit: i64,
) -> Result<Vec<Result<QueuedMail, (String, String)>>, sqlx::Error> {
    let rows: Vec<QueuedRow> = sqlx::query_as(
        "SELECT id, to_address, to_name, subject, text_body, html_body, attempts, queued_at \
         FROM _souk_mail WHERE status = 'queued' AND next_attempt_at <= ? ORDER BY seq LIMIT ?",
    )
    .bind(now.unix_timestamp())
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let to = Addressee::parse(&row.to_address, &row.to_name)
                .map_err(|e| (row.id.clone(), e.to_string()))?;
            Ok(QueuedMail {
                id: row.id,
                to,
                content: Content::from_outbox(row.subject, row.text_body, row.html_body),
                attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
                queued_at: OffsetDateTime::from_unix_timestamp(row.queued_at)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            })
        })
        .collect())
}

/// The earliest `next_attempt_at` of a queued message, if any.
///
/// # Errors
/// Database failures.
pub async fn next_due(conn: &mut SqliteConnection) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    let at: Option<i64> =
        sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM _souk_mail WHERE status = 'queued'")
            .fetch_one(&mut *conn)
            .await?;
    Ok(at.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok()))
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The relay accepted it; its answer.
    Sent(String),
    /// A transient failure: tried again at `retry_at`.
    Retry {
        /// Why it failed.
        reason: String,
        /// When it is due again.
        retry_at: OffsetDateTime,
    },
    /// A permanent failure (or retries ran out): never tried again.
    Failed(String),
}

/// Records `attempt` for message `id` (still queued only), at `now`.
///
/// # Errors
/// Database failures.
pub async fn record(
    conn: &mut SqliteConnection,
    id: &str,
    attempt: &Attempt,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let now = now.unix_timestamp();
    let query = match attempt {
        Attempt::Sent(answer) => sqlx::query(
            "UPDATE _souk_mail SET status = 'sent', attempts = attempts + 1, finished_at = ?, \
             answer = ? WHERE id = ? AND status = 'queued'",
        )
        .bind(now)
        .bind(answer),
        Attempt::Failed(reason) => sqlx::query(
            "UPDATE _souk_mail SET status = 'failed', attempts = attempts + 1, finished_at = ?, \
             answer = ? WHERE id = ? AND status = 'queued'",
        )
        .bind(now)
        .bind(reason),
        Attempt::Retry { reason, retry_at } => sqlx::query(
            "UPDATE _souk_mail SET attempts = attempts + 1, next_attempt_at = ?, answer = ? \
             WHERE id = ? AND status = 'queued'",
        )
        .bind(retry_at.unix_timestamp())
        .bind(reason),
    };
    query.bind(id).execute(&mut *conn).await?;
    Ok(())
}

/// Fails message `id` without an attempt (it cannot be sent as stored).
///
/// # Errors
/// Database failures.
pub async fn fail_unsendable(
    conn: &mut SqliteConnection,
    id: &str,
    reason: &str,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE _souk_mail SET status = 'failed', finished_at = ?, answer = ? \
         WHERE id = ? AND status = 'queued'",
    )
    .bind(now.unix_timestamp())
    .bind(reason)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One line of the tenant's mail log (no bodies).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct LogEntry {
    /// Position in the log, increasing; pass the last one as `after`.
    pub seq: i64,
    /// The message's id.
    pub id: String,
    /// `module` or `notice`.
    pub kind: String,
    /// The module that queued it (`module` messages).
    pub module: Option<String>,
    /// The recipient's user id.
    pub to_user: String,
    /// The recipient's address.
    pub to_address: String,
    /// The recipient's display name.
    pub to_name: String,
    /// The subject.
    pub subject: String,
    /// `queued`, `sent` or `failed`.
    pub status: String,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// When it was queued, Unix seconds (host clock).
    pub queued_at: i64,
    /// When a queued message is tried next, Unix seconds.
    pub next_attempt_at: i64,
    /// When it was sent or failed for good, Unix seconds.
    pub finished_at: Option<i64>,
    /// The relay's answer (`sent`), the reason (`failed`), or the last
    /// transient failure (`queued`).
    pub answer: Option<String>,
}

/// The log after `after` (exclusive), oldest first, at most `limit`.
///
/// # Errors
/// Database failures.
pub async fn log(
    conn: &mut SqliteConnection,
    after: i64,
    limit: i64,
) -> Result<Vec<LogEntry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT seq, id, kind, module, to_user, to_address, to_name, subject, status, attempts, \
         queued_at, next_attempt_at, finished_at, answer FROM _souk_mail WHERE seq > ? \
         ORDER BY seq LIMIT ?",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

#[cfg(test)]
mod tests {
    use sqlx::Connection as _;

    use super::*;
    use crate::capabilities::notify::message::MessageLimits;

    async fn conn() -> SqliteConnection {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        create_tables(&mut conn).await.unwrap();
        create_tables(&mut conn).await.unwrap();
        conn
    }

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    async fn put(conn: &mut SqliteConnection, id: &str, origin: &Origin, secs: i64) -> bool {
        let to = Addressee::parse("ana@example.com", "Ana").unwrap();
        let content = Content::parse("Hi", "Hello", None, MessageLimits::default()).unwrap();
        queue(
            conn,
            NewMail {
                id,
                origin,
                to_user: "u1",
                to: &to,
                content: &content,
                at: at(secs),
            },
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_notice_is_queued_once_per_dedupe_key() {
        let mut conn = conn().await;
        let notice = Origin::Notice {
            dedupe_key: "trial_ending/t/m/1".to_owned(),
        };
        assert!(put(&mut conn, "m_1", &notice, 0).await);
        assert!(!put(&mut conn, "m_2", &notice, 0).await);
        let module = Origin::Module("cards".to_owned());
        assert!(put(&mut conn, "m_3", &module, 0).await);
        assert!(put(&mut conn, "m_4", &module, 0).await);
        assert_eq!(log(&mut conn, 0, 10).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_retry_waits_for_its_time_and_a_result_is_final() {
        let mut conn = conn().await;
        let module = Origin::Module("cards".to_owned());
        put(&mut conn, "m_1", &module, 0).await;
        put(&mut conn, "m_2", &module, 0).await;
        assert_eq!(due(&mut conn, at(0), 10).await.unwrap().len(), 2);
        let retry = Attempt::Retry {
            reason: "451 busy".to_owned(),
            retry_at: at(30),
        };
        record(&mut conn, "m_1", &retry, at(0)).await.unwrap();
        record(
            &mut conn,
            "m_2",
            &Attempt::Failed("550 no".to_owned()),
            at(0),
        )
        .await
        .unwrap();
        assert!(due(&mut conn, at(29), 10).await.unwrap().is_empty());
        assert_eq!(next_due(&mut conn).await.unwrap(), Some(at(30)));
        let again = due(&mut conn, at(30), 10).await.unwrap();
        assert_eq!(again.len(), 1);
        let mail = again[0].as_ref().unwrap();
        assert_eq!((mail.id.as_str(), mail.attempts), ("m_1", 1));
        record(
            &mut conn,
            "m_1",
            &Attempt::Sent("250 ok".to_owned()),
            at(30),
        )
        .await
        .unwrap();
        // A result is final: a late retry record changes nothing.
        record(&mut conn, "m_1", &retry, at(31)).await.unwrap();
        let log = log(&mut conn, 0, 10).await.unwrap();
        assert_eq!(log[0].status, "sent");
        assert_eq!(log[0].attempts, 2);
        assert_eq!(log[0].answer.as_deref(), Some("250 ok"));
        assert_eq!(log[1].status, "failed");
        assert_eq!(next_due(&mut conn).await.unwrap(), None);
    }
}
