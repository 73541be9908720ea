//! Installing, upgrading and uninstalling modules for a tenant, atomically.
//!
//! Every operation runs the module's SQL and lifecycle hook inside one
//! `BEGIN IMMEDIATE` transaction on the tenant database, then records the
//! installation, the migration ledger (with each migration's checksum), the
//! free-plan subscription an install starts, and an audit event in one
//! control-plane transaction. The control plane commits first; if the tenant
//! commit then fails, the control-plane rows are removed again. A failure at
//! any step before that rolls back both, so nothing remains: no tables, no
//! ledger rows, no installation row, no subscription, no archive.
//!
//! # Serialisation
//! Install, upgrade and uninstall are serialised per tenant: within one
//! process by [`LifecycleLock`] (a second operation on the same tenant is
//! refused at once with [`SoukError::Conflict`] and changes nothing); across
//! processes sharing a data directory by the tenant database's write lock
//! (`BEGIN IMMEDIATE`) and by the control plane's keys, which make the
//! loser of a race fail before it commits anything.
//!
//! # Always removable
//! Down migrations are checked against the module's scope at install and
//! upgrade, exactly like up migrations. An uninstall that still fails (its
//! hook refuses, traps or times out; a down migration fails) can be forced
//! ([`Removal::Forced`]): the module's namespace is then dropped directly,
//! after its data is archived.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use souk_module_registry::Manifest;
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::archive::{self, ArchiveInfo};
use crate::auth::Principal;
use crate::billing::plans::Currency;
use crate::billing::service::Actor;
use crate::billing::store::{self as subscriptions, Change, SubscriptionRecord};
use crate::billing::subscription::Subscription;
use crate::capabilities::CallState;
use crate::capabilities::context::{CallContext, Caller};
use crate::capabilities::db::{self, ModuleDb, SqlScope};
use crate::catalog::ResolvedVersion;
use crate::control_plane::now;
use crate::error::SoukError;
use crate::runtime::{LoadedModule, Migration};
use crate::souk::Souk;
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
    /// The subscription this install started (its free plan), so that
    /// undoing the install can withdraw it again.
    #[serde(skip)]
    started_subscription: Option<StartedSubscription>,
}

/// The outcome of an uninstall.
#[derive(Debug, Clone, Serialize)]
pub struct UninstallReport {
    /// Module slug.
    pub module: String,
    /// The version that was removed.
    pub version: String,
    /// Migrations reverted, in order (none when forced: the namespace was
    /// dropped directly).
    pub reverted_migrations: Vec<String>,
    /// The archive the module's data was written to first (as the archive
    /// list shows it: by id, never by a server path).
    pub archive: ArchiveInfo,
    /// Set when the uninstall was forced: why the normal uninstall failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forced: Option<String>,
}

/// How an uninstall may proceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Run the module's uninstall hook and down migrations; any failure
    /// refuses the uninstall and changes nothing.
    Normal,
    /// Try the normal uninstall; if the module's hook or a down migration
    /// fails, archive the data and drop the module's namespace directly
    /// (every table, index, trigger and view with its prefix).
    ///
    /// The operator may force. A tenant token may force only its own
    /// tenant's modules and must confirm by repeating the module slug in
    /// `confirmation`.
    Forced {
        /// The module slug, repeated by a tenant token to confirm.
        confirmation: Option<String>,
    },
}

/// Longest failure reason kept in an audit event or a forced uninstall's
/// answer; a module's error text beyond it is cut.
const MAX_REASON_BYTES: usize = 1024;

/// Tenants (by id) with an install, upgrade or uninstall under way in this
/// process.
static BUSY_TENANTS: LazyLock<Mutex<HashSet<String>>> =
    LazyLock::new(|| Mutex::new(HashSet::new()));

/// Held while a lifecycle operation runs for one tenant; released on drop
/// (also when the request's future is dropped midway).
#[derive(Debug)]
pub struct LifecycleLock {
    tenant_id: String,
}

impl LifecycleLock {
    /// Takes the lifecycle lock of `tenant` if no other install, upgrade or
    /// uninstall of that tenant runs in this process. Never waits.
    ///
    /// # Errors
    /// [`SoukError::Conflict`] (`operation in progress`) when one does.
    pub fn try_acquire(tenant: &Tenant) -> Result<Self, SoukError> {
        let mut busy = BUSY_TENANTS.lock().unwrap_or_else(PoisonError::into_inner);
        if !busy.insert(tenant.id.clone()) {
            return Err(SoukError::Conflict(format!(
                "operation in progress: another install, upgrade or uninstall is running for tenant {}; \
                 retry once it has finished",
                tenant.slug
            )));
        }
        Ok(LifecycleLock {
            tenant_id: tenant.id.clone(),
        })
    }
}

