//! Installing, upgrading and uninstalling modules for a tenant, atomically.
//!
//! Every operation runs the module's SQL and lifecycle hook inside one
//! `BEGIN IMMEDIATE` transaction on the tenant database, then records the
//! installation, the migration ledger and an audit event in one
//! control-plane transaction. The control plane commits first; if the tenant
//! commit then fails, the control-plane rows are removed again. A failure at
//! any step before that rolls back both, so nothing remains: no tables, no
//! ledger rows, no installation row.

use serde::{Deserialize, Serialize};
use souk_module_registry::Manifest;
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::archive::{self, ArchiveInfo};
use crate::auth::Principal;
use crate::billing::service::Actor;
use crate::catalog::ResolvedVersion;
use crate::context::{CallContext, Caller};
use crate::control_plane::now;
use crate::db::{ModuleDb, SqlScope};
use crate::runtime::{CallState, LoadedModule, Migration};
use crate::souk::{Souk, SoukError};
use crate::tenancy::Tenant;

/// A module installed for a tenant.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Installation {
    /// Module slug.
    pub module: String,
    /// Installed version.
    pub version: String,
    /// Package digest of that version.
    pub digest: String,
    /// First installed.
    pub installed_at: String,
    /// Last changed (install or upgrade).
    pub updated_at: String,
    /// Why the installed version was revoked by its publisher, if it was:
    /// the host refuses to run it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
    /// Revision of the tenant's subscription to the module (none without
    /// one): read with the installation so the request path notices a
    /// subscription change made by any process without another query.
    #[serde(skip)]
    pub subscription_revision: Option<i64>,
}

/// What to install.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallRequest {
    /// Module slug.
    pub module: String,
    /// Version; the newest when absent (or the archive's when restoring).
    #[serde(default)]
    pub version: Option<String>,
    /// Restore the data of this archive instead of running the install hook.
    #[serde(default)]
    pub restore_archive: Option<String>,
}

/// The outcome of an install or upgrade.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    /// The installation now in place.
    pub installation: Installation,
    /// Migrations this operation applied, in order.
    pub applied_migrations: Vec<String>,
    /// Rows restored from an archive, if restoring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored_rows: Option<u64>,
    /// Dependencies this install added first, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_installed: Vec<Installation>,
}

/// The outcome of an uninstall.
#[derive(Debug, Clone, Serialize)]
pub struct UninstallReport {
    /// Module slug.
    pub module: String,
    /// The version that was removed.
    pub version: String,
    /// Migrations reverted, in order.
    pub reverted_migrations: Vec<String>,
    /// Where the module's data was archived first.
    pub archive: ArchiveInfo,
}

/// Installations with the revocation status of their version, in one
/// query, because the request path needs both.
const SELECT_INSTALLATION: &str = "SELECT i.module_slug AS module, i.version, i.digest, \
     i.installed_at, i.updated_at, v.revoked_reason AS revoked, s.revision AS subscription_revision \
     FROM installations i \
     LEFT JOIN module_versions v ON v.slug = i.module_slug AND v.version = i.version \
     LEFT JOIN subscriptions s ON s.tenant_id = i.tenant_id AND s.module_slug = i.module_slug";

/// A tenant's installations.
///
/// # Errors
/// Database errors.
pub async fn list(souk: &Souk, tenant: &Tenant) -> Result<Vec<Installation>, SoukError> {
    Ok(sqlx::query_as(&format!(
        "{SELECT_INSTALLATION} WHERE i.tenant_id = ? ORDER BY i.module_slug"
    ))
    .bind(&tenant.id)
    .fetch_all(souk.control.pool())
    .await?)
}

/// Who an install is made by, for the subscription it may start.
fn actor_of<'a>(principal: &Principal, tenant: &'a Tenant) -> Actor<'a> {
    match principal {
        Principal::Operator => Actor::Operator,
        Principal::Tenant { .. } => Actor::Tenant(&tenant.slug),
    }
}

/// The tenant's installation of `module`, if any.
///
/// # Errors
/// Database errors.
pub async fn find(
    souk: &Souk,
    tenant: &Tenant,
    module: &str,
) -> Result<Option<Installation>, SoukError> {
    Ok(sqlx::query_as(&format!(
        "{SELECT_INSTALLATION} WHERE i.tenant_id = ? AND i.module_slug = ?"
    ))
    .bind(&tenant.id)
    .bind(module)
    .fetch_optional(souk.control.pool())
    .await?)
}

