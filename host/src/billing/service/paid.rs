//! Billing's side of payments: what a purchase costs as invoice lines
//! ([`Billing::price_purchase`]), and what a confirmed payment does to the
//! subscriptions it names ([`Billing::apply_paid`]) — always through the
//! subscription state machine, inside the caller's transaction, so the
//! payment inbox row, the invoice's status and the subscription change
//! commit together or not at all.

use sqlx::{Sqlite, Transaction};

use super::{Billing, conflict, record_from, replace};
use crate::billing::bounds::MAX_PREPAID_PERIODS;
use crate::billing::invoice::{
    Line, LineKind, Purchase, PurchaseItem, PurchaseKind, bundle_discount,
};
use crate::billing::plans::{Currency, Plan};
use crate::billing::store::{self, Change, SubscriptionRecord};
use crate::billing::subscription::{
    PlanChange, Subscription, SubscriptionEvent, SubscriptionState,
};
use crate::clock::rfc3339;
use crate::error::SoukError;
use crate::tenancy::Tenant;

/// What a tenant asks to buy.
#[derive(Debug, Clone, Copy)]
pub enum PurchaseRequest<'a> {
    /// A plan of a module: a new paid subscription, a trial converting, a
    /// renewal (the plan already held), or an upgrade (a dearer plan of an
    /// active paid subscription, prorated).
    Plan {
        /// The module's slug.
        module: &'a str,
        /// The plan's slug.
        plan: &'a str,
        /// The currency of a new subscription (an existing one keeps its own).
        currency: Option<&'a str>,
    },
    /// A bundle of the catalog, bought as one purchase at its discount.
    Bundle {
        /// The bundle's slug.
        bundle: &'a str,
        /// The currency (every subscription the bundle touches must use it).
        currency: Option<&'a str>,
    },
}

/// A purchase priced: the lines of its invoice (without tax) and what
/// paying it grants.
#[derive(Debug, Clone)]
pub struct PricedPurchase {
    /// The invoice's currency.
    pub currency: Currency,
    /// The lines before tax.
    pub lines: Vec<Line>,
    /// What paying grants.
    pub purchase: Purchase,
}

fn plan_line(module: &str, plan: &Plan, price: u64) -> Line {
    Line {
        kind: LineKind::Plan,
        description: format!(
            "{module} — {}, one {} period",
            plan.name,
            interval_name(plan)
        ),
        module: Some(module.to_owned()),
        plan: Some(plan.slug.clone()),
        amount: i64::try_from(price).unwrap_or(i64::MAX),
    }
}

fn interval_name(plan: &Plan) -> &'static str {
    match plan.interval.months() {
        12 => "yearly",
        _ => "monthly",
    }
}

