//! [`Billing`]: subscriptions kept in the control plane, the operator's plan
//! catalog, and the entitlement grants derived from both.
//!
//! Every write to a subscription goes through [`Billing`], which saves it
//! (with its history) and then hands the entitlements engine the new grant.
//! A subscription changed by another process (the CLI's maintenance run, a
//! second server) is noticed through its `revision`, which the dispatch path
//! reads together with the installation.
//!
//! # Modules without plans
//! A module the catalog does not price is *unpriced*: any tenant may install
//! it, and it gets every feature it declares with unlimited limits and
//! meters. The host logs each unpriced module at start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::Serialize;
use souk_module_registry::{LimitKind, Manifest};
use time::{Duration, OffsetDateTime};

use super::bounds::{self, MAX_PREPAID_PERIODS};
use super::catalog::{
    Allowance, BillingInterval, Catalog as PlanCatalog, Currency, ModulePlans, Plan,
};
use super::store::{self, Change, SubscriptionRecord, rfc3339, state_name};
use super::subscription::{
    Clock, PlanChange, Quote, Subscription, SubscriptionError, SubscriptionEvent,
    SubscriptionState, add_months,
};
use crate::control_plane::ControlPlane;
use crate::entitlements::{
    AccessState, EntitlementEngine, Grant, MeterAllowance, Period, ResetInterval,
};
use crate::error::SoukError;
use crate::tenancy::Tenant;

/// How long before a trial ends the `trial_ending` notification is written.
pub const TRIAL_ENDING_NOTICE: Duration = Duration::days(3);

/// Who asks for a subscription change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor<'a> {
    /// The operator (comps, support, settled payments).
    Operator,
    /// The tenant itself, through its token.
    Tenant(&'a str),
    /// The time-driven maintenance step.
    Maintenance,
}

impl Actor<'_> {
    fn label(&self) -> String {
        match self {
            Actor::Operator => "operator".into(),
            Actor::Tenant(slug) => format!("tenant:{slug}"),
            Actor::Maintenance => "maintenance".into(),
        }
    }
}

/// A subscription as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionView {
    /// The module.
    pub module: String,
    /// The plan in effect.
    pub plan: String,
    /// `trialing`, `active`, `past_due`, `canceled` or `expired`.
    pub state: &'static str,
    /// Whether the tenant may use the module now.
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
    /// While past due: when access ends.
    pub grace_ends: Option<String>,
    /// A downgrade waiting for the period end.
    pub scheduled_plan: Option<String>,
    /// Periods paid ahead.
    pub prepaid_periods: u32,
    /// Whether the trial ended without payment.
    pub trial_unpaid: bool,
}

/// What a plan change (or a first subscription) costs, shown before it is made.
#[derive(Debug, Clone, Serialize)]
pub struct QuoteView {
    /// The module.
    pub module: String,
    /// The current plan, if subscribed.
    pub from_plan: Option<String>,
    /// The plan asked about.
    pub to_plan: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Charged now, minor units.
    pub amount_due_now: u64,
    /// Credit for the unused part of the current plan.
    pub credit: u64,
    /// Price of each later period.
    pub next_period_price: u64,
    /// When the change takes effect, RFC 3339.
    pub effective_at: String,
    /// `upgrade` (now, prorated), `downgrade` (at period end), `trial`
    /// (a free trial starts now) or `new` (a first paid period).
    pub kind: &'static str,
    /// Trial days the plan offers this tenant (0 once a trial was used).
    pub trial_days: u32,
}

/// What one maintenance run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MaintenanceReport {
    /// When it ran (host clock), RFC 3339.
    pub at: String,
    /// Subscriptions examined.
    pub examined: usize,
    /// Changes made, as `tenant/module: action`.
    pub changes: Vec<String>,
    /// Notifications written to the outbox.
    pub notifications: usize,
    /// Metering periods that ended since the last run and were closed
    /// (their total written to the outbox as `usage_period_closed`).
    pub periods_closed: usize,
    /// Subscriptions (or their meters) this run could not maintain, each
    /// isolated: its own changes are rolled back and retried by the next
    /// run, and every other subscription is maintained as usual. Also
    /// logged as warnings.
    pub failed: Vec<MaintenanceFailure>,
}

/// One subscription maintenance could not move on, and why.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MaintenanceFailure {
    /// The tenant's internal id.
    pub tenant: String,
    /// The module.
    pub module: String,
    /// What failed (e.g. `renewal` or `meter qr_scans_per_month`).
    pub step: String,
    /// The error, as an operator would read it.
    pub error: String,
}

impl MaintenanceReport {
    /// Records (and logs) that `step` of (`tenant`, `module`) failed.
    fn fail(&mut self, tenant: &str, module: &str, step: String, error: &SoukError) {
        tracing::warn!(tenant, module, step, error = %error, "maintenance step failed; the others proceed");
        self.failed.push(MaintenanceFailure {
            tenant: tenant.to_owned(),
            module: module.to_owned(),
            step,
            error: error.to_string(),
        });
    }
}

