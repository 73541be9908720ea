//! The operator's plan catalog: what each plan of each module grants and what
//! it costs, and the bundles that sell several modules together.
//!
//! A catalog is YAML (see `catalog/digital-card.yaml`):
//!
//! ```yaml
//! modules:
//!   digital-card:
//!     plans:
//!       - slug: free
//!         name: Free
//!         free: true            # a free plan has no prices and no trial
//!         interval: monthly     # monthly | yearly
//!         features: [card_creation]
//!         limits: { max_cards: 100, max_templates: unlimited }
//!         meters: { qr_scans_per_month: { amount: 1000, reset: monthly } }
//!       - slug: pro
//!         name: Pro
//!         prices: { NPR: 49900 } # integer minor units: NPR 499.00
//!         interval: monthly
//!         trial_days: 30
//! bundles:
//!   - slug: party-starter
//!     name: Political Party Starter
//!     discount_bps: 1500        # 15.00 %
//!     plans: { membership: free, digital-card: pro }
//! ```
//!
//! [`PlanCatalog::parse`] checks everything that can be checked from the catalog
//! alone; [`PlanCatalog::check_module`] checks one module's plans against what its
//! [`Manifest`] declares it can gate, because a plan that grants a feature the
//! module cannot enforce would sell something that does not exist.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;
use souk_module_registry::yaml::{self, YamlError, YamlLimits};
use souk_module_registry::{LimitKind, Manifest, Slug};

use crate::entitlements::MAX_USAGE;

/// Highest price of one period a catalog may set, in minor units
/// (10^15: NPR 10 trillion). Keeps every sum and proration of prices far
/// from overflowing and every price storable as a signed 64-bit integer.
pub const MAX_PRICE: u64 = 1_000_000_000_000_000;

/// Longest trial a catalog may offer, in days (ten years).
pub const MAX_TRIAL_DAYS: u32 = 3650;

/// Why a catalog was refused.
#[derive(Debug, thiserror::Error)]
pub enum PlanCatalogError {
    /// The YAML was refused before it was read (anchors, aliases, merge
    /// keys, too large or too deep), did not parse, or a field had the wrong
    /// shape or is unknown.
    #[error("catalog is not valid YAML for a catalog: {0}")]
    Yaml(#[from] YamlError),
    /// A field parsed but its value breaks a rule; fix the named field.
    #[error("catalog field `{field}` is invalid: {reason}")]
    Field {
        /// The field path, e.g. `modules.digital-card.plans[1].features[3]`.
        field: String,
        /// What rule the value breaks.
        reason: String,
    },
}

impl PlanCatalogError {
    fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        PlanCatalogError::Field {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// An ISO 4217 currency code: three uppercase ASCII letters, e.g. `NPR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a currency code.
    ///
    /// # Errors
    /// A message when the text is not three uppercase ASCII letters.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => {
                Ok(Currency([*a, *b, *c]))
            }
            _ => Err(format!(
                "{text:?} is not a currency code (three uppercase letters, e.g. NPR)"
            )),
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII uppercase letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How often a plan is billed (`monthly` or `yearly` in YAML, JSON and the
/// control plane).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BillingInterval {
    /// Every calendar month from the anchor date.
    Monthly,
    /// Every twelve calendar months from the anchor date.
    Yearly,
}

impl BillingInterval {
    /// The length of one period in calendar months.
    pub fn months(self) -> u32 {
        match self {
            BillingInterval::Monthly => 1,
            BillingInterval::Yearly => 12,
        }
    }
}

/// How often a metered allowance starts again from zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResetPeriod {
    /// Every calendar month from the subscription's anchor date.
    Monthly,
}

/// A quantity a plan allows. Serialized as the number, or `"unlimited"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Allowance {
    /// At most this many.
    Finite(u64),
    /// No upper bound (written `unlimited`).
    Unlimited,
}

impl Allowance {
    /// Whether `quantity` fits within the allowance.
    pub fn allows(self, quantity: u64) -> bool {
        match self {
            Allowance::Finite(max) => quantity <= max,
            Allowance::Unlimited => true,
        }
    }

    /// The upper bound, `None` when unlimited.
    pub fn limit(self) -> Option<u64> {
        match self {
            Allowance::Finite(max) => Some(max),
            Allowance::Unlimited => None,
        }
    }
}

impl serde::Serialize for Allowance {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Allowance::Finite(n) => s.serialize_u64(*n),
            Allowance::Unlimited => s.serialize_str("unlimited"),
        }
    }
}

impl<'de> Deserialize<'de> for Allowance {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Allowance::Finite(n)),
            Raw::Word(w) if w == "unlimited" => Ok(Allowance::Unlimited),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "{w:?} is not an allowance: write a whole number or `unlimited`"
            ))),
        }
    }
}

