//! [`Souk`]: the host's capabilities wired together, shared by the HTTP API
//! and the CLI so both run the same code paths.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use anyhow::Context as _;

use crate::auth::Auth;
use crate::billing::plans::{Currency, PlanCatalog};
use crate::billing::service::Billing;
use crate::capabilities::files::FileService;
use crate::capabilities::files::blobs::BlobStore;
use crate::capabilities::files::signed::UrlSigner;
use crate::catalog::{Catalog, ModuleVersion};
use crate::clock::{Clock, RecordedClock, SystemClock};
use crate::control_plane::ControlPlane;
use crate::dispatch::Dispatcher;
use crate::error::SoukError;
use crate::installer::Installer;
use crate::jobs::{JobBoard, Jobs, JobsConfig, JobsHost};
use crate::mail::directory::UsersDirectory;
use crate::mail::notices::BillingNotices;
use crate::mail::worker::MailHost;
use crate::mail::{Mail, MailLogPage};
use crate::people::{People, PeopleConfig, PeopleState};
use crate::runtime::{ComponentCache, Runtime, RuntimeLimits};
use crate::sso::{Sso, SsoConfig, SsoState};
use crate::tenancy::Tenancy;
use crate::tenancy::Tenant;
use crate::usage::Usage;
use crate::usage::group::{GroupHost, GroupLimits, HostFuture, UsageGroups};
use crate::work::WorkHints;

/// How a host is configured.
#[derive(Debug, Clone)]
pub struct SoukConfig {
    /// Where all state lives: the control plane, tenant databases, packages,
    /// the compile cache, archives and the operator token.
    pub data_dir: PathBuf,
    /// A directory of `.souk` packages made available at start (the
    /// first-party modules). Missing is not an error.
    pub modules_dir: Option<PathBuf>,
    /// Limits applied to module calls.
    pub limits: RuntimeLimits,
    /// Wall-clock budget of one migration's SQL (up or down text). Default
    /// 10 s: migrations hold the tenant's write lock while they run.
    pub migration_timeout: std::time::Duration,
    /// The operator's plan catalog: a YAML file or a directory of them.
    /// `None`: no module is priced (every module is free to install and
    /// fully entitled).
    pub plans: Option<PathBuf>,
    /// The currency subscriptions are priced in unless a tenant asks for
    /// another (ISO 4217, e.g. `NPR`).
    pub currency: String,
    /// Run on a manual clock starting at this instant instead of the system
    /// clock (rehearsing billing over months; tests). The operator moves it
    /// with `POST /v1/clock`.
    pub manual_clock: Option<time::OffsetDateTime>,
    /// How usage events are grouped into transactions (group commit; see
    /// docs/billing.md).
    pub usage_groups: GroupLimits,
    /// Tenant databases kept open at once; the least recently used is
    /// closed past it (default [`crate::tenancy::DEFAULT_OPEN_TENANTS`]).
    pub open_tenants: usize,
    /// How background jobs run (docs/jobs.md).
    pub jobs: JobsConfig,
    /// Users, invitations, sessions, sign-in throttling, public routes'
    /// rate (docs/people.md).
    pub people: PeopleConfig,
    /// Largest file a module may store through `files`, in bytes (default
    /// [`crate::capabilities::files::DEFAULT_MAX_FILE_BYTES`], 10 MiB).
    pub max_file_bytes: u64,
    /// How events are delivered to webhooks and subscribing modules
    /// (docs/webhooks.md).
    pub events: crate::events::EventsConfig,
    /// Single sign-on's knobs (docs/sso.md).
    pub sso: SsoConfig,
    /// How email is delivered (`souk serve`'s mail flags; docs/email.md).
    pub mail: crate::mail::MailConfig,
    /// How long delivered events, delivery logs and mail are kept
    /// (docs/retention.md).
    pub retention: crate::retention::RetentionConfig,
    /// Invoices, taxes and payment providers (docs/payments.md).
    pub payments: crate::payments::service::PaymentsConfig,
}

