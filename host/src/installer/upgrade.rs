//! Upgrading an installed module to a newer version: only the migrations
//! the new version adds run, then its `upgrade` hook.

use super::hook_usage::HookSubscription;
use super::hooks::{Hook, HookModule, begin, check_migrations};
use super::shared::{AuditEntry, Undo, audit, changed_meanwhile, context, record_ledger};
use super::{InstallReport, Installer, LifecycleLock, migration_checksum};
use crate::auth::Principal;
use crate::control_plane::installations::{self, Installation};
use crate::control_plane::rfc3339;
use crate::error::SoukError;
use crate::runtime::Migration;
use crate::tenancy::Tenant;

impl Installer<'_> {
    /// Upgrades a module to a newer version: only the migrations the new
    /// version adds run, then its `upgrade` hook, atomically.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] (not installed, no such version),
    /// [`SoukError::Conflict`] (not newer; dependants would break),
    /// [`SoukError::Dependency`], [`SoukError::LifecycleFailed`].
    pub async fn upgrade(
        &self,
        principal: &Principal,
        tenant: &Tenant,
        module: &str,
        version: Option<&str>,
    ) -> Result<InstallReport, SoukError> {
        principal.check_tenant(tenant)?;
        let _lock = LifecycleLock::try_acquire(tenant)?;
        let caller = principal.caller();
        let current = self.require(tenant, module).await?;
        let resolved = self.catalog.resolve(module, version).await?;
        let manifest = &resolved.manifest;
        self.catalog
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
        self.check_dependencies(tenant, manifest).await?;
        for dependant in self.dependants(tenant, module).await? {
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
        let loaded = self.catalog.load(self.runtime, &resolved).await?;
        let ctx = context(tenant, manifest, &caller);
        let migrations = self.migrations_of(&resolved, &loaded).await?;
        let done = self.ledger(tenant, module).await?;
        for entry in &done {
            let Some(migration) = migrations.iter().find(|m| m.id == entry.migration_id) else {
                return Err(SoukError::LifecycleFailed(format!(
                    "{module} {} no longer contains migration {:?}, which is applied for this tenant; \
                 a new version must keep every earlier migration",
                    manifest.version, entry.migration_id
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
                    entry.migration_id,
                    migration_checksum(migration)
                )));
            }
        }
        let pending: Vec<&Migration> = migrations
            .iter()
            .filter(|m| !done.iter().any(|d| d.migration_id == m.id))
            .collect();
        let scope = self.scope_for(tenant, manifest).await?;
        check_migrations(&scope, module, &migrations).await?;

        let pool = self.tenancy.database(tenant).await?;
        let usage = self
            .hook_usage(
                tenant,
                manifest,
                &pool,
                HookSubscription::Upgrade(current.subscription_revision),
            )
            .await?;
        let mut tx = begin(&pool).await?;
        for m in &pending {
            self.run_migration_sql(&scope, &mut tx, &m.id, "up", &m.up)
                .await?;
        }
        let from_text = from.to_string();
        // Settled after the commit below, or dropped with an error on the way.
        let module_hooked = HookModule {
            manifest,
            pool: &pool,
            usage: Some(usage),
        };
        let (tx, hook_work) = self
            .run_hook(
                &loaded,
                ctx,
                scope,
                tx,
                (module_hooked, Hook::Upgrade(&from_text)),
            )
            .await?;

        let applied: Vec<String> = pending.iter().map(|m| m.id.clone()).collect();
        let at = rfc3339(self.clock.now());
        let installation = Installation {
            module: module.to_owned(),
            version: manifest.version.to_string(),
            digest: resolved.digest.clone(),
            installed_at: current.installed_at.clone(),
            updated_at: at.clone(),
            revoked: None,
            subscription_revision: None,
        };
        let mut cp = self.begin_control().await?;
        installations::update(&mut cp, &tenant.id, &current, &installation)
            .await
            .map_err(|e| changed_meanwhile(e, module))?;
        let ledger = record_ledger(&mut cp, tenant, manifest, &migrations, &applied, &at).await?;
        let to = manifest.version.to_string();
        let event = audit(
            &mut cp,
            tenant,
            &caller,
            &at,
            AuditEntry {
                module,
                action: "upgrade",
                from: Some(&from_text),
                to: Some(&to),
                detail: None,
            },
        )
        .await?;
        let undo = [
            Undo::UpdateInstallation {
                now: installation.clone(),
                back_to: current,
            },
            Undo::RemoveAuditEvent(event),
            Undo::ForgetLedger {
                module: module.to_owned(),
                entries: ledger,
            },
        ];
        self.commit_both(tenant, cp, tx, &undo).await?;
        hook_work.settle().await;
        tracing::info!(tenant = %tenant.slug, module, from = %from, to = %manifest.version, "upgraded");
        Ok(InstallReport {
            installation,
            applied_migrations: applied,
            restored_rows: None,
            also_installed: Vec::new(),
            started_subscription: None,
        })
    }
}
