//! The host's event tables in a tenant database: the outbox modules emit
//! into ([`OUTBOX`]), the webhook delivery log ([`WEBHOOK_DELIVERIES`]) and
//! the deliveries to subscriber modules ([`MODULE_DELIVERIES`]).
//!
//! Every statement over these tables is here. The `events` capability
//! writes the outbox in the call's own transaction (so a call that rolls
//! back emits nothing); the event delivery service reads it, fans each
//! event out into one delivery row per webhook endpoint and per subscriber,
//! and records every attempt. Times the worker compares (when an attempt is
//! due) are unix milliseconds of the host clock; the rest is shown as RFC
//! 3339 by the API.
//!
//! The tables start with `_souk_`, so no module statement can name them.
//!
//! Keys are plain rowids (no `AUTOINCREMENT`, which would add SQLite's
//! `sqlite_sequence` table to every tenant database): SQLite gives a new row
//! one more than the largest key, so keys only grow as long as the newest
//! row is never deleted — the retention step (`crate::retention`), the one
//! place that deletes rows, keeps the newest one.

use sqlx::SqliteConnection;

/// The outbox: one row per emitted event, `seq` ordered per tenant.
pub const OUTBOX: &str = "_souk_events";
/// One row per (webhook endpoint, event) and per redelivery.
pub const WEBHOOK_DELIVERIES: &str = "_souk_webhook_deliveries";
/// One row per (subscriber module, event).
pub const MODULE_DELIVERIES: &str = "_souk_event_deliveries";

/// Creates the tables (tenant migration; idempotent).
///
/// # Errors
/// Database errors.
pub async fn create_tables(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    for statement in [
        "CREATE TABLE IF NOT EXISTS _souk_events (
            seq        INTEGER PRIMARY KEY,
            module     TEXT NOT NULL,
            type       TEXT NOT NULL,
            payload    TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            fanned_out INTEGER NOT NULL DEFAULT 0
        )",
        "CREATE INDEX IF NOT EXISTS _souk_events_unfanned ON _souk_events (seq) WHERE fanned_out = 0",
        "CREATE TABLE IF NOT EXISTS _souk_webhook_deliveries (
            id               INTEGER PRIMARY KEY,
            endpoint_id      TEXT NOT NULL,
            module           TEXT NOT NULL,
            event_seq        INTEGER NOT NULL REFERENCES _souk_events (seq),
            status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
            attempts         INTEGER NOT NULL DEFAULT 0,
            window_start     INTEGER NOT NULL,
            next_attempt_at  INTEGER,
            last_attempt_at  INTEGER,
            last_status_code INTEGER,
            last_error       TEXT,
            response_excerpt TEXT,
            created_at       INTEGER NOT NULL,
            delivered_at     INTEGER
        )",
        "CREATE INDEX IF NOT EXISTS _souk_webhook_deliveries_by_endpoint ON _souk_webhook_deliveries (endpoint_id, id)",
        "CREATE INDEX IF NOT EXISTS _souk_webhook_deliveries_due ON _souk_webhook_deliveries (event_seq, id) WHERE status = 'pending'",
        "CREATE TABLE IF NOT EXISTS _souk_event_deliveries (
            subscriber      TEXT NOT NULL,
            event_seq       INTEGER NOT NULL REFERENCES _souk_events (seq),
            status          TEXT NOT NULL CHECK (status IN ('pending', 'handled', 'failed', 'skipped')),
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_at INTEGER,
            last_error      TEXT,
            created_at      INTEGER NOT NULL,
            finished_at     INTEGER,
            PRIMARY KEY (subscriber, event_seq)
        )",
        "CREATE INDEX IF NOT EXISTS _souk_event_deliveries_pending ON _souk_event_deliveries (subscriber, event_seq) WHERE status = 'pending'",
    ] {
        sqlx::query(statement).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Indexes that look delivery rows up by event, for the retention step's
/// pruning of events no delivery names (`crate::retention`; tenant
/// migration, idempotent): without them each event checked would scan both
/// logs.
///
/// # Errors
/// Database errors.
pub async fn create_event_indexes(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    for statement in [
        "CREATE INDEX IF NOT EXISTS _souk_webhook_deliveries_by_event \
         ON _souk_webhook_deliveries (event_seq)",
        "CREATE INDEX IF NOT EXISTS _souk_event_deliveries_by_event \
         ON _souk_event_deliveries (event_seq)",
    ] {
        sqlx::query(statement).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The id of the event at `seq`: `evt_` and 16 digits, so ids sort in
/// emission order and are unique per tenant.
pub fn event_id(seq: i64) -> String {
    format!("evt_{seq:016}")
}

/// The `seq` of an event id made by [`event_id`].
pub fn event_seq(id: &str) -> Option<i64> {
    let digits = id.strip_prefix("evt_")?;
    if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Unix milliseconds of `at`, as these tables store instants.
pub fn millis(at: time::OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The instant of unix milliseconds `ms`.
pub fn instant(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Writes one event into the outbox; answers its `seq`.
///
/// # Errors
/// Database errors.
pub async fn insert_event(
    conn: &mut SqliteConnection,
    module: &str,
    event_type: &str,
    payload: &str,
    created_at_ms: i64,
) -> Result<i64, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO _souk_events (module, type, payload, created_at) VALUES (?, ?, ?, ?)",
    )
    .bind(module)
    .bind(event_type)
    .bind(payload)
    .bind(created_at_ms)
    .execute(conn)
    .await?;
    Ok(done.last_insert_rowid())
}

/// An event as the outbox holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredEvent {
    /// Position in the tenant's outbox.
    pub seq: i64,
    /// The module that emitted it.
    pub module: String,
    /// Its type.
    #[sqlx(rename = "type")]
    pub event_type: String,
    /// Its JSON payload, as emitted.
    pub payload: String,
    /// When it was emitted (unix ms).
    pub created_at: i64,
}

const EVENT_COLUMNS: &str = "seq, module, type, payload, created_at";

/// The oldest events not fanned out yet, at most `limit`.
///
/// # Errors
/// Database errors.
pub async fn unfanned(
    conn: &mut SqliteConnection,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM _souk_events WHERE fanned_out = 0 ORDER BY seq LIMIT ?"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The event at `seq`.
///
/// # Errors
/// Database errors.
pub async fn event(
    conn: &mut SqliteConnection,
    seq: i64,
) -> Result<Option<StoredEvent>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {EVENT_COLUMNS} FROM _souk_events WHERE seq = ?"
    ))
    .bind(seq)
    .fetch_optional(conn)
    .await
}

/// Marks the event at `seq` fanned out.
///
/// # Errors
/// Database errors.
pub async fn mark_fanned_out(conn: &mut SqliteConnection, seq: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE _souk_events SET fanned_out = 1 WHERE seq = ?")
        .bind(seq)
        .execute(conn)
        .await?;
    Ok(())
}

/// Queues a webhook delivery of event `seq` to `endpoint_id`, due at
/// `now_ms`; answers its id.
///
/// # Errors
/// Database errors.
pub async fn queue_webhook(
    conn: &mut SqliteConnection,
    endpoint_id: &str,
    module: &str,
    seq: i64,
    now_ms: i64,
) -> Result<i64, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO _souk_webhook_deliveries
           (endpoint_id, module, event_seq, status, window_start, next_attempt_at, created_at)
         VALUES (?, ?, ?, 'pending', ?, ?, ?)",
    )
    .bind(endpoint_id)
    .bind(module)
    .bind(seq)
    .bind(now_ms)
    .bind(now_ms)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(done.last_insert_rowid())
}

