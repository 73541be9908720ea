//! What a subscription grants, as the engine sees it: the access state, the
//! plan, its features, count limits and metered allowances, and the upgrade
//! named for each key. The billing side builds a [`Grant`] from the catalog;
//! the engine only reads it.

use std::collections::{HashMap, HashSet};

use super::DenialReason;
use super::period::{Period, ResetInterval};

/// Where a (tenant, module) subscription stands, as far as access goes. The
/// subscription state machine (and the time-driven maintenance step) decides
/// the state; the engine only reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessState {
    /// In a trial: full access to the plan.
    Trialing,
    /// Paid up: full access.
    Active,
    /// A renewal failed but the grace period has not ended: access continues.
    PastDueInGrace,
    /// Canceled, but the paid period has not ended: access continues.
    CanceledUntilPeriodEnd,
    /// The trial ended without payment: no access.
    TrialEnded,
    /// A renewal failed and the grace period is over: no access.
    PastDue,
    /// The subscription ended: no access.
    Expired,
    /// No subscription at all.
    None,
}

impl AccessState {
    /// The reason access is refused in this state, if it is.
    pub fn denial_reason(self) -> Option<DenialReason> {
        match self {
            Self::Trialing | Self::Active | Self::PastDueInGrace | Self::CanceledUntilPeriodEnd => {
                None
            }
            Self::TrialEnded => Some(DenialReason::TrialEnded),
            Self::PastDue => Some(DenialReason::PastDue),
            Self::Expired => Some(DenialReason::Expired),
            Self::None => Some(DenialReason::NoSubscription),
        }
    }
}

/// A metered allowance: how much of a meter one period includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterAllowance {
    /// Amount included per period; `None` means unmetered (recorded, never
    /// refused).
    pub per_period: Option<u64>,
    /// The current period, as the subscription sees it.
    pub period: Period,
    /// How the period rolls over once `period.end` is reached.
    pub interval: ResetInterval,
}

/// Everything the engine needs to know about one (tenant, module)
/// subscription. Built by the subscription side from the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Whether the subscription currently gives access.
    pub state: AccessState,
    /// Slug of the subscribed plan, if any.
    pub plan: Option<String>,
    /// Boolean features the plan grants (`qr_code_generation`).
    pub features: HashSet<String>,
    /// Count limits (`max_cards`); `None` means unlimited.
    pub limits: HashMap<String, Option<u64>>,
    /// Metered allowances (`qr_scans_per_month`).
    pub meters: HashMap<String, MeterAllowance>,
    /// For each feature, limit or meter key: the cheapest plan that grants it
    /// (or a higher limit), named in denials as the upgrade option.
    pub upgrades: HashMap<String, String>,
}

impl Grant {
    /// A grant in `state` on `plan` that grants nothing yet.
    pub fn new(state: AccessState, plan: Option<&str>) -> Self {
        Self {
            state,
            plan: plan.map(str::to_owned),
            features: HashSet::new(),
            limits: HashMap::new(),
            meters: HashMap::new(),
            upgrades: HashMap::new(),
        }
    }

    /// Whether the grant names `key` as a feature, a count limit or a meter.
    pub(super) fn grants_key(&self, key: &str) -> bool {
        self.features.contains(key)
            || self.limits.contains_key(key)
            || self.meters.contains_key(key)
    }
}
