//! Serving a tenant's request with a module.
//!
//! `/t/{tenant}/m/{module}/{path}`: authenticate, find the tenant (404 when
//! the caller may not see it), find the installation, match the route in the
//! module's manifest (so a module never sees a request it did not declare),
//! then run the module's `handle` in a fresh store with its scoped database
//! handle. The request's statements run in one transaction, committed when
//! the module answers with a status below 500 and rolled back otherwise —
//! so a module that traps half-way leaves no partial writes.
//!
//! Each tenant may have at most `--tenant-concurrency` module calls running
//! at once (and request calls together leave a reserve of instance slots
//! for lifecycle work): a call beyond that is refused before anything else
//! is done for it — a 429 (or 503) problem with `Retry-After`, the module
//! never runs. The call holds its place until its transaction is committed
//! or rolled back. Every call is bounded by the runtime's deadline, a
//! blocked guest included; a stopped call's transaction is rolled back.
//!
//! Entitlements are enforced before the module runs (the route gate): the
//! route's `feature`, room for one more unit of its `limit`, and allowance
//! left on its `meter`. A refused request gets a 402/403 problem naming the
//! feature, the reason and the upgrade; the module never sees it. Usage the
//! module changes through the `entitlements` import is written in the same
//! transaction as its data and undone in memory if that rolls back; a
//! route's `meter` is charged one unit when the answer is a 2xx.

use souk_module_registry::RouteLookup;
use sqlx::{Sqlite, Transaction};

use crate::auth::Principal;
use crate::capabilities::CallState;
use crate::capabilities::context::CallContext;
use crate::capabilities::db::ModuleDb;
use crate::capabilities::entitlements::call::{self, CallEntitlements};
use crate::entitlements::Decision;
use crate::error::SoukError;
use crate::runtime::{ModuleRequest, ModuleResponse};
use crate::souk::Souk;

/// Request headers never forwarded to modules.
const PRIVATE_HEADERS: [&str; 4] = [
    "authorization",
    "cookie",
    "proxy-authorization",
    "x-souk-operator",
];

