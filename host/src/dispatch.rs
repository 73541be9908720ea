//! Serving a tenant's request with a module:
//! `/t/{tenant}/m/{module}/{path}`, as one straight line
//! ([`Dispatcher::dispatch`]), each step a function of its own:
//!
//! 1. `Dispatcher::resolve` — the tenant (404 when the caller may not see
//!    it), a place under the tenant's concurrency cap (a 429 or 503 problem
//!    with `Retry-After` otherwise; taken before anything else is done for
//!    the call and held until it is settled), the installation with its
//!    version's revocation (read fresh on every request, so a revocation
//!    recorded by another process takes effect at once), and the
//!    entitlement engine's grant for it;
//! 2. `match_route` — the manifest's route for the method and path, so a
//!    module never sees a request it did not declare (404, 405); then
//!    `Dispatcher::authorize` (step 2b) — the route's `access` level
//!    against who is calling ([`authorize_route`]: 401, 403, or the
//!    tenant's 404 for another tenant's caller), the caller the module is
//!    told about, and the per-address rate of anonymous calls of `public`
//!    routes (429). A caller with no credential valid here (an
//!    "outsider") learns nothing from steps 1 and 2 either: any refusal
//!    there is answered as step 2b would answer it ([`Standing::hide`]);
//! 3. `Dispatcher::admit` — the entitlement gate, before the module runs:
//!    whole-module access, the route's `feature`, the module's `api_keys`
//!    feature for a call made with an API key, room for one unit of its
//!    `limit`, and one unit of its `meter` taken atomically against the
//!    allowance (a 402/403 problem naming the feature, the reason and the
//!    upgrade otherwise);
//! 4. `Dispatcher::prepare` — private headers stripped (and the host's
//!    `souk-public-url` set: the mount's public URL), the component
//!    loaded, the module's SQL scope, one transaction on the tenant
//!    database, the call's [`CallState`];
//! 5. `Dispatcher::run` — the module's `handle` on the module call
//!    threads, bounded by the runtime's deadline (a blocked guest
//!    included);
//! 6. `Settlement::settle` — one owner of the call's transaction, the
//!    usage it changed through the `entitlements` import and the route's
//!    meter unit: an answer below 500 commits them (the meter unit only for
//!    a 2xx); anything else — a 5xx, a trap, a timeout, a failed commit, a
//!    dropped future — rolls all three back, so a module that fails
//!    half-way leaves no partial writes and no usage counted.

use std::sync::OnceLock;
use std::time::Duration;

use souk_module_registry::{Manifest, Route, RouteLookup};

use crate::auth::{RouteAdmission, Standing, Visitor, authorize_route};
use crate::billing::service::Billing;
use crate::capabilities::CallState;
use crate::capabilities::context::{CallContext, Caller};
use crate::capabilities::db::{CallTransaction, ModuleDb};
use crate::capabilities::entitlements::call::{
    CallEntitlements, CallUsageError, MeterEvent, MeterHold,
};
use crate::capabilities::events::EventsState;
use crate::capabilities::files::{FileService, FilesAccess};
use crate::capabilities::jobs::JobsState;
use crate::capabilities::notify::NotifyState;
use crate::catalog::{Catalog, ResolvedVersion};
use crate::entitlements::Decision;
use crate::error::{CallError, SoukError};
use crate::installer::{Installation, Installer};
use crate::job_queue::EnqueueLimits;
use crate::mail::Mail;
use crate::people::throttle::PublicLimiter;
use crate::public_url::{PUBLIC_URL_HEADER, PublicOrigin};
use crate::runtime::{
    Call, CallPermit, LoadedModule, ModuleRequest, ModuleResponse, Runtime, answer,
};
use crate::tenancy::{Tenancy, Tenant};
use crate::usage::Usage;
use crate::work::{WorkHints, WorkMarks};

