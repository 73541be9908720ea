//! Billing's side of subscriptions a payment provider renews (Stripe) and
//! of refunds: what a provider's renewal, failed renewal, cancellation or
//! plan change, and an operator's refund, do to a subscription — always
//! through the subscription state machine, inside the caller's
//! transaction, so the payment inbox row, the invoice and the
//! subscription change commit together or not at all.
//!
//! Each function answers what it did ([`ProviderChange`]), or `None` when
//! the subscription is already where the provider says (a repeated or
//! late word changes nothing). A change the state machine refuses is
//! [`SoukError::Conflict`]: the caller flags it for the operator.

use sqlx::{Sqlite, Transaction};

use super::{Billing, conflict};
use crate::billing::bounds::MAX_PREPAID_PERIODS;
use crate::billing::store::{self, Change, SubscriptionRecord};
use crate::billing::subscription::{PlanChange, SubscriptionEvent, SubscriptionState};
use crate::error::SoukError;

/// What a provider's word or a refund did to a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderChange {
    /// A renewal paid after the period ended: the next period began (or a
    /// past-due or expired subscription became active).
    Renewed,
    /// A renewal paid before the period ended: one prepaid period, used
    /// by maintenance at the period end.
    Prepaid,
    /// A failed renewal after the period ended: past due, grace started.
    PastDue,
    /// Canceled with access until the period ends.
    CanceledAtPeriodEnd,
    /// Canceled; access ended now.
    CanceledNow,
    /// A cancellation at the period end was undone.
    Reactivated,
    /// The plan changed (an upgrade now, a downgrade at the period end).
    PlanChanged,
    /// A refund took back a prepaid period not yet begun.
    PrepaidRemoved,
}

impl ProviderChange {
    /// The stable name, as the subscription's history and the audit log
    /// show it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderChange::Renewed => "renewed",
            ProviderChange::Prepaid => "paid",
            ProviderChange::PastDue => "payment_failed",
            ProviderChange::CanceledAtPeriodEnd => "canceled_at_period_end",
            ProviderChange::CanceledNow => "canceled",
            ProviderChange::Reactivated => "reactivated",
            ProviderChange::PlanChanged => "plan_changed",
            ProviderChange::PrepaidRemoved => "prepaid_period_refunded",
        }
    }
}

impl Billing {
    async fn load_for(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        tenant_id: &str,
        module: &str,
    ) -> Result<SubscriptionRecord, SoukError> {
        store::load(tx, tenant_id, module)
            .await?
            .ok_or_else(|| SoukError::Conflict(format!("no subscription to {module}")))
    }

    async fn save_in(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        record: &mut SubscriptionRecord,
        from: SubscriptionState,
        change: ProviderChange,
        actor: &str,
        detail: &str,
    ) -> Result<Option<ProviderChange>, SoukError> {
        let change_row = Change {
            action: change.as_str(),
            actor,
            detail: Some(detail.to_owned()),
            at: self.clock.now(),
        };
        store::save(tx, record, Some(from), &change_row).await?;
        Ok(Some(change))
    }

