//! Uninstalling: archive the data, run the module's uninstall hook and
//! down migrations, drop what is left of its namespace; forcing it when
//! the module's own code fails; rolling back a module a failed install
//! added earlier in the same call.

use std::sync::Arc;

use sqlx::{Sqlite, Transaction};

use super::hooks::{Hook, HookModule, HookWork, begin};
use super::install::StartedSubscription;
use super::shared::{AuditEntry, Undo, audit, changed_meanwhile, context};
use super::{InstallReport, Installer, LifecycleLock, Removal, UninstallReport, bounded};
use crate::archive::{self, ArchiveInfo};
use crate::auth::Principal;
use crate::capabilities::context::Caller;
use crate::capabilities::db::SqlScope;
use crate::catalog::ResolvedVersion;
use crate::control_plane::installations::{self, Installation, LedgerEntry};
use crate::control_plane::rfc3339;
use crate::error::SoukError;
use crate::runtime::Migration;
use crate::tenancy::Tenant;

/// Who may force an uninstall: the operator; a tenant token (already
/// checked to act for this tenant) only when it repeats the module slug as
/// its confirmation.
pub(super) fn authorize_force(
    principal: &Principal,
    module: &str,
    confirmation: Option<&str>,
) -> Result<(), SoukError> {
    match principal {
        Principal::Operator => Ok(()),
        Principal::Tenant { .. } | Principal::User(_) | Principal::ApiKey(_)
            if confirmation == Some(module) =>
        {
            Ok(())
        }
        Principal::Tenant { .. } | Principal::User(_) | Principal::ApiKey(_) => {
            Err(SoukError::Invalid(format!(
                "a forced uninstall drops every table of {module} without running its uninstall hook \
             or down migrations (its data is archived first); confirm it by repeating the module \
             slug: confirm={module}"
            )))
        }
    }
}

/// Failures of the module's own uninstall work, which forcing skips.
pub(super) fn forceable(error: &SoukError) -> bool {
    matches!(error, SoukError::LifecycleFailed(_) | SoukError::Module(_))
}

/// Drops the module's whole namespace inside `tx` (every table, view,
/// index and trigger whose name, or whose table's name, has `prefix`) and
/// its usage counters; returns the names dropped.
///
/// Foreign keys are deferred for the rest of the transaction, so tables
/// that reference each other can be dropped in any order; SQLite checks
/// them again at commit, when none of the module's tables remain.
pub(super) async fn clear_namespace(
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
    // What the count limits counted is gone with the tables, and so are
    // the module's files (archived already; their blobs are collected
    // after the commit).
    crate::entitlements::usage_db::clear_counters(tx, module).await?;
    crate::capabilities::files::rows::delete_all_of(tx, module).await?;
    Ok(objects.into_iter().map(|(_, name)| name).collect())
}

/// The control-plane side of a removal.
pub(super) struct RemovalRecord<'a> {
    /// The installation being removed.
    current: &'a Installation,
    /// Its ledger, to put back if the tenant commit fails.
    done: &'a [LedgerEntry],
    /// The audit event's detail.
    detail: String,
    /// A subscription to withdraw with it (undoing an install).
    withdraw: Option<&'a StartedSubscription>,
}

/// What a normal uninstall leaves to commit: the tenant transaction, the
/// archive, the migrations reverted, and the guard of the work hint for
/// what the uninstall hook queued (if it queued anything).
type UninstallDone<'a> = (
    Transaction<'static, Sqlite>,
    ArchiveInfo,
    Vec<String>,
    HookWork<'a>,
);

impl<'a> Installer<'a> {
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
        &self,
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
        let current = self.require(tenant, module).await?;
        self.refuse_if_depended_on(tenant, module).await?;
        let resolved = self.catalog.resolve(module, Some(&current.version)).await?;
        let scope = self.scope_for(tenant, &resolved.manifest).await?;
        let done = self.ledger(tenant, module).await?;
        let done_ids: Vec<String> = done.iter().map(|d| d.migration_id.clone()).collect();

