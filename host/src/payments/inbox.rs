//! Payment attempts and the payment inbox in the control plane.
//!
//! An attempt is one try to pay one invoice with one provider, known to the
//! provider by `provider_ref` (eSewa's `transaction_uuid`, Khalti's `pidx`,
//! Stripe's Checkout Session id, the bank transfer's reference). The inbox
//! holds one row per provider event or confirmation, keyed by (provider,
//! event id); its primary key is what makes the same event twice change
//! nothing. The service writes the inbox row in the same transaction as
//! everything the event changes.

use sqlx::SqliteConnection;
use time::OffsetDateTime;

use crate::billing::plans::Currency;
use crate::clock::rfc3339;

/// A payment provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// eSewa ePay v2.
    Esewa,
    /// Khalti ePayment.
    Khalti,
    /// Stripe Checkout.
    Stripe,
    /// A bank transfer the operator records by hand.
    Manual,
}

impl Provider {
    /// The stable name stored, shown and accepted by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Esewa => "esewa",
            Provider::Khalti => "khalti",
            Provider::Stripe => "stripe",
            Provider::Manual => "manual",
        }
    }

    /// The inverse of [`Provider::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "esewa" => Provider::Esewa,
            "khalti" => Provider::Khalti,
            "stripe" => Provider::Stripe,
            "manual" => Provider::Manual,
            _ => return None,
        })
    }
}

/// What a provider says about a payment, normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    /// Paid (eSewa `COMPLETE`, Khalti `Completed`, Stripe paid).
    Completed,
    /// Not yet (eSewa `PENDING`, Khalti `Pending` / `Initiated`).
    Pending,
    /// The provider cannot say (eSewa `AMBIGUOUS`).
    Ambiguous,
    /// Will not be paid (canceled, expired, not found, failed).
    Failed,
    /// Paid, then refunded (fully or partly).
    Refunded,
}

/// Where an attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptStatus {
    /// Created; the provider has not answered the initiation yet.
    Initiating,
    /// Waiting for the payer or the provider.
    Pending,
    /// The provider's answer was ambiguous; asked again by reconciliation.
    Ambiguous,
    /// Paid and applied.
    Paid,
    /// The provider says it did not or will not pay (final, but a later
    /// confirmed payment is still applied).
    Failed,
    /// Abandoned by Souk (superseded by another attempt, or its invoice
    /// voided): a payment arriving for it is flagged, never granted.
    Canceled,
}

impl AttemptStatus {
    /// The stable name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Initiating => "initiating",
            AttemptStatus::Pending => "pending",
            AttemptStatus::Ambiguous => "ambiguous",
            AttemptStatus::Paid => "paid",
            AttemptStatus::Failed => "failed",
            AttemptStatus::Canceled => "canceled",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "initiating" => AttemptStatus::Initiating,
            "pending" => AttemptStatus::Pending,
            "ambiguous" => AttemptStatus::Ambiguous,
            "paid" => AttemptStatus::Paid,
            "failed" => AttemptStatus::Failed,
            "canceled" => AttemptStatus::Canceled,
            _ => return None,
        })
    }

    /// Whether reconciliation still asks the provider about it.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            AttemptStatus::Initiating | AttemptStatus::Pending | AttemptStatus::Ambiguous
        )
    }
}

/// A payment attempt as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Its id (`pay_` and random hex).
    pub id: String,
    /// The invoice it pays.
    pub invoice_id: String,
    /// The tenant's internal id.
    pub tenant_id: String,
    /// The provider.
    pub provider: Provider,
    /// The provider's identifier of it.
    pub provider_ref: String,
    /// What must be paid, minor units.
    pub amount: i64,
    /// In this currency.
    pub currency: Currency,
    /// Where it stands.
    pub status: AttemptStatus,
    /// Unix seconds of the newest provider event applied to it.
    pub last_event_at: Option<i64>,
    /// Unix seconds when reconciliation asks the provider again.
    pub next_check_at: Option<i64>,
    /// Created (RFC 3339).
    pub created_at: String,
}