/// Serves `request` for `tenant_slug` with `module`.
///
/// # Errors
/// [`SoukError::NotFound`] (tenant invisible, module not installed, no
/// route), [`SoukError::MethodNotAllowed`], [`SoukError::Module`] when the
/// tenant is at its concurrency cap or the host at capacity, or the module
/// fails.
pub async fn dispatch(
    souk: &Souk,
    principal: &Principal,
    tenant_slug: &str,
    module: &str,
    mut request: ModuleRequest,
) -> Result<ModuleResponse, SoukError> {
    let tenant = souk.tenancy.by_slug(tenant_slug).await?;
    principal.check_tenant(&tenant)?;
    // Before any work is done for the call, and held until its transaction
    // is settled (dropped with this function's frame, whichever way it ends).
    let _permit = souk.runtime.admit(&tenant.id)?;
    let installation = souk.installer().require(&tenant, module).await?;
    // The installation row carries its version's revocation (one query):
    // read fresh on every request, so a revocation recorded by another
    // process takes effect at once.
    if let Some(reason) = &installation.revoked {
        return Err(crate::catalog::revoked(
            module,
            &installation.version,
            reason,
        ));
    }
    let resolved = souk.usage().ensure_grant(&tenant, &installation).await?;
    let manifest = &resolved.manifest;
    let route = match manifest.route_for(&request.method, &request.path) {
        RouteLookup::Found(route, _) => route,
        RouteLookup::NoRoute => {
            return Err(SoukError::NotFound(format!(
                "module {module} has no route for {}",
                request.path
            )));
        }
        RouteLookup::MethodNotAllowed => {
            return Err(SoukError::MethodNotAllowed(format!(
                "module {module} does not accept {} on {}",
                request.method, request.path
            )));
        }
    };
    let pool = souk.tenancy.database(&tenant).await?;
    let now = souk.billing.clock().now();
    let engine = souk.billing.engine();
    let gate = [
        Some(engine.check_access(&tenant.id, module)),
        route
            .feature
            .as_deref()
            .map(|key| engine.check_feature(&tenant.id, module, key)),
        route
            .limit
            .as_deref()
            .map(|key| engine.check_limit(&tenant.id, module, key, 1)),
    ];
    for decision in gate.into_iter().flatten() {
        if let Decision::Denied(denial) = decision {
            return Err(SoukError::Denied(Box::new(denial)));
        }
    }
    // A metered route takes its unit before the module runs (atomically
    // against the allowance, so concurrent requests never exceed it), is
    // written with the answer if that is a 2xx, and is given back otherwise.
    let meter_key: String;
    let mut meter = match route.meter.as_deref() {
        None => None,
        Some(key) => {
            // Only has to be unique: the request is never retried under it.
            meter_key = format!("request-{}", hex::encode(rand::random::<[u8; 16]>()));
            let event = call::MeterEvent {
                tenant_id: &tenant.id,
                module,
                meter: key,
                amount: 1,
                idempotency_key: &meter_key,
                at: now,
            };
            match call::MeterHold::take(engine, event, true) {
                Ok(hold) => Some(hold),
                Err(call::CallUsageError::Denied(denial)) => {
                    return Err(SoukError::Denied(Box::new(denial)));
                }
                Err(e) => return Err(SoukError::Internal(anyhow::anyhow!("metering {key}: {e}"))),
            }
        }
    };
    request
        .headers
        .retain(|(name, _)| !PRIVATE_HEADERS.contains(&name.to_ascii_lowercase().as_str()));

    let loaded = souk.catalog.load(&souk.runtime, &resolved).await?;
    let scope = souk.installer().scope_for(&tenant, manifest).await?;
    // Reads take a deferred transaction; writes — and metered routes, which
    // write their usage event — take the write lock up front, so two
    // writers queue instead of failing on lock upgrade.
    let reads_only = matches!(request.method.as_str(), "GET" | "HEAD") && meter.is_none();
    let tx: Transaction<'static, Sqlite> = if reads_only {
        pool.begin().await?
    } else {
        pool.begin_with("BEGIN IMMEDIATE").await?
    };
    let limits = souk.runtime.limits();
    let ctx = CallContext {
        tenant_id: tenant.id.clone(),
        module_slug: manifest.slug.to_string(),
        module_version: manifest.version.to_string(),
        caller: principal.caller(),
    };
    let state = CallState::for_request(
        ctx,
        ModuleDb::new(scope, tx, limits.call_timeout),
        CallEntitlements::new(engine.clone(), &tenant.id, module, now),
        limits.memory_bytes,
    );
    // On the module call threads, not the API's (see `Runtime::run_call`).
    let (result, mut state) = souk
        .runtime
        .run_call(async move {
            let mut call = loaded.instantiate(state).await?;
            let result = call.handle(request).await;
            Ok::<_, crate::runtime::CallError>((result, call.into_state()))
        })
        .await??;
    let entitlements = state.entitlements.take();
    let tx = state.db.take_transaction();
    // Dropping `meter` without committing gives its unit back.
    let rollback = |entitlements: Option<CallEntitlements>| {
        if let Some(entitlements) = entitlements {
            entitlements.rollback();
        }
    };
    match result {
        Ok(response) if response.status < 500 => {
            let Some(mut tx) = tx else {
                return Ok(response);
            };
            if !(200..300).contains(&response.status) {
                meter = None;
            }
            if let Some(hold) = meter.as_mut()
                && let Err(e) = hold.write(&mut tx).await
            {
                tx.rollback().await?;
                rollback(entitlements);
                return Err(SoukError::Internal(anyhow::anyhow!("metering: {e}")));
            }
            if let Err(e) = tx.commit().await {
                rollback(entitlements);
                return Err(e.into());
            }
            if let Some(hold) = meter {
                hold.commit();
            }
            Ok(response)
        }
        Ok(response) => {
            rollback(entitlements);
            if let Some(tx) = tx {
                tx.rollback().await?;
            }
            Ok(response)
        }
        Err(e) => {
            tracing::warn!(tenant = %tenant.slug, module, error = %e, "module call failed");
            rollback(entitlements);
            if let Some(tx) = tx {
                tx.rollback().await?;
            }
            Err(e.into())
        }
    }
}