/// A metered allowance: how much may be used per reset period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterAllowance {
    /// Units allowed per `reset` period, or unlimited.
    pub amount: Allowance,
    /// When usage starts again from zero.
    pub reset: ResetPeriod,
}

/// One plan of one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Identifies the plan within its module, `[a-z][a-z0-9-]*`.
    pub slug: String,
    /// Shown to tenants.
    pub name: String,
    /// Whether the plan costs nothing; a free plan has no prices and no trial.
    pub free: bool,
    /// The price of one period per currency, in integer minor units.
    pub prices: BTreeMap<Currency, u64>,
    /// The length of one billing period (calendar months, see
    /// [`BillingInterval::months`]).
    pub interval: BillingInterval,
    /// Days of free trial before the first payment; 0 for none.
    pub trial_days: u32,
    /// Feature keys the plan grants; each must be declared by the module's
    /// manifest ([`PlanCatalog::check_module`]).
    pub features: BTreeSet<String>,
    /// Count limits (standing quantities) the plan allows.
    pub limits: BTreeMap<String, Allowance>,
    /// Meter limits (quantities per period) the plan allows.
    pub meters: BTreeMap<String, MeterAllowance>,
    /// The sandbox the plan buys (`runtime:`): what it leaves unset is the
    /// host's default. The host caps each at its operator maximum when it
    /// applies it.
    pub runtime: PlanRuntime,
}

/// A plan's own runtime limits for its module's calls (`runtime:` in the
/// catalog): a bigger sandbox for a business plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRuntime {
    /// Linear memory per instance, in MiB.
    #[serde(default)]
    pub memory_mib: Option<u32>,
    /// Deadline of one request call, in milliseconds.
    #[serde(default)]
    pub call_timeout_ms: Option<u64>,
    /// Deadline of one job attempt, in seconds.
    #[serde(default)]
    pub job_timeout_secs: Option<u64>,
}

/// The largest `runtime.memory_mib` a catalog may write (4 GiB, the most a
/// 32-bit linear memory holds); the host caps it lower at its own maximum.
pub const MAX_PLAN_MEMORY_MIB: u32 = 4096;
/// The largest `runtime.call_timeout_ms` a catalog may write (10 minutes).
pub const MAX_PLAN_CALL_TIMEOUT_MS: u64 = 600_000;
/// The largest `runtime.job_timeout_secs` a catalog may write (1 day).
pub const MAX_PLAN_JOB_TIMEOUT_SECS: u64 = 86_400;

impl PlanRuntime {
    /// Checks each value set is at least 1 and at most its catalog maximum.
    fn check(&self) -> Result<(), (&'static str, String)> {
        let checks = [
            (
                "memory_mib",
                self.memory_mib.map(u64::from),
                u64::from(MAX_PLAN_MEMORY_MIB),
            ),
            (
                "call_timeout_ms",
                self.call_timeout_ms,
                MAX_PLAN_CALL_TIMEOUT_MS,
            ),
            (
                "job_timeout_secs",
                self.job_timeout_secs,
                MAX_PLAN_JOB_TIMEOUT_SECS,
            ),
        ];
        for (field, value, max) in checks {
            if let Some(value) = value
                && !(1..=max).contains(&value)
            {
                return Err((field, format!("{value} is not between 1 and {max}")));
            }
        }
        Ok(())
    }
}

impl Plan {
    /// The price of one period in `currency`, if the plan is sold in it;
    /// `Some(0)` for a free plan in any currency.
    pub fn price(&self, currency: Currency) -> Option<u64> {
        if self.free {
            Some(0)
        } else {
            self.prices.get(&currency).copied()
        }
    }
}

/// The plans of one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModulePlans {
    /// The module these plans sell.
    pub module: Slug,
    /// Its plans, in catalog order (cheapest first by convention).
    pub plans: Vec<Plan>,
    /// The plans come from the module's own manifest (`plans:`), not from
    /// the operator's catalog.
    pub suggested: bool,
}

impl ModulePlans {
    /// The plan called `slug`, if any.
    pub fn plan(&self, slug: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.slug == slug)
    }

    /// The free plan, if the module has one.
    pub fn free_plan(&self) -> Option<&Plan> {
        self.plans.iter().find(|p| p.free)
    }
}

/// Several modules sold together at given plans, at a discount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// Identifies the bundle, `[a-z][a-z0-9-]*`.
    pub slug: String,
    /// Shown to tenants.
    pub name: String,
    /// The discount on the sum of the plans' prices, in basis points
    /// (1/100 of a percent; 1500 is 15 %), at most 10000.
    pub discount_bps: u16,
    /// Plan slug per module; each names a plan of that module in the same
    /// catalog (checked when it is parsed).
    pub plans: BTreeMap<Slug, String>,
}