impl Drop for LifecycleLock {
    fn drop(&mut self) {
        BUSY_TENANTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.tenant_id);
    }
}

/// The checksum the migration ledger records for a migration:
/// `sha256:<hex>` of the length of its `up` SQL (8 bytes, big-endian), its
/// `up` SQL, then its `down` SQL. The length makes the split unambiguous.
pub fn migration_checksum(migration: &Migration) -> String {
    let mut hasher = Sha256::new();
    hasher.update((migration.up.len() as u64).to_be_bytes());
    hasher.update(migration.up.as_bytes());
    hasher.update(migration.down.as_bytes());
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// `text` cut to at most [`MAX_REASON_BYTES`] bytes on a character boundary.
fn bounded(text: &str) -> String {
    if text.len() <= MAX_REASON_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_REASON_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
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
    loaded: &LoadedModule,
    ctx: CallContext,
) -> Result<Vec<Migration>, SoukError> {
    let migrations = loaded
        .declared_migrations(ctx)
        .await
        .map_err(lifecycle("migrations()"))?;
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
/// (see [`db::run_migration`]).
async fn run_migration_sql(
    souk: &Souk,
    scope: &SqlScope,
    tx: &mut Transaction<'static, Sqlite>,
    migration: &str,
    direction: &str,
    sql: &str,
) -> Result<(), SoukError> {
    db::run_migration(tx, scope, sql, souk.config.migration_timeout)
        .await
        .map_err(|e| match e {
            db::DbFailure::Refused(refusal) => SoukError::LifecycleFailed(format!(
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
    let state = CallState::for_hook(
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

/// Records `entry`; returns the event's id, so an undo can remove it.
async fn audit(
    cp: &mut Transaction<'static, Sqlite>,
    tenant: &Tenant,
    caller: &Caller,
    entry: AuditEntry<'_>,
) -> Result<i64, SoukError> {
    let done = sqlx::query(
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
    Ok(done.last_insert_rowid())
}

/// The undo step that removes audit event `id` (its operation did not
/// happen after all).
fn unaudit(id: i64) -> (&'static str, Vec<String>) {
    (
        "DELETE FROM audit_events WHERE id = CAST(? AS INTEGER)",
        vec![id.to_string()],
    )
}

async fn record_ledger(
    cp: &mut Transaction<'static, Sqlite>,
    tenant: &Tenant,
    manifest: &Manifest,
    all: &[Migration],
    applied: &[String],
) -> Result<(), SoukError> {
    for id in applied {
        let (position, checksum) = match all.iter().position(|m| &m.id == id) {
            Some(position) => (position, Some(migration_checksum(&all[position]))),
            None => (0, None),
        };
        sqlx::query(
            "INSERT INTO migration_ledger (tenant_id, module_slug, migration_id, position, applied_by, applied_at, checksum) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&tenant.id)
        .bind(manifest.slug.as_str())
        .bind(id)
        .bind(i64::try_from(position).unwrap_or(i64::MAX))
        .bind(manifest.version.to_string())
        .bind(now())
        .bind(checksum)
        .execute(&mut **cp)
        .await
        .map_err(|e| lost_race(e, manifest.slug.as_str()))?;
    }
    Ok(())
}

/// A control-plane write that hit a key another process wrote first (two
/// hosts installing the same module into one tenant at once) is a conflict
/// for the loser, not an internal error.
fn lost_race(error: sqlx::Error, module: &str) -> SoukError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => SoukError::Conflict(format!(
            "operation in progress: {module} was changed for this tenant by another \
             operation at the same time; nothing was changed by this one"
        )),
        _ => error.into(),
    }
}

/// Checks the `up` and the `down` SQL of every migration against `scope`,
/// as migrations run them, so that a module whose down migrations could
/// never run (another module's table, a host table, a syntax error) is
/// refused when it is installed or upgraded, not when it is removed.
async fn check_migrations(
    scope: &SqlScope,
    module: &str,
    migrations: &[Migration],
) -> Result<(), SoukError> {
    for m in migrations {
        for (direction, sql) in [("up", &m.up), ("down", &m.down)] {
            db::check_migration(scope, sql).await.map_err(|e| {
                SoukError::LifecycleFailed(format!(
                    "{module}: migration {} ({direction}) was refused: {e}",
                    m.id
                ))
            })?;
        }
    }
    Ok(())
}

/// A subscription an install starts (the module's free plan), saved in the
/// install's control-plane transaction so that it exists exactly when the
/// installation does.
#[derive(Debug, Clone)]
struct StartedSubscription {
    /// The record as saved (its revision is the saved one once written).
    record: SubscriptionRecord,
    /// The subscription it replaced (one without access), if any.
    previous: Option<SubscriptionRecord>,
    /// Who started it, as the subscription history names actors.
    actor: String,
}

/// What an install of `manifest` needs from billing: `None` when the module
/// is unpriced or the tenant already has access; the free-plan subscription
/// to start with the installation otherwise.
///
/// Nothing is written here: the subscription is saved by
/// [`start_subscription`] in the same control-plane transaction as the
/// installation.
///
/// # Errors
/// [`SoukError::PaymentRequired`] when the module has no free plan and the
/// tenant no subscription giving access (the message names the plans).
async fn subscription_for_install(
    souk: &Souk,
    principal: &Principal,
    tenant: &Tenant,
    manifest: &Manifest,
) -> Result<Option<StartedSubscription>, SoukError> {
    let module = manifest.slug.as_str();
    let plans = souk.billing.plans();
    let Some(module_plans) = plans.module(&manifest.slug) else {
        return Ok(None);
    };
    let existing = souk.billing.get(tenant, module).await?;
    let now = souk.billing.clock().now();
    if existing
        .as_ref()
        .is_some_and(|r| r.subscription.has_access(now))
    {
        return Ok(None);
    }
    let Some(free) = module_plans.free_plan() else {
        // No free plan and no access: billing refuses and names the plans to
        // buy. Without a free plan it starts nothing.
        souk.billing
            .authorize_install(tenant, manifest, actor_of(principal, tenant))
            .await?;
        return Ok(None);
    };
    let currency = Currency::parse(&souk.config.currency)
        .map_err(|e| SoukError::Internal(anyhow::anyhow!("--currency: {e}")))?;
    let subscription =
        Subscription::start(&tenant.id, module, free, currency, souk.billing.clock())
            .map_err(|e| SoukError::Conflict(e.to_string()))?;
    let mut record = SubscriptionRecord::new(subscription);
    if let Some(previous) = &existing {
        record.revision = previous.revision;
    }
    let actor = match principal {
        Principal::Operator => "operator".to_owned(),
        Principal::Tenant { .. } => format!("tenant:{}", tenant.slug),
    };
    Ok(Some(StartedSubscription {
        record,
        previous: existing,
        actor,
    }))
}

/// Saves `started` inside `cp`, with its history entry.
async fn start_subscription(
    souk: &Souk,
    cp: &mut Transaction<'static, Sqlite>,
    started: &mut StartedSubscription,
    manifest: &Manifest,
) -> Result<(), SoukError> {
    let change = Change {
        action: "subscribed",
        actor: &started.actor,
        detail: Some(format!(
            "started by the install of {} {}",
            manifest.slug, manifest.version
        )),
        at: souk.billing.clock().now(),
    };
    let from = started.previous.as_ref().map(|p| p.subscription.state);
    Ok(subscriptions::save(cp, &mut started.record, from, &change).await?)
}

/// Withdraws a subscription an install started, inside `cp`: removes it
/// (with its history) when there was none before, or puts back the one it
/// replaced.
async fn withdraw_subscription(
    souk: &Souk,
    cp: &mut Transaction<'static, Sqlite>,
    started: &StartedSubscription,
) -> Result<(), SoukError> {
    let s = &started.record.subscription;
    match &started.previous {
        None => {
            // Billing never deletes a subscription, so without a previous
            // one every history row of the pair belongs to this install.
            sqlx::query(
                "DELETE FROM subscriptions WHERE tenant_id = ? AND module_slug = ? AND revision = ?",
            )
            .bind(&s.tenant)
            .bind(&s.module)
            .bind(started.record.revision)
            .execute(&mut **cp)
            .await?;
            sqlx::query("DELETE FROM subscription_events WHERE tenant_id = ? AND module_slug = ?")
                .bind(&s.tenant)
                .bind(&s.module)
                .execute(&mut **cp)
                .await?;
        }
        Some(previous) => {
            let mut restored = previous.clone();
            restored.revision = started.record.revision;
            let change = Change {
                action: "restored",
                actor: &started.actor,
                detail: Some("the install that started the free plan was undone".into()),
                at: souk.billing.clock().now(),
            };
            subscriptions::save(cp, &mut restored, Some(s.state), &change).await?;
        }
    }
    Ok(())
}

/// Withdraws `started` in a transaction of its own (after the install's
/// control-plane transaction committed and the tenant commit failed).
async fn withdraw_subscription_now(souk: &Souk, started: &StartedSubscription) {
    let outcome = async {
        let mut cp = souk.control.pool().begin().await?;
        withdraw_subscription(souk, &mut cp, started).await?;
        cp.commit().await?;
        Ok::<(), SoukError>(())
    }
    .await;
    if let Err(e) = outcome {
        tracing::error!(error = %e, module = %started.record.subscription.module, "could not withdraw the subscription of an undone install");
    }
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
    let _lock = LifecycleLock::try_acquire(tenant)?;
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
                    if let Err(undo) =
                        roll_back_install(souk, principal, tenant, report, &error).await
                    {
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
    let _lock = LifecycleLock::try_acquire(tenant)?;
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
    let mut started = subscription_for_install(souk, principal, tenant, manifest).await?;
    let loaded = souk.catalog.load(&souk.runtime, &resolved).await?;
    let ctx = context(tenant, manifest, &caller);
    let migrations = migrations_of(&loaded, ctx.clone()).await?;
    let scope = scope_for(souk, tenant, manifest).await?;
    check_migrations(&scope, manifest.slug.as_str(), &migrations).await?;

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
    .await
    .map_err(|e| lost_race(e, manifest.slug.as_str()))?;
    record_ledger(&mut cp, tenant, manifest, &migrations, &applied).await?;
    if let Some(started) = started.as_mut() {
        start_subscription(souk, &mut cp, started, manifest).await?;
    }
    let (action, detail) = match (&request.restore_archive, restored_rows) {
        (Some(id), Some(rows)) => (
            "restore",
            Some(format!("restored {rows} rows from archive {id}")),
        ),
        _ => ("install", None),
    };
    let to = manifest.version.to_string();
    let event = audit(
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
        unaudit(event),
    ];
    if let Err(e) = commit_both(souk, cp, tx, &undo).await {
        if let Some(started) = &started {
            withdraw_subscription_now(souk, started).await;
        }
        return Err(e);
    }
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
        started_subscription: started,
    })
}

/// One applied migration as the ledger records it.
struct LedgerEntry {
    id: String,
    /// [`migration_checksum`] of what ran; `None` for migrations applied
    /// before the ledger kept checksums (unknown).
    checksum: Option<String>,
}

async fn ledger(souk: &Souk, tenant: &Tenant, module: &str) -> Result<Vec<LedgerEntry>, SoukError> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT migration_id, checksum FROM migration_ledger WHERE tenant_id = ? AND module_slug = ? \
         ORDER BY position, applied_at",
    )
    .bind(&tenant.id)
    .bind(module)
    .fetch_all(souk.control.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, checksum)| LedgerEntry { id, checksum })
        .collect())
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
    let _lock = LifecycleLock::try_acquire(tenant)?;
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
    let migrations = migrations_of(&loaded, ctx.clone()).await?;
    let done = ledger(souk, tenant, module).await?;
    for entry in &done {
        let Some(migration) = migrations.iter().find(|m| m.id == entry.id) else {
            return Err(SoukError::LifecycleFailed(format!(
                "{module} {} no longer contains migration {:?}, which is applied for this tenant; \
                 a new version must keep every earlier migration",
                manifest.version, entry.id
            )));
        };
        if let Some(recorded) = &entry.checksum
            && *recorded != migration_checksum(migration)
        {
            return Err(SoukError::Conflict(format!(
                "{module} {} changed the SQL of migration {:?}, which is already applied for this \
                 tenant (applied {recorded}, now {}); a released migration must never change: \
                 add a new migration instead",
                manifest.version,
                entry.id,
                migration_checksum(migration)
            )));
        }
    }
    let pending: Vec<&Migration> = migrations
        .iter()
        .filter(|m| !done.iter().any(|d| d.id == m.id))
        .collect();
    let scope = scope_for(souk, tenant, manifest).await?;
    check_migrations(&scope, module, &migrations).await?;

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
    let updated = sqlx::query(
        "UPDATE installations SET version = ?, digest = ?, updated_at = ? \
         WHERE tenant_id = ? AND module_slug = ? AND version = ? AND digest = ?",
    )
    .bind(manifest.version.to_string())
    .bind(&resolved.digest)
    .bind(&at)
    .bind(&tenant.id)
    .bind(module)
    .bind(&current.version)
    .bind(&current.digest)
    .execute(&mut *cp)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(changed_meanwhile(module));
    }
    record_ledger(&mut cp, tenant, manifest, &migrations, &applied).await?;
    let to = manifest.version.to_string();
    let event = audit(
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
    let mut undo = vec![
        (
            "UPDATE installations SET version = ?, digest = ?, updated_at = ? WHERE tenant_id = ? AND module_slug = ?",
            vec![
                current.version.clone(),
                current.digest.clone(),
                current.updated_at.clone(),
                tenant.id.clone(),
                module.to_owned(),
            ],
        ),
        unaudit(event),
    ];
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
        started_subscription: None,
    })
}

/// The installation changed between reading it and writing it (another
/// process upgraded or removed it).
fn changed_meanwhile(module: &str) -> SoukError {
    SoukError::Conflict(format!(
        "operation in progress: {module} was changed for this tenant by another operation \
         at the same time; nothing was changed by this one"
    ))
}

/// Uninstalls a module: archives its data, runs its `uninstall` hook, then
/// its down migrations in reverse, atomically. Whatever the down migrations
/// leave behind (tables, indexes, triggers, views with the module's prefix)
/// is dropped too, so nothing of the module remains.
///
/// With [`Removal::Forced`], a hook that refuses, traps or times out, or a
/// down migration that fails, no longer refuses the uninstall: the data is
/// archived and the module's namespace dropped directly, and the audit
/// event says it was forced and why the normal uninstall failed.
///
/// The archive exists exactly when the uninstall went through: an attempt
/// that fails removes the archive it wrote (its file and its record).
///
/// # Errors
/// [`SoukError::NotFound`] (not installed), [`SoukError::Conflict`] (another
/// installed module depends on it; another lifecycle operation of the
/// tenant is in progress), [`SoukError::Invalid`] (a tenant forcing without
/// confirmation), [`SoukError::LifecycleFailed`] (the hook or a down
/// migration failed and the uninstall was not forced).
pub async fn uninstall(
    souk: &Souk,
    principal: &Principal,
    tenant: &Tenant,
    module: &str,
    removal: &Removal,
) -> Result<UninstallReport, SoukError> {
    principal.check_tenant(tenant)?;
    let force = match removal {
        Removal::Normal => false,
        Removal::Forced { confirmation } => {
            authorize_force(principal, module, confirmation.as_deref())?;
            true
        }
    };
    let _lock = LifecycleLock::try_acquire(tenant)?;
    let caller = principal.caller();
    let current = require(souk, tenant, module).await?;
    refuse_if_depended_on(souk, tenant, module).await?;
    let resolved = souk.catalog.resolve(module, Some(&current.version)).await?;
    let scope = scope_for(souk, tenant, &resolved.manifest).await?;
    let done = ledger(souk, tenant, module).await?;
    let done_ids: Vec<String> = done.iter().map(|d| d.id.clone()).collect();

    let attempt = normal_uninstall(
        souk, &caller, tenant, &current, &resolved, &scope, &done_ids,
    )
    .await;
    let (tx, archive, reverted, forced) = match attempt {
        Ok((tx, archive, reverted)) => (tx, archive, reverted, None),
        Err(e) if force && forceable(&e) => {
            let reason = bounded(&e.to_string());
            tracing::warn!(tenant = %tenant.slug, module, reason = %reason, "normal uninstall failed; forcing it");
            let (tx, archive) =
                forced_removal(souk, tenant, &current, scope.prefix(), &done_ids).await?;
            (tx, archive, Vec::new(), Some(reason))
        }
        Err(e) => return Err(e),
    };
    let detail = match &forced {
        None => format!("archived to {}", archive.id),
        Some(reason) => format!(
            "forced uninstall, archived to {}; the normal uninstall failed: {reason}",
            archive.id
        ),
    };
    let removal = RemovalRecord {
        current: &current,
        done: &done,
        detail,
        withdraw: None,
    };
    if let Err(e) = record_removal(souk, tenant, &caller, tx, removal).await {
        discard_archive(souk, tenant, &archive).await;
        return Err(e);
    }
    souk.billing.forget(tenant, module);
    tracing::info!(tenant = %tenant.slug, module, archive = %archive.id, forced = forced.is_some(), "uninstalled");
    Ok(UninstallReport {
        module: module.to_owned(),
        version: current.version,
        reverted_migrations: reverted,
        archive: archive.clone(),
        forced,
    })
}

/// Who may force an uninstall: the operator; a tenant token (already
/// checked to act for this tenant) only when it repeats the module slug as
/// its confirmation.
fn authorize_force(
    principal: &Principal,
    module: &str,
    confirmation: Option<&str>,
) -> Result<(), SoukError> {
    match principal {
        Principal::Operator => Ok(()),
        Principal::Tenant { .. } if confirmation == Some(module) => Ok(()),
        Principal::Tenant { .. } => Err(SoukError::Invalid(format!(
            "a forced uninstall drops every table of {module} without running its uninstall hook \
             or down migrations (its data is archived first); confirm it by repeating the module \
             slug: confirm={module}"
        ))),
    }
}

/// Failures of the module's own uninstall work, which forcing skips.
fn forceable(error: &SoukError) -> bool {
    matches!(error, SoukError::LifecycleFailed(_) | SoukError::Module(_))
}

async fn refuse_if_depended_on(
    souk: &Souk,
    tenant: &Tenant,
    module: &str,
) -> Result<(), SoukError> {
    let dependants = dependants(souk, tenant, module).await?;
    if dependants.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = dependants
        .iter()
        .map(|m| format!("{} {}", m.slug, m.version))
        .collect();
    Err(SoukError::Conflict(format!(
        "cannot uninstall {module}: {} depend{} on it; uninstall {} first",
        names.join(", "),
        if names.len() == 1 { "s" } else { "" },
        if names.len() == 1 { "it" } else { "them" }
    )))
}

/// The normal uninstall inside one tenant transaction: archive, hook, down
/// migrations newest first, then whatever they left behind. Returns the
/// transaction to commit, the archive and the migrations reverted; on
/// failure the archive it wrote is removed and the transaction rolled back.
async fn normal_uninstall(
    souk: &Souk,
    caller: &Caller,
    tenant: &Tenant,
    current: &Installation,
    resolved: &ResolvedVersion,
    scope: &SqlScope,
    done: &[String],
) -> Result<(Transaction<'static, Sqlite>, ArchiveInfo, Vec<String>), SoukError> {
    let manifest = &resolved.manifest;
    let module = current.module.as_str();
    let loaded = souk.catalog.load(&souk.runtime, resolved).await?;
    let ctx = context(tenant, manifest, caller);
    let migrations = migrations_of(&loaded, ctx.clone()).await?;
    let pool = souk.tenancy.database(tenant).await?;
    let mut tx = begin(&pool).await?;
    let archive = export_archive(souk, &mut tx, tenant, current, scope.prefix(), done).await?;
    let tx = match run_hook(souk, &loaded, ctx, scope.clone(), tx, Hook::Uninstall).await {
        Ok(tx) => tx,
        Err(e) => {
            discard_archive(souk, tenant, &archive).await;
            return Err(e);
        }
    };
    match revert_migrations(souk, tx, scope, module, &migrations, done).await {
        Ok((tx, reverted)) => Ok((tx, archive, reverted)),
        Err(e) => {
            discard_archive(souk, tenant, &archive).await;
            Err(e)
        }
    }
}

/// Runs the down migrations of `done` newest first, then drops what they
/// left of the namespace and the module's usage counters.
async fn revert_migrations(
    souk: &Souk,
    mut tx: Transaction<'static, Sqlite>,
    scope: &SqlScope,
    module: &str,
    migrations: &[Migration],
    done: &[String],
) -> Result<(Transaction<'static, Sqlite>, Vec<String>), SoukError> {
    let mut reverted = Vec::new();
    for id in done.iter().rev() {
        match migrations.iter().find(|m| &m.id == id) {
            Some(m) => {
                run_migration_sql(souk, scope, &mut tx, &m.id, "down", &m.down).await?;
                reverted.push(m.id.clone());
            }
            None => {
                tracing::warn!(module, migration = %id, "applied migration missing from the module; its tables are dropped below")
            }
        }
    }
    for name in clear_namespace(&mut tx, scope.prefix(), module).await? {
        tracing::warn!(module, object = %name, "down migrations left this behind; dropped it");
    }
    Ok((tx, reverted))
}

/// The forced path: a fresh tenant transaction that archives the data and
/// drops the module's namespace without running any of its code.
async fn forced_removal(
    souk: &Souk,
    tenant: &Tenant,
    current: &Installation,
    prefix: &str,
    done: &[String],
) -> Result<(Transaction<'static, Sqlite>, ArchiveInfo), SoukError> {
    let pool = souk.tenancy.database(tenant).await?;
    let mut tx = begin(&pool).await?;
    let archive = export_archive(souk, &mut tx, tenant, current, prefix, done).await?;
    if let Err(e) = clear_namespace(&mut tx, prefix, &current.module).await {
        discard_archive(souk, tenant, &archive).await;
        return Err(e);
    }
    Ok((tx, archive))
}

async fn export_archive(
    souk: &Souk,
    tx: &mut Transaction<'static, Sqlite>,
    tenant: &Tenant,
    current: &Installation,
    prefix: &str,
    done: &[String],
) -> Result<ArchiveInfo, SoukError> {
    archive::export(
        &souk.control,
        &souk.config.data_dir.join("archives"),
        tx,
        tenant,
        &current.module,
        &current.version,
        prefix,
        done.to_vec(),
    )
    .await
}

/// Removes an archive written by an uninstall that did not go through: its
/// file and its record. Failures are logged; the uninstall's own error is
/// what the caller reports.
async fn discard_archive(souk: &Souk, tenant: &Tenant, archive: &ArchiveInfo) {
    if let Err(e) = archive::discard(&souk.control, tenant, &archive.id).await {
        tracing::error!(archive = %archive.id, error = %e, "could not remove the archive of an uninstall that did not go through");
    }
}

/// Drops the module's whole namespace inside `tx` (every table, view,
/// index and trigger whose name, or whose table's name, has `prefix`) and
/// its usage counters; returns the names dropped.
///
/// Foreign keys are deferred for the rest of the transaction, so tables
/// that reference each other can be dropped in any order; SQLite checks
/// them again at commit, when none of the module's tables remain.
async fn clear_namespace(
    tx: &mut Transaction<'static, Sqlite>,
    prefix: &str,
    module: &str,
) -> Result<Vec<String>, SoukError> {
    sqlx::query("PRAGMA defer_foreign_keys = ON")
        .execute(&mut **tx)
        .await?;
    let objects: Vec<(String, String)> = sqlx::query_as(
        "SELECT type, name FROM sqlite_master \
         WHERE type IN ('table', 'view', 'index', 'trigger') \
           AND substr(name, 1, 7) != 'sqlite_' \
           AND (substr(name, 1, ?1) = ?2 OR substr(tbl_name, 1, ?1) = ?2) \
         ORDER BY CASE type WHEN 'trigger' THEN 0 WHEN 'view' THEN 1 WHEN 'index' THEN 2 ELSE 3 END, name",
    )
    .bind(i64::try_from(prefix.len()).unwrap_or(i64::MAX))
    .bind(prefix)
    .fetch_all(&mut **tx)
    .await?;
    for (kind, name) in &objects {
        let keyword = match kind.as_str() {
            "trigger" => "TRIGGER",
            "view" => "VIEW",
            "index" => "INDEX",
            _ => "TABLE",
        };
        sqlx::query(&format!(
            "DROP {keyword} IF EXISTS {}",
            archive::quote(name)
        ))
        .execute(&mut **tx)
        .await?;
    }
    // What the count limits counted is gone with the tables.
    crate::entitlements::usage_db::clear_counters(tx, module).await?;
    Ok(objects.into_iter().map(|(_, name)| name).collect())
}

/// The control-plane side of a removal.
struct RemovalRecord<'a> {
    /// The installation being removed.
    current: &'a Installation,
    /// Its ledger, to put back if the tenant commit fails.
    done: &'a [LedgerEntry],
    /// The audit event's detail.
    detail: String,
    /// A subscription to withdraw with it (undoing an install).
    withdraw: Option<&'a StartedSubscription>,
}