/// Request headers never forwarded to modules as a client sent them (the
/// host sets [`PUBLIC_URL_HEADER`] itself).
const PRIVATE_HEADERS: [&str; 6] = [
    "authorization",
    "cookie",
    "proxy-authorization",
    "x-csrf-token",
    "x-souk-operator",
    PUBLIC_URL_HEADER,
];

/// The request path: borrows the parts a module request goes through
/// (built per request by the composition root, `Souk::dispatcher`).
pub struct Dispatcher<'a> {
    /// Finds the tenant and opens its database.
    pub tenancy: &'a Tenancy,
    /// Loads the installed version's component.
    pub catalog: &'a Catalog,
    /// Admits the call and runs it.
    pub runtime: &'a Runtime,
    /// The entitlement engine of the gate and of the call, and the clock.
    pub billing: &'a Billing,
    /// Finds the installation and the module's SQL scope.
    pub installer: Installer<'a>,
    /// Keeps the engine's grant for the installation current.
    pub usage: Usage<'a>,
    /// The blob stores and URL signer of the `files` capability.
    pub files: &'a FileService,
    /// Told, before a call's commit, of the deferred work it queued.
    pub work: &'a WorkHints,
    /// What `jobs.enqueue` accepts in a call.
    pub enqueue: EnqueueLimits,
    /// The per-address rate of anonymous calls of `public` routes.
    pub public_limiter: &'a PublicLimiter,
    /// What a call's `notify` needs (the user directory, the message
    /// limits).
    pub mail: &'a Mail,
    /// Where module mounts are public, told to every request
    /// ([`PUBLIC_URL_HEADER`]).
    pub public_origin: &'a PublicOrigin,
}

/// Whom a request is for, found and checked before anything runs.
struct Target {
    tenant: Tenant,
    /// What the caller is to this tenant's module.
    standing: Standing,
    resolved: ResolvedVersion,
    /// The call's place under the tenant's cap, freed when the request is
    /// over (with this value, whichever way it ends).
    _permit: CallPermit,
    /// Unique to this request, made only when its route has a meter: the
    /// idempotency key its meter unit is counted under (the request is
    /// never retried under it).
    meter_key: OnceLock<String>,
}

