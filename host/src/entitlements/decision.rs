//! Answering a check: [`Decision`], the four checks (access to the module,
//! a feature, room under a count limit, room in a meter's period), and how a
//! refusal is worded from the grant (which plan it names as the upgrade).

use std::sync::atomic::Ordering;

use time::OffsetDateTime;

use super::engine::{Counter, Slot, lock};
use super::grant::Grant;
use super::{Denial, DenialReason, EntitlementEngine};

/// The answer to a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allowed,
    /// Refused, with the reason and the upgrade option.
    Denied(Denial),
}

impl Decision {
    /// Whether the check allowed the request.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed)
    }
}

impl EntitlementEngine {
    /// May the tenant use `module` at all? Refused when the subscription
    /// gives no access (none, trial ended, past due after grace, expired):
    /// the module stays installed with its data, but gated. The denial's key
    /// is the module's slug; its upgrade option is the plan to restore.
    pub fn check_access(&self, tenant: &str, module: &str) -> Decision {
        self.with_slot(tenant, module, |slot| {
            let grant = &slot.grant;
            match grant.state.denial_reason() {
                None => Decision::Allowed,
                Some(reason) => Decision::Denied(Denial {
                    reason,
                    key: module.to_owned(),
                    plan: grant.plan.clone(),
                    upgrade_plan: grant.plan.clone(),
                    used: None,
                    limit: None,
                }),
            }
        })
        .unwrap_or_else(|| Decision::Denied(Denial::no_subscription(module)))
    }

    /// May the tenant use boolean feature `key` of `module`?
    pub fn check_feature(&self, tenant: &str, module: &str, key: &str) -> Decision {
        self.with_slot(tenant, module, |slot| {
            let grant = &slot.grant;
            if let Some(reason) = grant.state.denial_reason() {
                return Decision::Denied(denial(grant, key, reason, None, None));
            }
            if grant.features.contains(key) {
                Decision::Allowed
            } else {
                Decision::Denied(denial(
                    grant,
                    key,
                    DenialReason::FeatureNotInPlan,
                    None,
                    None,
                ))
            }
        })
        .unwrap_or_else(|| Decision::Denied(Denial::no_subscription(key)))
    }

    /// May the tenant add `quantity` units of count limit `key` ("may I
    /// create 50 cards?")? Reserves nothing: use
    /// [`EntitlementEngine::consume`] to take the units.
    pub fn check_limit(&self, tenant: &str, module: &str, key: &str, quantity: u64) -> Decision {
        self.with_slot(tenant, module, |slot| match limit_and_counter(slot, key) {
            Err(denied) => Decision::Denied(denied),
            Ok((limit, counter)) => {
                let used = counter.used.load(Ordering::Acquire);
                match limit {
                    Some(limit) if used.saturating_add(quantity) > limit => {
                        Decision::Denied(denial(
                            &slot.grant,
                            key,
                            DenialReason::LimitReached,
                            Some(used),
                            Some(limit),
                        ))
                    }
                    _ => Decision::Allowed,
                }
            }
        })
        .unwrap_or_else(|| Decision::Denied(Denial::no_subscription(key)))
    }

    /// May the tenant record `amount` more of meter `key` in the period
    /// containing `at` without exceeding the allowance?
    pub fn check_meter(
        &self,
        tenant: &str,
        module: &str,
        key: &str,
        amount: u64,
        at: OffsetDateTime,
    ) -> Decision {
        self.with_slot(tenant, module, |slot| {
            let grant = &slot.grant;
            if let Some(reason) = grant.state.denial_reason() {
                return Decision::Denied(denial(grant, key, reason, None, None));
            }
            let (Some(allowance), Some(meter)) = (grant.meters.get(key), slot.meters.get(key))
            else {
                return Decision::Denied(denial(
                    grant,
                    key,
                    DenialReason::FeatureNotInPlan,
                    None,
                    None,
                ));
            };
            let Some(limit) = allowance.per_period else {
                return Decision::Allowed;
            };
            let meter = lock(meter);
            let used = match meter.clock.roll_to(meter.period, at) {
                Some(period) if period == meter.period => meter.used,
                _ => 0,
            };
            if used.saturating_add(amount) > limit {
                Decision::Denied(denial(
                    grant,
                    key,
                    DenialReason::LimitReached,
                    Some(used),
                    Some(limit),
                ))
            } else {
                Decision::Allowed
            }
        })
        .unwrap_or_else(|| Decision::Denied(Denial::no_subscription(key)))
    }
}

/// The limit and the counter of count limit `key`, or the refusal when the
/// subscription gives no access or the plan has no such limit.
pub(super) fn limit_and_counter<'a>(
    slot: &'a Slot,
    key: &str,
) -> Result<(Option<u64>, &'a Counter), Denial> {
    let grant = &slot.grant;
    if let Some(reason) = grant.state.denial_reason() {
        return Err(denial(grant, key, reason, None, None));
    }
    match (grant.limits.get(key), slot.counters.get(key)) {
        (Some(limit), Some(counter)) => Ok((*limit, counter)),
        _ => Err(denial(
            grant,
            key,
            DenialReason::FeatureNotInPlan,
            None,
            None,
        )),
    }
}

/// The refusal of `key` under `grant`, naming the plan that would allow it:
/// for a reason that payment lifts (no access in the subscription's state)
/// the grant's own plan when it grants the key (pay to restore it),
/// otherwise the upgrade the catalog names for the key.
pub(super) fn denial(
    grant: &Grant,
    key: &str,
    reason: DenialReason,
    used: Option<u64>,
    limit: Option<u64>,
) -> Denial {
    let upgrade_plan = if reason.is_payment_required() && grant.grants_key(key) {
        grant.plan.clone()
    } else {
        grant.upgrades.get(key).cloned()
    };
    Denial {
        reason,
        key: key.to_owned(),
        plan: grant.plan.clone(),
        upgrade_plan,
        used,
        limit,
    }
}