/// Queues a delivery of event `seq` to subscriber module `subscriber`,
/// due at `now_ms` (once: a second fan-out of the same event changes
/// nothing).
///
/// # Errors
/// Database errors.
pub async fn queue_module(
    conn: &mut SqliteConnection,
    subscriber: &str,
    seq: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT OR IGNORE INTO _souk_event_deliveries
           (subscriber, event_seq, status, next_attempt_at, created_at)
         VALUES (?, ?, 'pending', ?, ?)",
    )
    .bind(subscriber)
    .bind(seq)
    .bind(now_ms)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// One webhook delivery, with the event it carries.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookDelivery {
    /// The delivery's id.
    pub id: i64,
    /// The endpoint it goes to.
    pub endpoint_id: String,
    /// The module whose event it is.
    pub module: String,
    /// The event's position in the outbox.
    pub event_seq: i64,
    /// The event's type.
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// When the retry window began (unix ms): queued, or redelivered.
    pub window_start: i64,
    /// When the next attempt is due (unix ms), while pending.
    pub next_attempt_at: Option<i64>,
    /// When the last attempt was made (unix ms).
    pub last_attempt_at: Option<i64>,
    /// The receiver's HTTP status at the last attempt, if it answered.
    pub last_status_code: Option<i64>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// A short printable excerpt of the receiver's last answer.
    pub response_excerpt: Option<String>,
    /// When it was queued (unix ms).
    pub created_at: i64,
    /// When it was delivered (unix ms).
    pub delivered_at: Option<i64>,
}

