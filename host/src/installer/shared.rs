//! What install, upgrade and uninstall share: reading installations, SQL
//! scopes, dependencies and dependants, the audit event and the ledger
//! entries an operation writes, and committing the two databases with an
//! undo made of inverse repository calls.

use std::sync::Arc;

use souk_module_registry::Manifest;
use sqlx::{Sqlite, SqliteConnection, Transaction};

use super::{Installer, migration_checksum};
use crate::auth::Principal;
use crate::billing::service::Actor;
use crate::capabilities::context::{CallContext, Caller};
use crate::capabilities::db::SqlScope;
use crate::control_plane::installations::{self, Installation, LedgerEntry};
use crate::control_plane::{StoreError, audit};
use crate::error::SoukError;
use crate::runtime::Migration;
use crate::tenancy::Tenant;

use super::AuditEvent;

/// This process's turn to write lifecycle records to the control plane.
/// SQLite has one writer at a time; without an order here, concurrent
/// installs meet its write lock held and sleep in its busy handler (1, 2,
/// 5, 10 … ms) before trying again, long after the lock came free. Queued
/// here, the next one starts as soon as the previous one commits. Other
/// processes (the CLI) still meet the lock and wait on it as before.
static CONTROL_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A control-plane transaction of a lifecycle operation, begun `IMMEDIATE`
/// (it holds SQLite's write lock from its first statement) on this
/// process's write turn, which it keeps until [`Installer::commit_both`]
/// commits it, or until it is dropped (rolled back).
pub(super) struct ControlTx {
    tx: Transaction<'static, Sqlite>,
    turn: tokio::sync::MutexGuard<'static, ()>,
}

impl std::ops::Deref for ControlTx {
    type Target = Transaction<'static, Sqlite>;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for ControlTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// The context a lifecycle call of `manifest` runs with.
pub(super) fn context(tenant: &Tenant, manifest: &Manifest, caller: &Caller) -> CallContext {
    CallContext {
        tenant_id: tenant.id.clone(),
        module_slug: manifest.slug.to_string(),
        module_version: manifest.version.to_string(),
        caller: caller.clone(),
    }
}

/// Who an install is made by, for the subscription it may start.
pub(super) fn actor_of<'a>(principal: &Principal, tenant: &'a Tenant) -> Actor<'a> {
    match principal {
        Principal::Operator => Actor::Operator,
        Principal::Tenant { .. } | Principal::User(_) | Principal::ApiKey(_) => {
            Actor::Tenant(&tenant.slug)
        }
    }
}

/// One audit event to record.
pub(super) struct AuditEntry<'a> {
    pub(super) module: &'a str,
    pub(super) action: &'a str,
    pub(super) from: Option<&'a str>,
    pub(super) to: Option<&'a str>,
    pub(super) detail: Option<String>,
}

/// Records `entry` as done by `caller` at `at` (RFC 3339); returns the
/// event's id, so an undo can remove it.
pub(super) async fn audit(
    cp: &mut SqliteConnection,
    tenant: &Tenant,
    caller: &Caller,
    at: &str,
    entry: AuditEntry<'_>,
) -> Result<i64, SoukError> {
    let event = audit::NewAuditEvent {
        at,
        tenant_id: &tenant.id,
        module: entry.module,
        action: entry.action,
        from: entry.from,
        to: entry.to,
        actor_kind: Some(caller.kind.as_str()),
        actor_id: &caller.id,
        actor_name: &caller.name,
        detail: entry.detail.as_deref(),
    };
    Ok(audit::record(cp, &event).await?)
}

/// Records in the ledger that the migrations `applied` (ids, in order) of
/// `manifest` ran at `at`, each with its place among `all` and its
/// checksum; returns the entries written, which the undo forgets again.
pub(super) async fn record_ledger(
    cp: &mut SqliteConnection,
    tenant: &Tenant,
    manifest: &Manifest,
    all: &[Migration],
    applied: &[String],
    at: &str,
) -> Result<Vec<LedgerEntry>, SoukError> {
    let entries: Vec<LedgerEntry> = applied
        .iter()
        .map(|id| {
            let (position, checksum) = match all.iter().position(|m| &m.id == id) {
                Some(position) => (position, Some(migration_checksum(&all[position]))),
                None => (0, None),
            };
            LedgerEntry {
                migration_id: id.clone(),
                position: i64::try_from(position).unwrap_or(i64::MAX),
                applied_by: manifest.version.to_string(),
                applied_at: at.to_owned(),
                checksum,
            }
        })
        .collect();
    let module = manifest.slug.as_str();
    installations::record(cp, &tenant.id, module, &entries)
        .await
        .map_err(|e| changed_meanwhile(e, module))?;
    Ok(entries)
}