/// Why the attempt store failed.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// The control-plane database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A stored row does not parse.
    #[error("payment attempt {id} is corrupt: {what}")]
    Corrupt {
        /// The attempt's id.
        id: String,
        /// What did not parse.
        what: String,
    },
}

/// A new attempt's fields.
#[derive(Debug, Clone, Copy)]
pub struct NewAttempt<'a> {
    /// The invoice it pays.
    pub invoice_id: &'a str,
    /// The tenant's internal id.
    pub tenant_id: &'a str,
    /// The provider.
    pub provider: Provider,
    /// The provider's identifier (may be replaced once the provider
    /// answers the initiation: Khalti's `pidx`, Stripe's session id).
    pub provider_ref: &'a str,
    /// The invoice total.
    pub amount: i64,
    /// Its currency.
    pub currency: Currency,
    /// The initial status.
    pub status: AttemptStatus,
}

/// Writes a new attempt; returns its id.
///
/// # Errors
/// Database failures (a repeated (provider, provider_ref) among them).
pub async fn create_attempt(
    conn: &mut SqliteConnection,
    attempt: NewAttempt<'_>,
    now: OffsetDateTime,
) -> Result<String, InboxError> {
    let id = format!("pay_{}", hex::encode(rand::random::<[u8; 12]>()));
    sqlx::query(
        "INSERT INTO payment_attempts (id, invoice_id, tenant_id, provider, provider_ref, amount, \
         currency, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(attempt.invoice_id)
    .bind(attempt.tenant_id)
    .bind(attempt.provider.as_str())
    .bind(attempt.provider_ref)
    .bind(attempt.amount)
    .bind(attempt.currency.as_str())
    .bind(attempt.status.as_str())
    .bind(rfc3339(now))
    .bind(rfc3339(now))
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

type AttemptRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    Option<i64>,
    Option<i64>,
    String,
);

const ATTEMPT_COLUMNS: &str = "id, invoice_id, tenant_id, provider, provider_ref, amount, \
    currency, status, last_event_at, next_check_at, created_at";

fn attempt(row: AttemptRow) -> Result<Attempt, InboxError> {
    let corrupt = |what: String| InboxError::Corrupt {
        id: row.0.clone(),
        what,
    };
    let provider = Provider::parse(&row.3).ok_or_else(|| corrupt(format!("provider {}", row.3)))?;
    let currency = Currency::parse(&row.6).map_err(corrupt)?;
    let status =
        AttemptStatus::parse(&row.7).ok_or_else(|| corrupt(format!("status {}", row.7)))?;
    Ok(Attempt {
        id: row.0,
        invoice_id: row.1,
        tenant_id: row.2,
        provider,
        provider_ref: row.4,
        amount: row.5,
        currency,
        status,
        last_event_at: row.8,
        next_check_at: row.9,
        created_at: row.10,
    })
}

/// The attempt `provider` knows as `provider_ref`.
///
/// # Errors
/// Database failures; a row that does not parse.
pub async fn attempt_by_ref(
    conn: &mut SqliteConnection,
    provider: Provider,
    provider_ref: &str,
) -> Result<Option<Attempt>, InboxError> {
    let row: Option<AttemptRow> = sqlx::query_as(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM payment_attempts WHERE provider = ? AND provider_ref = ?"
    ))
    .bind(provider.as_str())
    .bind(provider_ref)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(attempt).transpose()
}

/// Attempt `id` (of `tenant_id` when given).
///
/// # Errors
/// Database failures; a row that does not parse.
pub async fn attempt_by_id(
    conn: &mut SqliteConnection,
    id: &str,
    tenant_id: Option<&str>,
) -> Result<Option<Attempt>, InboxError> {
    let row: Option<AttemptRow> = sqlx::query_as(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM payment_attempts WHERE id = ?1 \
         AND (?2 IS NULL OR tenant_id = ?2)"
    ))
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(attempt).transpose()
}