impl Dispatcher<'_> {
    /// Serves `request` from `visitor` for `tenant_slug` with `module`.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] (tenant invisible, module not installed, no
    /// route), [`SoukError::MethodNotAllowed`], [`SoukError::Revoked`],
    /// [`SoukError::Unauthorized`] and [`SoukError::Forbidden`] (the
    /// route's access), [`SoukError::TooManyRequests`] (anonymous calls of
    /// public routes), [`SoukError::Denied`] (the gate),
    /// [`SoukError::Module`] when the tenant is at its concurrency cap, the
    /// host at capacity, or the module fails.
    pub async fn dispatch(
        &self,
        visitor: &Visitor,
        tenant_slug: &str,
        module: &str,
        mut request: ModuleRequest,
    ) -> Result<ModuleResponse, SoukError> {
        let target = self.resolve(visitor, tenant_slug, module).await?;
        let route = match_route(&target.resolved.manifest, &request)
            .map_err(|e| target.standing.hide(tenant_slug, e))?;
        let admission = self.authorize(visitor, &target, route, &request)?;
        let meter = self.admit(&target, route, &admission)?;
        let mut begin = Begin::for_request(&request, meter.is_some());
        let settlement = Settlement::new(meter, self.work, self.billing.clock().now());
        loop {
            let (loaded, state) = self
                .prepare(&target, admission.caller.clone(), begin)
                .await?;
            // Only a deferred call may have to run again.
            let again = (begin == Begin::Deferred).then(|| request.clone());
            let (result, state) = self.run(&target, loaded, state, request).await?;
            match again {
                Some(again) if state.db.conflicted() => {
                    // Its snapshot went stale before its first write: its
                    // answer is void; run it again holding the write lock
                    // from the start, so it cannot conflict twice.
                    tracing::info!(
                        tenant = %target.tenant.slug,
                        module = %target.resolved.manifest.slug,
                        "a read request's snapshot went stale before its first write; \
                         running it again with the write lock"
                    );
                    Settlement::discard(&target, state, self.work).await?;
                    begin = Begin::Immediate;
                    request = again;
                }
                _ => return settlement.settle(&target, state, result).await,
            }
        }
    }

    /// Step 1: the tenant, the caller's standing there, a place for the
    /// call, the installation (not revoked) and the engine's grant for it.
    /// An outsider's refusals are hidden ([`Standing::hide`]).
    async fn resolve(
        &self,
        visitor: &Visitor,
        tenant_slug: &str,
        module: &str,
    ) -> Result<Target, SoukError> {
        let principal = visitor.principal.as_ref();
        let tenant = self.tenancy.by_slug(tenant_slug).await.map_err(|e| {
            let outsider = principal.map_or(Standing::Anonymous, |_| Standing::Foreign);
            outsider.hide(tenant_slug, e)
        })?;
        let standing = Standing::of(principal, &tenant, module);
        self.resolve_for(tenant, standing, module)
            .await
            .map_err(|e| standing.hide(tenant_slug, e))
    }

    /// The rest of step 1 for a tenant found, with the caller's standing
    /// there: a place for the call, the installation (not revoked) and the
    /// engine's grant.
    async fn resolve_for(
        &self,
        tenant: Tenant,
        standing: Standing,
        module: &str,
    ) -> Result<Target, SoukError> {
        let permit = self.runtime.admit(&tenant.id)?;
        let installation: Installation = self.installer.require(&tenant, module).await?;
        if let Some(reason) = &installation.revoked {
            return Err(crate::catalog::revoked(
                module,
                &installation.version,
                reason,
            ));
        }
        let resolved = self.usage.ensure_grant(&tenant, &installation).await?;
        Ok(Target {
            tenant,
            standing,
            resolved,
            _permit: permit,
            meter_key: OnceLock::new(),
        })
    }

    /// Step 2b: who may call the route ([`authorize_route`]), the caller
    /// the module is told about, and the rate of anonymous calls of
    /// `public` routes per client address.
    fn authorize(
        &self,
        visitor: &Visitor,
        target: &Target,
        route: &Route,
        request: &ModuleRequest,
    ) -> Result<RouteAdmission, SoukError> {
        let admission = authorize_route(
            visitor.principal.as_ref(),
            target.standing,
            &target.tenant.slug,
            route.access,
            &request.method,
        )?;
        if admission.api_key && target.resolved.manifest.api_keys.is_none() {
            return Err(SoukError::Forbidden(format!(
                "module {} {} takes no API keys any more",
                target.resolved.manifest.slug, target.resolved.manifest.version
            )));
        }
        if admission.anonymous
            && let Some(address) = visitor.address
            && let Err(wait) = self
                .public_limiter
                .take(address, self.billing.clock().now())
        {
            return Err(SoukError::TooManyRequests {
                detail: format!(
                    "too many calls from this address; try again in {}s",
                    wait.as_secs().max(1)
                ),
                retry_after: wait,
            });
        }
        Ok(admission)
    }

    /// Step 3: the entitlement gate. Returns the unit taken from the route's
    /// meter, if it has one: written with the answer if that is a 2xx, given
    /// back otherwise.
    fn admit<'b>(
        &'b self,
        target: &'b Target,
        route: &'b Route,
        admission: &RouteAdmission,
    ) -> Result<Option<MeterHold<'b>>, SoukError> {
        let engine = self.billing.engine();
        let tenant = target.tenant.id.as_str();
        let module = target.resolved.manifest.slug.as_str();
        let api_key_feature = target
            .resolved
            .manifest
            .api_keys
            .as_ref()
            .filter(|_| admission.api_key)
            .map(|keys| keys.feature.as_str());
        let gate = [
            Some(engine.check_access(tenant, module)),
            api_key_feature.map(|key| engine.check_feature(tenant, module, key)),
            route
                .feature
                .as_deref()
                .map(|key| engine.check_feature(tenant, module, key)),
            route
                .limit
                .as_deref()
                .map(|key| engine.check_limit(tenant, module, key, 1)),
        ];
        for decision in gate.into_iter().flatten() {
            if let Decision::Denied(denial) = decision {
                return Err(SoukError::Denied(Box::new(denial)));
            }
        }
        let Some(meter) = route.meter.as_deref() else {
            return Ok(None);
        };
        let event = MeterEvent {
            tenant_id: tenant,
            module,
            meter,
            amount: 1,
            idempotency_key: target
                .meter_key
                .get_or_init(|| format!("request-{}", hex::encode(rand::random::<[u8; 16]>()))),
            at: self.billing.clock().now(),
        };
        match MeterHold::take(engine, event, true) {
            Ok(hold) => Ok(Some(hold)),
            Err(CallUsageError::Denied(denial)) => Err(SoukError::Denied(Box::new(denial))),
            Err(e) => Err(SoukError::Internal(anyhow::anyhow!(
                "metering {meter}: {e}"
            ))),
        }
    }

    /// Step 4: the component, the module's scope, the transaction (begun
    /// as `begin` says, see [`Begin::for_request`]) and the call's state.
    async fn prepare(
        &self,
        target: &Target,
        caller: Caller,
        begin: Begin,
    ) -> Result<(LoadedModule, CallState), SoukError> {
        let manifest = &target.resolved.manifest;
        let loaded = self.catalog.load(self.runtime, &target.resolved).await?;
        let scope = self.installer.scope_for(&target.tenant, manifest).await?;
        let pool = self.tenancy.database(&target.tenant).await?;
        let tx = begin.on(&pool).await?;
        let (_, timeout) = self.plan_budget(target);
        let db = ModuleDb::with(scope, tx, timeout);
        let state = self.call_state(target, caller, db, &pool);
        Ok((loaded, state))
    }

    /// The memory cap and the request deadline of `target`'s calls: what
    /// the tenant's plan sets (`runtime:`), capped at the operator's
    /// maxima, or the host's defaults.
    fn plan_budget(&self, target: &Target) -> (usize, Duration) {
        let plan = self
            .billing
            .plan_runtime(&target.tenant.id, target.resolved.manifest.slug.as_str());
        self.runtime.limits().for_plan(
            plan.memory_mib.map(|mib| {
                usize::try_from(mib)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(1 << 20)
            }),
            plan.call_timeout_ms.map(Duration::from_millis),
        )
    }

    /// The state of a call of `target`'s module by `caller` on `db`: its
    /// context, the tenant's entitlements and the module's files in the
    /// tenant database `pool` (requests and background calls alike).
    fn call_state(
        &self,
        target: &Target,
        caller: Caller,
        db: ModuleDb,
        pool: &sqlx::SqlitePool,
    ) -> CallState {
        let manifest = &target.resolved.manifest;
        let context = CallContext {
            tenant_id: target.tenant.id.clone(),
            module_slug: manifest.slug.to_string(),
            module_version: manifest.version.to_string(),
            caller,
        };
        let entitlements = CallEntitlements::new(
            self.billing.engine().clone(),
            &target.tenant.id,
            manifest.slug.as_str(),
            self.billing.clock().now(),
        )
        .with_host_counted(&manifest.limits);
        let files = FilesAccess::new(
            self.files.clone(),
            pool.clone(),
            &target.tenant.id,
            manifest.slug.as_str(),
            manifest.files.clone(),
            self.billing.clock().now(),
        );
        let mut state = CallState::for_request(
            context,
            db,
            entitlements,
            self.plan_budget(target).0,
            self.billing.clock().now(),
        )
        .with_files(files);
        state.jobs = JobsState::new(self.enqueue, self.billing.clock().now());
        state.events = EventsState::new(
            &manifest.events.emits,
            self.runtime.limits().max_event_payload_bytes,
            self.billing.clock().now(),
        );
        state.notify = NotifyState(Some(self.mail.notify_setup(&manifest.limits)));
        state
    }

    /// Step 5: runs the module's `handle` on the module call threads (see
    /// `Runtime::run_call`), with the private headers stripped; answers the
    /// module's result and the call's state to settle.
    async fn run(
        &self,
        target: &Target,
        loaded: LoadedModule,
        state: CallState,
        mut request: ModuleRequest,
    ) -> Result<(Result<ModuleResponse, CallError>, CallState), SoukError> {
        request
            .headers
            .retain(|(name, _)| !PRIVATE_HEADERS.contains(&name.to_ascii_lowercase().as_str()));
        if let Some(url) = self
            .public_origin
            .mount_url(&target.tenant.slug, target.resolved.manifest.slug.as_str())
        {
            request.headers.push((PUBLIC_URL_HEADER.to_owned(), url));
        }
        let (_, timeout) = self.plan_budget(target);
        let ran = self
            .runtime
            .run_call(async move {
                let mut call = loaded.instantiate_for(state, timeout).await?;
                let result = call.handle(request).await;
                Ok::<_, CallError>((result, call.into_state()))
            })
            .await??;
        let (result, state) = ran;
        Ok((result.and_then(|r| self.vet_answer(target, r)), state))
    }

    /// Step 5b: what of the module's answer may leave the host
    /// ([`answer::vet`]); a refused answer fails the call (rolled back).
    fn vet_answer(
        &self,
        target: &Target,
        response: ModuleResponse,
    ) -> Result<ModuleResponse, CallError> {
        let manifest = &target.resolved.manifest;
        let mount = format!("/t/{}/m/{}", target.tenant.slug, manifest.slug);
        let rules = answer::PageRules {
            module: manifest.slug.as_str(),
            mount: &mount,
            pages: &manifest.pages,
        };
        let vetted = answer::vet(response, self.runtime.limits(), &rules)?;
        if !vetted.dropped.is_empty() {
            tracing::debug!(
                tenant = %target.tenant.slug,
                module = %manifest.slug,
                dropped = %vetted.dropped.join(", "),
                "headers the host owns were dropped from a module answer"
            );
        }
        Ok(vetted.response)
    }
}