    /// A renewal of `module` for `tenant_id` was paid at the provider
    /// (`reference` goes into the history): after the period end the next
    /// period begins (`PaymentSucceeded`); before it, one prepaid period is
    /// added, which maintenance uses at the period end. A past-due or
    /// expired subscription becomes active.
    ///
    /// # Errors
    /// [`SoukError::Conflict`] for no subscription, a canceled one, or one
    /// holding the most prepaid periods; database failures.
    pub async fn provider_renewal_paid(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        tenant_id: &str,
        module: &str,
        reference: &str,
    ) -> Result<Option<ProviderChange>, SoukError> {
        let mut record = self.load_for(tx, tenant_id, module).await?;
        let from = record.subscription.state;
        let now = self.clock.now();
        let change = match from {
            SubscriptionState::Active if now >= record.subscription.period_end => {
                record
                    .subscription
                    .apply(SubscriptionEvent::PaymentSucceeded, self.clock.as_ref())
                    .map_err(conflict)?;
                ProviderChange::Renewed
            }
            SubscriptionState::Active | SubscriptionState::Trialing => {
                record.prepaid_periods = record
                    .prepaid_periods
                    .checked_add(1)
                    .filter(|p| *p <= MAX_PREPAID_PERIODS)
                    .ok_or_else(|| {
                        SoukError::Conflict(format!(
                            "{module} already holds {MAX_PREPAID_PERIODS} prepaid periods"
                        ))
                    })?;
                ProviderChange::Prepaid
            }
            SubscriptionState::PastDue | SubscriptionState::Expired => {
                record
                    .subscription
                    .apply(SubscriptionEvent::PaymentSucceeded, self.clock.as_ref())
                    .map_err(conflict)?;
                record.trial_unpaid = false;
                ProviderChange::Renewed
            }
            SubscriptionState::Canceled => {
                return Err(SoukError::Conflict(format!(
                    "the subscription to {module} is canceled"
                )));
            }
        };
        self.save_in(
            tx,
            &mut record,
            from,
            change,
            "payment",
            &format!("payment {reference}"),
        )
        .await
    }

    /// A renewal failed at the provider: once the period has ended and no
    /// prepaid period is left, `PaymentFailed` (past due, grace starts);
    /// before that nothing changes (maintenance decides at the period end).
    ///
    /// # Errors
    /// [`SoukError::Conflict`] for no subscription; database failures.
    pub async fn provider_renewal_failed(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        tenant_id: &str,
        module: &str,
        reference: &str,
    ) -> Result<Option<ProviderChange>, SoukError> {
        let mut record = self.load_for(tx, tenant_id, module).await?;
        let from = record.subscription.state;
        let now = self.clock.now();
        if from != SubscriptionState::Active
            || now < record.subscription.period_end
            || record.prepaid_periods > 0
            || record.subscription.price == 0
        {
            return Ok(None);
        }
        record
            .subscription
            .apply(SubscriptionEvent::PaymentFailed, self.clock.as_ref())
            .map_err(conflict)?;
        self.save_in(
            tx,
            &mut record,
            from,
            ProviderChange::PastDue,
            "payment",
            &format!("renewal failed: {reference}"),
        )
        .await
    }

    /// Cancels `module` for `tenant_id` because the provider or the
    /// operator's refund says so: at the period end (access continues), or
    /// now. A subscription already canceled, or expired, is left alone.
    ///
    /// # Errors
    /// [`SoukError::Conflict`] for no subscription; database failures.
    pub async fn provider_cancel(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        tenant_id: &str,
        module: &str,
        at_period_end: bool,
        actor: &str,
        detail: &str,
    ) -> Result<Option<ProviderChange>, SoukError> {
        let mut record = self.load_for(tx, tenant_id, module).await?;
        let from = record.subscription.state;
        let (event, change) = match (from, at_period_end) {
            (SubscriptionState::Trialing | SubscriptionState::Active, true) => (
                SubscriptionEvent::CancelAtPeriodEnd,
                ProviderChange::CanceledAtPeriodEnd,
            ),
            (
                SubscriptionState::Trialing
                | SubscriptionState::Active
                | SubscriptionState::PastDue,
                false,
            ) => (SubscriptionEvent::CancelNow, ProviderChange::CanceledNow),
            _ => return Ok(None),
        };
        record
            .subscription
            .apply(event, self.clock.as_ref())
            .map_err(conflict)?;
        record.prepaid_periods = 0;
        self.save_in(tx, &mut record, from, change, actor, detail)
            .await
    }

    /// Undoes a cancellation at the period end the provider undid (before
    /// the period ends; after it, nothing).
    ///
    /// # Errors
    /// [`SoukError::Conflict`] for no subscription; database failures.
    pub async fn provider_reactivate(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        tenant_id: &str,
        module: &str,
        detail: &str,
    ) -> Result<Option<ProviderChange>, SoukError> {
        let mut record = self.load_for(tx, tenant_id, module).await?;
        let from = record.subscription.state;
        if from != SubscriptionState::Canceled || self.clock.now() >= record.subscription.period_end
        {
            return Ok(None);
        }
        record
            .subscription
            .apply(SubscriptionEvent::Reactivate, self.clock.as_ref())
            .map_err(conflict)?;
        self.save_in(
            tx,
            &mut record,
            from,
            ProviderChange::Reactivated,
            "payment",
            detail,
        )
        .await
    }