/// Cached knowledge that the engine's grant for a pair is current: the
/// subscription revision it came from and the instant it stops being valid
/// on its own (a grace or period end).
#[derive(Debug, Clone, Copy)]
struct Fresh {
    revision: Option<i64>,
    until: Option<OffsetDateTime>,
}

/// Subscriptions, the plan catalog and the grants they produce.
pub struct Billing {
    control: ControlPlane,
    plans: RwLock<Arc<PlanCatalog>>,
    clock: Arc<dyn Clock>,
    engine: Arc<EntitlementEngine>,
    currency: Currency,
    fresh: Mutex<HashMap<(String, String), Fresh>>,
}

impl std::fmt::Debug for Billing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Billing")
            .field("currency", &self.currency)
            .finish_non_exhaustive()
    }
}

/// [`bounds::check_periods`] as the error the API answers (400).
fn check_periods(periods: u32) -> Result<(), SoukError> {
    bounds::check_periods(periods).map_err(|e| SoukError::Invalid(e.to_string()))
}

fn conflict(e: SubscriptionError) -> SoukError {
    SoukError::Conflict(e.to_string())
}

impl Billing {
    /// Billing over `control` with `plans`, reading time from `clock`;
    /// subscriptions are priced in `currency` unless a tenant asks otherwise.
    pub fn new(
        control: ControlPlane,
        plans: PlanCatalog,
        clock: Arc<dyn Clock>,
        currency: Currency,
    ) -> Self {
        Billing {
            control,
            plans: RwLock::new(Arc::new(plans)),
            clock: Arc::new(WholeSeconds(clock)),
            engine: Arc::new(EntitlementEngine::new()),
            currency,
            fresh: Mutex::new(HashMap::new()),
        }
    }

    /// The host's clock.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// The entitlements engine.
    pub fn engine(&self) -> &Arc<EntitlementEngine> {
        &self.engine
    }

    /// The plan catalog in effect.
    pub fn plans(&self) -> Arc<PlanCatalog> {
        self.plans
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the plan catalog; every cached grant is rebuilt on its next use.
    pub fn set_plans(&self, plans: PlanCatalog) {
        *self.plans.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(plans);
        self.fresh_map().clear();
    }

    fn fresh_map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Fresh>> {
        self.fresh.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn module_plans(&self, module: &str) -> Option<ModulePlans> {
        let plans = self.plans();
        plans
            .modules
            .iter()
            .find(|m| m.module.as_str() == module)
            .cloned()
    }

    /// The subscription of `tenant` to `module`, if any.
    ///
    /// # Errors
    /// Database failures.
    pub async fn get(
        &self,
        tenant: &Tenant,
        module: &str,
    ) -> Result<Option<SubscriptionRecord>, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        store::load(&mut conn, &tenant.id, module).await
    }

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
        store::history(&mut conn, &tenant.id, module).await
    }

    fn plan_of(&self, module: &str, plan: &str) -> Result<(ModulePlans, Plan), SoukError> {
        let plans = self.module_plans(module).ok_or_else(|| {
            SoukError::NotFound(format!(
                "module {module:?} has no plans in the catalog; it needs no subscription"
            ))
        })?;
        let found = plans.plan(plan).cloned().ok_or_else(|| {
            let names: Vec<&str> = plans.plans.iter().map(|p| p.slug.as_str()).collect();
            SoukError::Invalid(format!(
                "module {module:?} has no plan {plan:?}; its plans are {}",
                names.join(", ")
            ))
        })?;
        Ok((plans, found))
    }

    fn currency_or_default(&self, currency: Option<&str>) -> Result<Currency, SoukError> {
        match currency {
            None => Ok(self.currency),
            Some(text) => {
                Currency::parse(text).map_err(|e| SoukError::Invalid(format!("`currency`: {e}")))
            }
        }
    }