const DELIVERY_COLUMNS: &str = "d.id, d.endpoint_id, d.module, d.event_seq, e.type AS event_type, \
     d.status, d.attempts, d.window_start, d.next_attempt_at, d.last_attempt_at, \
     d.last_status_code, d.last_error, d.response_excerpt, d.created_at, d.delivered_at";

/// Pending webhook deliveries due at `now_ms`, in event order, at most
/// `limit`.
///
/// # Errors
/// Database errors.
pub async fn due_webhooks(
    conn: &mut SqliteConnection,
    now_ms: i64,
    limit: i64,
) -> Result<Vec<WebhookDelivery>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM _souk_webhook_deliveries d
         JOIN _souk_events e ON e.seq = d.event_seq
         WHERE d.status = 'pending' AND d.next_attempt_at <= ?
         ORDER BY d.event_seq, d.id LIMIT ?"
    ))
    .bind(now_ms)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The earliest time a pending webhook delivery is due (unix ms).
///
/// # Errors
/// Database errors.
pub async fn next_webhook_due(conn: &mut SqliteConnection) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM _souk_webhook_deliveries WHERE status = 'pending'",
    )
    .fetch_one(conn)
    .await
}

/// One page of `endpoint_id`'s deliveries, newest first, those with an id
/// below `before` when given.
///
/// # Errors
/// Database errors.
pub async fn webhook_page(
    conn: &mut SqliteConnection,
    endpoint_id: &str,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<WebhookDelivery>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM _souk_webhook_deliveries d
         JOIN _souk_events e ON e.seq = d.event_seq
         WHERE d.endpoint_id = ? AND d.id < ?
         ORDER BY d.id DESC LIMIT ?"
    ))
    .bind(endpoint_id)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The delivery `id` of `endpoint_id`.
///
/// # Errors
/// Database errors.
pub async fn webhook_delivery(
    conn: &mut SqliteConnection,
    endpoint_id: &str,
    id: i64,
) -> Result<Option<WebhookDelivery>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM _souk_webhook_deliveries d
         JOIN _souk_events e ON e.seq = d.event_seq
         WHERE d.endpoint_id = ? AND d.id = ?"
    ))
    .bind(endpoint_id)
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// What one webhook attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// When it was made (unix ms).
    pub at: i64,
    /// The receiver's status, if it answered.
    pub status_code: Option<u16>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// A short printable excerpt of the answer.
    pub excerpt: Option<String>,
    /// What becomes of the delivery.
    pub outcome: AttemptOutcome,
}

/// The state a delivery moves to after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Delivered (a 2xx).
    Delivered,
    /// Tried again at this time (unix ms).
    RetryAt(i64),
    /// Given up: the retry window is over.
    Failed,
}

/// Records an attempt of delivery `id`.
///
/// # Errors
/// Database errors.
pub async fn record_webhook_attempt(
    conn: &mut SqliteConnection,
    id: i64,
    attempt: &Attempt,
) -> Result<(), sqlx::Error> {
    let (status, next, delivered) = match attempt.outcome {
        AttemptOutcome::Delivered => ("delivered", None, Some(attempt.at)),
        AttemptOutcome::RetryAt(at) => ("pending", Some(at), None),
        AttemptOutcome::Failed => ("failed", None, None),
    };
    sqlx::query(
        "UPDATE _souk_webhook_deliveries
         SET status = ?, attempts = attempts + 1, next_attempt_at = ?, last_attempt_at = ?,
             last_status_code = ?, last_error = ?, response_excerpt = ?, delivered_at = ?
         WHERE id = ?",
    )
    .bind(status)
    .bind(next)
    .bind(attempt.at)
    .bind(attempt.status_code.map(i64::from))
    .bind(&attempt.error)
    .bind(&attempt.excerpt)
    .bind(delivered)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Puts delivery `id` off until `next_ms` without counting an attempt
/// (deliveries paused while the plan lacks the webhook feature, or the
/// endpoint is disabled), saying why.
///
/// # Errors
/// Database errors.
pub async fn postpone_webhook(
    conn: &mut SqliteConnection,
    id: i64,
    next_ms: i64,
    why: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE _souk_webhook_deliveries SET next_attempt_at = ?, last_error = ? WHERE id = ?",
    )
    .bind(next_ms)
    .bind(why)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives up delivery `id` without an attempt (its endpoint was deleted).
///
/// # Errors
/// Database errors.
pub async fn abandon_webhook(
    conn: &mut SqliteConnection,
    id: i64,
    why: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE _souk_webhook_deliveries SET status = 'failed', next_attempt_at = NULL, last_error = ? WHERE id = ?",
    )
    .bind(why)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A delivery of an event to a subscriber module.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ModuleDelivery {
    /// The subscriber.
    pub subscriber: String,
    /// The event's position in the outbox.
    pub event_seq: i64,
    /// The module that emitted it.
    pub module: String,
    /// Its type.
    pub event_type: String,
    /// `pending`, `handled`, `failed` (retries exhausted) or `skipped`
    /// (the subscriber no longer subscribes or is not installed).
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due (unix ms), while pending.
    pub next_attempt_at: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was queued (unix ms).
    pub created_at: i64,
    /// When it was handled, given up or skipped (unix ms).
    pub finished_at: Option<i64>,
}

const MODULE_COLUMNS: &str = "d.subscriber, d.event_seq, e.module, e.type AS event_type, d.status, \
     d.attempts, d.next_attempt_at, d.last_error, d.created_at, d.finished_at";

/// The subscribers with a pending delivery.
///
/// # Errors
/// Database errors.
pub async fn pending_subscribers(conn: &mut SqliteConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT subscriber FROM _souk_event_deliveries WHERE status = 'pending' ORDER BY subscriber",
    )
    .fetch_all(conn)
    .await
}