/// A parsed, self-consistent catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanCatalog {
    /// Plans per module, sorted by module slug.
    pub modules: Vec<ModulePlans>,
    /// Bundles, in catalog order.
    pub bundles: Vec<Bundle>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(default)]
    modules: BTreeMap<String, RawModule>,
    #[serde(default)]
    bundles: Vec<RawBundle>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    plans: Vec<RawPlan>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    slug: String,
    name: String,
    #[serde(default)]
    free: bool,
    #[serde(default)]
    prices: BTreeMap<String, u64>,
    interval: BillingInterval,
    #[serde(default)]
    trial_days: u32,
    #[serde(default)]
    features: Vec<String>,
    #[serde(default)]
    limits: BTreeMap<String, Allowance>,
    #[serde(default)]
    meters: BTreeMap<String, MeterAllowance>,
    #[serde(default)]
    runtime: PlanRuntime,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBundle {
    slug: String,
    name: String,
    discount_bps: u16,
    plans: BTreeMap<String, String>,
}

fn check_plan_slug(text: &str) -> Result<(), String> {
    let mut chars = text.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok
        || text.len() > 40
        || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!(
            "{text:?} is not a slug: [a-z][a-z0-9-]*, at most 40 characters"
        ));
    }
    Ok(())
}

impl PlanCatalog {
    /// Parses and checks catalog YAML.
    ///
    /// # Errors
    /// [`PlanCatalogError::Yaml`] when the YAML is malformed, has an unknown field
    /// or a field of the wrong type; [`PlanCatalogError::Field`] naming the field
    /// when a value breaks a rule: a bad slug or currency, a plan slug used
    /// twice, a free plan with prices or a trial, a paid plan without prices
    /// or with a zero price, a bundle naming a module or plan the catalog
    /// does not have, or a discount above 10000 basis points.
    pub fn parse(yaml: &str) -> Result<Self, PlanCatalogError> {
        let raw: RawCatalog = yaml::from_str(yaml, YamlLimits::CATALOG)?;
        let mut modules = Vec::new();
        for (module, raw_module) in raw.modules {
            let at = format!("modules.{module}");
            let slug = Slug::parse(&module).map_err(|e| PlanCatalogError::field(&at, e))?;
            if raw_module.plans.is_empty() {
                return Err(PlanCatalogError::field(
                    format!("{at}.plans"),
                    "a module needs at least one plan",
                ));
            }
            let mut plans: Vec<Plan> = Vec::new();
            for (i, p) in raw_module.plans.into_iter().enumerate() {
                let at = format!("{at}.plans[{i}]");
                plans.push(parse_plan(&at, p, &plans)?);
            }
            modules.push(ModulePlans {
                suggested: false,
                module: slug,
                plans,
            });
        }

        let mut bundles: Vec<Bundle> = Vec::new();
        for (i, b) in raw.bundles.into_iter().enumerate() {
            let at = format!("bundles[{i}]");
            check_plan_slug(&b.slug)
                .map_err(|e| PlanCatalogError::field(format!("{at}.slug"), e))?;
            if bundles.iter().any(|x| x.slug == b.slug) {
                return Err(PlanCatalogError::field(
                    format!("{at}.slug"),
                    format!("bundle {:?} is defined twice", b.slug),
                ));
            }
            if b.discount_bps > 10_000 {
                return Err(PlanCatalogError::field(
                    format!("{at}.discount_bps"),
                    format!("{} basis points is more than 100 % (10000)", b.discount_bps),
                ));
            }
            if b.plans.len() < 2 {
                return Err(PlanCatalogError::field(
                    format!("{at}.plans"),
                    "a bundle needs at least two modules",
                ));
            }
            let mut plans = BTreeMap::new();
            for (module, plan) in b.plans {
                let field = format!("{at}.plans.{module}");
                let slug = Slug::parse(&module).map_err(|e| PlanCatalogError::field(&field, e))?;
                let Some(m) = modules.iter().find(|m| m.module == slug) else {
                    return Err(PlanCatalogError::field(
                        field,
                        format!(
                            "bundle {:?}: module {module:?} has no plans in this catalog",
                            b.slug
                        ),
                    ));
                };
                if m.plan(&plan).is_none() {
                    return Err(PlanCatalogError::field(
                        field,
                        format!(
                            "bundle {:?}: module {module:?} has no plan {plan:?}",
                            b.slug
                        ),
                    ));
                }
                plans.insert(slug, plan);
            }
            bundles.push(Bundle {
                slug: b.slug,
                name: b.name,
                discount_bps: b.discount_bps,
                plans,
            });
        }
        Ok(PlanCatalog { modules, bundles })
    }

    /// The plans of `module`, if the catalog sells it.
    pub fn module(&self, module: &Slug) -> Option<&ModulePlans> {
        self.modules.iter().find(|m| &m.module == module)
    }