    async fn trial_used(&self, tenant: &Tenant, module: &str) -> Result<bool, SoukError> {
        let used: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM subscription_events WHERE tenant_id = ? AND module_slug = ? \
             AND action = 'trial_started' LIMIT 1",
        )
        .bind(&tenant.id)
        .bind(module)
        .fetch_optional(self.control.pool())
        .await?;
        Ok(used.is_some())
    }

    async fn save(
        &self,
        record: &mut SubscriptionRecord,
        from: Option<SubscriptionState>,
        action: &str,
        actor: Actor<'_>,
        detail: Option<String>,
    ) -> Result<(), SoukError> {
        let mut tx = self.control.pool().begin().await?;
        let actor = actor.label();
        let change = Change {
            action,
            actor: &actor,
            detail,
            at: self.clock.now(),
        };
        store::save(&mut tx, record, from, &change).await?;
        tx.commit().await?;
        // The grant is rebuilt on the next request (the revision moved).
        self.fresh_map().remove(&(
            record.subscription.tenant.clone(),
            record.subscription.module.clone(),
        ));
        Ok(())
    }

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

    /// Makes sure the engine holds the current grant for (`tenant`,
    /// `manifest`'s module). `revision` is the subscription revision read
    /// with the installation (`None`: no subscription). Costs one map lookup
    /// when nothing changed; otherwise reads the subscription, and the first
    /// time also the pair's saved usage through `load_usage`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn ensure_grant<F, Fut>(
        &self,
        tenant: &Tenant,
        manifest: &Manifest,
        revision: Option<i64>,
        load_usage: F,
    ) -> Result<(), SoukError>
    where
        F: FnOnce(Grant) -> Fut,
        Fut: std::future::Future<Output = Result<crate::entitlements::StoredUsage, SoukError>>,
    {
        let module = manifest.slug.as_str();
        let key = (tenant.id.clone(), module.to_owned());
        let now = self.clock.now();
        if let Some(fresh) = self.fresh_map().get(&key).copied()
            && fresh.revision == revision
            && fresh.until.is_none_or(|until| now < until)
            && self.engine.has_grant(&tenant.id, module)
        {
            return Ok(());
        }
        let record = match self.module_plans(module) {
            Some(plans) => match self.get(tenant, module).await? {
                Some(record) => Some(record),
                // Installed before the module was priced: put the tenant on
                // the free plan, as an install today would (once; a
                // concurrent request doing the same wins harmlessly).
                None => match plans.free_plan() {
                    Some(free) => {
                        match self
                            .subscribe(tenant, module, &free.slug, None, Actor::Maintenance)
                            .await
                        {
                            Ok(_) | Err(SoukError::Conflict(_)) => {}
                            Err(e) => return Err(e),
                        }
                        self.get(tenant, module).await?
                    }
                    None => None,
                },
            },
            None => None,
        };
        let grant = self.grant_for(manifest, record.as_ref(), now);
        let until = record.as_ref().and_then(|r| next_access_change(r, now));
        let revision = record.as_ref().map(|r| r.revision);
        if self.engine.has_grant(&tenant.id, module) {
            self.engine.replace_grant(&tenant.id, module, grant);
        } else {
            let usage = load_usage(grant.clone()).await?;
            self.engine
                .replace_grant_with_usage(&tenant.id, module, grant, usage);
        }
        self.fresh_map().insert(key, Fresh { revision, until });
        Ok(())
    }

    /// Forgets the cached grant and usage of a pair (after an uninstall).
    pub fn forget(&self, tenant: &Tenant, module: &str) {
        self.fresh_map()
            .remove(&(tenant.id.clone(), module.to_owned()));
        self.engine.forget(&tenant.id, module);
    }

    /// The grant `record` gives for `manifest`'s module at `now`.
    pub fn grant_for(
        &self,
        manifest: &Manifest,
        record: Option<&SubscriptionRecord>,
        now: OffsetDateTime,
    ) -> Grant {
        let module = manifest.slug.as_str();
        let Some(plans) = self.module_plans(module) else {
            return unpriced_grant(manifest, now);
        };
        let Some(record) = record else {
            let mut grant = Grant::new(AccessState::None, None);
            grant.upgrades = upgrades(&plans, None, self.currency);
            return grant;
        };
        let s = &record.subscription;
        let state = access_state(record, now);
        let mut grant = Grant::new(state, Some(&s.plan));
        grant.upgrades = upgrades(&plans, plans.plan(&s.plan), s.currency);
        let Some(plan) = plans.plan(&s.plan) else {
            tracing::warn!(module, plan = %s.plan, "subscribed plan is no longer in the catalog; it grants nothing");
            return grant;
        };
        grant.features = plan.features.iter().cloned().collect();
        grant.limits = plan
            .limits
            .iter()
            .map(|(key, allowance)| (key.clone(), allowance.limit()))
            .collect();
        let period = monthly_period(s.anchor, now);
        grant.meters = plan
            .meters
            .iter()
            .map(|(key, meter)| {
                let allowance = MeterAllowance {
                    per_period: meter.amount.limit(),
                    period,
                    interval: ResetInterval::Month,
                };
                (key.clone(), allowance)
            })
            .collect();
        grant
    }

    /// The time-driven step: ends trials, renews or moves renewals to
    /// past_due, expires subscriptions after grace or a canceled period and
    /// moves them to the module's free plan, and writes notifications to the
    /// outbox. Idempotent: a second run at the same time changes nothing.
    ///
    /// # Errors
    /// Database failures (changes made before the failure are kept; the next
    /// run continues from there).
    pub async fn run_maintenance(&self) -> Result<MaintenanceReport, SoukError> {
        let now = self.clock.now();
        let mut report = MaintenanceReport {
            at: rfc3339(now),
            ..MaintenanceReport::default()
        };
        let due = {
            let mut conn = self.control.pool().acquire().await?;
            store::due(&mut conn, now, TRIAL_ENDING_NOTICE).await?
        };
        for (tenant_id, module) in due {
            report.examined += 1;
            // One subscription's failure (its transaction rolls back) must
            // not stop the others: it is reported and retried next run.
            let mut own = MaintenanceReport::default();
            match self.maintain_one(&tenant_id, &module, now, &mut own).await {
                Ok(()) => {
                    report.changes.append(&mut own.changes);
                    report.notifications += own.notifications;
                }
                Err(e) => report.fail(&tenant_id, &module, "subscription".to_owned(), &e),
            }
        }
        Ok(report)
    }

    async fn maintain_one(
        &self,
        tenant_id: &str,
        module: &str,
        now: OffsetDateTime,
        report: &mut MaintenanceReport,
    ) -> Result<(), SoukError> {
        let mut tx = self.control.pool().begin_with("BEGIN IMMEDIATE").await?;
        let Some(mut record) = store::load(&mut tx, tenant_id, module).await? else {
            return Ok(());
        };
        let clock = FixedClock(now);
        let label = Actor::Maintenance.label();
        // A subscription left alone for several periods catches up one step
        // at a time; each step is one transition of the state machine.
        for _ in 0..1000 {
            let from = record.subscription.state;
            let s = &record.subscription;
            let payload = serde_json::json!({
                "module": module,
                "plan": s.plan,
                "period_end": rfc3339(s.period_end),
            });
            let (event, action, notify): (SubscriptionEvent, &str, Option<&str>) = match s.state {
                SubscriptionState::Trialing if now >= s.period_end => {
                    let paid = record.prepaid_periods > 0;
                    let kind = if paid {
                        "trial_converted"
                    } else {
                        "trial_ended"
                    };
                    (SubscriptionEvent::TrialEnded { paid }, kind, Some(kind))
                }
                SubscriptionState::Trialing => {
                    if now + TRIAL_ENDING_NOTICE >= s.period_end {
                        let key = format!(
                            "{tenant_id}/{module}/trial_ending/{}",
                            s.period_end.unix_timestamp()
                        );
                        if store::push_outbox(
                            &mut tx,
                            now,
                            "trial_ending",
                            tenant_id,
                            module,
                            &key,
                            &payload,
                        )
                        .await?
                        {
                            report.notifications += 1;
                        }
                    }
                    break;
                }
                SubscriptionState::Active if now >= s.period_end => {
                    if s.price == 0 {
                        (SubscriptionEvent::PeriodEnded, "renewed", None)
                    } else if record.prepaid_periods > 0 {
                        (
                            SubscriptionEvent::PaymentSucceeded,
                            "renewed",
                            Some("renewed"),
                        )
                    } else {
                        (
                            SubscriptionEvent::PaymentFailed,
                            "payment_failed",
                            Some("payment_due"),
                        )
                    }
                }
                SubscriptionState::PastDue if s.grace_ends.is_some_and(|end| now >= end) => {
                    (SubscriptionEvent::GraceExpired, "expired", Some("expired"))
                }
                SubscriptionState::Canceled if now >= s.period_end => {
                    (SubscriptionEvent::PeriodEnded, "expired", Some("expired"))
                }
                _ => break,
            };
            let period_end = record.subscription.period_end;
            record.subscription.apply(event, &clock).map_err(|e| {
                SoukError::Internal(anyhow::anyhow!("maintenance of {tenant_id}/{module}: {e}"))
            })?;
            match event {
                SubscriptionEvent::TrialEnded { paid: true }
                | SubscriptionEvent::PaymentSucceeded => record.prepaid_periods -= 1,
                SubscriptionEvent::TrialEnded { paid: false } => record.trial_unpaid = true,
                _ => {}
            }
            let change = Change {
                action,
                actor: &label,
                detail: None,
                at: now,
            };
            store::save(&mut tx, &mut record, Some(from), &change).await?;
            report
                .changes
                .push(format!("{tenant_id}/{module}: {action}"));
            if let Some(kind) = notify {
                let key = format!(
                    "{tenant_id}/{module}/{kind}/{}",
                    period_end.unix_timestamp()
                );
                if store::push_outbox(&mut tx, now, kind, tenant_id, module, &key, &payload).await?
                {
                    report.notifications += 1;
                }
            }
            if record.subscription.state == SubscriptionState::Expired
                && let Some(free) = self
                    .module_plans(module)
                    .and_then(|plans| plans.free_plan().cloned())
            {
                let subscription = Subscription::start(
                    tenant_id,
                    module,
                    &free,
                    record.subscription.currency,
                    &clock,
                )
                .map_err(|e| SoukError::Internal(e.into()))?;
                let revision = record.revision;
                record = SubscriptionRecord::new(subscription);
                record.revision = revision;
                let change = Change {
                    action: "downgraded",
                    actor: &label,
                    detail: Some(format!("to the free plan {}", free.slug)),
                    at: now,
                };
                store::save(
                    &mut tx,
                    &mut record,
                    Some(SubscriptionState::Expired),
                    &change,
                )
                .await?;
                report
                    .changes
                    .push(format!("{tenant_id}/{module}: downgraded to {}", free.slug));
                let key = format!(
                    "{tenant_id}/{module}/downgraded/{}",
                    period_end.unix_timestamp()
                );
                let payload = serde_json::json!({"module": module, "plan": free.slug});
                if store::push_outbox(
                    &mut tx,
                    now,
                    "downgraded",
                    tenant_id,
                    module,
                    &key,
                    &payload,
                )
                .await?
                {
                    report.notifications += 1;
                }
            }
        }
        tx.commit().await?;
        self.fresh_map()
            .remove(&(tenant_id.to_owned(), module.to_owned()));
        Ok(())
    }

    /// Closes the metering periods that ended: for every subscription whose
    /// plan has meters, the period before the current one gets a
    /// `usage_period_closed` outbox event with its total (read through
    /// `used`), once. The engine and the database start the new period from
    /// zero on their own (usage is keyed by period), so closing is about
    /// telling the tenant, and it is idempotent like the rest.
    ///
    /// # Errors
    /// Database failures.
    pub async fn close_meter_periods<F, Fut>(
        &self,
        report: &mut MaintenanceReport,
        used: F,
    ) -> Result<(), SoukError>
    where
        F: Fn(String, String, String, Period) -> Fut,
        Fut: std::future::Future<Output = Result<u64, SoukError>>,
    {
        let now = self.clock.now();
        let all = {
            let mut conn = self.control.pool().acquire().await?;
            store::all(&mut conn).await?
        };
        for record in all {
            let s = &record.subscription;
            let (tenant_id, module) = (&s.tenant, &s.module);
            let Some(plans) = self.module_plans(module) else {
                continue;
            };
            let Some(plan) = plans.plan(&s.plan) else {
                continue;
            };
            if plan.meters.is_empty() {
                continue;
            }
            let current = monthly_period(s.anchor, now);
            if current.start <= s.anchor {
                continue;
            }
            let previous = monthly_period(s.anchor, current.start - Duration::seconds(1));
            for (meter, allowance) in &plan.meters {
                let key = format!(
                    "{tenant_id}/{module}/usage_period_closed/{meter}/{}",
                    previous.start.unix_timestamp()
                );
                let seen: Option<i64> =
                    sqlx::query_scalar("SELECT 1 FROM outbox WHERE dedupe_key = ?")
                        .bind(&key)
                        .fetch_optional(self.control.pool())
                        .await?;
                if seen.is_some() {
                    continue;
                }
                let total =
                    match used(tenant_id.clone(), module.clone(), meter.clone(), previous).await {
                        Ok(total) => total,
                        Err(e) => {
                            report.fail(tenant_id, module, format!("meter {meter}"), &e);
                            continue;
                        }
                    };
                let payload = serde_json::json!({
                    "module": module,
                    "meter": meter,
                    "plan": s.plan,
                    "period_start": rfc3339(previous.start),
                    "period_end": rfc3339(previous.end),
                    "used": total,
                    "allowance": allowance.amount.limit(),
                });
                let mut tx = self.control.pool().begin().await?;
                let added = store::push_outbox(
                    &mut tx,
                    now,
                    "usage_period_closed",
                    tenant_id,
                    module,
                    &key,
                    &payload,
                )
                .await?;
                tx.commit().await?;
                if added {
                    report.periods_closed += 1;
                    report.notifications += 1;
                }
            }
        }
        Ok(())
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
        store::outbox(&mut conn, tenant.map(|t| t.id.as_str()), after, limit).await
    }
}

