//! The entitlements an install or upgrade hook runs with: the grant of the
//! subscription the module is installed or upgraded under, resolved as the
//! request path resolves it, with the usage the tenant database holds.
//!
//! The hook counts in the host's one entitlement engine, as a request
//! does, so a hook and the tenant's requests share the plan's limits. What
//! the hook counted is kept when the lifecycle operation commits and
//! undone when it does not ([`HookUsage`]'s drop), like a request's
//! [`Settlement`](crate::dispatch).

use souk_module_registry::Manifest;
use sqlx::SqlitePool;

use super::Installer;
use crate::billing::service::Billing;
use crate::billing::store::SubscriptionRecord;
use crate::capabilities::entitlements::call::CallEntitlements;
use crate::entitlements::usage_db;
use crate::error::SoukError;
use crate::tenancy::Tenant;

/// Which subscription a hook's grant comes from.
pub(super) enum HookSubscription<'r> {
    /// An install: the subscription it starts (recorded with the
    /// installation, after the hook), or else the one the tenant holds.
    Install(Option<&'r SubscriptionRecord>),
    /// An upgrade: the installation's subscription, as the request path
    /// resolves it, with the subscription revision read with it.
    Upgrade(Option<i64>),
}

/// The usage a hook changed, kept by [`HookUsage::keep`] once the
/// operation committed; dropped without it, every change is undone in the
/// engine (the tenant transaction rolled the rows back) and the grant
/// built for the hook is dropped or marked stale.
pub(super) struct HookUsage<'a> {
    billing: &'a Billing,
    tenant: Tenant,
    module: String,
    /// The engine held no grant for the pair before the hook: a failed
    /// operation forgets the one it loaded.
    loaded_here: bool,
    /// The hook's view, in its call's state while the hook runs.
    entitlements: Option<CallEntitlements>,
    kept: bool,
}

impl<'a> HookUsage<'a> {
    /// The hook's view, to put in its call's state.
    pub(super) fn take(&mut self) -> Option<CallEntitlements> {
        self.entitlements.take()
    }

    /// Gives the view back after the call (so its changes can be undone).
    pub(super) fn put_back(&mut self, entitlements: Option<CallEntitlements>) {
        self.entitlements = entitlements;
    }

    /// The operation committed: the hook's usage stays. The grant is built
    /// again at the next request, from the subscription as recorded now.
    pub(super) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for HookUsage<'_> {
    fn drop(&mut self) {
        let billing = self.billing;
        if !self.kept {
            if let Some(entitlements) = self.entitlements.take() {
                entitlements.rollback();
            }
            if self.loaded_here {
                billing.forget(&self.tenant, &self.module);
                return;
            }
        }
        billing.stale(&self.tenant, &self.module);
    }
}

impl<'a> Installer<'a> {
    /// Makes the engine hold the grant `manifest`'s hook runs under (see
    /// [`HookSubscription`]) with the pair's usage loaded from `pool`, and
    /// answers the hook's view of it: the module's host-counted limits
    /// closed to it, its declared count limits open to seeding.
    ///
    /// Call before the operation's tenant transaction begins (the usage is
    /// read through another connection of `pool`).
    ///
    /// # Errors
    /// Database failures.
    pub(super) async fn hook_usage(
        &self,
        tenant: &Tenant,
        manifest: &Manifest,
        pool: &SqlitePool,
        subscription: HookSubscription<'_>,
    ) -> Result<HookUsage<'a>, SoukError> {
        let module = manifest.slug.as_str();
        let engine = self.billing.engine();
        let loaded_here = !engine.has_grant(&tenant.id, module);
        match subscription {
            HookSubscription::Upgrade(revision) => {
                self.billing
                    .ensure_grant(tenant, manifest, revision, |grant| async move {
                        Ok(usage_db::load(pool, module, &grant).await?)
                    })
                    .await?;
            }
            HookSubscription::Install(started) => {
                let held = match started {
                    Some(record) => Some(record.clone()),
                    None => self.billing.get(tenant, module).await?,
                };
                let now = self.billing.clock().now();
                let grant = self.billing.grant_for(manifest, held.as_ref(), now);
                if loaded_here {
                    let usage = usage_db::load(pool, module, &grant).await?;
                    engine.replace_grant_with_usage(&tenant.id, module, grant, usage);
                } else {
                    engine.replace_grant(&tenant.id, module, grant);
                }
            }
        }
        let entitlements =
            CallEntitlements::new(engine.clone(), &tenant.id, module, self.clock.now())
                .with_host_counted(&manifest.limits)
                .with_seeding(&manifest.limits);
        Ok(HookUsage {
            billing: self.billing,
            tenant: tenant.clone(),
            module: module.to_owned(),
            loaded_here,
            entitlements: Some(entitlements),
            kept: false,
        })
    }
}