impl SoukConfig {
    /// A configuration with default limits.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        SoukConfig {
            data_dir: data_dir.into(),
            modules_dir: None,
            limits: RuntimeLimits::default(),
            migration_timeout: std::time::Duration::from_secs(10),
            plans: None,
            currency: "NPR".to_owned(),
            manual_clock: None,
            usage_groups: GroupLimits::default(),
            open_tenants: crate::tenancy::DEFAULT_OPEN_TENANTS,
            jobs: JobsConfig::default(),
            people: PeopleConfig::default(),
            max_file_bytes: crate::capabilities::files::DEFAULT_MAX_FILE_BYTES,
            events: crate::events::EventsConfig::default(),
            sso: SsoConfig::default(),
            mail: crate::mail::MailConfig::default(),
            retention: crate::retention::RetentionConfig::default(),
            payments: crate::payments::service::PaymentsConfig::default(),
        }
    }
}

/// The host.
pub struct Souk {
    /// The configuration opened with, its `data_dir` made absolute.
    pub config: SoukConfig,
    /// The host's own database, `control.sqlite` in the data directory.
    pub control: ControlPlane,
    /// Compiles and runs module components under `config.limits`, with the
    /// compile cache in `compiled/` of the data directory.
    pub runtime: Runtime,
    /// Tenants and their databases.
    pub tenancy: Tenancy,
    /// Tenant tokens (stored as hashes in `control`) and the operator token
    /// (`operator-token` in the data directory).
    pub auth: Auth,
    /// Module versions available to install.
    pub catalog: Catalog,
    /// Plans, subscriptions and the entitlements they grant.
    pub billing: Billing,
    /// The manual clock, when the host runs on one (`--manual-clock`).
    pub manual_clock: Option<Arc<RecordedClock>>,
    /// The host's one clock (the manual one, or the system's), at full
    /// precision: control-plane rows are stamped with it. Billing reads it
    /// in whole seconds.
    clock: Arc<dyn Clock>,
    /// The operator's plan catalog as loaded (`--plans`).
    operator_plans: PlanCatalog,
    /// The per-tenant queues usage events are group-committed through.
    usage_groups: UsageGroups,
    /// Module files: blobs beside the tenant databases, the signed-URL key
    /// (`file-url-key` in the data directory), the per-file limit.
    pub files: FileService,
    /// Email: the relay, the retry policy, the tenant users' directory.
    mail: Mail,
    /// Which tenants have deferred work (events, mail, jobs) and when.
    work: Arc<WorkHints>,
    /// The live progress of running jobs.
    job_board: Arc<JobBoard>,
    /// People's configuration and throttles.
    pub people_state: PeopleState,
    /// Single sign-on's configuration and provider client.
    pub sso_state: SsoState,
    /// The pruning of old events, delivery logs and mail (maintenance).
    retention: crate::retention::Retention,
    /// The payment providers offered, with their HTTP client.
    payment_providers: crate::payments::providers::Providers,
    /// Signs the payment links of renewal invoices (`<data>/pay-link-key`).
    pay_links: crate::payments::pay_link::PayLinkSigner,
    /// Where module mounts are served to the public (set by `souk serve`).
    pub public_origin: crate::public_url::PublicOrigin,
}