        let attempt = self
            .normal_uninstall(&caller, tenant, &current, &resolved, &scope, &done_ids)
            .await;
        // `_hook_work` (work the uninstall hook queued; it has no files)
        // drops after the commit below, or with an error on the way.
        let (tx, archive, reverted, forced, _hook_work) = match attempt {
            Ok((tx, archive, reverted, marked)) => (tx, archive, reverted, None, marked),
            Err(e) if force && forceable(&e) => {
                let reason = bounded(&e.to_string());
                tracing::warn!(tenant = %tenant.slug, module, reason = %reason, "normal uninstall failed; forcing it");
                let (tx, archive) = self
                    .forced_removal(tenant, &current, scope.prefix(), &done_ids)
                    .await?;
                (tx, archive, Vec::new(), Some(reason), HookWork::default())
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
        if let Err(e) = self.record_removal(tenant, &caller, tx, removal).await {
            self.discard_archive(tenant, &archive).await;
            return Err(e);
        }
        self.billing.forget(tenant, module);
        self.collect_file_blobs(tenant).await;
        tracing::info!(tenant = %tenant.slug, module, archive = %archive.id, forced = forced.is_some(), "uninstalled");
        Ok(UninstallReport {
            module: module.to_owned(),
            version: current.version,
            reverted_migrations: reverted,
            archive: archive.clone(),
            forced,
        })
    }

    pub(super) async fn refuse_if_depended_on(
        &self,
        tenant: &Tenant,
        module: &str,
    ) -> Result<(), SoukError> {
        let dependants = self.dependants(tenant, module).await?;
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
    pub(super) async fn normal_uninstall(
        &self,
        caller: &Caller,
        tenant: &Tenant,
        current: &Installation,
        resolved: &ResolvedVersion,
        scope: &Arc<SqlScope>,
        done: &[String],
    ) -> Result<UninstallDone<'a>, SoukError> {
        let manifest = &resolved.manifest;
        let module = current.module.as_str();
        let loaded = self.catalog.load(self.runtime, resolved).await?;
        let ctx = context(tenant, manifest, caller);
        let migrations = self.migrations_of(resolved, &loaded).await?;
        let pool = self.tenancy.database(tenant).await?;
        let mut tx = begin(&pool).await?;
        let archive = self
            .export_archive(&mut tx, tenant, current, scope.prefix(), done)
            .await?;
        let (tx, marked) = match self
            .run_hook(
                &loaded,
                ctx,
                scope.clone(),
                tx,
                (
                    HookModule {
                        manifest,
                        pool: &pool,
                        usage: None,
                    },
                    Hook::Uninstall,
                ),
            )
            .await
        {
            Ok(ran) => ran,
            Err(e) => {
                self.discard_archive(tenant, &archive).await;
                return Err(e);
            }
        };
        match self
            .revert_migrations(tx, scope, module, &migrations, done)
            .await
        {
            Ok((tx, reverted)) => Ok((tx, archive, reverted, marked)),
            Err(e) => {
                self.discard_archive(tenant, &archive).await;
                Err(e)
            }
        }
    }

    /// Runs the down migrations of `done` newest first, then drops what they
    /// left of the namespace and the module's usage counters.
    pub(super) async fn revert_migrations(
        &self,
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
                    self.run_migration_sql(scope, &mut tx, &m.id, "down", &m.down)
                        .await?;
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
    pub(super) async fn forced_removal(
        &self,
        tenant: &Tenant,
        current: &Installation,
        prefix: &str,
        done: &[String],
    ) -> Result<(Transaction<'static, Sqlite>, ArchiveInfo), SoukError> {
        let pool = self.tenancy.database(tenant).await?;
        let mut tx = begin(&pool).await?;
        let archive = self
            .export_archive(&mut tx, tenant, current, prefix, done)
            .await?;
        if let Err(e) = clear_namespace(&mut tx, prefix, &current.module).await {
            self.discard_archive(tenant, &archive).await;
            return Err(e);
        }
        Ok((tx, archive))
    }

    /// Exports the module's data to a new archive inside `tx`, recording the
    /// migrations applied (`done`) so a restore knows the schema it needs.
    pub(super) async fn export_archive(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        tenant: &Tenant,
        current: &Installation,
        prefix: &str,
        done: &[String],
    ) -> Result<ArchiveInfo, SoukError> {
        let info = archive::export(
            self.control,
            &self.archives_dir(),
            tx,
            tenant,
            &current.module,
            &current.version,
            prefix,
            done.to_vec(),
            self.clock.now(),
        )
        .await?;
        // The files' bytes go beside the archive file (their list is in its
        // header, under its checksum).
        let copied = async {
            let files = archive::files::list(tx, &current.module).await?;
            let dir = archive::files::blobs_dir(std::path::Path::new(&info.path));
            archive::files::copy_out(&self.files.blobs, &tenant.id, &files, &dir).await?;
            Ok::<_, SoukError>(())
        }
        .await;
        if let Err(e) = copied {
            self.discard_archive(tenant, &info).await;
            return Err(e);
        }
        Ok(info)
    }

    /// After a removal committed: the blobs of the files it removed (now in
    /// the archive) are collected. A failure is logged; the next sweep
    /// removes them.
    pub(super) async fn collect_file_blobs(&self, tenant: &Tenant) {
        let swept = async {
            let pool = self.tenancy.database(tenant).await?;
            Ok::<_, SoukError>(self.files.blobs.sweep(&pool, &tenant.id).await?)
        };
        if let Err(e) = swept.await {
            tracing::warn!(tenant = %tenant.slug, error = %e, "file blobs not collected after an uninstall");
        }
    }

    /// Removes an archive written by an uninstall that did not go through: its
    /// file and its record. Failures are logged; the uninstall's own error is
    /// what the caller reports.
    pub(super) async fn discard_archive(&self, tenant: &Tenant, archive: &ArchiveInfo) {
        if let Err(e) = archive::discard(self.control, tenant, &archive.id).await {
            tracing::error!(archive = %archive.id, error = %e, "could not remove the archive of an uninstall that did not go through");
        }
    }

    /// Removes the installation and its ledger, records the audit event, and
    /// commits with the tenant transaction `tx`.
    pub(super) async fn record_removal(
        &self,
        tenant: &Tenant,
        caller: &Caller,
        tx: Transaction<'static, Sqlite>,
        removal: RemovalRecord<'_>,
    ) -> Result<(), SoukError> {
        let current = removal.current;
        let module = current.module.as_str();
        let at = rfc3339(self.clock.now());
        let mut cp = self.begin_control().await?;
        installations::forget_all(&mut cp, &tenant.id, module).await?;
        installations::remove(&mut cp, &tenant.id, current)
            .await
            .map_err(|e| changed_meanwhile(e, module))?;
        if let Some(started) = removal.withdraw {
            self.withdraw_subscription(&mut cp, started).await?;
        }
        let event = audit(
            &mut cp,
            tenant,
            caller,
            &at,
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
        let undo = [
            Undo::RemoveAuditEvent(event),
            Undo::InsertInstallation(current.clone()),
            Undo::RecordLedger {
                module: module.to_owned(),
                entries: removal.done.to_vec(),
            },
        ];
        self.commit_both(tenant, cp, tx, &undo).await
    }

    /// Undoes an install made earlier in the same call (a dependency installed
    /// before a later module of the plan failed): drops its namespace without
    /// running its code (it holds only what its install just wrote, so nothing
    /// is archived), removes its installation and ledger, withdraws the
    /// subscription its install started, and records why in the audit log.
    pub(super) async fn roll_back_install(
        &self,
        principal: &Principal,
        tenant: &Tenant,
        report: &InstallReport,
        reason: &SoukError,
    ) -> Result<(), SoukError> {
        let module = report.installation.module.as_str();
        let current = self.require(tenant, module).await?;
        let prefix = souk_module_registry::Slug::parse(module)
            .map_err(|e| SoukError::Internal(anyhow::anyhow!("installed slug {module:?}: {e}")))?
            .table_prefix();
        let done = self.ledger(tenant, module).await?;
        let pool = self.tenancy.database(tenant).await?;
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
        self.record_removal(tenant, &principal.caller(), tx, removal)
            .await?;
        self.billing.forget(tenant, module);
        self.collect_file_blobs(tenant).await;
        Ok(())
    }
}
