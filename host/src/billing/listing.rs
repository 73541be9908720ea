//! What the plan catalog in effect looks like from outside: the full
//! listing (`GET /v1/plans`, `souk plans list`) and its one-line-per-module
//! summary (`souk plans check`). Both are built here, from the same
//! [`ModuleListing`], so the API and the CLI describe a catalog the same way.
//!
//! The JSON written today has its object keys in alphabetical order, so the
//! fields of every struct below are declared in that order: serializing them
//! writes the same bytes as before.

use std::collections::BTreeMap;

use serde::Serialize;

use super::catalog::{Allowance, BillingInterval, Bundle, Catalog, ModulePlans, Plan};

/// Every module's plans and every bundle of the catalog in effect.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanListing {
    /// In catalog order.
    pub bundles: Vec<BundleListing>,
    /// Sorted by module slug, as the catalog keeps them.
    pub modules: Vec<ModuleListing>,
}

/// One module's plans and where they come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleListing {
    /// The module slug.
    pub module: String,
    /// In catalog order (cheapest first by convention).
    pub plans: Vec<PlanListingEntry>,
    /// `operator` when the operator's catalog prices the module, `module`
    /// when the plans are the ones its manifest suggests.
    pub source: &'static str,
}

/// One plan as tenants see it before subscribing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanListingEntry {
    /// Feature keys the plan grants, sorted.
    pub features: Vec<String>,
    /// A free plan has no prices and no trial.
    pub free: bool,
    /// How often the plan is billed.
    pub interval: BillingInterval,
    /// Count limits by key: a number or `"unlimited"`.
    pub limits: BTreeMap<String, Allowance>,
    /// Metered allowances by meter key.
    pub meters: BTreeMap<String, MeterListing>,
    /// Shown to tenants.
    pub name: String,
    /// Price of one period per ISO 4217 currency code, in integer minor
    /// units; empty for a free plan.
    pub prices: BTreeMap<String, u64>,
    /// Unique within its module.
    pub slug: String,
    /// Days of free trial before the first payment; 0 for none.
    pub trial_days: u32,
}

/// A metered allowance: how much may be used per period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeterListing {
    /// Units per period: a number or `"unlimited"`.
    pub per_period: Allowance,
    /// When usage starts again from zero; always `monthly` today (the only
    /// reset period the catalog accepts).
    pub reset: &'static str,
}

/// A bundle: modules sold together at given plans, at a discount.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BundleListing {
    /// Basis points off the sum of the plans' prices (1500 is 15 %).
    pub discount_bps: u16,
    /// Shown to tenants.
    pub name: String,
    /// Plan slug by module slug.
    pub plans: BTreeMap<String, String>,
    /// Unique within the catalog.
    pub slug: String,
}

/// One module of [`summary`]: its plan slugs and where they come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanSummary {
    /// The module slug.
    pub module: String,
    /// Plan slugs in catalog order.
    pub plans: Vec<String>,
    /// As in [`ModuleListing::source`].
    pub source: &'static str,
}

/// The full listing of `catalog`.
pub fn listing(catalog: &Catalog) -> PlanListing {
    PlanListing {
        bundles: catalog.bundles.iter().map(bundle).collect(),
        modules: catalog.modules.iter().map(module).collect(),
    }
}

/// One entry per priced module: its plan slugs and their source. Empty when
/// no module is priced.
pub fn summary(catalog: &Catalog) -> Vec<PlanSummary> {
    listing(catalog)
        .modules
        .into_iter()
        .map(|m| PlanSummary {
            module: m.module,
            plans: m.plans.into_iter().map(|p| p.slug).collect(),
            source: m.source,
        })
        .collect()
}

fn module(m: &ModulePlans) -> ModuleListing {
    ModuleListing {
        module: m.module.as_str().to_owned(),
        plans: m.plans.iter().map(plan).collect(),
        source: if m.suggested { "module" } else { "operator" },
    }
}

fn plan(p: &Plan) -> PlanListingEntry {
    PlanListingEntry {
        features: p.features.iter().cloned().collect(),
        free: p.free,
        interval: p.interval,
        limits: p.limits.clone(),
        meters: p
            .meters
            .iter()
            .map(|(key, meter)| {
                (
                    key.clone(),
                    MeterListing {
                        per_period: meter.amount,
                        reset: "monthly",
                    },
                )
            })
            .collect(),
        name: p.name.clone(),
        prices: p
            .prices
            .iter()
            .map(|(currency, price)| (currency.to_string(), *price))
            .collect(),
        slug: p.slug.clone(),
        trial_days: p.trial_days,
    }
}

fn bundle(b: &Bundle) -> BundleListing {
    BundleListing {
        discount_bps: b.discount_bps,
        name: b.name.clone(),
        plans: b
            .plans
            .iter()
            .map(|(module, plan)| (module.to_string(), plan.clone()))
            .collect(),
        slug: b.slug.clone(),
    }
}