/// The oldest pending delivery of `subscriber` (its next event, in order).
///
/// # Errors
/// Database errors.
pub async fn next_for_subscriber(
    conn: &mut SqliteConnection,
    subscriber: &str,
) -> Result<Option<ModuleDelivery>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {MODULE_COLUMNS} FROM _souk_event_deliveries d
         JOIN _souk_events e ON e.seq = d.event_seq
         WHERE d.subscriber = ? AND d.status = 'pending'
         ORDER BY d.event_seq LIMIT 1"
    ))
    .bind(subscriber)
    .fetch_optional(conn)
    .await
}

/// How a delivery to a subscriber ended, or when it is tried again.
#[derive(Debug, Clone, Copy)]
pub struct ModuleOutcome<'a> {
    /// `handled`, `failed`, `skipped`, or `pending` (tried again at
    /// `next_ms`).
    pub status: &'a str,
    /// Whether an attempt was made (counted).
    pub attempted: bool,
    /// When it is tried again (unix ms), while pending.
    pub next_ms: Option<i64>,
    /// Why the last attempt failed, or why it was skipped.
    pub error: Option<&'a str>,
    /// Now (unix ms): the end time of a delivery that ended.
    pub now_ms: i64,
}

/// Records `outcome` for the delivery of event `seq` to `subscriber`.
///
/// # Errors
/// Database errors.
pub async fn record_module_outcome(
    conn: &mut SqliteConnection,
    subscriber: &str,
    seq: i64,
    outcome: ModuleOutcome<'_>,
) -> Result<(), sqlx::Error> {
    let finished = (outcome.status != "pending").then_some(outcome.now_ms);
    sqlx::query(
        "UPDATE _souk_event_deliveries
         SET status = ?, attempts = attempts + ?, next_attempt_at = ?, last_error = ?, finished_at = ?
         WHERE subscriber = ? AND event_seq = ?",
    )
    .bind(outcome.status)
    .bind(i64::from(outcome.attempted))
    .bind(outcome.next_ms)
    .bind(outcome.error)
    .bind(finished)
    .bind(subscriber)
    .bind(seq)
    .execute(conn)
    .await?;
    Ok(())
}

/// One page of the deliveries to subscriber `subscriber`, newest event
/// first, those of events below `before` when given; only those of
/// `status` when given.
///
/// # Errors
/// Database errors.
pub async fn module_page(
    conn: &mut SqliteConnection,
    subscriber: &str,
    status: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<ModuleDelivery>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {MODULE_COLUMNS} FROM _souk_event_deliveries d
         JOIN _souk_events e ON e.seq = d.event_seq
         WHERE d.subscriber = ? AND d.event_seq < ? AND (? IS NULL OR d.status = ?)
         ORDER BY d.event_seq DESC LIMIT ?"
    ))
    .bind(subscriber)
    .bind(before.unwrap_or(i64::MAX))
    .bind(status)
    .bind(status)
    .bind(limit)
    .fetch_all(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_sort_in_order_and_parse_back() {
        assert_eq!(event_id(42), "evt_0000000000000042");
        assert!(event_id(9) < event_id(10));
        assert_eq!(event_seq(&event_id(123_456)), Some(123_456));
        for bad in ["evt_1", "evt_000000000000004x", "x_0000000000000042", ""] {
            assert_eq!(event_seq(bad), None, "{bad}");
        }
    }

    #[test]
    fn instants_round_trip_through_milliseconds() {
        let at =
            time::OffsetDateTime::from_unix_timestamp_nanos(1_798_000_000_678_000_000).unwrap();
        assert_eq!(instant(millis(at)), at);
    }
}
