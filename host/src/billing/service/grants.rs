//! What the entitlements engine is told a subscription allows: the grant
//! of a subscribed plan at an instant, the grant of a module the catalog
//! does not price, and the cache that keeps the engine's grants current.

use std::collections::HashMap;

use souk_module_registry::{LimitKind, Manifest};
use time::OffsetDateTime;

use super::{Actor, Billing, Fresh};
use crate::billing::plans::{Allowance, Currency, ModulePlans, Plan, PlanRuntime};
use crate::billing::store::SubscriptionRecord;
use crate::billing::subscription::SubscriptionState;
use crate::calendar::{calendar_month, monthly_period};
use crate::entitlements::{AccessState, Grant, MeterAllowance, Period, ResetInterval};
use crate::error::SoukError;
use crate::tenancy::Tenant;

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
    let period = Period::from(calendar_month(now));
    for limit in &manifest.limits {
        match limit.kind {
            LimitKind::Count | LimitKind::Storage => {
                grant.limits.insert(limit.key.clone(), None);
            }
            LimitKind::Meter | LimitKind::Email => {
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

impl Billing {
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

    /// Marks the engine's grant of a pair as no longer current, keeping
    /// its usage: the next [`Billing::ensure_grant`] builds it again from
    /// the subscription (after a lifecycle hook ran under a grant built for
    /// another version's manifest, or one not yet recorded).
    pub fn stale(&self, tenant: &Tenant, module: &str) {
        self.fresh_map()
            .remove(&(tenant.id.clone(), module.to_owned()));
    }

    /// Forgets the cached grant and usage of a pair (after an uninstall).
    pub fn forget(&self, tenant: &Tenant, module: &str) {
        self.fresh_map()
            .remove(&(tenant.id.clone(), module.to_owned()));
        self.engine.forget(&tenant.id, module);
    }

    /// The runtime limits the plan of the engine's grant for (`tenant_id`,
    /// `module`) sets (`runtime:` in the catalog); the default (nothing
    /// set) when the pair has no grant loaded, no plan, or a plan without
    /// them. Read per call, so a plan change applies to the next call.
    pub fn plan_runtime(&self, tenant_id: &str, module: &str) -> PlanRuntime {
        let Some(plan) = self.engine.plan(tenant_id, module) else {
            return PlanRuntime::default();
        };
        let plans = self.plans();
        plans
            .modules
            .iter()
            .find(|m| m.module.as_str() == module)
            .and_then(|m| m.plan(&plan))
            .map(|p| p.runtime)
            .unwrap_or_default()
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
        let period = Period::from(monthly_period(s.anchor, now));
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::service::fixtures::{MANIFEST, at, digital_card, npr};
    use crate::billing::subscription::{Subscription, SubscriptionEvent};
    use crate::clock::{Clock, ManualClock};

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
}