/// Removes the installation and its ledger, records the audit event, and
/// commits with the tenant transaction `tx`.
async fn record_removal(
    souk: &Souk,
    tenant: &Tenant,
    caller: &Caller,
    tx: Transaction<'static, Sqlite>,
    removal: RemovalRecord<'_>,
) -> Result<(), SoukError> {
    let current = removal.current;
    let module = current.module.as_str();
    let mut cp = souk.control.pool().begin().await?;
    sqlx::query("DELETE FROM migration_ledger WHERE tenant_id = ? AND module_slug = ?")
        .bind(&tenant.id)
        .bind(module)
        .execute(&mut *cp)
        .await?;
    let removed = sqlx::query(
        "DELETE FROM installations WHERE tenant_id = ? AND module_slug = ? AND version = ? AND digest = ?",
    )
    .bind(&tenant.id)
    .bind(module)
    .bind(&current.version)
    .bind(&current.digest)
    .execute(&mut *cp)
    .await?;
    if removed.rows_affected() != 1 {
        return Err(changed_meanwhile(module));
    }
    if let Some(started) = removal.withdraw {
        withdraw_subscription(souk, &mut cp, started).await?;
    }
    let event = audit(
        &mut cp,
        tenant,
        caller,
        AuditEntry {
            module,
            action: "uninstall",
            from: Some(&current.version),
            to: None,
            detail: Some(removal.detail),
        },
    )
    .await?;
    // If the tenant commit fails the module is still fully installed there;
    // put its control-plane rows back.
    let mut undo = vec![
        unaudit(event),
        (
            "INSERT INTO installations (tenant_id, module_slug, version, digest, installed_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            vec![
                tenant.id.clone(),
                module.to_owned(),
                current.version.clone(),
                current.digest.clone(),
                current.installed_at.clone(),
                current.updated_at.clone(),
            ],
        ),
    ];
    for (position, entry) in removal.done.iter().enumerate() {
        undo.push((
            "INSERT INTO migration_ledger (tenant_id, module_slug, migration_id, position, applied_by, applied_at, checksum) \
             VALUES (?, ?, ?, ?, ?, ?, NULLIF(?, ''))",
            vec![
                tenant.id.clone(),
                module.to_owned(),
                entry.id.clone(),
                position.to_string(),
                current.version.clone(),
                now(),
                entry.checksum.clone().unwrap_or_default(),
            ],
        ));
    }
    commit_both(souk, cp, tx, &undo).await
}