impl Souk {
    /// Opens the host's state in `config.data_dir` (creating it on first
    /// use) and makes the packages in `config.modules_dir` available.
    ///
    /// # Errors
    /// When the data directory, the control plane or the engine cannot be
    /// set up, or a bundled package is refused.
    pub async fn open(mut config: SoukConfig) -> anyhow::Result<Arc<Souk>> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
        // Absolute, so paths the host records (archives, packages) stay
        // valid whatever the working directory of a later command.
        config.data_dir = std::fs::canonicalize(&config.data_dir)?;
        let data = &config.data_dir;
        let control = ControlPlane::open(&data.join("control.sqlite")).await?;
        let cache = ComponentCache::open(&data.join("compiled"))?;
        let runtime = Runtime::new(config.limits.clone(), cache)?;
        let manual_clock = match config.manual_clock {
            Some(at) => Some(Arc::new(RecordedClock::resume(data, at)?)),
            None => None,
        };
        let clock: Arc<dyn Clock> = match &manual_clock {
            Some(manual) => manual.clone(),
            None => Arc::new(SystemClock),
        };
        let tenancy = Tenancy::new(
            control.clone(),
            data.join("tenants"),
            clock.clone(),
            config.open_tenants,
        );
        let auth =
            Auth::new(control.clone(), data, clock.clone()).with_sessions(config.people.sessions);
        let people_state = PeopleState::new(config.people.clone());
        let sso_state = SsoState::new(config.sso.clone())?;
        let payment_providers =
            crate::payments::providers::Providers::new(&config.payments.providers)
                .context("cannot build the payment providers' HTTP client")?;
        let pay_links = crate::payments::pay_link::PayLinkSigner::open(data)
            .context("cannot open the payment-link key")?;
        let files = FileService {
            blobs: BlobStore::new(data.join("tenants")),
            signer: Arc::new(
                UrlSigner::open(data).context("cannot open the signed-URL key for files")?,
            ),
            max_file_bytes: config.max_file_bytes,
        };
        let catalog = Catalog::new(control.clone(), data.join("packages"), clock.clone());
        let plans = match &config.plans {
            Some(path) => crate::billing::plans::load(path)?,
            None => PlanCatalog {
                modules: Vec::new(),
                bundles: Vec::new(),
            },
        };
        let currency =
            Currency::parse(&config.currency).map_err(|e| anyhow::anyhow!("--currency: {e}"))?;
        let billing = Billing::new(control.clone(), plans.clone(), clock.clone(), currency);
        let group_limits = config.usage_groups;
        let mail = Mail::new(
            config.mail.clone(),
            Arc::new(UsersDirectory::new(control.clone())),
            clock.clone(),
        )?;
        let work = Arc::new(
            WorkHints::open(data)
                .await
                .with_context(|| format!("cannot open {}", crate::work::HINTS_FILE))?,
        );
        let retention = crate::retention::Retention::new(config.retention.clone());
        // The usage writers reach the host weakly: they never keep it alive.
        let souk = Arc::new_cyclic(|me: &Weak<Souk>| {
            let host: Weak<dyn GroupHost> = me.clone();
            Souk {
                config,
                control,
                runtime,
                tenancy,
                auth,
                catalog,
                billing,
                operator_plans: plans,
                manual_clock,
                clock,
                usage_groups: UsageGroups::new(host, group_limits),
                files,
                mail,
                work,
                job_board: Arc::default(),
                people_state,
                sso_state,
                retention,
                payment_providers,
                pay_links,
                public_origin: crate::public_url::PublicOrigin::default(),
            }
        });
        if let Some(dir) = souk.config.modules_dir.clone() {
            souk.import_modules_dir(&dir).await?;
        }
        souk.refresh_plans()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(souk)
    }

    /// The installer, borrowing this host's services; build one per
    /// operation (`souk.installer().install(..)`).
    pub fn installer(&self) -> Installer<'_> {
        Installer {
            control: &self.control,
            tenancy: &self.tenancy,
            catalog: &self.catalog,
            runtime: &self.runtime,
            billing: &self.billing,
            clock: self.clock.as_ref(),
            migration_timeout: self.config.migration_timeout,
            currency: &self.config.currency,
            data_dir: &self.config.data_dir,
            files: &self.files,
            work: &self.work,
            enqueue: self.config.jobs.enqueue,
        }
    }

    /// The single sign-on service, borrowing this host's services; build
    /// one per operation.
    pub fn sso(&self) -> Sso<'_> {
        Sso {
            control: &self.control,
            clock: self.clock.as_ref(),
            state: &self.sso_state,
            people: self.people(),
            installer: self.installer(),
            usage: self.usage(),
            billing: &self.billing,
            public_limiter: &self.people_state.public_limiter,
        }
    }

    /// Payments and invoices, borrowing this host's services; build one per
    /// operation (docs/payments.md).
    pub fn payments(&self) -> crate::payments::service::Payments<'_> {
        crate::payments::service::Payments::new(
            &self.control,
            &self.billing,
            self.clock.clone(),
            &self.config.payments,
            &self.payment_providers,
        )
        .with_pay_links(&self.pay_links)
    }

    /// The people service (users, invitations, sessions, API keys),
    /// borrowing this host's services; build one per operation.
    pub fn people(&self) -> People<'_> {
        People {
            control: &self.control,
            clock: self.clock.as_ref(),
            state: &self.people_state,
            installer: self.installer(),
            catalog: &self.catalog,
        }
    }

    /// Creates a user of `tenant` (see [`People::create_user`]) and emails
    /// them their invitation. The answer carries the invitation either way
    /// (its link is shown once to whoever created the user); whether the
    /// email was queued is its second part.
    ///
    /// # Errors
    /// As [`People::create_user`]; a failure to queue the email is not one
    /// (it is logged and answered as `false`).
    pub async fn create_user(
        &self,
        actor: &crate::auth::Principal,
        tenant: &Tenant,
        new: &crate::people::NewUser,
    ) -> Result<(crate::people::User, crate::people::Invitation, bool), SoukError> {
        let (user, invitation) = self.people().create_user(actor, tenant, new).await?;
        let emailed = self.email_invitation(tenant, &user, &invitation).await;
        Ok((user, invitation, emailed))
    }

    /// Issues user `id` of `tenant` a new invitation (see [`People::invite`])
    /// and emails it; the second part says whether the email was queued.
    ///
    /// # Errors
    /// As [`People::invite`].
    pub async fn invite_user(
        &self,
        tenant: &Tenant,
        id: &str,
    ) -> Result<(crate::people::Invitation, bool), SoukError> {
        let people = self.people();
        let invitation = people.invite(tenant, id).await?;
        let user = people.show_user(tenant, id).await?;
        let emailed = self.email_invitation(tenant, &user, &invitation).await;
        Ok((invitation, emailed))
    }

    /// Queues the invitation email to `user` through the tenant's mail
    /// outbox (a host notice: never counted against a module's meter).
    /// Answers whether it was queued; a failure is logged, not raised, since
    /// the invitation itself stands and its link was already answered.
    async fn email_invitation(
        &self,
        tenant: &Tenant,
        user: &crate::people::User,
        invitation: &crate::people::Invitation,
    ) -> bool {
        let notice = crate::mail::notices::Notice {
            // One email per invitation: its token's hash tells two apart
            // (two made in the same second expire at the same instant).
            key: format!(
                "invitation/{}/{}",
                user.id,
                crate::secrets::token_hash(&invitation.token)
            ),
            subject: format!("You are invited to {} on Souk", tenant.name),
            text: format!(
                "Hello {},\n\nYou are invited to join {}. Open this link to choose your \
                 password:\n\n{}\n\nThe link works once and expires at {}.\n",
                user.display_name, tenant.name, invitation.link, invitation.expires_at
            ),
        };
        let recipient = crate::capabilities::notify::directory::DirectoryEntry {
            user_id: user.id.clone(),
            address: user.email.clone(),
            name: user.display_name.clone(),
        };
        let queued = async {
            let pool = self.tenancy.database(tenant).await?;
            crate::mail::notices::queue_to(
                &pool,
                &self.work,
                &tenant.id,
                &[recipient],
                &notice,
                self.clock.now(),
            )
            .await
        };
        match queued.await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(tenant = %tenant.slug, user = %user.id, error = %e, "invitation email not queued");
                false
            }
        }
    }

    /// The request path, borrowing the parts a module request goes
    /// through (see [`Dispatcher::dispatch`]).
    pub fn dispatcher(&self) -> Dispatcher<'_> {
        Dispatcher {
            tenancy: &self.tenancy,
            catalog: &self.catalog,
            runtime: &self.runtime,
            billing: &self.billing,
            installer: self.installer(),
            usage: self.usage(),
            files: &self.files,
            work: &self.work,
            enqueue: self.config.jobs.enqueue,
            public_limiter: &self.people_state.public_limiter,
            mail: &self.mail,
            public_origin: &self.public_origin,
        }
    }

    /// The jobs service (the jobs API, and the tasks that run jobs and
    /// schedules), borrowing this host's services.
    pub fn jobs(&self) -> Jobs<'_> {
        Jobs {
            tenancy: &self.tenancy,
            control: &self.control,
            catalog: &self.catalog,
            dispatcher: self.dispatcher(),
            work: &self.work,
            board: &self.job_board,
            clock: &self.clock,
            config: &self.config.jobs,
        }
    }

    /// The download service behind `/f/{token}` (see
    /// [`Downloads::open`](crate::downloads::Downloads::open)).
    pub fn downloads(&self) -> crate::downloads::Downloads<'_> {
        crate::downloads::Downloads {
            tenancy: &self.tenancy,
            files: &self.files,
            clock: self.clock.as_ref(),
        }
    }

    /// The event delivery service (webhook endpoints, delivery logs, the
    /// event worker's passes), borrowing this host's services.
    pub fn events(&self) -> crate::events::Events<'_> {
        crate::events::Events {
            control: &self.control,
            tenancy: &self.tenancy,
            catalog: &self.catalog,
            installer: self.installer(),
            usage: self.usage(),
            billing: &self.billing,
            dispatcher: self.dispatcher(),
            work: &self.work,
            config: &self.config.events,
            call_timeout: self.config.limits.call_timeout,
        }
    }

    /// Which tenants have deferred work (events, mail, jobs), for the
    /// workers that do it.
    pub fn work(&self) -> &Arc<WorkHints> {
        &self.work
    }

    /// The usage service (usage events, the usage report, installation
    /// grants), borrowing this host's services; build one per operation
    /// (`souk.usage().report(..)`).
    pub fn usage(&self) -> Usage<'_> {
        Usage {
            billing: &self.billing,
            tenancy: &self.tenancy,
            catalog: &self.catalog,
            control: &self.control,
            groups: &self.usage_groups,
        }
    }

    /// The time-driven step: subscriptions (see
    /// [`Billing::run_maintenance`](crate::billing::service::Billing::run_maintenance)),
    /// then metering periods that ended (totals read from each tenant's
    /// database). Idempotent.
    ///
    /// # Errors
    /// Database failures; the next run continues from where this one stopped.
    pub async fn run_maintenance(
        &self,
    ) -> Result<crate::billing::service::MaintenanceReport, SoukError> {
        // Payments first: one confirmed since the last run is granted before
        // a renewal without it would fail.
        let payments = self.payments().reconcile().await?;
        let mut report = self.billing.run_maintenance().await?;
        report.changes.extend(
            payments
                .outcomes
                .into_iter()
                .map(|o| format!("payment {o}")),
        );
        // Wallet payers get their renewal's invoice before the period ends.
        let renewals = self.payments().renewal_invoices().await?;
        report
            .changes
            .extend(renewals.into_iter().map(|r| format!("renewal invoice {r}")));
        report.failed.extend(payments.errors.into_iter().map(|e| {
            crate::billing::service::MaintenanceFailure {
                step: "payment reconciliation".into(),
                error: e,
                ..Default::default()
            }
        }));
        // The notices the run wrote to the billing outbox, emailed to the
        // tenants' admins; a failure is retried by the next run.
        if let Err(e) = self.billing_notices().run().await {
            tracing::warn!(error = %e, "billing notices not emailed; retrying next run");
        }
        self.billing
            .close_meter_periods(&mut report, |tenant_id, module, meter, period| async move {
                let tenant = self.tenancy.by_id(&tenant_id).await?;
                let pool = self.tenancy.database(&tenant).await?;
                let mut conn = pool.acquire().await?;
                Ok(
                    crate::entitlements::usage_db::period_total(&mut conn, &module, &meter, period)
                        .await?,
                )
            })
            .await?;
        // Old events, delivery logs and mail, a slice of the tenants per
        // run; a failure is retried by the next run.
        match self.retention.run(&self.tenancy, self.clock.now()).await {
            Ok(pruned) if !pruned.is_empty() => tracing::info!(?pruned, "retention"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention not run; retrying next run"),
        }
        Ok(report)
    }

    /// Removes file blobs no committed row names (left by calls a stopped
    /// process never settled), in every tenant that has files. Run once at
    /// `souk serve` start; calls of this process pin the blobs they write,
    /// so it is safe while requests run. Answers how many files were
    /// removed; a tenant that fails is logged and skipped.
    pub async fn sweep_files(&self) -> usize {
        let mut removed = 0;
        for tenant_id in self.files.blobs.tenants_with_files() {
            let swept = async {
                let tenant = self.tenancy.by_id(&tenant_id).await?;
                let pool = self.tenancy.database(&tenant).await?;
                Ok::<_, SoukError>(self.files.blobs.sweep(&pool, &tenant.id).await?)
            };
            match swept.await {
                Ok(n) => removed += n,
                Err(e) => tracing::warn!(tenant = %tenant_id, error = %e, "file blobs not swept"),
            }
        }
        removed
    }

    /// The billing notices step (trial ending, payment due emailed to the
    /// tenants' admins), borrowing this host's services.
    pub fn billing_notices(&self) -> BillingNotices<'_> {
        BillingNotices {
            control: &self.control,
            billing: &self.billing,
            tenancy: &self.tenancy,
            directory: self.mail.directory_ref(),
            work: &self.work,
            clock: self.clock.as_ref(),
        }
    }

    /// The mail, for the request path and the delivery.
    pub fn mail(&self) -> &Mail {
        &self.mail
    }

    /// A page of `tenant`'s mail log (see [`crate::mail::log_page`]).
    ///
    /// # Errors
    /// Database failures.
    pub async fn mail_log(
        &self,
        tenant: &Tenant,
        after: i64,
        limit: i64,
    ) -> Result<MailLogPage, SoukError> {
        let pool = self.tenancy.database(tenant).await?;
        let mut conn = pool.acquire().await?;
        Ok(crate::mail::log_page(&self.mail, &mut conn, after, limit).await?)
    }

    /// Starts the email delivery (a task that runs until `shutdown`
    /// resolves) when a relay is configured; without one, says that mail
    /// stays queued and starts nothing.
    pub fn start_mail_delivery(
        self: &Arc<Self>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let Some(relay) = self.mail.relay() else {
            tracing::warn!("{}", crate::mail::NO_RELAY_NOTE);
            return None;
        };
        let host: Arc<dyn MailHost> = self.clone();
        let policy = self.mail.retry_policy();
        Some(tokio::spawn(crate::mail::worker::run(
            host, relay, policy, shutdown,
        )))
    }

    /// Moves the manual clock to `at` and records it, so a restart resumes
    /// from there (time never runs backwards under a subscription).
    ///
    /// # Errors
    /// [`SoukError::Conflict`] on the system clock; [`SoukError::Invalid`]
    /// for an instant before the current one.
    pub fn set_manual_clock(&self, at: time::OffsetDateTime) -> Result<(), SoukError> {
        let Some(clock) = &self.manual_clock else {
            return Err(SoukError::Conflict(
                "the host runs on the system clock; start it with --manual-clock to move time"
                    .to_owned(),
            ));
        };
        clock.set(at)
    }

    /// Makes a package available (the operator's `souk module add` and
    /// `POST /v1/modules` alike). A new version may suggest plans for a
    /// module the operator does not price, so the plans in effect are
    /// rebuilt when it is new.
    ///
    /// # Errors
    /// See [`Catalog::add_package`]; an operator plan that does not fit the
    /// new version ([`Souk::refresh_plans`]; the version stays available).
    pub async fn add_package(&self, bytes: &[u8]) -> Result<ModuleVersion, SoukError> {
        let version = self.catalog.add_package(&self.runtime, bytes).await?;
        if version.newly_added {
            self.refresh_plans().await?;
        }
        Ok(version)
    }

    /// Builds the plan catalog in effect — the operator's plans, plus the
    /// plans a module suggests in its manifest when the operator does not
    /// price it — and hands it to billing. Each operator-priced module's
    /// plans are checked against the manifest of its newest available
    /// version (a plan granting an undeclared feature is an error that names
    /// it). Called at start and whenever a new version becomes available.
    ///
    /// # Errors
    /// The first operator plan that does not fit its module.
    pub async fn refresh_plans(&self) -> Result<(), SoukError> {
        let mut plans = self.operator_plans.clone();
        for listing in self.catalog.list().await? {
            let slug = listing.slug.clone();
            let Ok(resolved) = self.catalog.resolve(&slug, None).await else {
                continue;
            };
            let manifest = &resolved.manifest;
            if plans.module(&manifest.slug).is_some() {
                plans
                    .check_module(manifest)
                    .map_err(|e| SoukError::Invalid(format!("plan catalog: {e}")))?;
                continue;
            }
            match crate::billing::plans::suggested(manifest) {
                Ok(Some(suggested)) => {
                    tracing::info!(module = %slug, "priced by the plans its manifest suggests");
                    plans.modules.push(suggested);
                }
                Ok(None) if self.config.plans.is_some() => {
                    tracing::info!(module = %slug, "module has no plans: free to install, fully entitled");
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(module = %slug, error = %e, "ignoring the module's suggested plans");
                }
            }
        }
        plans.modules.sort_by(|a, b| a.module.cmp(&b.module));
        self.billing.set_plans(plans);
        Ok(())
    }

    /// Makes every `.souk` package in `dir` available (idempotent: a
    /// package already known by digest is skipped).
    ///
    /// # Errors
    /// When a package is refused; the message names the file.
    pub async fn import_modules_dir(&self, dir: &Path) -> anyhow::Result<usize> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(dir = %dir.display(), "modules directory does not exist; no bundled modules");
                return Ok(0);
            }
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", dir.display())),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "souk"))
            .collect();
        paths.sort();
        let mut added = 0;
        for path in paths {
            let bytes = std::fs::read(&path)?;
            let version = self
                .catalog
                .add_package(&self.runtime, &bytes)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            if version.newly_added {
                added += 1;
                tracing::info!(module = %version.slug, version = %version.version, digest = %version.digest, "module available");
            }
        }
        Ok(added)
    }
}

