//! Installing: one module with its dependencies first, a lockfile, or an
//! archive restored into its version; and the free-plan subscription an
//! install starts and its undo.

use souk_module_registry::Manifest;
use sqlx::{Sqlite, Transaction};

use super::hook_usage::HookSubscription;
use super::hooks::{Hook, HookModule, HookWork, begin, check_migrations};
use super::shared::{AuditEntry, Undo, actor_of, audit, changed_meanwhile, context, record_ledger};
use super::{InstallReport, InstallRequest, Installer, LifecycleLock};
use crate::archive;
use crate::auth::Principal;
use crate::billing::plans::Currency;
use crate::billing::store::{self as subscriptions, Change, SubscriptionRecord};
use crate::billing::subscription::Subscription;
use crate::catalog::ResolvedVersion;
use crate::control_plane::installations::{self, Installation};
use crate::control_plane::rfc3339;
use crate::error::SoukError;
use crate::tenancy::Tenant;

/// What [`Installer::install_one`] may take as read already in the same
/// operation, rather than reading it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Vetted {
    /// Nothing: it reads whether the module is installed and whether the
    /// version is revoked (a restore).
    Nothing,
    /// The version comes from a plan this operation resolved, under the
    /// tenant's lifecycle lock, over the catalog's index (which holds no
    /// revoked version) and the tenant's installations (a plan adds only
    /// modules that are not installed), both read moments before. A
    /// revocation or an install by another process after those reads is
    /// as late as one after a second read would be; the installation's
    /// key still refuses a second install when it is recorded.
    ByPlan,
}

/// A subscription an install starts (the module's free plan), saved in the
/// install's control-plane transaction so that it exists exactly when the
/// installation does.
#[derive(Debug, Clone)]
pub(super) struct StartedSubscription {
    /// The record as saved (its revision is the saved one once written).
    pub(super) record: SubscriptionRecord,
    /// The subscription it replaced (one without access), if any.
    pub(super) previous: Option<SubscriptionRecord>,
    /// Who started it, as the subscription history names actors.
    pub(super) actor: String,
}