    /// Checks the catalog's plans for `manifest`'s module against what the
    /// module declares it can gate.
    ///
    /// # Errors
    /// [`PlanCatalogError::Field`] when the catalog has no plans for the module,
    /// when a plan grants a feature the module does not declare, sets a
    /// numeric limit that is not a declared `count` limit, or sets a metered
    /// allowance that is not a declared `meter` limit. The message names the
    /// plan and the key.
    pub fn check_module(&self, manifest: &Manifest) -> Result<(), PlanCatalogError> {
        let at = format!("modules.{}", manifest.slug);
        let Some(module) = self.module(&manifest.slug) else {
            return Err(PlanCatalogError::field(
                at,
                format!(
                    "the catalog has no plans for module {:?}",
                    manifest.slug.as_str()
                ),
            ));
        };
        let features: BTreeSet<&str> = manifest.features.iter().map(|f| f.key.as_str()).collect();
        let kind_of = |key: &str| {
            manifest
                .limits
                .iter()
                .find(|l| l.key == key)
                .map(|l| l.kind)
        };
        for (i, plan) in module.plans.iter().enumerate() {
            let at = format!("{at}.plans[{i}]");
            for feature in &plan.features {
                if !features.contains(feature.as_str()) {
                    return Err(PlanCatalogError::field(
                        format!("{at}.features"),
                        format!(
                            "plan {:?} grants feature {feature:?}, which module {:?} does not declare",
                            plan.slug,
                            manifest.slug.as_str()
                        ),
                    ));
                }
            }
            for key in plan.limits.keys() {
                if !kind_of(key).is_some_and(LimitKind::is_standing) {
                    return Err(PlanCatalogError::field(
                        format!("{at}.limits.{key}"),
                        format!(
                            "plan {:?} sets limit {key:?}, which module {:?} does not declare as a `count` or `storage` limit",
                            plan.slug,
                            manifest.slug.as_str()
                        ),
                    ));
                }
            }
            for key in plan.meters.keys() {
                if !kind_of(key).is_some_and(LimitKind::is_periodic) {
                    return Err(PlanCatalogError::field(
                        format!("{at}.meters.{key}"),
                        format!(
                            "plan {:?} sets meter {key:?}, which module {:?} does not declare as a `meter` or `email` limit",
                            plan.slug,
                            manifest.slug.as_str()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The plans `manifest` suggests (its `plans:`), parsed and checked like an
/// operator's catalog entry for the module, and against what the module
/// declares. `None` when it suggests none.
///
/// # Errors
/// [`PlanCatalogError`] naming the field (under `modules.<slug>.plans`) when a
/// suggested plan is malformed or grants what the module does not declare.
pub fn suggested(manifest: &Manifest) -> Result<Option<ModulePlans>, PlanCatalogError> {
    let Some(text) = &manifest.suggested_plans else {
        return Ok(None);
    };
    let plans: serde_yaml::Value = yaml::from_str(text, YamlLimits::MANIFEST)?;
    let mut module = serde_yaml::Mapping::new();
    module.insert("plans".into(), plans);
    let mut modules = serde_yaml::Mapping::new();
    modules.insert(manifest.slug.as_str().into(), module.into());
    let mut root = serde_yaml::Mapping::new();
    root.insert("modules".into(), modules.into());
    let yaml = serde_yaml::to_string(&root)
        .map_err(|e| PlanCatalogError::field("plans", e.to_string()))?;
    let catalog = PlanCatalog::parse(&yaml)?;
    catalog.check_module(manifest)?;
    Ok(catalog.modules.into_iter().next().map(|mut plans| {
        plans.suggested = true;
        plans
    }))
}

/// Loads the operator's catalog from `path`: one YAML file, or a directory
/// whose `*.yaml` / `*.yml` files are read in name order and merged (each
/// file parsed and checked on its own; a module priced in two files is an
/// error naming both).
///
/// # Errors
/// A file that cannot be read or does not parse (the message names the file
/// and the field), or a module priced twice.
pub fn load(path: &std::path::Path) -> anyhow::Result<PlanCatalog> {
    let files = if path.is_dir() {
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(path)
            .map_err(|e| anyhow::anyhow!("catalog {}: {e}", path.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut merged = PlanCatalog {
        modules: Vec::new(),
        bundles: Vec::new(),
    };
    let mut origin: BTreeMap<Slug, std::path::PathBuf> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| anyhow::anyhow!("catalog {}: {e}", file.display()))?;
        let catalog = PlanCatalog::parse(&text)
            .map_err(|e| anyhow::anyhow!("catalog {}: {e}", file.display()))?;
        for module in catalog.modules {
            if let Some(first) = origin.get(&module.module) {
                anyhow::bail!(
                    "catalog {}: module {:?} is already priced in {}",
                    file.display(),
                    module.module.as_str(),
                    first.display()
                );
            }
            origin.insert(module.module.clone(), file.clone());
            merged.modules.push(module);
        }
        merged.bundles.extend(catalog.bundles);
    }
    merged.modules.sort_by(|a, b| a.module.cmp(&b.module));
    Ok(merged)
}

fn parse_plan(at: &str, p: RawPlan, earlier: &[Plan]) -> Result<Plan, PlanCatalogError> {
    check_plan_slug(&p.slug).map_err(|e| PlanCatalogError::field(format!("{at}.slug"), e))?;
    if earlier.iter().any(|x| x.slug == p.slug) {
        return Err(PlanCatalogError::field(
            format!("{at}.slug"),
            format!("plan {:?} is defined twice", p.slug),
        ));
    }
    if p.name.trim().is_empty() {
        return Err(PlanCatalogError::field(
            format!("{at}.name"),
            "must not be empty",
        ));
    }
    let mut prices = BTreeMap::new();
    for (code, amount) in p.prices {
        let field = format!("{at}.prices.{code}");
        let currency = Currency::parse(&code).map_err(|e| PlanCatalogError::field(&field, e))?;
        if amount == 0 {
            return Err(PlanCatalogError::field(
                field,
                format!(
                    "plan {:?} has a zero price; mark a plan that costs nothing `free: true`",
                    p.slug
                ),
            ));
        }
        if amount > MAX_PRICE {
            return Err(PlanCatalogError::field(
                field,
                format!(
                    "plan {:?} costs {amount} minor units, more than the highest price accepted ({MAX_PRICE})",
                    p.slug
                ),
            ));
        }
        prices.insert(currency, amount);
    }
    if p.free && !prices.is_empty() {
        return Err(PlanCatalogError::field(
            format!("{at}.prices"),
            format!("plan {:?} is free and must not have prices", p.slug),
        ));
    }
    if !p.free && prices.is_empty() {
        return Err(PlanCatalogError::field(
            format!("{at}.prices"),
            format!(
                "plan {:?} is paid and needs at least one price (or mark it `free: true`)",
                p.slug
            ),
        ));
    }
    if p.free && p.trial_days > 0 {
        return Err(PlanCatalogError::field(
            format!("{at}.trial_days"),
            format!("plan {:?} is free; only paid plans have trials", p.slug),
        ));
    }
    if p.trial_days > MAX_TRIAL_DAYS {
        return Err(PlanCatalogError::field(
            format!("{at}.trial_days"),
            format!(
                "plan {:?} offers {} trial days, more than the {MAX_TRIAL_DAYS} accepted",
                p.slug, p.trial_days
            ),
        ));
    }
    for (key, allowance) in p
        .limits
        .iter()
        .map(|(k, a)| (format!("limits.{k}"), *a))
        .chain(
            p.meters
                .iter()
                .map(|(k, m)| (format!("meters.{k}.amount"), m.amount)),
        )
    {
        if allowance.limit().is_some_and(|n| n > MAX_USAGE) {
            return Err(PlanCatalogError::field(
                format!("{at}.{key}"),
                format!(
                    "plan {:?} allows more than {MAX_USAGE}, the most any counter can hold; write `unlimited`",
                    p.slug
                ),
            ));
        }
    }
    p.runtime.check().map_err(|(field, reason)| {
        PlanCatalogError::field(
            format!("{at}.runtime.{field}"),
            format!("plan {:?}: {reason}", p.slug),
        )
    })?;
    let mut features = BTreeSet::new();
    for (i, f) in p.features.into_iter().enumerate() {
        if !features.insert(f.clone()) {
            return Err(PlanCatalogError::field(
                format!("{at}.features[{i}]"),
                format!("plan {:?} lists feature {f:?} twice", p.slug),
            ));
        }
    }
    Ok(Plan {
        slug: p.slug,
        name: p.name,
        free: p.free,
        prices,
        interval: p.interval,
        trial_days: p.trial_days,
        features,
        limits: p.limits,
        meters: p.meters,
        runtime: p.runtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGITAL_CARD_CATALOG: &str = include_str!("../../../catalog/digital-card.yaml");

    /// The shipped module's own manifest: the catalog must match it.
    const DIGITAL_CARD_MANIFEST: &str = include_str!("../../../plugins/digital-card/module.yaml");

    fn manifest() -> Manifest {
        Manifest::parse(DIGITAL_CARD_MANIFEST).expect("test manifest parses")
    }

    fn one_plan(plan: &str) -> String {
        format!("modules:\n  digital-card:\n    plans:\n{plan}")
    }

    fn field_error(result: Result<impl fmt::Debug, PlanCatalogError>) -> (String, String) {
        match result {
            Err(PlanCatalogError::Field { field, reason }) => (field, reason),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn shipped_digital_card_catalog_validates_against_its_manifest() {
        let catalog = PlanCatalog::parse(DIGITAL_CARD_CATALOG).expect("catalog parses");
        catalog
            .check_module(&manifest())
            .expect("catalog matches manifest");
        let module = catalog
            .module(&Slug::parse("digital-card").unwrap())
            .expect("digital-card plans");
        let slugs: Vec<&str> = module.plans.iter().map(|p| p.slug.as_str()).collect();
        assert_eq!(slugs, ["free", "pro", "business"]);
    }

    #[test]
    fn shipped_digital_card_plans_have_the_prices_trials_and_limits_sold() {
        let catalog = PlanCatalog::parse(DIGITAL_CARD_CATALOG).unwrap();
        let m = catalog
            .module(&Slug::parse("digital-card").unwrap())
            .unwrap();
        let npr = Currency::parse("NPR").unwrap();
        let (free, pro, business) = (
            m.plan("free").unwrap(),
            m.plan("pro").unwrap(),
            m.plan("business").unwrap(),
        );
        assert!(free.free && free.prices.is_empty() && free.trial_days == 0);
        assert_eq!(free.price(npr), Some(0));
        assert_eq!(pro.price(npr), Some(49_900));
        assert_eq!(business.price(npr), Some(149_900));
        assert_eq!((pro.trial_days, business.trial_days), (30, 30));
        for p in [free, pro, business] {
            assert_eq!(p.interval, BillingInterval::Monthly);
        }
        let limit = |p: &Plan, k: &str| p.limits[k];
        assert_eq!(limit(free, "max_cards"), Allowance::Finite(100));
        // Free makes no templates of its own (no advanced_templates).
        assert_eq!(limit(free, "max_templates"), Allowance::Finite(0));
        assert_eq!(limit(pro, "max_cards"), Allowance::Finite(1_000));
        assert_eq!(limit(pro, "max_templates"), Allowance::Finite(20));
        assert_eq!(limit(business, "max_cards"), Allowance::Finite(10_000));
        assert_eq!(limit(business, "max_templates"), Allowance::Unlimited);
        let scans = |p: &Plan| p.meters["qr_scans_per_month"];
        assert_eq!(scans(free).amount, Allowance::Finite(1_000));
        assert_eq!(scans(pro).amount, Allowance::Finite(10_000));
        assert_eq!(scans(business).amount, Allowance::Finite(100_000));
        assert_eq!(scans(business).reset, ResetPeriod::Monthly);
        assert!(free.features.contains("qr_code_generation"));
        assert!(pro.features.contains("custom_branding"));
        assert!(!free.features.contains("custom_branding"));
        assert!(business.features.contains("white_label"));
        assert!(!pro.features.contains("white_label"));
    }

    #[test]
    fn plan_granting_an_undeclared_feature_names_plan_and_feature() {
        let yaml = one_plan(
            "      - { slug: free, name: Free, free: true, interval: monthly, features: [teleportation] }\n",
        );
        let catalog = PlanCatalog::parse(&yaml).unwrap();
        let (field, reason) = field_error(catalog.check_module(&manifest()));
        assert_eq!(field, "modules.digital-card.plans[0].features");
        assert!(
            reason.contains("\"free\"") && reason.contains("\"teleportation\""),
            "{reason}"
        );
    }

    #[test]
    fn numeric_limit_must_be_a_declared_count_limit() {
        let meter_as_limit = one_plan(
            "      - { slug: free, name: Free, free: true, interval: monthly, limits: { qr_scans_per_month: 5 } }\n",
        );
        let (field, reason) = field_error(
            PlanCatalog::parse(&meter_as_limit)
                .unwrap()
                .check_module(&manifest()),
        );
        assert_eq!(
            field,
            "modules.digital-card.plans[0].limits.qr_scans_per_month"
        );
        assert!(reason.contains("`count`"), "{reason}");

        let unknown = one_plan(
            "      - { slug: free, name: Free, free: true, interval: monthly, limits: { max_widgets: 5 } }\n",
        );
        let (field, _) = field_error(
            PlanCatalog::parse(&unknown)
                .unwrap()
                .check_module(&manifest()),
        );
        assert_eq!(field, "modules.digital-card.plans[0].limits.max_widgets");
    }

    #[test]
    fn metered_allowance_must_be_a_declared_meter_limit() {
        let yaml = one_plan(
            "      - { slug: free, name: Free, free: true, interval: monthly, meters: { max_cards: { amount: 5, reset: monthly } } }\n",
        );
        let (field, reason) =
            field_error(PlanCatalog::parse(&yaml).unwrap().check_module(&manifest()));
        assert_eq!(field, "modules.digital-card.plans[0].meters.max_cards");
        assert!(reason.contains("`meter`"), "{reason}");
    }

    #[test]
    fn free_plan_with_a_price_is_refused() {
        let yaml = one_plan(
            "      - { slug: free, name: Free, free: true, interval: monthly, prices: { NPR: 100 } }\n",
        );
        let (field, reason) = field_error(PlanCatalog::parse(&yaml));
        assert_eq!(field, "modules.digital-card.plans[0].prices");
        assert!(reason.contains("free"), "{reason}");
    }

    #[test]
    fn paid_plan_without_a_price_is_refused() {
        let yaml = one_plan("      - { slug: pro, name: Pro, interval: monthly }\n");
        let (field, reason) = field_error(PlanCatalog::parse(&yaml));
        assert_eq!(field, "modules.digital-card.plans[0].prices");
        assert!(reason.contains("at least one price"), "{reason}");
    }

    #[test]
    fn trial_on_a_free_plan_is_refused() {
        let yaml = one_plan(
            "      - { slug: free, name: Free, free: true, interval: monthly, trial_days: 14 }\n",
        );
        let (field, _) = field_error(PlanCatalog::parse(&yaml));
        assert_eq!(field, "modules.digital-card.plans[0].trial_days");
    }

    #[test]
    fn bad_currency_and_zero_price_are_refused() {
        let yaml =
            one_plan("      - { slug: pro, name: Pro, interval: monthly, prices: { npr: 100 } }\n");
        let (field, _) = field_error(PlanCatalog::parse(&yaml));
        assert_eq!(field, "modules.digital-card.plans[0].prices.npr");
        let yaml =
            one_plan("      - { slug: pro, name: Pro, interval: monthly, prices: { NPR: 0 } }\n");
        let (field, _) = field_error(PlanCatalog::parse(&yaml));
        assert_eq!(field, "modules.digital-card.plans[0].prices.NPR");
    }

    #[test]
    fn duplicate_plan_slug_is_refused() {
        let yaml = one_plan(
            "      - { slug: free, name: Free, free: true, interval: monthly }\n      - { slug: free, name: Again, free: true, interval: monthly }\n",
        );
        let (field, _) = field_error(PlanCatalog::parse(&yaml));
        assert_eq!(field, "modules.digital-card.plans[1].slug");
    }

    #[test]
    fn allowance_must_be_a_number_or_unlimited() {
        let yaml = one_plan(
            "      - { slug: free, name: Free, free: true, interval: monthly, limits: { max_cards: lots } }\n",
        );
        assert!(matches!(
            PlanCatalog::parse(&yaml),
            Err(PlanCatalogError::Yaml(_))
        ));
    }

    #[test]
    fn bundle_naming_a_missing_plan_or_module_is_refused() {
        let plans = "modules:\n  membership:\n    plans:\n      - { slug: free, name: Free, free: true, interval: monthly }\n  digital-card:\n    plans:\n      - { slug: pro, name: Pro, interval: monthly, prices: { NPR: 49900 } }\n";
        let ok = format!(
            "{plans}bundles:\n  - {{ slug: starter, name: Starter, discount_bps: 1500, plans: {{ membership: free, digital-card: pro }} }}\n"
        );
        let catalog = PlanCatalog::parse(&ok).expect("valid bundle");
        assert_eq!(catalog.bundles[0].discount_bps, 1500);

        let missing_plan = format!(
            "{plans}bundles:\n  - {{ slug: starter, name: Starter, discount_bps: 1500, plans: {{ membership: gold, digital-card: pro }} }}\n"
        );
        let (field, reason) = field_error(PlanCatalog::parse(&missing_plan));
        assert_eq!(field, "bundles[0].plans.membership");
        assert!(reason.contains("\"gold\""), "{reason}");

        let missing_module = format!(
            "{plans}bundles:\n  - {{ slug: starter, name: Starter, discount_bps: 1500, plans: {{ forum: free, digital-card: pro }} }}\n"
        );
        let (field, _) = field_error(PlanCatalog::parse(&missing_module));
        assert_eq!(field, "bundles[0].plans.forum");

        let too_generous = format!(
            "{plans}bundles:\n  - {{ slug: starter, name: Starter, discount_bps: 10001, plans: {{ membership: free, digital-card: pro }} }}\n"
        );
        let (field, _) = field_error(PlanCatalog::parse(&too_generous));
        assert_eq!(field, "bundles[0].discount_bps");
    }

    #[test]
    fn catalog_without_plans_for_the_module_is_refused() {
        let yaml = "modules:\n  forum:\n    plans:\n      - { slug: free, name: Free, free: true, interval: monthly }\n";
        let (field, _) = field_error(PlanCatalog::parse(yaml).unwrap().check_module(&manifest()));
        assert_eq!(field, "modules.digital-card");
    }

    #[test]
    fn yaml_bombs_in_a_catalog_are_refused_before_reading() {
        let plan = "{ slug: free, name: Free, free: true, interval: monthly }";
        let mut laughs = format!("modules:\n  digital-card:\n    plans:\n      - &p0 {plan}\n");
        laughs.push_str("bundles:\n  - &b0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let p = i - 1;
            laughs.push_str(&format!(
                "  - &b{i} [{}]\n",
                std::iter::repeat_n(format!("*b{p}"), 10)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let fan_out = format!(
            "modules:\n  digital-card:\n    plans:\n      - &p {plan}\n{}",
            "      - *p\n".repeat(500)
        );
        let merge = "modules:\n  digital-card:\n    plans:\n      - slug: free\n        <<: { name: Free, free: true, interval: monthly }\n".to_owned();
        let deep = format!("modules: {}{}\n", "{a: ".repeat(10_000), "}".repeat(10_000));
        for (yaml, says) in [
            (laughs, "aliases"),
            (fan_out, "aliases"),
            (merge, "merge keys"),
            (deep, "levels deep"),
        ] {
            match PlanCatalog::parse(&yaml) {
                Err(e @ PlanCatalogError::Yaml(_)) => assert!(e.to_string().contains(says), "{e}"),
                other => panic!("expected a YAML refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn prices_trials_and_allowances_are_bounded() {
        let cases = [
            (
                format!("      - {{ slug: pro, name: Pro, interval: monthly, prices: {{ NPR: {} }} }}\n", MAX_PRICE + 1),
                "modules.digital-card.plans[0].prices.NPR",
            ),
            (
                "      - { slug: pro, name: Pro, interval: monthly, prices: { NPR: 18446744073709551615 } }\n".to_owned(),
                "modules.digital-card.plans[0].prices.NPR",
            ),
            (
                "      - { slug: pro, name: Pro, interval: monthly, prices: { NPR: 100 }, trial_days: 3651 }\n".to_owned(),
                "modules.digital-card.plans[0].trial_days",
            ),
            (
                "      - { slug: free, name: Free, free: true, interval: monthly, limits: { max_cards: 9223372036854775808 } }\n".to_owned(),
                "modules.digital-card.plans[0].limits.max_cards",
            ),
            (
                "      - { slug: free, name: Free, free: true, interval: monthly, meters: { qr_scans_per_month: { amount: 18446744073709551615, reset: monthly } } }\n".to_owned(),
                "modules.digital-card.plans[0].meters.qr_scans_per_month.amount",
            ),
        ];
        for (plan, expected) in cases {
            let (field, reason) = field_error(PlanCatalog::parse(&one_plan(&plan)));
            assert_eq!(field, expected, "{reason}");
        }
        let at_bounds = format!(
            "      - {{ slug: pro, name: Pro, interval: monthly, prices: {{ NPR: {MAX_PRICE} }}, trial_days: {MAX_TRIAL_DAYS}, limits: {{ max_cards: 9223372036854775807 }} }}\n"
        );
        let catalog = PlanCatalog::parse(&one_plan(&at_bounds)).unwrap();
        assert_eq!(
            catalog.modules[0].plans[0].prices.values().next(),
            Some(&MAX_PRICE)
        );
    }

    #[test]
    fn a_plan_may_set_its_runtime_within_bounds() {
        let plan = "      - { slug: pro, name: Pro, interval: monthly, prices: { NPR: 100 }, \
                    runtime: { memory_mib: 256, call_timeout_ms: 5000, job_timeout_secs: 120 } }\n";
        let catalog = PlanCatalog::parse(&one_plan(plan)).unwrap();
        assert_eq!(
            catalog.modules[0].plans[0].runtime,
            PlanRuntime {
                memory_mib: Some(256),
                call_timeout_ms: Some(5000),
                job_timeout_secs: Some(120),
            }
        );
        let unset = "      - { slug: free, name: Free, free: true, interval: monthly }\n";
        let catalog = PlanCatalog::parse(&one_plan(unset)).unwrap();
        assert_eq!(catalog.modules[0].plans[0].runtime, PlanRuntime::default());
        for (runtime, field) in [
            ("{ memory_mib: 0 }", "memory_mib"),
            ("{ memory_mib: 4097 }", "memory_mib"),
            ("{ call_timeout_ms: 0 }", "call_timeout_ms"),
            ("{ call_timeout_ms: 600001 }", "call_timeout_ms"),
            ("{ job_timeout_secs: 86401 }", "job_timeout_secs"),
        ] {
            let plan = format!(
                "      - {{ slug: pro, name: Pro, interval: monthly, prices: {{ NPR: 100 }}, runtime: {runtime} }}\n"
            );
            let (at, reason) = field_error(PlanCatalog::parse(&one_plan(&plan)));
            assert_eq!(
                at,
                format!("modules.digital-card.plans[0].runtime.{field}"),
                "{reason}"
            );
        }
        let unknown = "      - { slug: pro, name: Pro, interval: monthly, prices: { NPR: 100 }, runtime: { cpu: 2 } }\n";
        assert!(PlanCatalog::parse(&one_plan(unknown)).is_err());
    }
}