impl Dispatcher<'_> {
    /// Runs `body` on a fresh instance of `module`'s installed version for
    /// the tenant `tenant_id`, outside any request (a job, an event
    /// delivery): in a transaction of its own on the tenant database, begun
    /// deferred (see below), as [`Caller::system`], with the tenant's entitlements and
    /// the module's scope, under the tenant's concurrency cap, bounded by
    /// `deadline`. `Ok(Ok(_))` commits the call's writes, usage and queued
    /// work (hinted first, as a request's); anything else rolls them back.
    ///
    /// The transaction takes the tenant's write lock only at the call's
    /// first write, not up front: a background call runs for up to its own
    /// deadline (a job's is 30 s by default), and holding SQLite's one
    /// write lock for all of it would make every writing request of the
    /// tenant wait and fail meanwhile. A call that computes first and writes
    /// at the end (the usual job) holds the lock only for its writes. A
    /// call that read before its first write may find the database changed
    /// by another connection meanwhile; SQLite then refuses the upgrade
    /// (the call's db state is marked conflicted, [`ModuleDb::conflicted`]),
    /// and the call's outcome is discarded, its transaction rolled back, and
    /// `body` runs again at once on a fresh instance: up to
    /// [`BACKGROUND_DEFERRED_RERUNS`] times deferred, then once more with
    /// `BEGIN IMMEDIATE` — holding the write lock from its start, with its
    /// write-phase budget running from there, so it cannot conflict again
    /// and holds the lock no longer than any write phase.
    ///
    /// From its first write the call has the write-phase budget
    /// ([`crate::runtime::RuntimeLimits::background_write_budget`], 2 s by
    /// default) left, not the rest of `deadline`: a call that writes early
    /// and then computes or sleeps is stopped there
    /// ([`CallError::WriteBudget`]) and rolled back, so a background call
    /// cannot hold its tenant's write lock much longer than a request.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when the tenant or the installation is gone,
    /// [`SoukError::Revoked`], [`SoukError::Module`] when the tenant is at
    /// its cap or the call fails in the runtime (a trap, the deadline),
    /// database errors.
    pub async fn run_background<T: Send + 'static>(
        &self,
        tenant_id: &str,
        module: &str,
        deadline: Duration,
        body: BackgroundBody<T>,
    ) -> Result<Result<T, String>, SoukError> {
        let tenant = self.tenancy.by_id(tenant_id).await?;
        // The host acts for the tenant: an administrator's standing.
        let target = self.resolve_for(tenant, Standing::Admin, module).await?;
        let body: std::sync::Arc<BackgroundFn<T>> = body.into();
        let mut reruns = 0;
        let (outcome, mut state) = loop {
            let begin = if reruns < BACKGROUND_DEFERRED_RERUNS {
                Begin::Deferred
            } else {
                Begin::Immediate
            };
            let (outcome, state) = self
                .run_background_once(&target, deadline, body.clone(), begin)
                .await?;
            if !state.db.conflicted() {
                break (outcome, state);
            }
            reruns += 1;
            tracing::info!(
                tenant = %target.tenant.slug,
                module = %target.resolved.manifest.slug,
                rerun = reruns,
                "a background call's snapshot went stale before its first write; running it again"
            );
            Settlement::discard(&target, state, self.work).await?;
        };
        let mut settlement = Settlement::new(None, self.work, self.billing.clock().now());
        settlement.take_from(&target, &mut state);
        match outcome {
            Ok(Ok(value)) => {
                settlement.commit(200).await?;
                Ok(Ok(value))
            }
            Ok(Err(message)) => {
                settlement.rollback().await?;
                Ok(Err(message))
            }
            Err(e) => {
                settlement.rollback().await?;
                Err(e.into())
            }
        }
    }
}

