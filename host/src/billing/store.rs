//! Subscriptions in the control-plane database: the row of each (tenant,
//! module) subscription, its history, and the notification outbox.
//!
//! A subscription is stored as JSON (`data`) beside the columns maintenance
//! queries (`state`, `period_end`); both are written in one statement, and
//! every write bumps `revision`, which the dispatch path reads with the
//! installation so a change made by another process reaches a server's
//! entitlement cache at once.
//!
//! Every function answers a [`StoreError`]; a write based on a stale read
//! is [`StoreError::Conflict`], which the billing service turns into the
//! message the tenant or operator sees.

use serde::{Deserialize, Serialize};
use sqlx::{Sqlite, SqliteConnection, Transaction};
use time::{Duration, OffsetDateTime};

use super::plans::{BillingInterval, Currency};
use super::subscription::{Subscription, SubscriptionState};
use crate::clock::rfc3339;

/// Why the subscription store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The control-plane database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The row of (`tenant`, `module`) no longer has the revision the write
    /// was based on, or a first write found a row already there: another
    /// request or process wrote it first. Nothing was written; read again
    /// and retry.
    #[error(
        "subscription of tenant {tenant} to {module} changed since revision {revision} was read"
    )]
    Conflict {
        /// The tenant's internal id.
        tenant: String,
        /// The module's slug.
        module: String,
        /// The revision the write expected (0: none, a first write).
        revision: i64,
    },
    /// A stored row does not parse (`what` says which part).
    #[error("subscription of tenant {tenant} to {module} is corrupt: {what}")]
    Corrupt {
        /// The tenant's internal id.
        tenant: String,
        /// The module's slug.
        module: String,
        /// What did not parse.
        what: String,
    },
    /// A stored instant (unix seconds) is outside the calendar.
    #[error("stored instant {seconds}: {reason}")]
    Instant {
        /// The stored value, in unix seconds.
        seconds: i64,
        /// Why it is not an instant.
        reason: time::error::ComponentRange,
    },
    /// A record could not be encoded as JSON.
    #[error(transparent)]
    Encode(serde_json::Error),
}

/// A subscription with the bookkeeping the host keeps around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    /// The subscription itself; the other fields are the host's
    /// bookkeeping around it, stored in the same row.
    pub subscription: Subscription,
    /// Periods paid for ahead (operator grants and extensions; confirmed
    /// payments once the payments integration lands). Maintenance uses one
    /// at each renewal moment; with none left the renewal fails.
    pub prepaid_periods: u32,
    /// The subscription reached `past_due` because a trial ended unpaid;
    /// denials then say `trial_ended` rather than `past_due`.
    pub trial_unpaid: bool,
    /// The row's revision when it was read (0: never saved). [`save`]
    /// writes only while the row still has it, then bumps both; the dispatch
    /// path compares it to know a cached grant is stale.
    pub revision: i64,
}

impl SubscriptionRecord {
    /// A new record around `subscription`.
    pub fn new(subscription: Subscription) -> Self {
        SubscriptionRecord {
            subscription,
            prepaid_periods: 0,
            trial_unpaid: false,
            revision: 0,
        }
    }
}

/// The stable lower-case name of a state, as stored and shown by the API.
pub fn state_name(state: SubscriptionState) -> &'static str {
    match state {
        SubscriptionState::Trialing => "trialing",
        SubscriptionState::Active => "active",
        SubscriptionState::PastDue => "past_due",
        SubscriptionState::Canceled => "canceled",
        SubscriptionState::Expired => "expired",
    }
}

fn parse_state(text: &str) -> Option<SubscriptionState> {
    Some(match text {
        "trialing" => SubscriptionState::Trialing,
        "active" => SubscriptionState::Active,
        "past_due" => SubscriptionState::PastDue,
        "canceled" => SubscriptionState::Canceled,
        "expired" => SubscriptionState::Expired,
        _ => return None,
    })
}