    /// The provider moved the subscription to `plan` (settling the money
    /// itself): the plan change [`crate::billing::subscription::Subscription::change_plan`]
    /// makes — an upgrade now, a downgrade at the period end.
    ///
    /// # Errors
    /// [`SoukError::Conflict`] for no subscription or a change the
    /// subscription refuses; [`SoukError::Invalid`] for a plan the catalog
    /// does not have; database failures.
    pub async fn provider_plan_changed(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        tenant_id: &str,
        module: &str,
        plan: &str,
        detail: &str,
    ) -> Result<Option<ProviderChange>, SoukError> {
        let (_, to) = self.plan_of(module, plan)?;
        let mut record = self.load_for(tx, tenant_id, module).await?;
        let from = record.subscription.state;
        if record.subscription.plan == to.slug
            || record
                .subscription
                .scheduled
                .as_ref()
                .is_some_and(|(p, _)| *p == to.slug)
        {
            return Ok(None);
        }
        record
            .subscription
            .change_plan(PlanChange { to: &to }, self.clock.as_ref())
            .map_err(conflict)?;
        self.save_in(
            tx,
            &mut record,
            from,
            ProviderChange::PlanChanged,
            "payment",
            detail,
        )
        .await
    }

    /// An operator refunded an invoice that paid for `module` on `plan`:
    /// what it paid for ends. A prepaid period not yet begun is taken back;
    /// otherwise, when the invoice is the newest paid for the module
    /// (`newest`), it paid the current period and the subscription is
    /// canceled now (access ends); an older invoice's period is over and
    /// nothing changes. A subscription on another plan, or already
    /// canceled or expired, is left alone.
    ///
    /// # Errors
    /// Database failures.
    pub async fn refund_ends(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        tenant_id: &str,
        module: &str,
        plan: &str,
        newest: bool,
        detail: &str,
    ) -> Result<Option<ProviderChange>, SoukError> {
        let Some(mut record) = store::load(tx, tenant_id, module).await? else {
            return Ok(None);
        };
        let from = record.subscription.state;
        if record.subscription.plan != plan {
            return Ok(None);
        }
        if record.prepaid_periods > 0 {
            record.prepaid_periods -= 1;
            return self
                .save_in(
                    tx,
                    &mut record,
                    from,
                    ProviderChange::PrepaidRemoved,
                    "operator",
                    detail,
                )
                .await;
        }
        if !newest {
            return Ok(None);
        }
        self.provider_cancel(tx, tenant_id, module, false, "operator", detail)
            .await
    }

    /// Whether a refund of an invoice for `module` on `plan` would cancel
    /// the subscription now (rather than take back a prepaid period, or
    /// leave it alone): read before a provider is asked to stop renewing.
    ///
    /// # Errors
    /// Database failures.
    pub async fn refund_would_cancel(
        &self,
        tenant_id: &str,
        module: &str,
        plan: &str,
        newest: bool,
    ) -> Result<bool, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        Ok(newest
            && store::load(&mut conn, tenant_id, module)
                .await?
                .is_some_and(|r| {
                    r.subscription.plan == plan
                        && r.prepaid_periods == 0
                        && matches!(
                            r.subscription.state,
                            SubscriptionState::Trialing
                                | SubscriptionState::Active
                                | SubscriptionState::PastDue
                        )
                }))
    }

    /// After a transaction of the functions above committed: the cached
    /// grant of (`tenant_id`, `module`) is rebuilt on its next use.
    pub fn forget_grant(&self, tenant_id: &str, module: &str) {
        self.fresh_map()
            .remove(&(tenant_id.to_owned(), module.to_owned()));
    }
}