impl Dispatcher<'_> {
    /// One run of a background call of `target`'s module: `body` on a
    /// fresh instance, in a transaction begun as `begin` says, with the
    /// write-phase budget; answers its outcome and the state to settle.
    async fn run_background_once<T: Send + 'static>(
        &self,
        target: &Target,
        deadline: Duration,
        body: std::sync::Arc<BackgroundFn<T>>,
        begin: Begin,
    ) -> Result<(Result<Result<T, String>, CallError>, CallState), SoukError> {
        let manifest = &target.resolved.manifest;
        let loaded = self.catalog.load(self.runtime, &target.resolved).await?;
        let scope = self.installer.scope_for(&target.tenant, manifest).await?;
        let pool = self.tenancy.database(&target.tenant).await?;
        let tx = begin.on(&pool).await?;
        let db = ModuleDb::with(scope, tx, deadline)
            .with_write_budget(self.runtime.limits().background_write_budget);
        let state = self.call_state(target, Caller::system(), db, &pool);
        let ran = self
            .runtime
            .run_call(async move {
                let mut call = loaded.instantiate_for(state, deadline).await?;
                let outcome = body(&mut call).await;
                Ok::<_, CallError>((outcome, call.into_state()))
            })
            .await?;
        ran.map_err(SoukError::from)
    }
}