/// A control-plane write that lost a race — a key another process wrote
/// first (two hosts installing the same module into one tenant at once), or
/// an installation changed between reading and writing it — is a conflict
/// for the loser, not an internal error.
pub(super) fn changed_meanwhile(error: StoreError, module: &str) -> SoukError {
    match error {
        StoreError::Db(e) => e.into(),
        StoreError::Duplicate | StoreError::Changed => SoukError::Conflict(format!(
            "operation in progress: {module} was changed for this tenant by another operation \
             at the same time; nothing was changed by this one"
        )),
    }
}

/// One control-plane write to take back when the tenant commit fails after
/// the control plane committed: each step is the inverse repository call
/// of a write the operation made.
#[derive(Debug, Clone)]
pub(super) enum Undo {
    /// Undoes `installations::insert` of this installation.
    RemoveInstallation(Installation),
    /// Undoes `installations::remove` of this installation.
    InsertInstallation(Installation),
    /// Undoes `installations::update` from `back_to` to `now`.
    UpdateInstallation {
        /// The installation as the operation wrote it.
        now: Installation,
        /// The installation as it was before.
        back_to: Installation,
    },
    /// Undoes `installations::record` of these ledger entries.
    ForgetLedger {
        /// The module whose ledger it is.
        module: String,
        /// The entries the operation recorded.
        entries: Vec<LedgerEntry>,
    },
    /// Undoes `installations::forget_all`: records the entries read before.
    RecordLedger {
        /// The module whose ledger it is.
        module: String,
        /// The entries as they were.
        entries: Vec<LedgerEntry>,
    },
    /// Undoes `audit::record` of the event with this id.
    RemoveAuditEvent(i64),
}

impl Undo {
    async fn apply(&self, conn: &mut SqliteConnection, tenant: &Tenant) -> Result<(), SoukError> {
        let tenant_id = tenant.id.as_str();
        match self {
            Undo::RemoveInstallation(installation) => {
                installations::remove(conn, tenant_id, installation)
                    .await
                    .map_err(|e| changed_meanwhile(e, &installation.module))?;
            }
            Undo::InsertInstallation(installation) => {
                installations::insert(conn, tenant_id, installation)
                    .await
                    .map_err(|e| changed_meanwhile(e, &installation.module))?;
            }
            Undo::UpdateInstallation { now, back_to } => {
                installations::update(conn, tenant_id, now, back_to)
                    .await
                    .map_err(|e| changed_meanwhile(e, &now.module))?;
            }
            Undo::ForgetLedger { module, entries } => {
                installations::forget(conn, tenant_id, module, entries).await?;
            }
            Undo::RecordLedger { module, entries } => {
                installations::record(conn, tenant_id, module, entries)
                    .await
                    .map_err(|e| changed_meanwhile(e, module))?;
            }
            Undo::RemoveAuditEvent(id) => audit::remove(conn, *id).await?,
        }
        Ok(())
    }
}