/// The JSON shape of `subscriptions.data`. Instants are unix seconds.
#[derive(Serialize, Deserialize)]
struct Data {
    plan: String,
    price: u64,
    currency: String,
    interval: BillingInterval,
    state: String,
    anchor: i64,
    period_index: u32,
    period_start: i64,
    period_end: i64,
    grace_seconds: i64,
    grace_ends: Option<i64>,
    scheduled: Option<(String, u64)>,
    prepaid_periods: u32,
    trial_unpaid: bool,
}

fn unix(at: OffsetDateTime) -> i64 {
    at.unix_timestamp()
}

fn instant(seconds: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp(seconds)
        .map_err(|reason| StoreError::Instant { seconds, reason })
}

fn encode(record: &SubscriptionRecord) -> Result<String, StoreError> {
    let s = &record.subscription;
    let data = Data {
        plan: s.plan.clone(),
        price: s.price,
        currency: s.currency.as_str().to_owned(),
        interval: s.interval,
        state: state_name(s.state).to_owned(),
        anchor: unix(s.anchor),
        period_index: s.period_index,
        period_start: unix(s.period_start),
        period_end: unix(s.period_end),
        grace_seconds: s.grace.whole_seconds(),
        grace_ends: s.grace_ends.map(unix),
        scheduled: s.scheduled.clone(),
        prepaid_periods: record.prepaid_periods,
        trial_unpaid: record.trial_unpaid,
    };
    serde_json::to_string(&data).map_err(StoreError::Encode)
}

fn decode(
    tenant: &str,
    module: &str,
    json: &str,
    revision: i64,
) -> Result<SubscriptionRecord, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt {
        tenant: tenant.to_owned(),
        module: module.to_owned(),
        what,
    };
    let data: Data = serde_json::from_str(json).map_err(|e| corrupt(e.to_string()))?;
    let subscription = Subscription {
        tenant: tenant.to_owned(),
        module: module.to_owned(),
        plan: data.plan,
        price: data.price,
        currency: Currency::parse(&data.currency).map_err(corrupt)?,
        interval: data.interval,
        state: parse_state(&data.state)
            .ok_or_else(|| corrupt(format!("state {:?}", data.state)))?,
        anchor: instant(data.anchor)?,
        period_index: data.period_index,
        period_start: instant(data.period_start)?,
        period_end: instant(data.period_end)?,
        grace: Duration::seconds(data.grace_seconds),
        grace_ends: data.grace_ends.map(instant).transpose()?,
        scheduled: data.scheduled,
    };
    Ok(SubscriptionRecord {
        subscription,
        prepaid_periods: data.prepaid_periods,
        trial_unpaid: data.trial_unpaid,
        revision,
    })
}

/// Reads the subscription of `tenant_id` to `module`, if any.
///
/// # Errors
/// Database failures; a row that does not parse.
pub async fn load(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    module: &str,
) -> Result<Option<SubscriptionRecord>, StoreError> {
    let row: Option<(String, i64)> = sqlx::query_as(
        "SELECT data, revision FROM subscriptions WHERE tenant_id = ? AND module_slug = ?",
    )
    .bind(tenant_id)
    .bind(module)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|(data, revision)| decode(tenant_id, module, &data, revision))
        .transpose()
}

/// Every subscription of `tenant_id`, by module.
///
/// # Errors
/// Database failures; a row that does not parse.
pub async fn list(
    conn: &mut SqliteConnection,
    tenant_id: &str,
) -> Result<Vec<SubscriptionRecord>, StoreError> {
    records(conn, Some(tenant_id)).await
}

/// Every subscription of every tenant, by tenant and module.
///
/// # Errors
/// Database failures; a row that does not parse.
pub async fn all(conn: &mut SqliteConnection) -> Result<Vec<SubscriptionRecord>, StoreError> {
    records(conn, None).await
}

