//! What a tenant does with a subscription: subscribe (free plan, trial, or
//! payment required), quote and change its plan, cancel and reactivate;
//! and the subscription an install needs.

use souk_module_registry::Manifest;

use super::views::{QuoteView, SubscriptionView, quote_view, view};
use super::{Actor, Billing, conflict, not_subscribed, record_from, replace};
use crate::billing::store::{SubscriptionRecord, state_name};
use crate::billing::subscription::{
    PlanChange, Subscription, SubscriptionEvent, SubscriptionState,
};
use crate::clock::rfc3339;
use crate::error::SoukError;
use crate::tenancy::Tenant;

impl Billing {
    /// A tenant subscribes to `plan` of `module`: a free plan starts at
    /// once; a paid plan with a trial starts the trial (one trial per tenant
    /// and module); a paid plan without a trial needs payment.
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for an unknown plan or currency;
    /// [`SoukError::Conflict`] when a subscription that gives access exists
    /// (change its plan instead); [`SoukError::PaymentRequired`] when the plan
    /// must be paid first.
    pub async fn subscribe(
        &self,
        tenant: &Tenant,
        module: &str,
        plan: &str,
        currency: Option<&str>,
        actor: Actor<'_>,
    ) -> Result<SubscriptionView, SoukError> {
        let (_, plan) = self.plan_of(module, plan)?;
        let currency = self.currency_or_default(currency)?;
        let existing = self.get(tenant, module).await?;
        let now = self.clock.now();
        let clock = self.clock.as_ref();
        if let Some(record) = &existing {
            let s = &record.subscription;
            // Leaving the free plan for a paid one (its trial) is the one
            // subscribe allowed over a subscription that gives access.
            let leaving_free = s.price == 0 && s.state == SubscriptionState::Active && !plan.free;
            if s.has_access(now) && !leaving_free {
                return Err(SoukError::Conflict(format!(
                    "tenant already subscribes to {module} (plan {}, {}); change the plan instead",
                    s.plan,
                    state_name(s.state)
                )));
            }
        }
        if plan.free {
            let subscription = Subscription::start(&tenant.id, module, &plan, currency, clock)
                .map_err(conflict)?;
            let mut record = replace(existing, subscription);
            let from = record_from(&record);
            self.save(&mut record, from, "subscribed", actor, None)
                .await?;
            return Ok(view(&record, now));
        }
        if plan.trial_days > 0 && !self.trial_used(tenant, module).await? {
            let record = match existing {
                Some(mut record)
                    if matches!(
                        record.subscription.state,
                        SubscriptionState::Active | SubscriptionState::Expired
                    ) && record.subscription.currency == currency =>
                {
                    let from = Some(record.subscription.state);
                    record
                        .subscription
                        .start_trial(&plan, clock)
                        .map_err(conflict)?;
                    record.trial_unpaid = false;
                    self.save(&mut record, from, "trial_started", actor, None)
                        .await?;
                    record
                }
                existing => {
                    let subscription =
                        Subscription::start_new_trial(&tenant.id, module, &plan, currency, clock)
                            .map_err(conflict)?;
                    let mut record = replace(existing, subscription);
                    let from = record_from(&record);
                    self.save(&mut record, from, "trial_started", actor, None)
                        .await?;
                    record
                }
            };
            return Ok(view(&record, now));
        }
        let price = plan.price(currency).ok_or_else(|| {
            SoukError::Invalid(format!(
                "plan {} of {module} is not sold in {currency}",
                plan.slug
            ))
        })?;
        Err(SoukError::PaymentRequired(format!(
            "plan {} of {module} costs {price} {currency} (minor units) per period and has no \
             trial left for this tenant; it starts once payment is confirmed (an operator can \
             grant it: POST /v1/tenants/{}/subscriptions/{module}/grant)",
            plan.slug, tenant.slug
        )))
    }

    /// What moving to `plan` would cost now, without changing anything.
    ///
    /// # Errors
    /// As for [`Billing::change_plan`], except payment.
    pub async fn quote(
        &self,
        tenant: &Tenant,
        module: &str,
        plan: &str,
    ) -> Result<QuoteView, SoukError> {
        let (_, to) = self.plan_of(module, plan)?;
        let now = self.clock.now();
        let existing = self.get(tenant, module).await?;
        let trial_days = if to.free || self.trial_used(tenant, module).await? {
            0
        } else {
            to.trial_days
        };
        // Leaving the free plan for a plan with a trial left starts the
        // trial (as `subscribe` does), so it is quoted as one.
        let trial_from_free = |record: &SubscriptionRecord| {
            record.subscription.price == 0 && !to.free && trial_days > 0
        };
        match existing {
            Some(record)
                if record.subscription.state == SubscriptionState::Active
                    && !trial_from_free(&record) =>
            {
                let s = &record.subscription;
                let quote = s.quote(PlanChange { to: &to }, now).map_err(conflict)?;
                Ok(quote_view(
                    module,
                    Some(&s.plan),
                    &to,
                    s.currency,
                    &quote,
                    s.price,
                    0,
                ))
            }
            Some(record) if record.subscription.has_access(now) && !trial_from_free(&record) => {
                Err(SoukError::Conflict(format!(
                    "the subscription to {module} is {}; plan changes need an active subscription",
                    state_name(record.subscription.state)
                )))
            }
            existing => {
                let currency = existing.map_or(self.currency, |r| r.subscription.currency);
                let price = to.price(currency).ok_or_else(|| {
                    SoukError::Invalid(format!("plan {} is not sold in {currency}", to.slug))
                })?;
                let due = if trial_days > 0 { 0 } else { price };
                Ok(QuoteView {
                    module: module.to_owned(),
                    from_plan: None,
                    to_plan: to.slug.clone(),
                    currency: currency.to_string(),
                    amount_due_now: due,
                    credit: 0,
                    next_period_price: price,
                    effective_at: rfc3339(now),
                    kind: if trial_days > 0 { "trial" } else { "new" },
                    trial_days,
                })
            }
        }
    }