/// Undoes an install made earlier in the same call (a dependency installed
/// before a later module of the plan failed): drops its namespace without
/// running its code (it holds only what its install just wrote, so nothing
/// is archived), removes its installation and ledger, withdraws the
/// subscription its install started, and records why in the audit log.
async fn roll_back_install(
    souk: &Souk,
    principal: &Principal,
    tenant: &Tenant,
    report: &InstallReport,
    reason: &SoukError,
) -> Result<(), SoukError> {
    let module = report.installation.module.as_str();
    let current = require(souk, tenant, module).await?;
    let prefix = souk_module_registry::Slug::parse(module)
        .map_err(|e| SoukError::Internal(anyhow::anyhow!("installed slug {module:?}: {e}")))?
        .table_prefix();
    let done = ledger(souk, tenant, module).await?;
    let pool = souk.tenancy.database(tenant).await?;
    let mut tx = begin(&pool).await?;
    clear_namespace(&mut tx, &prefix, module).await?;
    let removal = RemovalRecord {
        current: &current,
        done: &done,
        detail: format!(
            "rolled back: a later module of the same install failed: {}",
            bounded(&reason.to_string())
        ),
        withdraw: report.started_subscription.as_ref(),
    };
    record_removal(souk, tenant, &principal.caller(), tx, removal).await?;
    souk.billing.forget(tenant, module);
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn migration(up: &str, down: &str) -> Migration {
        Migration {
            id: "0001".into(),
            up: up.into(),
            down: down.into(),
        }
    }

    #[test]
    fn a_checksum_changes_with_either_sql_and_with_where_they_split() {
        let base = migration_checksum(&migration("CREATE TABLE a (x)", "DROP TABLE a"));
        assert!(
            base.starts_with("sha256:") && base.len() == 7 + 64,
            "{base}"
        );
        assert_eq!(
            base,
            migration_checksum(&migration("CREATE TABLE a (x)", "DROP TABLE a"))
        );
        for (up, down) in [
            ("CREATE TABLE a (y)", "DROP TABLE a"),
            ("CREATE TABLE a (x)", "DROP TABLE b"),
            ("CREATE TABLE a (x) ", "DROP TABLE a"),
            ("CREATE TABLE a (x)DROP TABLE a", ""),
            ("", "CREATE TABLE a (x)DROP TABLE a"),
            ("CREATE TABLE a (x)D", "ROP TABLE a"),
        ] {
            assert_ne!(
                base,
                migration_checksum(&migration(up, down)),
                "{up:?} {down:?}"
            );
        }
    }

    fn tenant(id: &str) -> Tenant {
        Tenant {
            id: id.into(),
            slug: format!("slug-{id}"),
            name: id.into(),
            created_at: now(),
        }
    }

    #[test]
    fn one_lifecycle_lock_per_tenant_released_on_drop() {
        let acme = tenant("t_lock_test_acme");
        let beta = tenant("t_lock_test_beta");
        let held = LifecycleLock::try_acquire(&acme).expect("first");
        let second = LifecycleLock::try_acquire(&acme);
        assert!(
            matches!(&second, Err(SoukError::Conflict(m)) if m.starts_with("operation in progress")),
            "{second:?}"
        );
        let other = LifecycleLock::try_acquire(&beta).expect("another tenant is not blocked");
        drop(held);
        let again = LifecycleLock::try_acquire(&acme).expect("released on drop");
        drop((again, other));
    }

    #[test]
    fn reasons_are_bounded_on_a_character_boundary() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(MAX_REASON_BYTES);
        let cut = bounded(&long);
        assert!(
            cut.len() <= MAX_REASON_BYTES + '…'.len_utf8(),
            "{}",
            cut.len()
        );
        assert!(cut.ends_with('…'));
        assert!(cut.trim_end_matches('…').chars().all(|c| c == 'é'));
    }
}
