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

use super::plans::{Allowance, BillingInterval, Bundle, ModulePlans, Plan, PlanCatalog};

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
pub fn listing(catalog: &PlanCatalog) -> PlanListing {
    PlanListing {
        bundles: catalog.bundles.iter().map(bundle).collect(),
        modules: catalog.modules.iter().map(module).collect(),
    }
}

/// One entry per priced module: its plan slugs and their source. Empty when
/// no module is priced.
pub fn summary(catalog: &PlanCatalog) -> Vec<PlanSummary> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOG: &str = "
modules:
  cards:
    plans:
      - slug: free
        name: Free
        free: true
        interval: monthly
        features: [share_links, card_creation]
        limits: { max_cards: 3 }
        meters:
          qr_scans: { amount: 5, reset: monthly }
      - slug: pro
        name: Pro
        prices: { NPR: 49900, USD: 400 }
        interval: yearly
        trial_days: 30
        features: [card_creation]
        limits: { max_cards: unlimited }
  notes:
    plans:
      - slug: standard
        name: Standard
        prices: { NPR: 100 }
        interval: monthly
bundles:
  - slug: starter
    name: Starter
    discount_bps: 1500
    plans: { notes: standard, cards: pro }
";

    /// The exact bytes `GET /v1/plans` answered before the listing moved
    /// out of its handler: keys sorted, allowances as numbers or
    /// `unlimited`, prices by currency code.
    #[test]
    fn the_listing_serializes_as_the_api_always_answered() {
        let catalog = PlanCatalog::parse(CATALOG).expect("catalog");
        let text = serde_json::to_string(&listing(&catalog)).expect("json");
        assert_eq!(
            text,
            concat!(
                r#"{"bundles":[{"discount_bps":1500,"name":"Starter","plans":{"cards":"pro","notes":"standard"},"slug":"starter"}],"#,
                r#""modules":[{"module":"cards","plans":["#,
                r#"{"features":["card_creation","share_links"],"free":true,"interval":"monthly","limits":{"max_cards":3},"meters":{"qr_scans":{"per_period":5,"reset":"monthly"}},"name":"Free","prices":{},"slug":"free","trial_days":0},"#,
                r#"{"features":["card_creation"],"free":false,"interval":"yearly","limits":{"max_cards":"unlimited"},"meters":{},"name":"Pro","prices":{"NPR":49900,"USD":400},"slug":"pro","trial_days":30}"#,
                r#"],"source":"operator"},"#,
                r#"{"module":"notes","plans":[{"features":[],"free":false,"interval":"monthly","limits":{},"meters":{},"name":"Standard","prices":{"NPR":100},"slug":"standard","trial_days":0}],"source":"operator"}]}"#,
            )
        );
    }

    #[test]
    fn the_summary_is_the_listing_cut_to_plan_slugs() {
        let catalog = PlanCatalog::parse(CATALOG).expect("catalog");
        let summary = summary(&catalog);
        assert_eq!(
            serde_json::to_value(&summary).expect("json"),
            serde_json::json!([
                {"module": "cards", "plans": ["free", "pro"], "source": "operator"},
                {"module": "notes", "plans": ["standard"], "source": "operator"},
            ])
        );
        assert!(super::summary(&PlanCatalog::parse("modules: {}").expect("empty")).is_empty());
    }
}