/// Attempts still open whose next check is due at `now` (unix seconds),
/// oldest first, at most `limit`.
///
/// # Errors
/// Database failures; a row that does not parse.
pub async fn due_attempts(
    conn: &mut SqliteConnection,
    now: i64,
    limit: u32,
) -> Result<Vec<Attempt>, InboxError> {
    let rows: Vec<AttemptRow> = sqlx::query_as(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM payment_attempts \
         WHERE status IN ('initiating', 'pending', 'ambiguous') AND next_check_at <= ? \
         ORDER BY next_check_at, id LIMIT ?"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(attempt).collect()
}

/// Sets attempt `id`'s status, newest event time and next check.
///
/// # Errors
/// Database failures.
pub async fn update_attempt(
    conn: &mut SqliteConnection,
    id: &str,
    status: AttemptStatus,
    last_event_at: Option<i64>,
    next_check_at: Option<i64>,
    now: OffsetDateTime,
) -> Result<(), InboxError> {
    sqlx::query(
        "UPDATE payment_attempts SET status = ?, last_event_at = ?, next_check_at = ?, \
         updated_at = ? WHERE id = ?",
    )
    .bind(status.as_str())
    .bind(last_event_at)
    .bind(next_check_at)
    .bind(rfc3339(now))
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Replaces attempt `id`'s provider reference (once the provider named it).
///
/// # Errors
/// Database failures.
pub async fn set_provider_ref(
    conn: &mut SqliteConnection,
    id: &str,
    provider_ref: &str,
    status: AttemptStatus,
    next_check_at: Option<i64>,
    now: OffsetDateTime,
) -> Result<(), InboxError> {
    sqlx::query(
        "UPDATE payment_attempts SET provider_ref = ?, status = ?, next_check_at = ?, \
         updated_at = ? WHERE id = ?",
    )
    .bind(provider_ref)
    .bind(status.as_str())
    .bind(next_check_at)
    .bind(rfc3339(now))
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Cancels every open attempt of `invoice_id` but `keep`.
///
/// # Errors
/// Database failures.
pub async fn cancel_others(
    conn: &mut SqliteConnection,
    invoice_id: &str,
    keep: &str,
    now: OffsetDateTime,
) -> Result<(), InboxError> {
    sqlx::query(
        "UPDATE payment_attempts SET status = 'canceled', next_check_at = NULL, updated_at = ? \
         WHERE invoice_id = ? AND id != ? AND status IN ('initiating', 'pending', 'ambiguous')",
    )
    .bind(rfc3339(now))
    .bind(invoice_id)
    .bind(keep)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What the inbox did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A confirmed payment, applied to its subscriptions.
    Granted,
    /// Pending or ambiguous: held for reconciliation.
    Held,
    /// The provider says the attempt failed.
    Failed,
    /// Changed nothing (an older event, or a payment already applied).
    Ignored,
    /// Recorded for the operator and never granted (a mismatched amount, a
    /// payment for a canceled attempt, an unknown attempt, a refund).
    Flagged,
    /// A provider's subscription event changed a subscription without a
    /// payment (a cancellation scheduled or undone, a plan changed at the
    /// provider, the provider's subscription deleted).
    Applied,
}

impl Outcome {
    /// The stable name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Granted => "granted",
            Outcome::Held => "held",
            Outcome::Failed => "failed",
            Outcome::Ignored => "ignored",
            Outcome::Flagged => "flagged",
            Outcome::Applied => "applied",
        }
    }

    /// The inverse of [`Outcome::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "granted" => Outcome::Granted,
            "held" => Outcome::Held,
            "failed" => Outcome::Failed,
            "ignored" => Outcome::Ignored,
            "flagged" => Outcome::Flagged,
            "applied" => Outcome::Applied,
            _ => return None,
        })
    }
}

