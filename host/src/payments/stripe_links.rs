//! Stripe subscriptions linked to ours (table `stripe_subscriptions`):
//! the link a subscription-mode Checkout Session's grant writes, and what
//! Stripe's later events and our own calls to Stripe read and update
//! ([`super::stripe_subscriptions`]).

use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::inbox::Attempt;
use crate::billing::invoice::Purchase;
use crate::clock::rfc3339;
use crate::error::SoukError;

/// A Stripe subscription linked to one of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeLink {
    /// Stripe's `sub_...`.
    pub id: String,
    /// The tenant's internal id.
    pub tenant_id: String,
    /// The module's slug.
    pub module: String,
    /// Our plan it renews.
    pub plan: String,
    /// The checkout attempt that started it.
    pub attempt_id: String,
    /// Stripe's status, as last said.
    pub status: String,
    /// Whether it ends at its period's end, as last said.
    pub cancel_at_period_end: bool,
    /// Unix seconds: the end of the newest period paid.
    pub paid_through: Option<i64>,
    /// Unix seconds: `created` of the newest event applied.
    pub last_event_at: Option<i64>,
}

type LinkRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    bool,
    Option<i64>,
    Option<i64>,
);

const LINK_COLUMNS: &str = "id, tenant_id, module_slug, plan, attempt_id, status, \
    cancel_at_period_end, paid_through, last_event_at";

fn link_of(row: LinkRow) -> StripeLink {
    StripeLink {
        id: row.0,
        tenant_id: row.1,
        module: row.2,
        plan: row.3,
        attempt_id: row.4,
        status: row.5,
        cancel_at_period_end: row.6,
        paid_through: row.7,
        last_event_at: row.8,
    }
}

/// Links Stripe subscription `id` to the subscription `purchase` granted
/// through `attempt` (one plan), inside the grant's transaction. Linking
/// the same one again changes nothing.
///
/// # Errors
/// Database failures.
pub async fn link(
    conn: &mut SqliteConnection,
    id: &str,
    attempt: &Attempt,
    purchase: &Purchase,
    now: OffsetDateTime,
) -> Result<(), SoukError> {
    let Some(item) = purchase.items.first() else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO stripe_subscriptions (id, tenant_id, module_slug, plan, attempt_id, status, \
         created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'active', ?, ?) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(&attempt.tenant_id)
    .bind(&item.module)
    .bind(&item.plan)
    .bind(&attempt.id)
    .bind(rfc3339(now))
    .bind(rfc3339(now))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Stripe subscription `id`, when linked.
///
/// # Errors
/// Database failures.
pub async fn load_link(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<Option<StripeLink>, SoukError> {
    let row: Option<LinkRow> = sqlx::query_as(&format!(
        "SELECT {LINK_COLUMNS} FROM stripe_subscriptions WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(link_of))
}

/// The Stripe subscription that renews `module` for `tenant_id`: the
/// newest linked one Stripe has not canceled.
///
/// # Errors
/// Database failures.
pub async fn live_link(
    conn: &mut SqliteConnection,
    tenant_id: &str,
    module: &str,
) -> Result<Option<StripeLink>, SoukError> {
    let row: Option<LinkRow> = sqlx::query_as(&format!(
        "SELECT {LINK_COLUMNS} FROM stripe_subscriptions WHERE tenant_id = ? AND module_slug = ? \
         AND status NOT IN ('canceled', 'incomplete_expired') ORDER BY created_at DESC, id LIMIT 1"
    ))
    .bind(tenant_id)
    .bind(module)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(link_of))
}

/// What changed in a link after an event (`None`: unchanged).
pub(super) struct LinkUpdate<'a> {
    pub(super) status: Option<&'a str>,
    pub(super) cancel_at_period_end: Option<bool>,
    pub(super) current_period_end: Option<i64>,
    pub(super) paid_through: Option<i64>,
    pub(super) plan: Option<&'a str>,
    pub(super) customer: Option<&'a str>,
    pub(super) event_at: Option<i64>,
}

impl LinkUpdate<'_> {
    pub(super) fn none() -> Self {
        LinkUpdate {
            status: None,
            cancel_at_period_end: None,
            current_period_end: None,
            paid_through: None,
            plan: None,
            customer: None,
            event_at: None,
        }
    }
}

pub(super) async fn update_link(
    conn: &mut SqliteConnection,
    id: &str,
    update: &LinkUpdate<'_>,
    now: OffsetDateTime,
) -> Result<(), SoukError> {
    sqlx::query(
        "UPDATE stripe_subscriptions SET status = COALESCE(?, status), \
         cancel_at_period_end = COALESCE(?, cancel_at_period_end), \
         current_period_end = COALESCE(?, current_period_end), \
         paid_through = MAX(COALESCE(paid_through, 0), COALESCE(?, 0)), \
         plan = COALESCE(?, plan), customer = COALESCE(?, customer), \
         last_event_at = MAX(COALESCE(last_event_at, 0), COALESCE(?, 0)), updated_at = ? \
         WHERE id = ?",
    )
    .bind(update.status)
    .bind(update.cancel_at_period_end)
    .bind(update.current_period_end)
    .bind(update.paid_through)
    .bind(update.plan)
    .bind(update.customer)
    .bind(update.event_at)
    .bind(rfc3339(now))
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