/// What a tenant's usage writer asks of the host: the same steps as one
/// request's usage event, made once per group.
impl GroupHost for Souk {
    fn prepare<'a>(&'a self, tenant: &'a Tenant, module: &'a str) -> HostFuture<'a, ()> {
        Box::pin(async move { self.usage().prepare(tenant, module).await })
    }

    fn database<'a>(&'a self, tenant: &'a Tenant) -> HostFuture<'a, sqlx::SqlitePool> {
        Box::pin(self.tenancy.database(tenant))
    }

    fn engine(&self) -> &crate::entitlements::EntitlementEngine {
        self.billing.engine()
    }

    fn now(&self) -> time::OffsetDateTime {
        self.billing.clock().now()
    }
}

/// What the jobs tasks ask of the host: the jobs service.
impl JobsHost for Souk {
    fn jobs(&self) -> Jobs<'_> {
        Souk::jobs(self)
    }
}

/// What the email delivery asks of the host.
impl MailHost for Souk {
    fn tenant_database<'a>(
        &'a self,
        tenant_id: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Option<sqlx::SqlitePool>, SoukError>> {
        Box::pin(async move {
            let tenant = match self.tenancy.by_id(tenant_id).await {
                Ok(tenant) => tenant,
                Err(SoukError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e),
            };
            Ok(Some(self.tenancy.database(&tenant).await?))
        })
    }

    fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    fn work(&self) -> &crate::work::WorkHints {
        &self.work
    }
}