    /// Moves an active subscription to `plan`: an upgrade takes effect now
    /// with a prorated credit, a downgrade at the period end. A tenant's
    /// upgrade that costs money needs payment; an operator's is recorded as
    /// settled by the operator.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] without a subscription; [`SoukError::Conflict`]
    /// when not active, or already on the plan; [`SoukError::PaymentRequired`]
    /// as above.
    pub async fn change_plan(
        &self,
        tenant: &Tenant,
        module: &str,
        plan: &str,
        actor: Actor<'_>,
    ) -> Result<(SubscriptionView, QuoteView), SoukError> {
        let (_, to) = self.plan_of(module, plan)?;
        let mut record = self
            .get(tenant, module)
            .await?
            .ok_or_else(|| not_subscribed(module))?;
        let now = self.clock.now();
        let old_price = record.subscription.price;
        let old_plan = record.subscription.plan.clone();
        let quote = record
            .subscription
            .quote(PlanChange { to: &to }, now)
            .map_err(conflict)?;
        if quote.amount_due_now > 0 && actor != Actor::Operator {
            return Err(SoukError::PaymentRequired(format!(
                "moving {module} from {old_plan} to {} costs {} {} now (credit {} for the unused \
                 part of {old_plan}); it takes effect once payment is confirmed (an operator can \
                 apply it)",
                to.slug, quote.amount_due_now, record.subscription.currency, quote.credit
            )));
        }
        let from = Some(record.subscription.state);
        let applied = record
            .subscription
            .change_plan(PlanChange { to: &to }, self.clock.as_ref())
            .map_err(conflict)?;
        let detail = format!(
            "{old_plan} -> {}: due now {} {}, credit {}, effective {}{}",
            to.slug,
            applied.amount_due_now,
            record.subscription.currency,
            applied.credit,
            rfc3339(applied.effective_at),
            if actor == Actor::Operator && applied.amount_due_now > 0 {
                " (settled by the operator)"
            } else {
                ""
            }
        );
        self.save(&mut record, from, "plan_changed", actor, Some(detail))
            .await?;
        let currency = record.subscription.currency;
        let quote = quote_view(
            module,
            Some(&old_plan),
            &to,
            currency,
            &applied,
            old_price,
            0,
        );
        Ok((view(&record, now), quote))
    }

    /// Cancels now (access ends) or at the period end (the default).
    ///
    /// # Errors
    /// [`SoukError::NotFound`] without a subscription; [`SoukError::Conflict`]
    /// when the state does not allow it.
    pub async fn cancel(
        &self,
        tenant: &Tenant,
        module: &str,
        at_period_end: bool,
        actor: Actor<'_>,
    ) -> Result<SubscriptionView, SoukError> {
        let event = if at_period_end {
            SubscriptionEvent::CancelAtPeriodEnd
        } else {
            SubscriptionEvent::CancelNow
        };
        self.apply(tenant, module, event, "canceled", actor).await
    }

    /// Undoes a cancellation before the period ends.
    ///
    /// # Errors
    /// As for [`Billing::cancel`].
    pub async fn reactivate(
        &self,
        tenant: &Tenant,
        module: &str,
        actor: Actor<'_>,
    ) -> Result<SubscriptionView, SoukError> {
        self.apply(
            tenant,
            module,
            SubscriptionEvent::Reactivate,
            "reactivated",
            actor,
        )
        .await
    }

    async fn apply(
        &self,
        tenant: &Tenant,
        module: &str,
        event: SubscriptionEvent,
        action: &str,
        actor: Actor<'_>,
    ) -> Result<SubscriptionView, SoukError> {
        let mut record = self
            .get(tenant, module)
            .await?
            .ok_or_else(|| not_subscribed(module))?;
        let from = Some(record.subscription.state);
        record
            .subscription
            .apply(event, self.clock.as_ref())
            .map_err(conflict)?;
        self.save(&mut record, from, action, actor, None).await?;
        Ok(view(&record, self.clock.now()))
    }

    /// Before an install: checks that `tenant` may use `manifest`'s module,
    /// starting the free plan when the module has one and the tenant has no
    /// subscription yet.
    ///
    /// # Errors
    /// [`SoukError::PaymentRequired`] when the module has no free plan and
    /// the tenant no subscription giving access; the message names the plans.
    pub async fn authorize_install(
        &self,
        tenant: &Tenant,
        manifest: &Manifest,
        actor: Actor<'_>,
    ) -> Result<(), SoukError> {
        let module = manifest.slug.as_str();
        let Some(plans) = self.module_plans(module) else {
            return Ok(());
        };
        let now = self.clock.now();
        if let Some(record) = self.get(tenant, module).await?
            && record.subscription.has_access(now)
        {
            return Ok(());
        }
        if let Some(free) = plans.free_plan() {
            self.subscribe(tenant, module, &free.slug, None, actor)
                .await?;
            return Ok(());
        }
        let offers: Vec<String> = plans
            .plans
            .iter()
            .map(|p| match p.trial_days {
                0 => p.slug.clone(),
                days => format!("{} ({days}-day trial)", p.slug),
            })
            .collect();
        Err(SoukError::PaymentRequired(format!(
            "installing {module} needs a subscription; subscribe to one of its plans first: {}",
            offers.join(", ")
        )))
    }
}