fn amount(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Billing {
    /// Prices `request` for `tenant` now, without changing anything.
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for an unknown module, plan, bundle or
    /// currency, a free plan, or a plan not sold in the currency;
    /// [`SoukError::Conflict`] for a purchase the subscription's state does
    /// not allow (a downgrade, a canceled subscription, a bundle in another
    /// currency than a subscription it touches).
    pub async fn price_purchase(
        &self,
        tenant: &Tenant,
        request: PurchaseRequest<'_>,
    ) -> Result<PricedPurchase, SoukError> {
        match request {
            PurchaseRequest::Plan {
                module,
                plan,
                currency,
            } => self.price_plan(tenant, module, plan, currency).await,
            PurchaseRequest::Bundle { bundle, currency } => {
                self.price_bundle(tenant, bundle, currency).await
            }
        }
    }

    async fn price_plan(
        &self,
        tenant: &Tenant,
        module: &str,
        plan: &str,
        currency: Option<&str>,
    ) -> Result<PricedPurchase, SoukError> {
        let (_, to) = self.plan_of(module, plan)?;
        if to.free {
            return Err(SoukError::Invalid(format!(
                "plan {plan} of {module} is free; subscribe to it, nothing is paid"
            )));
        }
        let existing = self.get(tenant, module).await?;
        let currency = match &existing {
            Some(record) => record.subscription.currency,
            None => self.currency_or_default(currency)?,
        };
        let price = to.price(currency).ok_or_else(|| {
            SoukError::Invalid(format!("plan {plan} of {module} is not sold in {currency}"))
        })?;
        let item = PurchaseItem {
            module: module.to_owned(),
            plan: to.slug.clone(),
        };
        let now = self.clock.now();
        let full = |kind| PricedPurchase {
            currency,
            lines: vec![plan_line(module, &to, price)],
            purchase: Purchase {
                kind,
                bundle: None,
                items: vec![item.clone()],
            },
        };
        let Some(record) = existing else {
            return Ok(full(PurchaseKind::Subscribe));
        };
        let s = &record.subscription;
        match s.state {
            SubscriptionState::Canceled if s.has_access(now) => Err(SoukError::Conflict(format!(
                "the subscription to {module} is canceled; reactivate it before paying"
            ))),
            SubscriptionState::Active if s.plan == to.slug && s.price > 0 => {
                Ok(full(PurchaseKind::Renew))
            }
            SubscriptionState::PastDue if s.plan == to.slug => Ok(full(PurchaseKind::Renew)),
            SubscriptionState::Active if s.price > 0 => {
                let quote = s.quote(PlanChange { to: &to }, now).map_err(conflict)?;
                if quote.effective_at != now {
                    return Err(SoukError::Conflict(format!(
                        "{} is not dearer than {}: a downgrade takes effect at the period end and costs nothing; change the plan instead",
                        to.slug, s.plan
                    )));
                }
                let charge = quote.amount_due_now + quote.credit;
                let mut lines = vec![Line {
                    kind: LineKind::Plan,
                    description: format!(
                        "{module} — {}, prorated until {}",
                        to.name,
                        rfc3339(s.period_end)
                    ),
                    module: Some(module.to_owned()),
                    plan: Some(to.slug.clone()),
                    amount: amount(charge),
                }];
                if quote.credit > 0 {
                    lines.push(Line {
                        kind: LineKind::ProrationCredit,
                        description: format!("credit for the unused part of {module} — {}", s.plan),
                        module: Some(module.to_owned()),
                        plan: Some(s.plan.clone()),
                        amount: -amount(quote.credit),
                    });
                }
                Ok(PricedPurchase {
                    currency,
                    lines,
                    purchase: Purchase {
                        kind: PurchaseKind::Upgrade,
                        bundle: None,
                        items: vec![item],
                    },
                })
            }
            // A trial (converting), a free plan (leaving it), past due on
            // another plan, expired, or canceled and over: a full period.
            _ => Ok(full(PurchaseKind::Subscribe)),
        }
    }

    async fn price_bundle(
        &self,
        tenant: &Tenant,
        slug: &str,
        currency: Option<&str>,
    ) -> Result<PricedPurchase, SoukError> {
        let catalog = self.plans();
        let bundle = catalog
            .bundles
            .iter()
            .find(|b| b.slug == slug)
            .ok_or_else(|| SoukError::Invalid(format!("the catalog has no bundle {slug:?}")))?;
        let currency = self.currency_or_default(currency)?;
        let now = self.clock.now();
        let mut lines = Vec::new();
        let mut items = Vec::new();
        for (module, plan) in &bundle.plans {
            let module = module.as_str();
            let (_, plan) = self.plan_of(module, plan)?;
            if let Some(record) = self.get(tenant, module).await? {
                let s = &record.subscription;
                if s.currency != currency && s.has_access(now) {
                    return Err(SoukError::Conflict(format!(
                        "the subscription to {module} is in {}, not {currency}",
                        s.currency
                    )));
                }
                if s.price > 0 && s.has_access(now) && s.state != SubscriptionState::Trialing {
                    return Err(SoukError::Conflict(format!(
                        "tenant already pays for {module} (plan {}); the bundle is for modules not yet paid",
                        s.plan
                    )));
                }
            }
            items.push(PurchaseItem {
                module: module.to_owned(),
                plan: plan.slug.clone(),
            });
            if plan.free {
                continue;
            }
            let price = plan.price(currency).ok_or_else(|| {
                SoukError::Invalid(format!(
                    "plan {} of {module} in bundle {slug} is not sold in {currency}",
                    plan.slug
                ))
            })?;
            lines.push(plan_line(module, &plan, price));
        }
        let discount = bundle_discount(&bundle.name, bundle.discount_bps, &lines)
            .map_err(|e| SoukError::Invalid(e.to_string()))?;
        lines.extend(discount);
        Ok(PricedPurchase {
            currency,
            lines,
            purchase: Purchase {
                kind: PurchaseKind::Subscribe,
                bundle: Some(bundle.slug.clone()),
                items,
            },
        })
    }

    /// Applies a confirmed payment of `purchase` for the tenant with id
    /// `tenant_id`, inside `tx`, through the subscription state machine:
    ///
    /// - `Subscribe`: no subscription, expired, past due on another plan,
    ///   or on a free plan: the plan starts now, active, one period paid; a
    ///   trial of the plan: one period prepaid (the trial converts at its
    ///   end); past due on the plan: `PaymentSucceeded`.
    /// - `Renew`: active: one more prepaid period; past due or expired:
    ///   `PaymentSucceeded`.
    /// - `Upgrade`: the plan change [`Subscription::change_plan`] makes.
    ///
    /// `reference` goes into each subscription's history. The caller commits
    /// `tx`, then calls [`Billing::refresh_after_payment`].
    ///
    /// # Errors
    /// [`SoukError::Conflict`] when a subscription's state no longer allows
    /// the purchase (the caller records the payment as flagged, never
    /// granted); database failures.
    pub async fn apply_paid(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        tenant_id: &str,
        purchase: &Purchase,
        currency: Currency,
        reference: &str,
    ) -> Result<(), SoukError> {
        let clock = self.clock.as_ref();
        let now = clock.now();
        for item in &purchase.items {
            let (_, plan) = self.plan_of(&item.module, &item.plan)?;
            let existing = store::load(tx, tenant_id, &item.module).await?;
            let (mut record, action) = match (purchase.kind, existing) {
                (PurchaseKind::Upgrade, Some(mut record)) => {
                    record
                        .subscription
                        .change_plan(PlanChange { to: &plan }, clock)
                        .map_err(conflict)?;
                    if record.subscription.plan != plan.slug {
                        return Err(SoukError::Conflict(format!(
                            "{} is no longer an upgrade of {}",
                            plan.slug, item.module
                        )));
                    }
                    (record, "plan_changed")
                }
                (PurchaseKind::Upgrade, None) => {
                    return Err(SoukError::Conflict(format!(
                        "no subscription to {} to upgrade",
                        item.module
                    )));
                }
                (kind, Some(mut record))
                    if record.subscription.plan == plan.slug
                        && (kind == PurchaseKind::Renew
                            || matches!(
                                record.subscription.state,
                                SubscriptionState::Trialing | SubscriptionState::PastDue
                            )) =>
                {
                    self.pay_one_period(&mut record, clock)?;
                    (record, "paid")
                }
                (PurchaseKind::Renew, _) => {
                    return Err(SoukError::Conflict(format!(
                        "the subscription to {} is no longer on plan {}",
                        item.module, plan.slug
                    )));
                }
                (PurchaseKind::Subscribe, existing) => {
                    if let Some(record) = &existing {
                        let s = &record.subscription;
                        if s.has_access(now)
                            && s.price > 0
                            && s.state != SubscriptionState::Trialing
                            && s.state != SubscriptionState::PastDue
                        {
                            return Err(SoukError::Conflict(format!(
                                "tenant already pays for {} (plan {})",
                                item.module, s.plan
                            )));
                        }
                    }
                    if plan.free
                        && existing
                            .as_ref()
                            .is_some_and(|r| r.subscription.has_access(now))
                    {
                        // A bundle's free plan over a subscription that
                        // already gives access: nothing to change.
                        continue;
                    }
                    let subscription =
                        Subscription::start(tenant_id, &item.module, &plan, currency, clock)
                            .map_err(conflict)?;
                    (replace(existing, subscription), "subscribed")
                }
            };
            let from = record_from(&record);
            let actor = String::from("payment");
            let change = Change {
                action,
                actor: &actor,
                detail: Some(format!("payment {reference}")),
                at: now,
            };
            store::save(tx, &mut record, from, &change).await?;
        }
        Ok(())
    }

    fn pay_one_period(
        &self,
        record: &mut SubscriptionRecord,
        clock: &dyn crate::clock::Clock,
    ) -> Result<(), SoukError> {
        match record.subscription.state {
            SubscriptionState::PastDue | SubscriptionState::Expired => {
                record
                    .subscription
                    .apply(SubscriptionEvent::PaymentSucceeded, clock)
                    .map_err(conflict)?;
                record.trial_unpaid = false;
            }
            SubscriptionState::Trialing | SubscriptionState::Active => {
                record.prepaid_periods = record
                    .prepaid_periods
                    .checked_add(1)
                    .filter(|p| *p <= MAX_PREPAID_PERIODS)
                    .ok_or_else(|| {
                        SoukError::Conflict(format!(
                            "{} already holds {MAX_PREPAID_PERIODS} prepaid periods",
                            record.subscription.module
                        ))
                    })?;
            }
            SubscriptionState::Canceled => {
                return Err(SoukError::Conflict(format!(
                    "the subscription to {} is canceled",
                    record.subscription.module
                )));
            }
        }
        Ok(())
    }

    /// After a transaction of [`Billing::apply_paid`] committed: the
    /// cached grants of the modules it touched are rebuilt on next use.
    pub fn refresh_after_payment(&self, tenant_id: &str, purchase: &Purchase) {
        let mut fresh = self.fresh_map();
        for item in &purchase.items {
            fresh.remove(&(tenant_id.to_owned(), item.module.clone()));
        }
    }
}