/// The tenant's installation of `module`.
///
/// # Errors
/// [`SoukError::NotFound`] when it is not installed; database errors.
pub async fn require(
    souk: &Souk,
    tenant: &Tenant,
    module: &str,
) -> Result<Installation, SoukError> {
    find(souk, tenant, module).await?.ok_or_else(|| {
        SoukError::NotFound(format!(
            "module {module:?} is not installed for this tenant"
        ))
    })
}

/// The SQL scope of `manifest` for `tenant`: its own tables plus the
/// exports of the installed versions of its dependencies.
///
/// # Errors
/// Database errors.
pub async fn scope_for(
    souk: &Souk,
    tenant: &Tenant,
    manifest: &Manifest,
) -> Result<SqlScope, SoukError> {
    let mut deps = Vec::new();
    for dep in &manifest.dependencies {
        if let Some(installed) = find(souk, tenant, dep.slug.as_str()).await? {
            deps.push(
                souk.catalog
                    .resolve(dep.slug.as_str(), Some(&installed.version))
                    .await?
                    .manifest,
            );
        }
    }
    Ok(SqlScope::new(manifest, deps.iter()))
}

/// Checks every dependency of `manifest` is installed in a compatible version.
async fn check_dependencies(
    souk: &Souk,
    tenant: &Tenant,
    manifest: &Manifest,
) -> Result<(), SoukError> {
    let mut problems = Vec::new();
    for dep in &manifest.dependencies {
        match find(souk, tenant, dep.slug.as_str()).await? {
            None => problems.push(format!(
                "{} {} needs {} {}, which is not installed; install {} first",
                manifest.slug, manifest.version, dep.slug, dep.requirement, dep.slug
            )),
            Some(installed) => {
                let ok = semver::Version::parse(&installed.version)
                    .map(|v| dep.requirement.matches(&v))
                    .unwrap_or(false);
                if !ok {
                    problems.push(format!(
                        "{} {} needs {} {}, but this tenant has {} {} installed",
                        manifest.slug,
                        manifest.version,
                        dep.slug,
                        dep.requirement,
                        dep.slug,
                        installed.version
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SoukError::Dependency(problems.join("; ")))
    }
}

/// Installed modules whose manifests depend on `module`: (manifest, installed version).
async fn dependants(
    souk: &Souk,
    tenant: &Tenant,
    module: &str,
) -> Result<Vec<Manifest>, SoukError> {
    let mut out = Vec::new();
    for installation in list(souk, tenant).await? {
        if installation.module == module {
            continue;
        }
        let resolved = souk
            .catalog
            .resolve(&installation.module, Some(&installation.version))
            .await?;
        if resolved
            .manifest
            .dependencies
            .iter()
            .any(|d| d.slug.as_str() == module)
        {
            out.push(resolved.manifest);
        }
    }
    Ok(out)
}

fn context(tenant: &Tenant, manifest: &Manifest, caller: &Caller) -> CallContext {
    CallContext {
        tenant_id: tenant.id.clone(),
        module_slug: manifest.slug.to_string(),
        module_version: manifest.version.to_string(),
        caller: caller.clone(),
    }
}

async fn migrations_of(
    souk: &Souk,
    loaded: &LoadedModule,
    ctx: CallContext,
) -> Result<Vec<Migration>, SoukError> {
    let state = CallState::new(
        ctx,
        ModuleDb::detached(),
        souk.runtime.limits().memory_bytes,
    );
    let mut call = loaded
        .instantiate(state)
        .await
        .map_err(lifecycle("migrations()"))?;
    let migrations = call.migrations().await.map_err(lifecycle("migrations()"))?;
    let mut seen = std::collections::HashSet::new();
    for m in &migrations {
        if m.id.trim().is_empty() || m.id.len() > 200 {
            return Err(SoukError::LifecycleFailed(
                "a migration has an empty or overlong id".into(),
            ));
        }
        if !seen.insert(m.id.clone()) {
            return Err(SoukError::LifecycleFailed(format!(
                "migration id {:?} appears twice",
                m.id
            )));
        }
    }
    Ok(migrations)
}

fn lifecycle(what: &'static str) -> impl Fn(crate::runtime::CallError) -> SoukError {
    move |e| SoukError::LifecycleFailed(format!("{what} failed: {e}"))
}

async fn begin(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, SoukError> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}

/// Runs a migration's `sql` in `tx`: rewritten into the module's namespace,
/// checked by SQLite's authorizer, bound to the configured migration budget
/// (see [`crate::db::run_migration`]).
async fn run_migration_sql(
    souk: &Souk,
    scope: &SqlScope,
    tx: &mut Transaction<'static, Sqlite>,
    migration: &str,
    direction: &str,
    sql: &str,
) -> Result<(), SoukError> {
    crate::db::run_migration(tx, scope, sql, souk.config.migration_timeout)
        .await
        .map_err(|e| match e {
            crate::db::DbFailure::Refused(refusal) => SoukError::LifecycleFailed(format!(
                "migration {migration} ({direction}) was refused: {refusal}"
            )),
            other => SoukError::LifecycleFailed(format!(
                "migration {migration} ({direction}) failed: {other}"
            )),
        })
}

/// Which lifecycle hook to run.
enum Hook<'a> {
    Install,
    Uninstall,
    Upgrade(&'a str),
}

/// Runs a hook with database access inside `tx`; returns `tx` to continue.
async fn run_hook(
    souk: &Souk,
    loaded: &LoadedModule,
    ctx: CallContext,
    scope: SqlScope,
    tx: Transaction<'static, Sqlite>,
    hook: Hook<'_>,
) -> Result<Transaction<'static, Sqlite>, SoukError> {
    let limits = souk.runtime.limits();
    let state = CallState::new(
        ctx,
        ModuleDb::new(scope, tx, limits.call_timeout),
        limits.memory_bytes,
    );
    let (name, outcome, call) = {
        let mut call = loaded
            .instantiate(state)
            .await
            .map_err(lifecycle("the module"))?;
        let (name, outcome) = match hook {
            Hook::Install => ("install", call.install().await),
            Hook::Uninstall => ("uninstall", call.uninstall().await),
            Hook::Upgrade(from) => ("upgrade", call.upgrade(from).await),
        };
        (name, outcome, call)
    };
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(message)) => {
            return Err(SoukError::LifecycleFailed(format!(
                "the {name} hook refused: {message}"
            )));
        }
        Err(e) => {
            return Err(SoukError::LifecycleFailed(format!(
                "the {name} hook failed: {e}"
            )));
        }
    }
    let mut state = call.into_state();
    state
        .db
        .take_transaction()
        .ok_or_else(|| SoukError::Internal(anyhow::anyhow!("the {name} hook lost its transaction")))
}

/// One audit event to record.
struct AuditEntry<'a> {
    module: &'a str,
    action: &'a str,
    from: Option<&'a str>,
    to: Option<&'a str>,
    detail: Option<String>,
}