/// What [`Dispatcher::run_background`] runs on the instance: one export
/// call, e.g. `Box::pin(async move { call.run_job(job.clone()).await })`.
/// It may run more than once (a fresh instance each time, every earlier
/// run rolled back), when a run's snapshot went stale.
pub type BackgroundBody<T> = Box<BackgroundFn<T>>;

/// The function of a [`BackgroundBody`].
pub type BackgroundFn<T> = dyn for<'c> Fn(
        &'c mut Call,
    ) -> futures_util::future::BoxFuture<'c, Result<Result<T, String>, CallError>>
    + Send
    + Sync;

/// How many times a background call whose snapshot went stale is run
/// again deferred, before its last run takes the write lock up front.
pub const BACKGROUND_DEFERRED_RERUNS: u32 = 3;

/// How a call's transaction begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Begin {
    /// Deferred ([`CallTransaction::deferred`]): begun with the first
    /// statement, taking the write lock only at the first write.
    Deferred,
    /// `BEGIN IMMEDIATE`: the write lock up front.
    Immediate,
}

impl Begin {
    /// A request's: reads (`GET`, `HEAD`) take a deferred transaction,
    /// committed only if they wrote; writes — and `metered` routes, which
    /// write their usage event — take the write lock up front, so two
    /// writers queue instead of failing on lock upgrade. A read whose
    /// snapshot goes stale before its first write runs again
    /// [`Begin::Immediate`].
    fn for_request(request: &ModuleRequest, metered: bool) -> Self {
        if matches!(request.method.as_str(), "GET" | "HEAD") && !metered {
            Begin::Deferred
        } else {
            Begin::Immediate
        }
    }