/// Billing's view of a clock: whole seconds, the precision subscriptions
/// are stored with, so an instant read back equals the one written.
struct WholeSeconds(Arc<dyn Clock>);

impl Clock for WholeSeconds {
    fn now(&self) -> OffsetDateTime {
        let now = self.0.now();
        now.replace_nanosecond(0).unwrap_or(now)
    }
}

/// A clock stopped at one instant: one maintenance run sees one "now".
struct FixedClock(OffsetDateTime);

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

fn not_subscribed(module: &str) -> SoukError {
    SoukError::NotFound(format!("no subscription to {module:?}"))
}

/// A record for `subscription` that overwrites `existing` (keeping its
/// revision, so the write is checked against it).
fn replace(existing: Option<SubscriptionRecord>, subscription: Subscription) -> SubscriptionRecord {
    let mut record = SubscriptionRecord::new(subscription);
    if let Some(existing) = existing {
        record.revision = existing.revision;
    }
    record
}

/// The state a history entry records as "from": none for a first write.
fn record_from(record: &SubscriptionRecord) -> Option<SubscriptionState> {
    (record.revision > 0).then_some(record.subscription.state)
}

/// Where a subscription stands for the entitlements engine at `now`.
pub fn access_state(record: &SubscriptionRecord, now: OffsetDateTime) -> AccessState {
    let s = &record.subscription;
    let lost = if record.trial_unpaid {
        AccessState::TrialEnded
    } else {
        AccessState::Expired
    };
    match s.state {
        SubscriptionState::Trialing => AccessState::Trialing,
        SubscriptionState::Active => AccessState::Active,
        SubscriptionState::PastDue if s.has_access(now) => AccessState::PastDueInGrace,
        SubscriptionState::PastDue if record.trial_unpaid => AccessState::TrialEnded,
        SubscriptionState::PastDue => AccessState::PastDue,
        SubscriptionState::Canceled if s.has_access(now) => AccessState::CanceledUntilPeriodEnd,
        SubscriptionState::Canceled | SubscriptionState::Expired => lost,
    }
}