/// One inbox row to write.
#[derive(Debug, Clone, Copy)]
pub struct InboxEntry<'a> {
    /// The provider.
    pub provider: Provider,
    /// The provider's event id (or transaction id for a confirmation).
    pub event_id: &'a str,
    /// The attempt it concerns, when known.
    pub attempt_id: Option<&'a str>,
    /// What the provider said.
    pub status: &'a str,
    /// The amount it named.
    pub amount: Option<i64>,
    /// The currency it named.
    pub currency: Option<Currency>,
    /// Unix seconds: the provider's time of the event.
    pub occurred_at: i64,
    /// What was done.
    pub outcome: Outcome,
    /// Why (ignored and flagged).
    pub reason: Option<&'a str>,
}

/// The outcome and reason already recorded for (`provider`, `event_id`).
///
/// # Errors
/// Database failures.
pub async fn recorded(
    conn: &mut SqliteConnection,
    provider: Provider,
    event_id: &str,
) -> Result<Option<(Outcome, Option<String>)>, InboxError> {
    let row: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT outcome, reason FROM payment_inbox WHERE provider = ? AND event_id = ?",
    )
    .bind(provider.as_str())
    .bind(event_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.and_then(|(o, r)| Outcome::parse(&o).map(|o| (o, r))))
}

/// Writes an inbox row; false when (provider, event id) was already there
/// (nothing written).
///
/// # Errors
/// Database failures.
pub async fn record(
    conn: &mut SqliteConnection,
    entry: InboxEntry<'_>,
    now: OffsetDateTime,
) -> Result<bool, InboxError> {
    let done = sqlx::query(
        "INSERT INTO payment_inbox (provider, event_id, attempt_id, status, amount, currency, \
         occurred_at, received_at, outcome, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT DO NOTHING",
    )
    .bind(entry.provider.as_str())
    .bind(entry.event_id)
    .bind(entry.attempt_id)
    .bind(entry.status)
    .bind(entry.amount)
    .bind(entry.currency.map(|c| c.as_str().to_owned()))
    .bind(entry.occurred_at)
    .bind(rfc3339(now))
    .bind(entry.outcome.as_str())
    .bind(entry.reason)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A flagged inbox row, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flagged {
    /// The provider.
    pub provider: String,
    /// The event id.
    pub event_id: String,
    /// The attempt, when known.
    pub attempt_id: Option<String>,
    /// What the provider said.
    pub status: String,
    /// The amount it named.
    pub amount: Option<i64>,
    /// Why it was flagged.
    pub reason: Option<String>,
    /// When it arrived.
    pub received_at: String,
}

type FlaggedRow = (
    String,
    String,
    Option<String>,
    String,
    Option<i64>,
    Option<String>,
    String,
);

/// Flagged inbox rows, newest first, at most `limit`.
///
/// # Errors
/// Database failures.
pub async fn flagged(conn: &mut SqliteConnection, limit: u32) -> Result<Vec<Flagged>, InboxError> {
    let rows: Vec<FlaggedRow> = sqlx::query_as(
        "SELECT provider, event_id, attempt_id, status, amount, reason, received_at \
             FROM payment_inbox WHERE outcome = 'flagged' ORDER BY received_at DESC LIMIT ?",
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Flagged {
            provider: r.0,
            event_id: r.1,
            attempt_id: r.2,
            status: r.3,
            amount: r.4,
            reason: r.5,
            received_at: r.6,
        })
        .collect())
}

/// Open attempts created before `before` (RFC 3339), oldest first.
///
/// # Errors
/// Database failures; a row that does not parse.
pub async fn stuck_attempts(
    conn: &mut SqliteConnection,
    before: &str,
) -> Result<Vec<Attempt>, InboxError> {
    let rows: Vec<AttemptRow> = sqlx::query_as(&format!(
        "SELECT {ATTEMPT_COLUMNS} FROM payment_attempts \
         WHERE status IN ('initiating', 'pending', 'ambiguous') AND created_at < ? \
         ORDER BY created_at LIMIT 500"
    ))
    .bind(before)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter().map(attempt).collect()
}