async fn records(
    conn: &mut SqliteConnection,
    tenant_id: Option<&str>,
) -> Result<Vec<SubscriptionRecord>, StoreError> {
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT tenant_id, module_slug, data, revision FROM subscriptions \
         WHERE (? IS NULL OR tenant_id = ?) ORDER BY tenant_id, module_slug",
    )
    .bind(tenant_id)
    .bind(tenant_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(tenant, module, data, revision)| decode(&tenant, &module, &data, revision))
        .collect()
}

/// (tenant id, module) of every subscription maintenance may have to act on
/// at `now`: whose `period_end` has come, or that is past due (grace), or
/// trialing within `notice` of its end (the "trial ending" notification).
///
/// # Errors
/// Database failures.
pub async fn due(
    conn: &mut SqliteConnection,
    now: OffsetDateTime,
    notice: Duration,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT tenant_id, module_slug FROM subscriptions \
         WHERE state != 'expired' AND (period_end <= ? OR state = 'past_due' \
            OR (state = 'trialing' AND period_end <= ?)) \
         ORDER BY tenant_id, module_slug",
    )
    .bind(unix(now))
    .bind(unix(now + notice))
    .fetch_all(&mut *conn)
    .await?)
}

/// (tenant id, module) of active subscriptions whose period ends after
/// `now` and within `notice` of it (renewal invoices are issued for them).
///
/// # Errors
/// Database failures.
pub async fn ending_soon(
    conn: &mut SqliteConnection,
    now: OffsetDateTime,
    notice: Duration,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT tenant_id, module_slug FROM subscriptions \
         WHERE state = 'active' AND period_end > ? AND period_end <= ? \
         ORDER BY tenant_id, module_slug",
    )
    .bind(unix(now))
    .bind(unix(now + notice))
    .fetch_all(&mut *conn)
    .await?)
}

/// Who made a change, and why, for the subscription's history.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// What happened: `subscribed`, `trial_started`, `granted`, `extended`,
    /// `plan_changed`, `canceled`, `trial_ended`, `renewed`, `expired`, ...
    pub action: &'a str,
    /// `operator`, `tenant:<slug>`, or `maintenance`.
    pub actor: &'a str,
    /// Free text (amounts of a plan change, ...).
    pub detail: Option<String>,
    /// When, by the host's clock.
    pub at: OffsetDateTime,
}