/// The next instant at which `record`'s access changes without any write
/// (a grace or canceled period running out), if one is ahead.
fn next_access_change(record: &SubscriptionRecord, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let s = &record.subscription;
    let at = match s.state {
        SubscriptionState::PastDue => s.grace_ends,
        SubscriptionState::Canceled => Some(s.period_end),
        _ => None,
    }?;
    // Meter periods roll on their own inside the engine; only access matters.
    (at > now).then_some(at)
}

/// The monthly metering period anchored at `anchor` that contains `now`
/// (before the anchor: from `now` to the anchor).
fn monthly_period(anchor: OffsetDateTime, now: OffsetDateTime) -> Period {
    if now < anchor {
        return Period {
            start: now,
            end: anchor,
        };
    }
    let mut months = 0u32;
    loop {
        let end = add_months(anchor, months + 1);
        if now < end || end <= anchor {
            return Period {
                start: add_months(anchor, months),
                end,
            };
        }
        months += 1;
    }
}

/// For each key the plans sell, the cheapest plan (in `currency`) that
/// grants it, or grants more of it than `current`.
fn upgrades(
    plans: &ModulePlans,
    current: Option<&Plan>,
    currency: Currency,
) -> HashMap<String, String> {
    let mut ordered: Vec<&Plan> = plans.plans.iter().collect();
    ordered.sort_by_key(|p| p.price(currency).unwrap_or(u64::MAX));
    let more = |ours: Option<Allowance>, theirs: Allowance| match (ours, theirs) {
        (None, _) => true,
        (Some(Allowance::Unlimited), _) => false,
        (Some(Allowance::Finite(_)), Allowance::Unlimited) => true,
        (Some(Allowance::Finite(a)), Allowance::Finite(b)) => b > a,
    };
    let mut out = HashMap::new();
    for plan in ordered {
        if current.is_some_and(|c| c.slug == plan.slug) || plan.price(currency).is_none() {
            continue;
        }
        for feature in &plan.features {
            if !current.is_some_and(|c| c.features.contains(feature)) {
                out.entry(feature.clone())
                    .or_insert_with(|| plan.slug.clone());
            }
        }
        for (key, allowance) in &plan.limits {
            if more(current.and_then(|c| c.limits.get(key).copied()), *allowance) {
                out.entry(key.clone()).or_insert_with(|| plan.slug.clone());
            }
        }
        for (key, meter) in &plan.meters {
            if more(
                current.and_then(|c| c.meters.get(key).map(|m| m.amount)),
                meter.amount,
            ) {
                out.entry(key.clone()).or_insert_with(|| plan.slug.clone());
            }
        }
    }
    out
}

