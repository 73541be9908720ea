//! [`Billing`]: subscriptions kept in the control plane, the operator's plan
//! catalog, and the entitlement grants derived from both.
//!
//! Every write to a subscription goes through [`Billing`], which saves it
//! (with its history) and then hands the entitlements engine the new grant.
//! A subscription changed by another process (the CLI's maintenance run, a
//! second server) is noticed through its `revision`, which the dispatch path
//! reads together with the installation.
//!
//! `Billing` is one service; its methods live in the file of their seam:
//! - `subscribe`: what a tenant does — subscribe, quote, change plan,
//!   cancel, reactivate, and the subscription check before an install;
//! - `operator`: what only the operator does — grant a plan, extend by
//!   prepaid periods;
//! - `grants`: what the entitlements engine is told a subscription allows
//!   ([`Billing::ensure_grant`], [`Billing::grant_for`], unpriced modules);
//! - `maintenance`: the time-driven step and the closing of meter periods;
//! - `views`: what the API and the CLI show;
//! - `paid`: what a purchase costs as invoice lines, and what a confirmed
//!   payment does to the subscriptions it names;
//! - `provider`: what a provider that renews (Stripe) and an operator's
//!   refund do to a subscription.
//!
//! This file holds what they share: the service's state, the plan lookups,
//! and the one place a subscription is saved.
//!
//! # Modules without plans
//! A module the catalog does not price is *unpriced*: any tenant may install
//! it, and it gets every feature it declares with unlimited limits and
//! meters. The host logs each unpriced module at start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use time::OffsetDateTime;

use super::plans::{Currency, ModulePlans, Plan, PlanCatalog};
use super::store::{self, Change, StoreError, SubscriptionRecord};
use super::subscription::{Subscription, SubscriptionError, SubscriptionState};
use crate::clock::Clock;
use crate::control_plane::ControlPlane;
use crate::entitlements::EntitlementEngine;
use crate::error::SoukError;
use crate::tenancy::Tenant;

#[cfg(test)]
pub(super) mod fixtures;
mod grants;
mod maintenance;
mod operator;
mod paid;
mod provider;
mod subscribe;
mod views;

pub use grants::access_state;
pub use maintenance::{MaintenanceFailure, MaintenanceReport, TRIAL_ENDING_NOTICE};
pub use paid::{PricedPurchase, PurchaseRequest};
pub use provider::ProviderChange;
pub use views::{QuoteView, SubscriptionView};

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

fn conflict(e: SubscriptionError) -> SoukError {
    SoukError::Conflict(e.to_string())
}

/// What a subscription-store failure means to the person who asked: a lost
/// optimistic-lock race is theirs to retry; anything else is the host's.
impl From<StoreError> for SoukError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { module, .. } => SoukError::Conflict(format!(
                "the subscription to {module} changed while this request was handled; retry"
            )),
            StoreError::Database(e) => e.into(),
            StoreError::Encode(e) => SoukError::Internal(e.into()),
            e @ (StoreError::Corrupt { .. } | StoreError::Instant { .. }) => {
                SoukError::Internal(anyhow::anyhow!(e.to_string()))
            }
        }
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
        Ok(store::load(&mut conn, &tenant.id, module).await?)
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
}