impl Installer<'_> {
    /// A tenant's installations.
    ///
    /// # Errors
    /// Database errors.
    pub async fn list(&self, tenant: &Tenant) -> Result<Vec<Installation>, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        Ok(installations::list(&mut conn, &tenant.id).await?)
    }

    /// The tenant's installation of `module`, if any.
    ///
    /// # Errors
    /// Database errors.
    pub async fn find(
        &self,
        tenant: &Tenant,
        module: &str,
    ) -> Result<Option<Installation>, SoukError> {
        Ok(self.control.installation(&tenant.id, module).await?)
    }

    /// The tenant's installation of `module`.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when it is not installed; database errors.
    pub async fn require(&self, tenant: &Tenant, module: &str) -> Result<Installation, SoukError> {
        self.find(tenant, module).await?.ok_or_else(|| {
            SoukError::NotFound(format!(
                "module {module:?} is not installed for this tenant"
            ))
        })
    }

    /// The ledger of `module` for `tenant`, in the order it was applied.
    pub(super) async fn ledger(
        &self,
        tenant: &Tenant,
        module: &str,
    ) -> Result<Vec<LedgerEntry>, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        Ok(installations::ledger(&mut conn, &tenant.id, module).await?)
    }

    /// The SQL scope of `manifest` for `tenant`: its own tables plus the
    /// exports of the installed versions of its dependencies.
    ///
    /// # Errors
    /// Database errors.
    pub async fn scope_for(
        &self,
        tenant: &Tenant,
        manifest: &Manifest,
    ) -> Result<Arc<SqlScope>, SoukError> {
        // Kept per installed version while the control plane is unchanged:
        // the dependencies' installed versions are read from it.
        let read_at = self.control.generation();
        let key = (
            tenant.id.clone(),
            manifest.slug.to_string(),
            manifest.version.to_string(),
        );
        let scopes = self.tenancy.scopes();
        if let Some(scope) = scopes.get(read_at, &key) {
            return Ok(scope);
        }
        let scope = Arc::new(self.read_scope(tenant, manifest).await?);
        scopes.put(read_at, key, scope.clone());
        Ok(scope)
    }

    /// [`Installer::scope_for`], read from the control plane.
    async fn read_scope(
        &self,
        tenant: &Tenant,
        manifest: &Manifest,
    ) -> Result<SqlScope, SoukError> {
        let mut deps = Vec::new();
        for dep in &manifest.dependencies {
            if let Some(installed) = self.find(tenant, dep.slug.as_str()).await? {
                deps.push(
                    self.catalog
                        .resolve(dep.slug.as_str(), Some(&installed.version))
                        .await?
                        .manifest,
                );
            }
        }
        Ok(SqlScope::new(manifest, deps.iter().map(|m| &**m)))
    }

    /// Checks every dependency of `manifest` is installed in a compatible version.
    pub(super) async fn check_dependencies(
        &self,
        tenant: &Tenant,
        manifest: &Manifest,
    ) -> Result<(), SoukError> {
        let mut problems = Vec::new();
        for dep in &manifest.dependencies {
            match self.find(tenant, dep.slug.as_str()).await? {
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

    /// The manifests (at their installed versions) of the tenant's other
    /// installed modules that declare a dependency on `module`, whatever
    /// version range they ask for.
    pub(super) async fn dependants(
        &self,
        tenant: &Tenant,
        module: &str,
    ) -> Result<Vec<Manifest>, SoukError> {
        let mut out = Vec::new();
        for installation in self.list(tenant).await? {
            if installation.module == module {
                continue;
            }
            let resolved = self
                .catalog
                .resolve(&installation.module, Some(&installation.version))
                .await?;
            if resolved
                .manifest
                .dependencies
                .iter()
                .any(|d| d.slug.as_str() == module)
            {
                out.push(Manifest::clone(&resolved.manifest));
            }
        }
        Ok(out)
    }

    /// The tenant's installed modules, as the resolver sees them.
    pub(super) async fn installed_modules(
        &self,
        tenant: &Tenant,
    ) -> Result<Vec<souk_module_registry::InstalledModule>, SoukError> {
        let mut out = Vec::new();
        for installation in self.list(tenant).await? {
            let resolved = self
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
        &self,
        tenant: &Tenant,
    ) -> Result<souk_module_registry::Lockfile, SoukError> {
        let locked = self
            .list(tenant)
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

    /// A tenant's audit log, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit_log(&self, tenant: &Tenant) -> Result<Vec<AuditEvent>, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        Ok(audit::list(&mut conn, &tenant.id).await?)
    }

    /// Begins the control-plane transaction that records a lifecycle
    /// operation, on this process's write turn (see [`ControlTx`]).
    pub(super) async fn begin_control(&self) -> Result<ControlTx, SoukError> {
        let turn = CONTROL_WRITES.lock().await;
        let tx = self.control.pool().begin_with("BEGIN IMMEDIATE").await?;
        Ok(ControlTx { tx, turn })
    }

    /// Commits the control plane (ending the write turn), then the tenant
    /// database; if the tenant commit fails, applies `undo` to the control
    /// plane, in order, so the two agree.
    pub(super) async fn commit_both(
        &self,
        tenant: &Tenant,
        cp: ControlTx,
        tenant_tx: Transaction<'static, Sqlite>,
        undo: &[Undo],
    ) -> Result<(), SoukError> {
        let ControlTx { tx: cp, turn } = cp;
        cp.commit().await?;
        drop(turn);
        if let Err(e) = tenant_tx.commit().await {
            tracing::error!(error = %e, "tenant commit failed after the control plane committed; undoing");
            match self.control.pool().acquire().await {
                Ok(mut conn) => {
                    for step in undo {
                        if let Err(undo_error) = step.apply(&mut conn, tenant).await {
                            tracing::error!(error = %undo_error, ?step, "undo failed");
                        }
                    }
                }
                Err(undo_error) => {
                    tracing::error!(error = %undo_error, "undo failed: no control-plane connection");
                }
            }
            return Err(e.into());
        }
        Ok(())
    }
}