/// The grant of a module the catalog does not price: everything it
/// declares, without limits.
fn unpriced_grant(manifest: &Manifest, now: OffsetDateTime) -> Grant {
    let mut grant = Grant::new(AccessState::Active, None);
    grant.features = manifest.features.iter().map(|f| f.key.clone()).collect();
    let start = now
        .replace_day(1)
        .unwrap_or(now)
        .replace_time(time::Time::MIDNIGHT);
    let period = Period {
        start,
        end: add_months(start, 1),
    };
    for limit in &manifest.limits {
        match limit.kind {
            LimitKind::Count => {
                grant.limits.insert(limit.key.clone(), None);
            }
            LimitKind::Meter => {
                let allowance = MeterAllowance {
                    per_period: None,
                    period,
                    interval: ResetInterval::Month,
                };
                grant.meters.insert(limit.key.clone(), allowance);
            }
        }
    }
    grant
}

fn view(record: &SubscriptionRecord, now: OffsetDateTime) -> SubscriptionView {
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

fn quote_view(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::subscription::ManualClock;
    use crate::entitlements::DenialReason;

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    }

    fn npr() -> Currency {
        Currency::parse("NPR").unwrap()
    }

    fn digital_card() -> ModulePlans {
        let catalog =
            PlanCatalog::parse(include_str!("../../../catalog/digital-card.yaml")).unwrap();
        catalog.modules[0].clone()
    }

    const MANIFEST: &str = "slug: digital-card\nname: Digital Card\nversion: 1.0.0\n\
        description: Cards.\ncategory: community\napi: 0.2.0\n\
        features:\n  - key: card_creation\n  - key: premium_templates\n\
        limits:\n  - key: max_cards\n    kind: count\n  - key: qr_scans_per_month\n    kind: meter\n";

    #[test]
    fn upgrades_name_the_cheapest_plan_that_grants_more() {
        let plans = digital_card();
        let free = plans.plan("free").unwrap();
        let from_free = upgrades(&plans, Some(free), npr());
        assert_eq!(from_free["batch_generation"], "pro");
        assert_eq!(from_free["premium_templates"], "business");
        assert_eq!(from_free["max_cards"], "pro");
        assert_eq!(from_free["qr_scans_per_month"], "pro");
        assert!(
            !from_free.contains_key("card_creation"),
            "free already has it"
        );
        let pro = plans.plan("pro").unwrap();
        let from_pro = upgrades(&plans, Some(pro), npr());
        assert_eq!(from_pro["max_cards"], "business");
        assert!(!from_pro.contains_key("batch_generation"));
        let business = plans.plan("business").unwrap();
        assert!(upgrades(&plans, Some(business), npr()).is_empty());
        // Without a subscription every key names its cheapest plan.
        assert_eq!(upgrades(&plans, None, npr())["card_creation"], "free");
    }

    #[test]
    fn meter_periods_are_months_from_the_anchor_clamped_to_short_months() {
        let anchor = at("2026-01-31T09:00:00Z");
        let p = monthly_period(anchor, at("2026-03-01T00:00:00Z"));
        assert_eq!(
            (p.start, p.end),
            (at("2026-02-28T09:00:00Z"), at("2026-03-31T09:00:00Z"))
        );
        let p = monthly_period(anchor, anchor);
        assert_eq!((p.start, p.end), (anchor, at("2026-02-28T09:00:00Z")));
        let p = monthly_period(anchor, at("2026-01-01T00:00:00Z"));
        assert_eq!(p.end, anchor);
    }

    #[test]
    fn access_follows_state_grace_and_period() {
        let plans = digital_card();
        let clock = ManualClock::new(at("2026-01-01T00:00:00Z"));
        let pro = plans.plan("pro").unwrap();
        let mut record = SubscriptionRecord::new(
            Subscription::start_new_trial("t", "digital-card", pro, npr(), &clock).unwrap(),
        );
        assert_eq!(access_state(&record, clock.now()), AccessState::Trialing);
        clock.set(at("2026-01-31T00:00:00Z"));
        record
            .subscription
            .apply(SubscriptionEvent::TrialEnded { paid: false }, &clock)
            .unwrap();
        record.trial_unpaid = true;
        assert_eq!(
            access_state(&record, clock.now()),
            AccessState::PastDueInGrace
        );
        assert_eq!(
            next_access_change(&record, clock.now()),
            Some(at("2026-02-07T00:00:00Z"))
        );
        assert_eq!(
            access_state(&record, at("2026-02-07T00:00:00Z")),
            AccessState::TrialEnded
        );
        record.trial_unpaid = false;
        assert_eq!(
            access_state(&record, at("2026-02-07T00:00:00Z")),
            AccessState::PastDue
        );
    }

    #[test]
    fn an_unpriced_module_gets_everything_it_declares_without_limits() {
        let manifest = Manifest::parse(MANIFEST).unwrap();
        let grant = unpriced_grant(&manifest, at("2026-05-17T12:00:00Z"));
        assert_eq!(grant.state, AccessState::Active);
        assert!(grant.features.contains("premium_templates"));
        assert_eq!(grant.limits["max_cards"], None);
        let meter = grant.meters["qr_scans_per_month"];
        assert_eq!(meter.per_period, None);
        assert_eq!(meter.period.start, at("2026-05-01T00:00:00Z"));
        assert_eq!(meter.period.end, at("2026-06-01T00:00:00Z"));
    }

    async fn billing(clock: Arc<ManualClock>) -> (Billing, Tenant) {
        let control = ControlPlane::in_memory().await.unwrap();
        sqlx::query(
            "INSERT INTO tenants (id, slug, name, created_at) VALUES ('t1', 'acme', 'Acme', 'now')",
        )
        .execute(control.pool())
        .await
        .unwrap();
        let catalog =
            PlanCatalog::parse(include_str!("../../../catalog/digital-card.yaml")).unwrap();
        let billing = Billing::new(control, catalog, clock, npr());
        let tenant = Tenant {
            id: "t1".into(),
            slug: "acme".into(),
            name: "Acme".into(),
            created_at: "now".into(),
        };
        (billing, tenant)
    }

    #[tokio::test]
    async fn maintenance_walks_a_trial_to_the_free_plan_and_repeats_nothing() {
        let clock = Arc::new(ManualClock::new(at("2026-01-01T00:00:00Z")));
        let (billing, tenant) = billing(clock.clone()).await;
        let tenant_actor = Actor::Tenant("acme");
        billing
            .subscribe(&tenant, "digital-card", "pro", None, tenant_actor)
            .await
            .unwrap();
        // A second trial is refused while the first gives access.
        let again = billing
            .subscribe(&tenant, "digital-card", "business", None, tenant_actor)
            .await;
        assert!(matches!(again, Err(SoukError::Conflict(_))), "{again:?}");
        let mut notices = 0;
        for (day, state) in [
            ("2026-01-20T00:00:00Z", "trialing"),
            ("2026-01-29T00:00:00Z", "trialing"),
            ("2026-01-31T00:00:00Z", "past_due"),
            ("2026-02-07T00:00:00Z", "active"),
        ] {
            clock.set(at(day));
            let first = billing.run_maintenance().await.unwrap();
            let second = billing.run_maintenance().await.unwrap();
            assert!(second.changes.is_empty(), "{day}: {second:?}");
            assert_eq!(second.notifications, 0, "{day}: {second:?}");
            notices += first.notifications;
            let view = billing.show(&tenant, "digital-card").await.unwrap();
            assert_eq!(view.state, state, "{day}");
        }
        let view = billing.show(&tenant, "digital-card").await.unwrap();
        assert_eq!(view.plan, "free");
        let kinds: Vec<String> = billing
            .outbox(Some(&tenant), 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            ["trial_ending", "trial_ended", "expired", "downgraded"]
        );
        assert_eq!(notices, 4);
        // The grant on the free plan names the upgrade for a pro feature.
        let manifest = Manifest::parse(MANIFEST).unwrap();
        let record = billing.get(&tenant, "digital-card").await.unwrap();
        let grant = billing.grant_for(&manifest, record.as_ref(), clock.now());
        assert_eq!(grant.plan.as_deref(), Some("free"));
        assert_eq!(grant.limits["max_cards"], Some(100));
        assert_eq!(grant.upgrades["premium_templates"], "business");
        let engine = EntitlementEngine::new();
        engine.replace_grant("t1", "digital-card", grant);
        match engine.check_feature("t1", "digital-card", "premium_templates") {
            crate::entitlements::Decision::Denied(d) => {
                assert_eq!(d.reason, DenialReason::FeatureNotInPlan);
                assert_eq!(d.upgrade_plan.as_deref(), Some("business"));
            }
            allowed => panic!("{allowed:?}"),
        }
    }

    #[tokio::test]
    async fn a_trial_converts_when_a_period_was_prepaid() {
        let clock = Arc::new(ManualClock::new(at("2026-01-01T00:00:00Z")));
        let (billing, tenant) = billing(clock.clone()).await;
        billing
            .subscribe(&tenant, "digital-card", "pro", None, Actor::Operator)
            .await
            .unwrap();
        let view = billing.extend(&tenant, "digital-card", 1).await.unwrap();
        assert_eq!((view.state, view.prepaid_periods), ("trialing", 1));
        clock.set(at("2026-01-31T00:00:00Z"));
        let report = billing.run_maintenance().await.unwrap();
        assert_eq!(report.changes, ["t1/digital-card: trial_converted"]);
        let view = billing.show(&tenant, "digital-card").await.unwrap();
        assert_eq!((view.state, view.prepaid_periods), ("active", 0));
        assert_eq!(view.period_end, "2026-02-28T00:00:00Z");
        // Quotes and changes agree; a tenant's paid upgrade needs payment.
        clock.set(at("2026-02-14T00:00:00Z"));
        let quote = billing
            .quote(&tenant, "digital-card", "business")
            .await
            .unwrap();
        assert_eq!(quote.kind, "upgrade");
        let refused = billing
            .change_plan(&tenant, "digital-card", "business", Actor::Tenant("acme"))
            .await;
        assert!(
            matches!(refused, Err(SoukError::PaymentRequired(_))),
            "{refused:?}"
        );
        let (view, charged) = billing
            .change_plan(&tenant, "digital-card", "business", Actor::Operator)
            .await
            .unwrap();
        assert_eq!(view.plan, "business");
        assert_eq!(charged.amount_due_now, quote.amount_due_now);
        assert_eq!(charged.credit, quote.credit);
        // A downgrade waits for the period end.
        let (view, _) = billing
            .change_plan(&tenant, "digital-card", "pro", Actor::Tenant("acme"))
            .await
            .unwrap();
        assert_eq!(
            (view.plan.as_str(), view.scheduled_plan.as_deref()),
            ("business", Some("pro"))
        );
    }
}
