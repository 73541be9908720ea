//! Serving a tenant's request with a module.
//!
//! `/t/{tenant}/m/{module}/{path}`: authenticate, find the tenant (404 when
//! the caller may not see it), find the installation, match the route in the
//! module's manifest (so a module never sees a request it did not declare),
//! then run the module's `handle` in a fresh store with its scoped database
//! handle. The request's statements run in one transaction, committed when
//! the module answers with a status below 500 and rolled back otherwise —
//! so a module that traps half-way leaves no partial writes.

use sqlx::{Sqlite, Transaction};

use crate::auth::Principal;
use crate::context::CallContext;
use crate::db::ModuleDb;
use crate::installer;
use crate::runtime::{CallState, ModuleRequest, ModuleResponse};
use crate::souk::{Souk, SoukError};

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
/// module fails.
pub async fn dispatch(
    souk: &Souk,
    principal: &Principal,
    tenant_slug: &str,
    module: &str,
    mut request: ModuleRequest,
) -> Result<ModuleResponse, SoukError> {
    let tenant = souk.tenancy.by_slug(tenant_slug).await?;
    principal.check_tenant(&tenant)?;
    let installation = installer::find(souk, &tenant, module)
        .await?
        .ok_or_else(|| {
            SoukError::NotFound(format!(
                "module {module:?} is not installed for this tenant"
            ))
        })?;
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
    let resolved = souk
        .catalog
        .resolve(module, Some(&installation.version))
        .await?;
    let manifest = &resolved.manifest;
    match manifest.route_for(&request.method, &request.path) {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(SoukError::NotFound(format!(
                "module {module} has no route for {}",
                request.path
            )));
        }
        Err(()) => {
            return Err(SoukError::MethodNotAllowed(format!(
                "module {module} does not accept {} on {}",
                request.method, request.path
            )));
        }
    }
    request
        .headers
        .retain(|(name, _)| !PRIVATE_HEADERS.contains(&name.to_ascii_lowercase().as_str()));

    let loaded = souk.catalog.load(&souk.runtime, &resolved).await?;
    let scope = installer::scope_for(souk, &tenant, manifest).await?;
    let pool = souk.tenancy.database(&tenant).await?;
    // Reads take a deferred transaction; writes take the write lock up
    // front, so two writers queue instead of failing on lock upgrade.
    let tx: Transaction<'static, Sqlite> = if matches!(request.method.as_str(), "GET" | "HEAD") {
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
    let state = CallState::new(
        ctx,
        ModuleDb::new(scope, tx, limits.call_timeout),
        limits.memory_bytes,
    );
    let mut call = loaded.instantiate(state).await?;
    let result = call.handle(request).await;
    let mut state = call.into_state();
    let tx = state.db.take_transaction();
    match result {
        Ok(response) if response.status < 500 => {
            if let Some(tx) = tx {
                tx.commit().await?;
            }
            Ok(response)
        }
        Ok(response) => {
            if let Some(tx) = tx {
                tx.rollback().await?;
            }
            Ok(response)
        }
        Err(e) => {
            tracing::warn!(tenant = %tenant.slug, module, error = %e, "module call failed");
            if let Some(tx) = tx {
                tx.rollback().await?;
            }
            Err(e.into())
        }
    }
}