impl Installer<'_> {
    /// Installs a module for a tenant.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] (no such module/version/archive),
    /// [`SoukError::Conflict`] (already installed), [`SoukError::Dependency`],
    /// [`SoukError::LifecycleFailed`] (a migration or the install hook failed;
    /// nothing was kept).
    pub async fn install(
        &self,
        principal: &Principal,
        tenant: &Tenant,
        request: &InstallRequest,
    ) -> Result<InstallReport, SoukError> {
        use souk_module_registry::{RequestedModule, Slug, resolve_install};

        principal.check_tenant(tenant)?;
        let _lock = LifecycleLock::try_acquire(tenant)?;
        if request.restore_archive.is_some() {
            // A restore installs exactly the archive's version.
            return self
                .install_one(principal, tenant, request, Vetted::Nothing)
                .await;
        }
        // One read of the tenant's installations answers both whether the
        // module is installed already and what the resolver must keep.
        let installed = self.installed_modules(tenant).await?;
        if let Some(existing) = installed.iter().find(|m| m.slug.as_str() == request.module) {
            return Err(SoukError::Conflict(format!(
                "{} {} is already installed for this tenant; upgrade it instead",
                existing.slug, existing.version
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
        let index = self.catalog.registry_index().await?;
        if index.versions(&slug).next().is_none() {
            return Err(SoukError::NotFound(format!(
                "no module {slug:?} is available"
            )));
        }
        let plan = resolve_install(
            &index,
            &installed,
            &[RequestedModule {
                slug: slug.clone(),
                requirement,
            }],
        )
        .map_err(|e| SoukError::Dependency(e.to_string()))?;
        let reports = self.install_in_order(principal, tenant, plan).await?;
        let (mut main, also): (Vec<InstallReport>, Vec<InstallReport>) = reports
            .into_iter()
            .partition(|r| r.installation.module == slug.as_str());
        let mut report = main.pop().ok_or_else(|| {
            SoukError::Internal(anyhow::anyhow!("the install plan did not contain {slug}"))
        })?;
        report.also_installed = also.into_iter().map(|r| r.installation).collect();
        Ok(report)
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
        &self,
        principal: &Principal,
        tenant: &Tenant,
        text: &str,
    ) -> Result<Vec<Installation>, SoukError> {
        principal.check_tenant(tenant)?;
        let _lock = LifecycleLock::try_acquire(tenant)?;
        let lock = souk_module_registry::Lockfile::parse(text)
            .map_err(|e| SoukError::Invalid(format!("lockfile: {e}")))?;
        let index = self.catalog.registry_index().await?;
        let installed = self.installed_modules(tenant).await?;
        let plan = souk_module_registry::resolve_lockfile(&index, &installed, &lock)
            .map_err(|e| SoukError::Dependency(e.to_string()))?;
        let reports = self.install_in_order(principal, tenant, plan).await?;
        Ok(reports.into_iter().map(|r| r.installation).collect())
    }

    /// Installs every module of `plan` in order (dependencies first). If one
    /// fails, the modules this call installed are uninstalled again, so the
    /// tenant ends as it started.
    pub(super) async fn install_in_order(
        &self,
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
            match self
                .install_one(principal, tenant, &request, Vetted::ByPlan)
                .await
            {
                Ok(report) => done.push(report),
                Err(error) => {
                    for report in done.iter().rev() {
                        let module = &report.installation.module;
                        if let Err(undo) = self
                            .roll_back_install(principal, tenant, report, &error)
                            .await
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

    /// Installs one module at an exact (or the newest) version whose
    /// dependencies are already installed; `vetted` says what the caller
    /// has read already.
    pub(super) async fn install_one(
        &self,
        principal: &Principal,
        tenant: &Tenant,
        request: &InstallRequest,
        vetted: Vetted,
    ) -> Result<InstallReport, SoukError> {
        let caller = principal.caller();
        if vetted == Vetted::Nothing
            && let Some(existing) = self.find(tenant, &request.module).await?
        {
            return Err(SoukError::Conflict(format!(
                "{} {} is already installed for this tenant; upgrade it instead",
                existing.module, existing.version
            )));
        }
        let archive = match &request.restore_archive {
            Some(id) => Some(archive::load(self.control, tenant, id).await?),
            None => None,
        };
        let version = match (&request.version, &archive) {
            (Some(v), Some(a)) if *v != a.header.version => {
                return Err(SoukError::Invalid(format!(
                    "archive holds data of version {}; restore it into that version, then upgrade",
                    a.header.version
                )));
            }
            (Some(v), _) => Some(v.clone()),
            (None, Some(a)) => Some(a.header.version.clone()),
            (None, None) => None,
        };
        if let Some(a) = &archive
            && a.header.module != request.module
        {
            return Err(SoukError::Invalid(format!(
                "archive holds data of module {}, not {}",
                a.header.module, request.module
            )));
        }
        let resolved: ResolvedVersion = self
            .catalog
            .resolve(&request.module, version.as_deref())
            .await?;
        let manifest = &resolved.manifest;
        if vetted == Vetted::Nothing {
            self.catalog
                .ensure_not_revoked(&request.module, &manifest.version.to_string())
                .await?;
        }
        self.check_dependencies(tenant, manifest).await?;
        let mut started = self
            .subscription_for_install(principal, tenant, manifest)
            .await?;
        let loaded = self.catalog.load(self.runtime, &resolved).await?;
        let ctx = context(tenant, manifest, &caller);
        let migrations = self.migrations_of(&resolved, &loaded).await?;
        let scope = self.scope_for(tenant, manifest).await?;
        check_migrations(&scope, manifest.slug.as_str(), &migrations).await?;

        let pool = self.tenancy.database(tenant).await?;
        // A restore runs no hook: its counts come back with its archive.
        let usage = match archive {
            Some(_) => None,
            None => Some(
                self.hook_usage(
                    tenant,
                    manifest,
                    &pool,
                    HookSubscription::Install(started.as_ref().map(|s| &s.record)),
                )
                .await?,
            ),
        };
        let mut tx = begin(&pool).await?;
        let leftovers = archive::module_tables(&mut tx, scope.prefix()).await?;
        if !leftovers.is_empty() {
            return Err(SoukError::Conflict(format!(
                "the tenant database already holds tables of {} ({}); refusing to install over them",
                manifest.slug,
                leftovers.join(", ")
            )));
        }
        for m in migrations.iter() {
            self.run_migration_sql(&scope, &mut tx, &m.id, "up", &m.up)
                .await?;
        }
        let mut restored_rows = None;
        // The restored files' bytes, pinned in the tenant's blob store until
        // the install has committed or rolled back.
        let mut _restored_blobs = None;
        // Dropped after the commit below, or with an error on the way.
        let (tx, hook_work) = match archive {
            Some(archive) => {
                let mut tx = tx;
                if let Some(dir) = archive.blobs_dir() {
                    _restored_blobs = Some(
                        archive::files::copy_in(
                            &self.files.blobs,
                            &tenant.id,
                            archive.id(),
                            &archive.header.files,
                            &dir,
                        )
                        .await?,
                    );
                }
                restored_rows = Some(archive::restore(&mut tx, scope.prefix(), archive).await?);
                (tx, HookWork::default())
            }
            None => {
                let module = HookModule {
                    manifest,
                    pool: &pool,
                    usage,
                };
                self.run_hook(&loaded, ctx, scope, tx, (module, Hook::Install))
                    .await?
            }
        };

        let applied: Vec<String> = migrations.iter().map(|m| m.id.clone()).collect();
        let at = rfc3339(self.clock.now());
        let installation = Installation {
            module: manifest.slug.to_string(),
            version: manifest.version.to_string(),
            digest: resolved.digest.clone(),
            installed_at: at.clone(),
            updated_at: at.clone(),
            revoked: None,
            subscription_revision: None,
        };
        let mut cp = self.begin_control().await?;
        installations::insert(&mut cp, &tenant.id, &installation)
            .await
            .map_err(|e| changed_meanwhile(e, manifest.slug.as_str()))?;
        let ledger = record_ledger(&mut cp, tenant, manifest, &migrations, &applied, &at).await?;
        if let Some(started) = started.as_mut() {
            self.start_subscription(&mut cp, started, manifest).await?;
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
            &at,
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
            Undo::ForgetLedger {
                module: manifest.slug.to_string(),
                entries: ledger,
            },
            Undo::RemoveInstallation(installation.clone()),
            Undo::RemoveAuditEvent(event),
        ];
        if let Err(e) = self.commit_both(tenant, cp, tx, &undo).await {
            if let Some(started) = &started {
                self.withdraw_subscription_now(started).await;
            }
            return Err(e);
        }
        hook_work.settle().await;
        tracing::info!(tenant = %tenant.slug, module = %manifest.slug, version = %manifest.version, "installed");
        Ok(InstallReport {
            installation,
            applied_migrations: applied,
            restored_rows,
            also_installed: Vec::new(),
            started_subscription: started,
        })
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
    pub(super) async fn subscription_for_install(
        &self,
        principal: &Principal,
        tenant: &Tenant,
        manifest: &Manifest,
    ) -> Result<Option<StartedSubscription>, SoukError> {
        let module = manifest.slug.as_str();
        let plans = self.billing.plans();
        let Some(module_plans) = plans.module(&manifest.slug) else {
            return Ok(None);
        };
        let existing = self.billing.get(tenant, module).await?;
        let now = self.billing.clock().now();
        if existing
            .as_ref()
            .is_some_and(|r| r.subscription.has_access(now))
        {
            return Ok(None);
        }
        let Some(free) = module_plans.free_plan() else {
            // No free plan and no access: billing refuses and names the plans to
            // buy. Without a free plan it starts nothing.
            self.billing
                .authorize_install(tenant, manifest, actor_of(principal, tenant))
                .await?;
            return Ok(None);
        };
        let currency = Currency::parse(self.currency)
            .map_err(|e| SoukError::Internal(anyhow::anyhow!("--currency: {e}")))?;
        let subscription =
            Subscription::start(&tenant.id, module, free, currency, self.billing.clock())
                .map_err(|e| SoukError::Conflict(e.to_string()))?;
        let mut record = SubscriptionRecord::new(subscription);
        if let Some(previous) = &existing {
            record.revision = previous.revision;
        }
        let actor = match principal {
            Principal::Operator => "operator".to_owned(),
            Principal::Tenant { .. } | Principal::User(_) | Principal::ApiKey(_) => {
                format!("tenant:{}", tenant.slug)
            }
        };
        Ok(Some(StartedSubscription {
            record,
            previous: existing,
            actor,
        }))
    }

    /// Saves `started` inside `cp`, with its history entry.
    pub(super) async fn start_subscription(
        &self,
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
            at: self.billing.clock().now(),
        };
        let from = started.previous.as_ref().map(|p| p.subscription.state);
        Ok(subscriptions::save(cp, &mut started.record, from, &change).await?)
    }

    /// Withdraws a subscription an install started, inside `cp`: removes it
    /// (with its history) when there was none before, or puts back the one it
    /// replaced.
    pub(super) async fn withdraw_subscription(
        &self,
        cp: &mut Transaction<'static, Sqlite>,
        started: &StartedSubscription,
    ) -> Result<(), SoukError> {
        let s = &started.record.subscription;
        match &started.previous {
            None => {
                subscriptions::remove_new(cp, &s.tenant, &s.module, started.record.revision)
                    .await?;
            }
            Some(previous) => {
                let mut restored = previous.clone();
                restored.revision = started.record.revision;
                let change = Change {
                    action: "restored",
                    actor: &started.actor,
                    detail: Some("the install that started the free plan was undone".into()),
                    at: self.billing.clock().now(),
                };
                subscriptions::save(cp, &mut restored, Some(s.state), &change).await?;
            }
        }
        Ok(())
    }

    /// Withdraws `started` in a transaction of its own (after the install's
    /// control-plane transaction committed and the tenant commit failed).
    pub(super) async fn withdraw_subscription_now(&self, started: &StartedSubscription) {
        let outcome = async {
            let mut cp = self.control.pool().begin().await?;
            self.withdraw_subscription(&mut cp, started).await?;
            cp.commit().await?;
            Ok::<(), SoukError>(())
        }
        .await;
        if let Err(e) = outcome {
            tracing::error!(error = %e, module = %started.record.subscription.module, "could not withdraw the subscription of an undone install");
        }
    }
}
