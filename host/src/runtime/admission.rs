//! Admission of request calls: how many module calls one tenant, and all
//! tenants together, may have running at once.
//!
//! One tenant may run at most `--tenant-concurrency` calls, and never more
//! than half of the request places, so it can never take all of them.
//!
//! A tenant's calls beyond its cap are refused at once (the module never
//! runs) rather than queued: a queue would let one tenant's backlog delay
//! its own later requests without bound, and a refusal with `Retry-After`
//! tells the client what to do. Request calls together may hold every
//! instance slot but a reserve ([`reserved_instances`]), so installs,
//! upgrades and package uploads (which instantiate modules too) still find
//! a slot while tenants flood the host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::CallError;

/// Instance slots kept free of request calls for lifecycle work (hooks,
/// migrations, the `gates()` check of an upload): an eighth of the pool,
/// none when the pool is smaller than eight (so a tiny pool still serves
/// requests).
pub fn reserved_instances(max_instances: u32) -> u32 {
    max_instances / 8
}

/// Counts running request calls, per tenant and in total.
pub(super) struct Admission {
    inner: Arc<Inner>,
}

struct Inner {
    per_tenant: u32,
    total: u32,
    retry_after: Duration,
    running: Mutex<Running>,
}

#[derive(Default)]
struct Running {
    total: u32,
    by_tenant: HashMap<String, u32>,
}

/// A running request call's place; dropping it frees the place.
#[must_use = "the call's place is freed when the permit is dropped"]
pub struct CallPermit {
    inner: Arc<Inner>,
    tenant: String,
}

impl Admission {
    /// At most `total` calls in all and `per_tenant` per tenant, but never
    /// more than half of `total` for one tenant (at least 1), so one tenant
    /// cannot hold every place whatever the configuration; refusals suggest
    /// retrying after `retry_after` (the call budget: by then a running call
    /// has finished or been stopped).
    pub(super) fn new(per_tenant: u32, total: u32, retry_after: Duration) -> Self {
        let total = total.max(1);
        Admission {
            inner: Arc::new(Inner {
                per_tenant: per_tenant.min(total / 2).max(1),
                total,
                retry_after,
                running: Mutex::new(Running::default()),
            }),
        }
    }

    /// Takes a place for one call of `tenant`.
    ///
    /// # Errors
    /// [`CallError::TenantBusy`] when the tenant is at its cap,
    /// [`CallError::Capacity`] when all tenants together are.
    pub(super) fn admit(&self, tenant: &str) -> Result<CallPermit, CallError> {
        let inner = &self.inner;
        let mut running = inner.running.lock().unwrap_or_else(PoisonError::into_inner);
        // A full host says so first: the tenant is not the reason.
        if running.total >= inner.total {
            return Err(CallError::Capacity {
                retry_after: inner.retry_after,
            });
        }
        let mine = running.by_tenant.get(tenant).copied().unwrap_or(0);
        if mine >= inner.per_tenant {
            return Err(CallError::TenantBusy {
                limit: inner.per_tenant,
                retry_after: inner.retry_after,
            });
        }
        running.total += 1;
        *running.by_tenant.entry(tenant.to_owned()).or_insert(0) += 1;
        Ok(CallPermit {
            inner: inner.clone(),
            tenant: tenant.to_owned(),
        })
    }

    /// Calls running now, for `tenant` and in total.
    #[cfg(test)]
    pub(super) fn running(&self, tenant: &str) -> (u32, u32) {
        let running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (
            running.by_tenant.get(tenant).copied().unwrap_or(0),
            running.total,
        )
    }
}

impl Drop for CallPermit {
    fn drop(&mut self) {
        let mut running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        running.total = running.total.saturating_sub(1);
        if let Some(count) = running.by_tenant.get_mut(&self.tenant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                // Keeps the map as small as the set of busy tenants.
                running.by_tenant.remove(&self.tenant);
            }
        }
    }
}