    /// The transaction, on a connection of `pool`.
    async fn on(self, pool: &sqlx::SqlitePool) -> Result<CallTransaction, sqlx::Error> {
        Ok(match self {
            Begin::Deferred => CallTransaction::deferred(pool.acquire().await?),
            Begin::Immediate => CallTransaction::Open(pool.begin_with("BEGIN IMMEDIATE").await?),
        })
    }
}

/// Step 2: the route that serves `request`.
///
/// # Errors
/// [`SoukError::NotFound`] when no route has the path,
/// [`SoukError::MethodNotAllowed`] when one has it with other methods.
fn match_route<'m>(
    manifest: &'m Manifest,
    request: &ModuleRequest,
) -> Result<&'m Route, SoukError> {
    let module = &manifest.slug;
    match manifest.route_for(&request.method, &request.path) {
        RouteLookup::Found(route, _) => Ok(route),
        RouteLookup::NoRoute => Err(SoukError::NotFound(format!(
            "module {module} has no route for {}",
            request.path
        ))),
        RouteLookup::MethodNotAllowed => Err(SoukError::MethodNotAllowed(format!(
            "module {module} does not accept {} on {}",
            request.method, request.path
        ))),
    }
}

/// What a call leaves to settle: its transaction, the usage it changed in
/// the engine's memory, and its route's meter unit. [`Settlement::settle`]
/// commits them or rolls them back together; dropped unsettled (an error
/// on the way, the request's future dropped), it rolls all three back: the
/// transaction rolls back when sqlx drops it, the usage is undone in
/// memory, the meter unit is given back.
struct Settlement<'a> {
    tx: Option<CallTransaction>,
    usage: Option<CallEntitlements>,
    meter: Option<MeterHold<'a>>,
    /// The deferred work the call queued, hinted before the commit.
    work: WorkMarks,
    hints: &'a WorkHints,
    tenant_id: String,
    now: time::OffsetDateTime,
    /// The call's files access: after the commit or rollback, the blobs
    /// its deletes left unnamed, or its rolled-back puts wrote, are removed.
    files: Option<FilesAccess>,
}

impl<'a> Settlement<'a> {
    /// Rolls back everything a call whose answer is void did (its
    /// transaction, usage and files), before it runs again.
    async fn discard(
        target: &Target,
        mut state: CallState,
        hints: &'a WorkHints,
    ) -> Result<(), SoukError> {
        let mut void = Settlement::new(None, hints, time::OffsetDateTime::UNIX_EPOCH);
        void.take_from(target, &mut state);
        void.rollback().await
    }

