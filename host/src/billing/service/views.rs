//! What the API and the CLI show of subscriptions: their views, quotes,
//! history and the notification outbox.

use serde::Serialize;
use time::OffsetDateTime;

use super::{Billing, not_subscribed};
use crate::billing::plans::{BillingInterval, Currency, Plan};
use crate::billing::store::{self, SubscriptionRecord, state_name};
use crate::billing::subscription::Quote;
use crate::clock::rfc3339;
use crate::error::SoukError;
use crate::tenancy::Tenant;

/// A subscription as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionView {
    /// The module's slug.
    pub module: String,
    /// Slug of the plan in effect; a waiting downgrade is `scheduled_plan`.
    pub plan: String,
    /// `trialing`, `active`, `past_due`, `canceled` or `expired`.
    pub state: &'static str,
    /// Whether the tenant may use the module at the host clock's now (past
    /// due: until grace ends; canceled: until the period ends).
    pub access: bool,
    /// Price of one period, minor units of `currency`.
    pub price: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// `monthly` or `yearly`.
    pub interval: BillingInterval,
    /// Start of the current period (or trial), RFC 3339.
    pub period_start: String,
    /// End of the current period (or trial), RFC 3339.
    pub period_end: String,
    /// While past due: when access ends, RFC 3339.
    pub grace_ends: Option<String>,
    /// Slug of a downgrade that takes effect at `period_end`.
    pub scheduled_plan: Option<String>,
    /// Periods paid ahead, which the next renewals use (the current period
    /// is not counted).
    pub prepaid_periods: u32,
    /// The subscription went past due because its trial ended unpaid
    /// (denials then say `trial_ended`).
    pub trial_unpaid: bool,
}

/// What a plan change (or a first subscription) costs, shown before it is made.
#[derive(Debug, Clone, Serialize)]
pub struct QuoteView {
    /// The module's slug.
    pub module: String,
    /// Slug of the current plan; `None` for a first subscription.
    pub from_plan: Option<String>,
    /// Slug of the plan asked about.
    pub to_plan: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Charged now, minor units of `currency` (0 for a trial or a
    /// downgrade).
    pub amount_due_now: u64,
    /// Credit for the unused part of the current plan, minor units (0 unless
    /// an upgrade).
    pub credit: u64,
    /// Price of each later period, minor units.
    pub next_period_price: u64,
    /// When the change takes effect, RFC 3339.
    pub effective_at: String,
    /// `upgrade` (now, prorated), `downgrade` (at period end), `trial`
    /// (a free trial starts now) or `new` (a first paid period).
    pub kind: &'static str,
    /// Trial days the plan offers this tenant (0 once a trial was used).
    pub trial_days: u32,
}

pub(super) fn view(record: &SubscriptionRecord, now: OffsetDateTime) -> SubscriptionView {
    let s = &record.subscription;
    SubscriptionView {
        module: s.module.clone(),
        plan: s.plan.clone(),
        state: state_name(s.state),
        access: s.has_access(now),
        price: s.price,
        currency: s.currency.to_string(),
        interval: s.interval,
        period_start: rfc3339(s.period_start),
        period_end: rfc3339(s.period_end),
        grace_ends: s.grace_ends.map(rfc3339),
        scheduled_plan: s.scheduled.as_ref().map(|(plan, _)| plan.clone()),
        prepaid_periods: record.prepaid_periods,
        trial_unpaid: record.trial_unpaid,
    }
}

pub(super) fn quote_view(
    module: &str,
    from: Option<&str>,
    to: &Plan,
    currency: Currency,
    quote: &Quote,
    old_price: u64,
    trial_days: u32,
) -> QuoteView {
    QuoteView {
        module: module.to_owned(),
        from_plan: from.map(str::to_owned),
        to_plan: to.slug.clone(),
        currency: currency.to_string(),
        amount_due_now: quote.amount_due_now,
        credit: quote.credit,
        next_period_price: quote.next_period_price,
        effective_at: rfc3339(quote.effective_at),
        kind: if quote.next_period_price > old_price {
            "upgrade"
        } else {
            "downgrade"
        },
        trial_days,
    }
}

impl Billing {
    /// Every subscription of `tenant`, as the API shows them.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list(&self, tenant: &Tenant) -> Result<Vec<SubscriptionView>, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        let now = self.clock.now();
        Ok(store::list(&mut conn, &tenant.id)
            .await?
            .iter()
            .map(|r| view(r, now))
            .collect())
    }

    /// The subscription of `tenant` to `module` as the API shows it.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] without one.
    pub async fn show(&self, tenant: &Tenant, module: &str) -> Result<SubscriptionView, SoukError> {
        let record = self
            .get(tenant, module)
            .await?
            .ok_or_else(|| not_subscribed(module))?;
        Ok(view(&record, self.clock.now()))
    }

    /// The history of a subscription, oldest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn history(
        &self,
        tenant: &Tenant,
        module: &str,
    ) -> Result<Vec<store::HistoryEntry>, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        Ok(store::history(&mut conn, &tenant.id, module).await?)
    }

    /// Outbox events after `after`, oldest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn outbox(
        &self,
        tenant: Option<&Tenant>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<store::OutboxEvent>, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        Ok(store::outbox(&mut conn, tenant.map(|t| t.id.as_str()), after, limit).await?)
    }
}
