//! What only the operator does to a subscription: put a tenant on a plan
//! with periods paid, and pay further periods ahead.

use super::views::{SubscriptionView, view};
use super::{Actor, Billing, conflict, not_subscribed, record_from, replace};
use crate::billing::bounds::{self, MAX_PREPAID_PERIODS};
use crate::billing::subscription::{Subscription, SubscriptionEvent, SubscriptionState};
use crate::error::SoukError;
use crate::tenancy::Tenant;

/// [`bounds::check_periods`] as the error the API answers (400).
fn check_periods(periods: u32) -> Result<(), SoukError> {
    bounds::check_periods(periods).map_err(|e| SoukError::Invalid(e.to_string()))
}

impl Billing {
    /// Operator: puts `tenant` on `plan` of `module`, active from now, with
    /// `periods` periods paid (at least 1). Replaces any current subscription
    /// (usage is kept).
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for an unknown plan or `periods` outside 1 to
    /// [`MAX_PREPAID_PERIODS`].
    pub async fn grant(
        &self,
        tenant: &Tenant,
        module: &str,
        plan: &str,
        periods: u32,
        currency: Option<&str>,
    ) -> Result<SubscriptionView, SoukError> {
        check_periods(periods)?;
        let (_, plan) = self.plan_of(module, plan)?;
        let existing = self.get(tenant, module).await?;
        let currency = match (currency, &existing) {
            (None, Some(record)) => record.subscription.currency,
            (currency, _) => self.currency_or_default(currency)?,
        };
        let subscription =
            Subscription::start(&tenant.id, module, &plan, currency, self.clock.as_ref())
                .map_err(conflict)?;
        let mut record = replace(existing, subscription);
        record.prepaid_periods = periods - 1;
        let from = record_from(&record);
        let detail = format!("{periods} period(s) paid by the operator");
        self.save(&mut record, from, "granted", Actor::Operator, Some(detail))
            .await?;
        Ok(view(&record, self.clock.now()))
    }

    /// Operator: `periods` more periods paid. A past-due or expired
    /// subscription becomes active at once (using one of them); otherwise
    /// they are used at the next renewals.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] without a subscription; [`SoukError::Invalid`]
    /// for `periods` outside 1 to [`MAX_PREPAID_PERIODS`], or when the
    /// subscription would then hold more than that; [`SoukError::Conflict`] for a canceled subscription
    /// (reactivate it first).
    pub async fn extend(
        &self,
        tenant: &Tenant,
        module: &str,
        periods: u32,
    ) -> Result<SubscriptionView, SoukError> {
        check_periods(periods)?;
        let mut record = self
            .get(tenant, module)
            .await?
            .ok_or_else(|| not_subscribed(module))?;
        let from = Some(record.subscription.state);
        record.prepaid_periods = record
            .prepaid_periods
            .checked_add(periods)
            .filter(|p| *p <= MAX_PREPAID_PERIODS)
            .ok_or_else(|| {
                SoukError::Invalid(format!(
                    "{module} already has {} prepaid period(s); with {periods} more it would pass the {MAX_PREPAID_PERIODS} a subscription may hold",
                    record.prepaid_periods
                ))
            })?;
        match record.subscription.state {
            SubscriptionState::PastDue | SubscriptionState::Expired => {
                record
                    .subscription
                    .apply(SubscriptionEvent::PaymentSucceeded, self.clock.as_ref())
                    .map_err(conflict)?;
                record.prepaid_periods -= 1;
                record.trial_unpaid = false;
            }
            SubscriptionState::Canceled => {
                return Err(SoukError::Conflict(format!(
                    "the subscription to {module} is canceled; reactivate it first"
                )));
            }
            SubscriptionState::Trialing | SubscriptionState::Active => {}
        }
        let detail = format!("{periods} period(s) paid by the operator");
        self.save(&mut record, from, "extended", Actor::Operator, Some(detail))
            .await?;
        Ok(view(&record, self.clock.now()))
    }
}