    /// `now` is the host clock's time when the call started: the time its
    /// queued work is due from.
    fn new(meter: Option<MeterHold<'a>>, hints: &'a WorkHints, now: time::OffsetDateTime) -> Self {
        Settlement {
            tx: None,
            usage: None,
            meter,
            work: WorkMarks::default(),
            hints,
            tenant_id: String::new(),
            now,
            files: None,
        }
    }

    /// Takes what the call's state holds to settle: its transaction, its
    /// usage changes and the work it queued.
    fn take_from(&mut self, target: &Target, state: &mut CallState) {
        self.usage = state.entitlements.take();
        self.tx = state.db.take_transaction();
        self.work = state.work;
        self.tenant_id.clone_from(&target.tenant.id);
        self.files = state.files.take();
    }

    /// Step 6: commits the call's work when the module answered below 500,
    /// rolls it back otherwise, and answers what the client gets.
    async fn settle(
        mut self,
        target: &Target,
        mut state: CallState,
        result: Result<ModuleResponse, CallError>,
    ) -> Result<ModuleResponse, SoukError> {
        self.take_from(target, &mut state);
        match result {
            Ok(response) if response.status < 500 => {
                self.commit(response.status).await?;
                Ok(response)
            }
            Ok(response) => {
                self.rollback().await?;
                Ok(response)
            }
            Err(e) => {
                tracing::warn!(
                    tenant = %target.tenant.slug,
                    module = %target.resolved.manifest.slug,
                    error = %e,
                    "module call failed"
                );
                self.rollback().await?;
                Err(e.into())
            }
        }
    }

    /// Commits (see [`Settlement::commit_transaction`]), then settles the
    /// call's files.
    async fn commit(mut self, status: u16) -> Result<(), SoukError> {
        let files = self.files.take();
        let committed = self.commit_transaction(status).await;
        if let Some(files) = files {
            files.settle().await;
        }
        committed
    }

    /// Rolls back (see [`Settlement::rollback_transaction`]), then settles
    /// the call's files.
    async fn rollback(mut self) -> Result<(), SoukError> {
        let files = self.files.take();
        let rolled_back = self.rollback_transaction().await;
        if let Some(files) = files {
            files.settle().await;
        }
        rolled_back
    }

    /// Writes the meter unit (a 2xx only; otherwise it is given back) and
    /// commits the transaction; then the usage and the unit are kept.
    async fn commit_transaction(mut self, status: u16) -> Result<(), SoukError> {
        let Some(mut tx) = self.tx.take() else {
            return Ok(());
        };
        if !(200..300).contains(&status) {
            self.meter = None;
        }
        if let Some(hold) = self.meter.as_mut() {
            let written = match tx.for_host_write().await {
                Ok(conn) => hold.write(conn).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = written {
                tx.rollback().await?;
                return Err(SoukError::Internal(anyhow::anyhow!("metering: {e}")));
            }
        }
        // Before the commit: work without a hint could be forgotten, a hint
        // without work costs a worker one look. The guard drops after the
        // commit (or a failed one), waking the workers.
        let _marked = if self.work.is_empty() {
            None
        } else {
            match self.hints.mark(&self.tenant_id, self.work, self.now).await {
                Ok(marked) => Some(marked),
                Err(e) => {
                    tx.rollback().await?;
                    return Err(SoukError::Internal(anyhow::anyhow!("work hints: {e}")));
                }
            }
        };
        tx.commit().await?;
        if let Some(hold) = self.meter.take() {
            hold.commit();
        }
        // Committed: the usage the call changed stays counted.
        self.usage = None;
        Ok(())
    }

    /// Rolls the transaction back (waiting for it, so a failure is seen);
    /// the usage and the meter unit are undone when `self` drops.
    async fn rollback_transaction(mut self) -> Result<(), SoukError> {
        if let Some(tx) = self.tx.take() {
            tx.rollback().await?;
        }
        Ok(())
    }
}

impl Drop for Settlement<'_> {
    fn drop(&mut self) {
        if let Some(usage) = self.usage.take() {
            usage.rollback();
        }
    }
}