async fn audit(
    cp: &mut Transaction<'static, Sqlite>,
    tenant: &Tenant,
    caller: &Caller,
    entry: AuditEntry<'_>,
) -> Result<(), SoukError> {
    sqlx::query(
        "INSERT INTO audit_events (at, tenant_id, module_slug, action, from_version, to_version, \
         actor_kind, actor_id, actor_name, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(now())
    .bind(&tenant.id)
    .bind(entry.module)
    .bind(entry.action)
    .bind(entry.from)
    .bind(entry.to)
    .bind(
        serde_json::to_value(caller.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned)),
    )
    .bind(&caller.id)
    .bind(&caller.name)
    .bind(entry.detail)
    .execute(&mut **cp)
    .await?;
    Ok(())
}

async fn record_ledger(
    cp: &mut Transaction<'static, Sqlite>,
    tenant: &Tenant,
    manifest: &Manifest,
    all: &[Migration],
    applied: &[String],
) -> Result<(), SoukError> {
    for id in applied {
        let position = all.iter().position(|m| &m.id == id).unwrap_or(0);
        sqlx::query(
            "INSERT INTO migration_ledger (tenant_id, module_slug, migration_id, position, applied_by, applied_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&tenant.id)
        .bind(manifest.slug.as_str())
        .bind(id)
        .bind(i64::try_from(position).unwrap_or(i64::MAX))
        .bind(manifest.version.to_string())
        .bind(now())
        .execute(&mut **cp)
        .await?;
    }
    Ok(())
}

/// Commits the control plane, then the tenant database; if the tenant
/// commit fails, runs `undo` on the control plane so the two agree.
async fn commit_both(
    souk: &Souk,
    cp: Transaction<'static, Sqlite>,
    tenant_tx: Transaction<'static, Sqlite>,
    undo: &[(&str, Vec<String>)],
) -> Result<(), SoukError> {
    cp.commit().await?;
    if let Err(e) = tenant_tx.commit().await {
        tracing::error!(error = %e, "tenant commit failed after the control plane committed; undoing");
        for (sql, binds) in undo {
            let mut q = sqlx::query(sql);
            for b in binds {
                q = q.bind(b);
            }
            if let Err(undo_error) = q.execute(souk.control.pool()).await {
                tracing::error!(error = %undo_error, sql, "undo failed");
            }
        }
        return Err(e.into());
    }
    Ok(())
}

/// Installs a module for a tenant.
///
/// # Errors
/// [`SoukError::NotFound`] (no such module/version/archive),
/// [`SoukError::Conflict`] (already installed), [`SoukError::Dependency`],
/// [`SoukError::LifecycleFailed`] (a migration or the install hook failed;
/// nothing was kept).
pub async fn install(
    souk: &Souk,
    principal: &Principal,
    tenant: &Tenant,
    request: &InstallRequest,
) -> Result<InstallReport, SoukError> {
    use souk_module_registry::{RequestedModule, Slug, resolve_install};

    principal.check_tenant(tenant)?;
    if request.restore_archive.is_some() {
        // A restore installs exactly the archive's version.
        return install_one(souk, principal, tenant, request).await;
    }
    if let Some(existing) = find(souk, tenant, &request.module).await? {
        return Err(SoukError::Conflict(format!(
            "{} {} is already installed for this tenant; upgrade it instead",
            existing.module, existing.version
        )));
    }
    let slug = Slug::parse(&request.module).map_err(|e| {
        SoukError::NotFound(format!("no module {:?} is available ({e})", request.module))
    })?;
    let requirement = match &request.version {
        None => None,
        Some(text) => Some(
            match semver::Version::parse(text) {
                Ok(exact) => semver::VersionReq::parse(&format!("={exact}")),
                Err(_) => semver::VersionReq::parse(text),
            }
            .map_err(|e| {
                SoukError::Invalid(format!(
                    "version {text:?} is neither a version nor a range: {e}"
                ))
            })?,
        ),
    };
    let index = souk.catalog.registry_index().await?;
    if index.versions(&slug).next().is_none() {
        return Err(SoukError::NotFound(format!(
            "no module {slug:?} is available"
        )));
    }
    let installed = installed_modules(souk, tenant).await?;
    let plan = resolve_install(
        &index,
        &installed,
        &[RequestedModule {
            slug: slug.clone(),
            requirement,
        }],
    )
    .map_err(|e| SoukError::Dependency(e.to_string()))?;
    let reports = install_in_order(souk, principal, tenant, plan).await?;
    let (mut main, also): (Vec<InstallReport>, Vec<InstallReport>) = reports
        .into_iter()
        .partition(|r| r.installation.module == slug.as_str());
    let mut report = main.pop().ok_or_else(|| {
        SoukError::Internal(anyhow::anyhow!("the install plan did not contain {slug}"))
    })?;
    report.also_installed = also.into_iter().map(|r| r.installation).collect();
    Ok(report)
}

/// Installs every module of `plan` in order (dependencies first). If one
/// fails, the modules this call installed are uninstalled again, so the
/// tenant ends as it started.
async fn install_in_order(
    souk: &Souk,
    principal: &Principal,
    tenant: &Tenant,
    plan: souk_module_registry::InstallPlan,
) -> Result<Vec<InstallReport>, SoukError> {
    let mut done: Vec<InstallReport> = Vec::new();
    for planned in plan.modules {
        let request = InstallRequest {
            module: planned.slug.to_string(),
            version: Some(planned.version.to_string()),
            restore_archive: None,
        };
        match install_one(souk, principal, tenant, &request).await {
            Ok(report) => done.push(report),
            Err(error) => {
                for report in done.iter().rev() {
                    let module = &report.installation.module;
                    if let Err(undo) = uninstall(souk, principal, tenant, module).await {
                        tracing::error!(module, error = %undo, "could not undo a partial install");
                    }
                }
                return Err(error);
            }
        }
    }
    Ok(done)
}

/// The tenant's installed modules, as the resolver sees them.
async fn installed_modules(
    souk: &Souk,
    tenant: &Tenant,
) -> Result<Vec<souk_module_registry::InstalledModule>, SoukError> {
    let mut out = Vec::new();
    for installation in list(souk, tenant).await? {
        let resolved = souk
            .catalog
            .resolve(&installation.module, Some(&installation.version))
            .await?;
        out.push(souk_module_registry::InstalledModule {
            slug: resolved.manifest.slug.clone(),
            version: resolved.manifest.version.clone(),
            digest: souk_module_registry::Digest::parse(&installation.digest)
                .map_err(|e| SoukError::Internal(anyhow::anyhow!(e)))?,
            dependencies: resolved.manifest.dependencies.clone(),
        });
    }
    Ok(out)
}

/// The tenant's lockfile: every installed module with its exact version
/// and package digest. Installing from it gives the same bytes.
///
/// # Errors
/// Database errors.
pub async fn lockfile(
    souk: &Souk,
    tenant: &Tenant,
) -> Result<souk_module_registry::Lockfile, SoukError> {
    let locked = list(souk, tenant)
        .await?
        .into_iter()
        .map(|i| {
            Ok(souk_module_registry::LockedModule {
                slug: souk_module_registry::Slug::parse(&i.module)
                    .map_err(|e| SoukError::Internal(anyhow::anyhow!(e)))?,
                version: semver::Version::parse(&i.version)
                    .map_err(|e| SoukError::Internal(e.into()))?,
                digest: souk_module_registry::Digest::parse(&i.digest)
                    .map_err(|e| SoukError::Internal(anyhow::anyhow!(e)))?,
            })
        })
        .collect::<Result<Vec<_>, SoukError>>()?;
    souk_module_registry::Lockfile::new(locked)
        .map_err(|e| SoukError::Internal(anyhow::anyhow!("{e}")))
}

/// Installs exactly what a lockfile names (yanked versions included; the
/// digests must match), skipping modules already installed at the locked
/// version.
///
/// # Errors
/// [`SoukError::Invalid`] for a lockfile that does not parse;
/// [`SoukError::Dependency`] when it cannot be satisfied (missing version,
/// digest mismatch, installed version differs).
pub async fn install_lockfile(
    souk: &Souk,
    principal: &Principal,
    tenant: &Tenant,
    text: &str,
) -> Result<Vec<Installation>, SoukError> {
    principal.check_tenant(tenant)?;
    let lock = souk_module_registry::Lockfile::parse(text)
        .map_err(|e| SoukError::Invalid(format!("lockfile: {e}")))?;
    let index = souk.catalog.registry_index().await?;
    let installed = installed_modules(souk, tenant).await?;
    let plan = souk_module_registry::resolve_lockfile(&index, &installed, &lock)
        .map_err(|e| SoukError::Dependency(e.to_string()))?;
    let reports = install_in_order(souk, principal, tenant, plan).await?;
    Ok(reports.into_iter().map(|r| r.installation).collect())
}

/// Installs one module at an exact (or the newest) version whose
/// dependencies are already installed.
async fn install_one(
    souk: &Souk,
    principal: &Principal,
    tenant: &Tenant,
    request: &InstallRequest,
) -> Result<InstallReport, SoukError> {
    let caller = principal.caller();
    if let Some(existing) = find(souk, tenant, &request.module).await? {
        return Err(SoukError::Conflict(format!(
            "{} {} is already installed for this tenant; upgrade it instead",
            existing.module, existing.version
        )));
    }
    let archive = match &request.restore_archive {
        Some(id) => Some(archive::load(&souk.control, tenant, id).await?),
        None => None,
    };
    let version = match (&request.version, &archive) {
        (Some(v), Some(a)) if *v != a.version => {
            return Err(SoukError::Invalid(format!(
                "archive holds data of version {}; restore it into that version, then upgrade",
                a.version
            )));
        }
        (Some(v), _) => Some(v.clone()),
        (None, Some(a)) => Some(a.version.clone()),
        (None, None) => None,
    };
    if let Some(a) = &archive
        && a.module != request.module
    {
        return Err(SoukError::Invalid(format!(
            "archive holds data of module {}, not {}",
            a.module, request.module
        )));
    }
    let resolved: ResolvedVersion = souk
        .catalog
        .resolve(&request.module, version.as_deref())
        .await?;
    let manifest = &resolved.manifest;
    souk.catalog
        .ensure_not_revoked(&request.module, &manifest.version.to_string())
        .await?;
    check_dependencies(souk, tenant, manifest).await?;
    souk.billing
        .authorize_install(tenant, manifest, actor_of(principal, tenant))
        .await?;
    let loaded = souk.catalog.load(&souk.runtime, &resolved).await?;
    let ctx = context(tenant, manifest, &caller);
    let migrations = migrations_of(souk, &loaded, ctx.clone()).await?;
    let scope = scope_for(souk, tenant, manifest).await?;

    let pool = souk.tenancy.database(tenant).await?;
    let mut tx = begin(&pool).await?;
    let leftovers = archive::module_tables(&mut tx, scope.prefix()).await?;
    if !leftovers.is_empty() {
        return Err(SoukError::Conflict(format!(
            "the tenant database already holds tables of {} ({}); refusing to install over them",
            manifest.slug,
            leftovers.join(", ")
        )));
    }
    for m in &migrations {
        run_migration_sql(souk, &scope, &mut tx, &m.id, "up", &m.up).await?;
    }
    let mut restored_rows = None;
    let tx = match archive {
        Some(archive) => {
            let mut tx = tx;
            restored_rows = Some(archive::restore(&mut tx, scope.prefix(), archive).await?);
            tx
        }
        None => run_hook(souk, &loaded, ctx, scope, tx, Hook::Install).await?,
    };

    let applied: Vec<String> = migrations.iter().map(|m| m.id.clone()).collect();
    let at = now();
    let mut cp = souk.control.pool().begin().await?;
    sqlx::query(
        "INSERT INTO installations (tenant_id, module_slug, version, digest, installed_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&tenant.id)
    .bind(manifest.slug.as_str())
    .bind(manifest.version.to_string())
    .bind(&resolved.digest)
    .bind(&at)
    .bind(&at)
    .execute(&mut *cp)
    .await?;
    record_ledger(&mut cp, tenant, manifest, &migrations, &applied).await?;
    let (action, detail) = match (&request.restore_archive, restored_rows) {
        (Some(id), Some(rows)) => (
            "restore",
            Some(format!("restored {rows} rows from archive {id}")),
        ),
        _ => ("install", None),
    };
    let to = manifest.version.to_string();
    audit(
        &mut cp,
        tenant,
        &caller,
        AuditEntry {
            module: manifest.slug.as_str(),
            action,
            from: None,
            to: Some(&to),
            detail,
        },
    )
    .await?;
    let undo = [
        (
            "DELETE FROM migration_ledger WHERE tenant_id = ? AND module_slug = ?",
            vec![tenant.id.clone(), manifest.slug.to_string()],
        ),
        (
            "DELETE FROM installations WHERE tenant_id = ? AND module_slug = ?",
            vec![tenant.id.clone(), manifest.slug.to_string()],
        ),
    ];
    commit_both(souk, cp, tx, &undo).await?;
    tracing::info!(tenant = %tenant.slug, module = %manifest.slug, version = %manifest.version, "installed");
    Ok(InstallReport {
        installation: Installation {
            module: manifest.slug.to_string(),
            version: manifest.version.to_string(),
            digest: resolved.digest.clone(),
            installed_at: at.clone(),
            updated_at: at,
            revoked: None,
            subscription_revision: None,
        },
        applied_migrations: applied,
        restored_rows,
        also_installed: Vec::new(),
    })
}

async fn ledger(souk: &Souk, tenant: &Tenant, module: &str) -> Result<Vec<String>, SoukError> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT migration_id FROM migration_ledger WHERE tenant_id = ? AND module_slug = ? ORDER BY position, applied_at",
    )
    .bind(&tenant.id)
    .bind(module)
    .fetch_all(souk.control.pool())
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Upgrades a module to a newer version: only the migrations the new
/// version adds run, then its `upgrade` hook, atomically.
///
/// # Errors
/// [`SoukError::NotFound`] (not installed, no such version),
/// [`SoukError::Conflict`] (not newer; dependants would break),
/// [`SoukError::Dependency`], [`SoukError::LifecycleFailed`].
pub async fn upgrade(
    souk: &Souk,
    principal: &Principal,
    tenant: &Tenant,
    module: &str,
    version: Option<&str>,
) -> Result<InstallReport, SoukError> {
    principal.check_tenant(tenant)?;
    let caller = principal.caller();
    let current = require(souk, tenant, module).await?;
    let resolved = souk.catalog.resolve(module, version).await?;
    let manifest = &resolved.manifest;
    souk.catalog
        .ensure_not_revoked(module, &manifest.version.to_string())
        .await?;
    let from =
        semver::Version::parse(&current.version).map_err(|e| SoukError::Internal(e.into()))?;
    if manifest.version <= from {
        return Err(SoukError::Conflict(format!(
            "{module} {from} is installed; {} is not newer (downgrades are not supported)",
            manifest.version
        )));
    }
    check_dependencies(souk, tenant, manifest).await?;
    for dependant in dependants(souk, tenant, module).await? {
        if let Some(dep) = dependant
            .dependencies
            .iter()
            .find(|d| d.slug.as_str() == module)
            && !dep.requirement.matches(&manifest.version)
        {
            return Err(SoukError::Conflict(format!(
                "{} {} needs {module} {}, which {} does not satisfy",
                dependant.slug, dependant.version, dep.requirement, manifest.version
            )));
        }
    }
    let loaded = souk.catalog.load(&souk.runtime, &resolved).await?;
    let ctx = context(tenant, manifest, &caller);
    let migrations = migrations_of(souk, &loaded, ctx.clone()).await?;
    let done = ledger(souk, tenant, module).await?;
    if let Some(missing) = done
        .iter()
        .find(|id| !migrations.iter().any(|m| &m.id == *id))
    {
        return Err(SoukError::LifecycleFailed(format!(
            "{module} {} no longer contains migration {missing:?}, which is applied for this tenant; \
             a new version must keep every earlier migration",
            manifest.version
        )));
    }
    let pending: Vec<&Migration> = migrations
        .iter()
        .filter(|m| !done.contains(&m.id))
        .collect();
    let scope = scope_for(souk, tenant, manifest).await?;

    let pool = souk.tenancy.database(tenant).await?;
    let mut tx = begin(&pool).await?;
    for m in &pending {
        run_migration_sql(souk, &scope, &mut tx, &m.id, "up", &m.up).await?;
    }
    let from_text = from.to_string();
    let tx = run_hook(souk, &loaded, ctx, scope, tx, Hook::Upgrade(&from_text)).await?;

    let applied: Vec<String> = pending.iter().map(|m| m.id.clone()).collect();
    let at = now();
    let mut cp = souk.control.pool().begin().await?;
    sqlx::query("UPDATE installations SET version = ?, digest = ?, updated_at = ? WHERE tenant_id = ? AND module_slug = ?")
        .bind(manifest.version.to_string())
        .bind(&resolved.digest)
        .bind(&at)
        .bind(&tenant.id)
        .bind(module)
        .execute(&mut *cp)
        .await?;
    record_ledger(&mut cp, tenant, manifest, &migrations, &applied).await?;
    let to = manifest.version.to_string();
    audit(
        &mut cp,
        tenant,
        &caller,
        AuditEntry {
            module,
            action: "upgrade",
            from: Some(&from_text),
            to: Some(&to),
            detail: None,
        },
    )
    .await?;
    let mut undo = vec![(
        "UPDATE installations SET version = ?, digest = ?, updated_at = ? WHERE tenant_id = ? AND module_slug = ?",
        vec![
            current.version.clone(),
            current.digest.clone(),
            current.updated_at.clone(),
            tenant.id.clone(),
            module.to_owned(),
        ],
    )];
    for id in &applied {
        undo.push((
            "DELETE FROM migration_ledger WHERE tenant_id = ? AND module_slug = ? AND migration_id = ?",
            vec![tenant.id.clone(), module.to_owned(), id.clone()],
        ));
    }
    commit_both(souk, cp, tx, &undo).await?;
    tracing::info!(tenant = %tenant.slug, module, from = %from, to = %manifest.version, "upgraded");
    Ok(InstallReport {
        installation: Installation {
            module: module.to_owned(),
            version: manifest.version.to_string(),
            digest: resolved.digest.clone(),
            installed_at: current.installed_at,
            updated_at: at,
            revoked: None,
            subscription_revision: None,
        },
        applied_migrations: applied,
        restored_rows: None,
        also_installed: Vec::new(),
    })
}

/// Uninstalls a module: archives its data, runs its `uninstall` hook, then
/// its down migrations in reverse, atomically. Tables the down migrations
/// leave behind are dropped too, so nothing of the module remains.
///
/// # Errors
/// [`SoukError::NotFound`] (not installed), [`SoukError::Conflict`] (another
/// installed module depends on it), [`SoukError::LifecycleFailed`].
pub async fn uninstall(
    souk: &Souk,
    principal: &Principal,
    tenant: &Tenant,
    module: &str,
) -> Result<UninstallReport, SoukError> {
    principal.check_tenant(tenant)?;
    let caller = principal.caller();
    let current = require(souk, tenant, module).await?;
    let dependants = dependants(souk, tenant, module).await?;
    if !dependants.is_empty() {
        let names: Vec<String> = dependants
            .iter()
            .map(|m| format!("{} {}", m.slug, m.version))
            .collect();
        return Err(SoukError::Conflict(format!(
            "cannot uninstall {module}: {} depend{} on it; uninstall {} first",
            names.join(", "),
            if names.len() == 1 { "s" } else { "" },
            if names.len() == 1 { "it" } else { "them" }
        )));
    }
    let resolved = souk.catalog.resolve(module, Some(&current.version)).await?;
    let manifest = &resolved.manifest;
    let loaded = souk.catalog.load(&souk.runtime, &resolved).await?;
    let ctx = context(tenant, manifest, &caller);
    let migrations = migrations_of(souk, &loaded, ctx.clone()).await?;
    let done = ledger(souk, tenant, module).await?;
    let scope = scope_for(souk, tenant, manifest).await?;
    let prefix = scope.prefix().to_owned();

    let pool = souk.tenancy.database(tenant).await?;
    let mut tx = begin(&pool).await?;
    let archive = archive::export(
        &souk.control,
        &souk.config.data_dir.join("archives"),
        &mut tx,
        tenant,
        module,
        &current.version,
        &prefix,
        done.clone(),
    )
    .await?;
    let mut tx = run_hook(souk, &loaded, ctx, scope.clone(), tx, Hook::Uninstall).await?;
    let mut reverted = Vec::new();
    for id in done.iter().rev() {
        match migrations.iter().find(|m| &m.id == id) {
            Some(m) => {
                run_migration_sql(souk, &scope, &mut tx, &m.id, "down", &m.down).await?;
                reverted.push(m.id.clone());
            }
            None => {
                tracing::warn!(module, migration = %id, "applied migration missing from the module; its tables are dropped below")
            }
        }
    }
    for table in archive::module_tables(&mut tx, &prefix).await? {
        tracing::warn!(module, table = %table, "down migrations left a table behind; dropping it");
        sqlx::query(&format!("DROP TABLE {}", archive::quote(&table)))
            .execute(&mut *tx)
            .await?;
    }
    // What the count limits counted is gone with the tables.
    crate::entitlements::usage_db::clear_counters(&mut tx, module).await?;

    let mut cp = souk.control.pool().begin().await?;
    sqlx::query("DELETE FROM migration_ledger WHERE tenant_id = ? AND module_slug = ?")
        .bind(&tenant.id)
        .bind(module)
        .execute(&mut *cp)
        .await?;
    sqlx::query("DELETE FROM installations WHERE tenant_id = ? AND module_slug = ?")
        .bind(&tenant.id)
        .bind(module)
        .execute(&mut *cp)
        .await?;
    audit(
        &mut cp,
        tenant,
        &caller,
        AuditEntry {
            module,
            action: "uninstall",
            from: Some(&current.version),
            to: None,
            detail: Some(format!("archived to {}", archive.id)),
        },
    )
    .await?;
    // If the tenant commit fails the module is still fully installed there;
    // put its control-plane rows back.
    let mut undo = vec![(
        "INSERT INTO installations (tenant_id, module_slug, version, digest, installed_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        vec![
            tenant.id.clone(),
            module.to_owned(),
            current.version.clone(),
            current.digest.clone(),
            current.installed_at.clone(),
            current.updated_at.clone(),
        ],
    )];
    for (position, id) in done.iter().enumerate() {
        undo.push((
            "INSERT INTO migration_ledger (tenant_id, module_slug, migration_id, position, applied_by, applied_at) VALUES (?, ?, ?, ?, ?, ?)",
            vec![tenant.id.clone(), module.to_owned(), id.clone(), position.to_string(), current.version.clone(), now()],
        ));
    }
    commit_both(souk, cp, tx, &undo).await?;
    souk.billing.forget(tenant, module);
    tracing::info!(tenant = %tenant.slug, module, archive = %archive.id, "uninstalled");
    Ok(UninstallReport {
        module: module.to_owned(),
        version: current.version,
        reverted_migrations: reverted,
        archive,
    })
}

/// One audit event.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditEvent {
    /// Sequence number.
    pub id: i64,
    /// When.
    pub at: String,
    /// Module.
    pub module_slug: String,
    /// `install`, `upgrade`, `uninstall` or `restore`.
    pub action: String,
    /// Version before.
    pub from_version: Option<String>,
    /// Version after.
    pub to_version: Option<String>,
    /// Who: kind.
    pub actor_kind: String,
    /// Who: id.
    pub actor_id: String,
    /// Who: name.
    pub actor_name: String,
    /// Extra detail.
    pub detail: Option<String>,
}

/// A tenant's audit log, oldest first.
///
/// # Errors
/// Database errors.
pub async fn audit_log(souk: &Souk, tenant: &Tenant) -> Result<Vec<AuditEvent>, SoukError> {
    Ok(sqlx::query_as(
        "SELECT id, at, module_slug, action, from_version, to_version, actor_kind, actor_id, actor_name, detail \
         FROM audit_events WHERE tenant_id = ? ORDER BY id",
    )
    .bind(&tenant.id)
    .fetch_all(souk.control.pool())
    .await?)
}