/// Writes `record` (insert or update, bumping its revision) and appends the
/// change to the history, inside `tx`.
///
/// # Errors
/// Database failures; [`StoreError::Conflict`] when the row changed since
/// it was read (another process wrote it first; retry).
pub async fn save(
    tx: &mut Transaction<'_, Sqlite>,
    record: &mut SubscriptionRecord,
    from: Option<SubscriptionState>,
    change: &Change<'_>,
) -> Result<(), StoreError> {
    let s = &record.subscription;
    let data = encode(record)?;
    let at = rfc3339(change.at);
    let updated = if record.revision == 0 {
        sqlx::query(
            "INSERT INTO subscriptions (tenant_id, module_slug, plan, state, period_end, data, revision, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&s.tenant)
        .bind(&s.module)
        .bind(&s.plan)
        .bind(state_name(s.state))
        .bind(unix(s.period_end))
        .bind(&data)
        .bind(&at)
        .bind(&at)
        .execute(&mut **tx)
        .await?
    } else {
        sqlx::query(
            "UPDATE subscriptions SET plan = ?, state = ?, period_end = ?, data = ?, revision = revision + 1, updated_at = ? \
             WHERE tenant_id = ? AND module_slug = ? AND revision = ?",
        )
        .bind(&s.plan)
        .bind(state_name(s.state))
        .bind(unix(s.period_end))
        .bind(&data)
        .bind(&at)
        .bind(&s.tenant)
        .bind(&s.module)
        .bind(record.revision)
        .execute(&mut **tx)
        .await?
    };
    if updated.rows_affected() != 1 {
        return Err(StoreError::Conflict {
            tenant: s.tenant.clone(),
            module: s.module.clone(),
            revision: record.revision,
        });
    }
    record.revision += 1;
    sqlx::query(
        "INSERT INTO subscription_events (at, tenant_id, module_slug, action, from_state, to_state, plan, actor, detail) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&at)
    .bind(&s.tenant)
    .bind(&s.module)
    .bind(change.action)
    .bind(from.map(state_name))
    .bind(state_name(s.state))
    .bind(&s.plan)
    .bind(change.actor)
    .bind(&change.detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One line of a subscription's history.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct HistoryEntry {
    /// When (host clock), RFC 3339.
    pub at: String,
    /// What happened, as in [`Change::action`].
    pub action: String,
    /// [`state_name`] before the change; `None` for the pair's first write.
    pub from_state: Option<String>,
    /// [`state_name`] after the change.
    pub to_state: String,
    /// Slug of the plan in effect after the change.
    pub plan: String,
    /// `operator`, `tenant:<slug>` or `maintenance`.
    pub actor: String,
    /// Free text, e.g. the amounts of a plan change.
    pub detail: Option<String>,
}

/// Removes a subscription that was saved for the first time at `revision`
/// (and its history): the inverse of that first [`save`], for undoing the
/// install that started it. Billing itself never deletes a subscription,
/// so with no earlier one every history row of the pair belongs to it.
///
/// # Errors
/// [`StoreError::Database`] when the database fails.
pub async fn remove_new(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    module: &str,
    revision: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM subscriptions WHERE tenant_id = ? AND module_slug = ? AND revision = ?",
    )
    .bind(tenant_id)
    .bind(module)
    .bind(revision)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM subscription_events WHERE tenant_id = ? AND module_slug = ?")
        .bind(tenant_id)
        .bind(module)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The history of `tenant_id`'s subscription to `module`, oldest first.
///
/// # Errors
/// Database failures.
pub async fn history(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    module: &str,
) -> Result<Vec<HistoryEntry>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT at, action, from_state, to_state, plan, actor, detail FROM subscription_events \
         WHERE tenant_id = ? AND module_slug = ? ORDER BY id",
    )
    .bind(tenant_id)
    .bind(module)
    .fetch_all(&mut *conn)
    .await?)
}

/// A notification waiting in the outbox.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct OutboxEvent {
    /// Position in the outbox, increasing; readers pass the last one they
    /// saw as `after` to read on.
    pub id: i64,
    /// When it was written (host clock), RFC 3339.
    pub created_at: String,
    /// `trial_ending`, `trial_ended`, `trial_converted`, `payment_due`,
    /// `renewed`, `expired`, `downgraded` or `usage_period_closed`.
    pub kind: String,
    /// The tenant's internal id.
    pub tenant_id: String,
    /// The module's slug.
    pub module_slug: String,
    /// Event details as JSON text (a JSON object; its keys depend on `kind`).
    pub payload: String,
    /// When a notifier marked it delivered, RFC 3339; nothing in the host
    /// sets it.
    pub delivered_at: Option<String>,
}

/// Appends an event unless one with `dedupe_key` exists; returns whether it
/// was added.
///
/// # Errors
/// Database failures.
pub async fn push_outbox(
    tx: &mut Transaction<'_, Sqlite>,
    at: OffsetDateTime,
    kind: &str,
    tenant_id: &str,
    module: &str,
    dedupe_key: &str,
    payload: &serde_json::Value,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO outbox (created_at, kind, tenant_id, module_slug, dedupe_key, payload) \
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(rfc3339(at))
    .bind(kind)
    .bind(tenant_id)
    .bind(module)
    .bind(dedupe_key)
    .bind(payload.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Outbox events after `after` (exclusive), oldest first, at most `limit`;
/// only those of `tenant_id` when given.
///
/// # Errors
/// Database failures.
pub async fn outbox(
    conn: &mut SqliteConnection,
    tenant_id: Option<&str>,
    after: i64,
    limit: i64,
) -> Result<Vec<OutboxEvent>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, created_at, kind, tenant_id, module_slug, payload, delivered_at FROM outbox \
         WHERE id > ? AND (? IS NULL OR tenant_id = ?) ORDER BY id LIMIT ?",
    )
    .bind(after)
    .bind(tenant_id)
    .bind(tenant_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::fixtures::{at, control_with_tenant, digital_card, npr};
    use crate::clock::ManualClock;

    fn pro_trial() -> SubscriptionRecord {
        let plans = digital_card();
        let clock = ManualClock::new(at("2026-01-31T10:00:00Z"));
        let subscription = Subscription::start_new_trial(
            "t1",
            "digital-card",
            plans.plan("pro").unwrap(),
            npr(),
            &clock,
        )
        .unwrap();
        let mut record = SubscriptionRecord::new(subscription);
        record.prepaid_periods = 2;
        record.subscription.scheduled = Some(("free".into(), 0));
        record.subscription.grace_ends = Some(at("2026-03-07T10:00:00Z"));
        record
    }

    fn change(action: &'static str) -> Change<'static> {
        Change {
            action,
            actor: "operator",
            detail: None,
            at: at("2026-01-31T10:00:00Z"),
        }
    }

    #[tokio::test]
    async fn a_record_survives_the_database_unchanged() {
        let control = control_with_tenant().await;
        let mut record = pro_trial();
        let mut tx = control.pool().begin().await.unwrap();
        save(&mut tx, &mut record, None, &change("trial_started"))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(record.revision, 1);
        let mut conn = control.pool().acquire().await.unwrap();
        let loaded = load(&mut conn, "t1", "digital-card")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(loaded, record);
        let history = history(&mut conn, "t1", "digital-card").await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].to_state, "trialing");
        assert_eq!(history[0].from_state, None);
    }

    #[tokio::test]
    async fn a_write_based_on_a_stale_read_is_refused() {
        let control = control_with_tenant().await;
        let mut first = pro_trial();
        let mut tx = control.pool().begin().await.unwrap();
        save(&mut tx, &mut first, None, &change("trial_started"))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut stale = first.clone();
        let mut tx = control.pool().begin().await.unwrap();
        save(&mut tx, &mut first, None, &change("extended"))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut tx = control.pool().begin().await.unwrap();
        let refused = save(&mut tx, &mut stale, None, &change("extended")).await;
        assert!(
            matches!(refused, Err(StoreError::Conflict { .. })),
            "{refused:?}"
        );
        // A second insert of a new record for the same pair is refused too.
        let mut fresh = pro_trial();
        let refused = save(&mut tx, &mut fresh, None, &change("subscribed")).await;
        assert!(
            matches!(refused, Err(StoreError::Conflict { .. })),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn outbox_events_are_written_once_per_key() {
        let control = control_with_tenant().await;
        let mut tx = control.pool().begin().await.unwrap();
        let now = at("2026-01-31T10:00:00Z");
        let payload = serde_json::json!({"plan": "pro"});
        assert!(
            push_outbox(&mut tx, now, "trial_ending", "t1", "m", "k1", &payload)
                .await
                .unwrap()
        );
        assert!(
            !push_outbox(&mut tx, now, "trial_ending", "t1", "m", "k1", &payload)
                .await
                .unwrap()
        );
        assert!(
            push_outbox(&mut tx, now, "expired", "t1", "m", "k2", &payload)
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();
        let mut conn = control.pool().acquire().await.unwrap();
        let all = outbox(&mut conn, None, 0, 10).await.unwrap();
        assert_eq!(all.len(), 2);
        let after = outbox(&mut conn, Some("t1"), all[0].id, 10).await.unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].kind, "expired");
        assert!(
            outbox(&mut conn, Some("other"), 0, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
