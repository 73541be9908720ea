//! The jobs worker: one tokio task that finds tenants with jobs due (the
//! work hints), and per tenant a pass that runs its due jobs, at most
//! [`super::JobsConfig::per_tenant`] at once, each holding one of the host's
//! [`super::JobsConfig::global`] places.
//!
//! One attempt of a job:
//!
//! 1. **claim**: the queued row becomes `running` and its attempt is
//!    counted (a short transaction of its own, so readers see it running);
//! 2. **run**: [`crate::dispatch::Dispatcher::run_background`] runs `run-job` in its own
//!    transaction (write lock from its first write), as the system, with the tenant's
//!    entitlements, bounded by the job deadline. On `Ok` the job's outcome
//!    (`succeeded`, its result, its last progress) is written in that same
//!    transaction, which then commits with the job's writes, its usage and
//!    the work it queued: a job is never recorded as done without its
//!    writes, nor its writes kept without the record;
//! 3. **otherwise** (an `Err`, a trap, the deadline, a failed commit) the
//!    transaction rolls back and the attempt is recorded in a transaction
//!    of its own: queued again after an exponential backoff, or `failed`
//!    after [`super::JobsConfig::max_attempts`], with the error.
//!
//! A job whose module was uninstalled (or whose tenant is gone) is
//! `cancelled`. A job left `running` by a host that stopped is queued again
//! at the start of the tenant's next pass (no pass of the tenant runs in
//! this process then): the work hint that led to it is removed only when a
//! pass finds nothing left, so a restart finds it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::{Jobs, JobsHost, later};
use crate::dispatch::BackgroundBody;
use crate::entitlements::Decision;
use crate::error::{CallError, SoukError};
use crate::job_queue::store::{self, DueJob};
use crate::job_queue::{MAX_JOB_ERROR_BYTES, Progress, backoff};
use crate::runtime::{JobOutput, JobToRun};
use crate::tenancy::Tenant;
use crate::work::{Due, WorkKind};

/// Longest result JSON a job may leave (64 KiB): it is kept in the tenant
/// database and served by the jobs API; larger output belongs in a file.
pub const MAX_JOB_RESULT_BYTES: usize = 64 * 1024;

/// The longest the worker sleeps between two looks at the hints: a manual
/// clock's moves make retries and schedules due without waking anyone.
const POLL: Duration = Duration::from_secs(1);

/// When a tenant's pass failed in the host (its database unavailable), how
/// long until the next.
const PASS_RETRY: Duration = Duration::from_secs(5);

/// Runs the jobs worker until `shutdown` turns true; then stops taking
/// jobs and drops the running ones (their transactions roll back; they
/// run again after the next start).
pub async fn run<H: JobsHost>(host: Arc<H>, mut shutdown: watch::Receiver<bool>) {
    let global = Arc::new(Semaphore::new(
        usize::try_from(host.jobs().config.global.max(1)).unwrap_or(1),
    ));
    let in_pass: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut passes = JoinSet::new();
    loop {
        let sleep = {
            let jobs = host.jobs();
            let now = jobs.clock.now();
            for due in jobs.work.due(WorkKind::Jobs, now) {
                let fresh = in_pass
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(due.tenant_id.clone());
                if fresh {
                    passes.spawn(tenant_pass(
                        host.clone(),
                        due,
                        global.clone(),
                        in_pass.clone(),
                    ));
                }
            }
            while passes.try_join_next().is_some() {}
            jobs.work
                .next_due(WorkKind::Jobs)
                .map(|at| (at - now).clamp(time::Duration::ZERO, time::Duration::SECOND))
                .and_then(|d| Duration::try_from(d).ok())
                .unwrap_or(POLL)
                .max(Duration::from_millis(50))
        };
        let work = host.clone();
        tokio::select! {
            () = async move { work.jobs().work.woken(WorkKind::Jobs).await } => {}
            () = tokio::time::sleep(sleep) => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
    }
    passes.shutdown().await;
}

/// One pass over a tenant's due jobs, then the hint settled with when the
/// next is due.
async fn tenant_pass<H: JobsHost>(
    host: Arc<H>,
    due: Due,
    global: Arc<Semaphore>,
    in_pass: Arc<Mutex<HashSet<String>>>,
) {
    // Whichever way the pass ends (a panic included), the tenant may have
    // another.
    let _pass = InPass {
        tenants: in_pass,
        tenant_id: due.tenant_id.clone(),
    };
    let next = match pass(&host, &due.tenant_id, &global).await {
        Ok(next) => next,
        Err(e) => {
            tracing::warn!(tenant = %due.tenant_id, error = %e, "a pass over the tenant's jobs failed; retrying");
            Some(later(host.jobs().clock.now(), PASS_RETRY))
        }
    };
    if let Err(e) = host
        .jobs()
        .work
        .settle(&due.tenant_id, WorkKind::Jobs, due.seq, next)
        .await
    {
        tracing::warn!(tenant = %due.tenant_id, error = %e, "cannot settle the jobs hint");
    }
}

/// A tenant's place in the set of tenants with a pass running, given back
/// when dropped.
struct InPass {
    tenants: Arc<Mutex<HashSet<String>>>,
    tenant_id: String,
}

impl Drop for InPass {
    fn drop(&mut self) {
        self.tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.tenant_id);
    }
}

/// Runs the tenant's due jobs until none is due; answers when the next
/// queued one is.
async fn pass<H: JobsHost>(
    host: &Arc<H>,
    tenant_id: &str,
    global: &Arc<Semaphore>,
) -> Result<Option<OffsetDateTime>, SoukError> {
    let jobs = host.jobs();
    let tenant = match jobs.tenancy.by_id(tenant_id).await {
        Ok(tenant) => tenant,
        // A tenant that is gone has no jobs left to run.
        Err(SoukError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let pool = jobs.tenancy.database(&tenant).await?;
    {
        let mut conn = pool.acquire().await?;
        let requeued = store::requeue_running(&mut conn, jobs.clock.now()).await?;
        if requeued > 0 {
            tracing::info!(tenant = %tenant.slug, jobs = requeued, "queued again the jobs a stopped host left running");
        }
    }
    loop {
        let due = {
            let mut conn = pool.acquire().await?;
            store::due(&mut conn, jobs.clock.now(), jobs.config.per_tenant.max(1)).await?
        };
        if due.is_empty() {
            break;
        }
        let mut running = JoinSet::new();
        for job in due {
            running.spawn(attempt(host.clone(), tenant.clone(), job, global.clone()));
        }
        while running.join_next().await.is_some() {}
    }
    let mut conn = pool.acquire().await?;
    // No attempt of this pass runs now: a job still marked running lost
    // its attempt (a task that failed in the host) and is queued again.
    store::requeue_running(&mut conn, jobs.clock.now()).await?;
    Ok(store::next_due(&mut conn).await?)
}

/// When a job could not take its tenant's write lock, how long until it
/// tries again.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// Whether `error` is SQLite's "database is locked" (`SQLITE_BUSY`): the
/// write lock stayed taken past the busy timeout.
fn is_busy(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .and_then(|db| db.code())
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| code & 0xff == 5)
    })
}

/// The last progress a job's attempt reported, shared between its sink
/// and the runner.
type LastProgress = Arc<Mutex<Option<Progress>>>;

/// Runs one attempt of `job` and records its outcome; failures are logged
/// (the job stays queued or running and the next pass sees it).
async fn attempt<H: JobsHost>(host: Arc<H>, tenant: Tenant, job: DueJob, global: Arc<Semaphore>) {
    let Ok(_place) = global.acquire().await else {
        return;
    };
    let jobs = host.jobs();
    if let Err(e) = try_attempt(&jobs, &tenant, &job).await {
        tracing::warn!(tenant = %tenant.slug, module = %job.module, job = %job.id, error = %e, "cannot record a job's attempt");
    }
    jobs.board.clear(&tenant.id, &job.id);
}

async fn try_attempt(jobs: &Jobs<'_>, tenant: &Tenant, job: &DueJob) -> Result<(), SoukError> {
    let pool = jobs.tenancy.database(tenant).await?;
    let Some(attempt) = ({
        let mut conn = pool.acquire().await?;
        store::claim(&mut conn, &job.id, jobs.clock.now()).await?
    }) else {
        return Ok(());
    };
    jobs.board.changed();
    let last: LastProgress = Arc::default();
    let outcome = match job_deadline(jobs, tenant, &job.module).await {
        Ok(deadline) => {
            let body = job_body(jobs, tenant, job, attempt, last.clone());
            jobs.dispatcher
                .run_background(&tenant.id, &job.module, deadline, body)
                .await
        }
        Err(refusal) => Ok(Err(refusal)),
    };
    let progress = last.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let now = jobs.clock.now();
    let mut conn = pool.acquire().await?;
    let error = match outcome {
        Ok(Ok(())) => {
            tracing::debug!(tenant = %tenant.slug, module = %job.module, job = %job.id, "job succeeded");
            jobs.board.changed();
            return Ok(());
        }
        Ok(Err(message)) => message,
        Err(SoukError::NotFound(_)) => {
            store::cancel_running(&mut conn, &job.id, now, "the module is no longer installed")
                .await?;
            return Ok(());
        }
        Err(SoukError::Module(e @ (CallError::TenantBusy { .. } | CallError::Capacity { .. }))) => {
            // Not the job's fault: try again soon, without counting it.
            let retry = later(now, Duration::from_secs(e.retry_after_secs().unwrap_or(1)));
            store::unclaim(&mut conn, &job.id, retry).await?;
            return Ok(());
        }
        Err(SoukError::Internal(e)) if is_busy(&e) => {
            // Another writer (a job or a request of the tenant) held the
            // tenant database past the busy timeout: not the job's fault.
            store::unclaim(&mut conn, &job.id, later(now, BUSY_RETRY)).await?;
            return Ok(());
        }
        Err(SoukError::Internal(e)) => {
            tracing::error!(tenant = %tenant.slug, module = %job.module, job = %job.id, error = %format!("{e:#}"), "the host failed while running a job");
            "the host failed while running the job; the operator's log has the details".to_owned()
        }
        Err(e) => e.to_string(),
    };
    let error = crate::capabilities::log::printable(&error, MAX_JOB_ERROR_BYTES);
    let attempts = u32::try_from(attempt).unwrap_or(u32::MAX);
    let retry_at = (attempts < jobs.config.max_attempts).then(|| {
        later(
            now,
            backoff(jobs.config.backoff, jobs.config.max_backoff, attempts),
        )
    });
    tracing::info!(tenant = %tenant.slug, module = %job.module, job = %job.id, attempt, error = %error, retry = retry_at.is_some(), "job attempt failed");
    store::fail_attempt(&mut conn, &job.id, now, &error, progress.as_ref(), retry_at).await?;
    jobs.board.changed();
    Ok(())
}

/// The deadline of an attempt of `module`'s job: what the tenant's plan
/// sets (`runtime.job_timeout_secs`, at most the operator's maximum), or
/// the host's default; or, when the tenant's subscription gives no access
/// to the module now (a trial that ended, an expired plan), the refusal,
/// which fails the attempt as the request gate would refuse a request.
/// The engine's grant is loaded first (after a restart a job may be the
/// pair's first call); when that fails the default applies, and the
/// background call reports the failure itself.
async fn job_deadline(jobs: &Jobs<'_>, tenant: &Tenant, module: &str) -> Result<Duration, String> {
    let dispatcher = &jobs.dispatcher;
    if let Ok(installation) = dispatcher.installer.require(tenant, module).await
        && dispatcher
            .usage
            .ensure_grant(tenant, &installation)
            .await
            .is_ok()
        && let Decision::Denied(denial) =
            dispatcher.billing.engine().check_access(&tenant.id, module)
    {
        return Err(format!(
            "the tenant's subscription does not allow this module now: {denial}"
        ));
    }
    let plan = dispatcher.billing.plan_runtime(&tenant.id, module);
    Ok(plan
        .job_timeout_secs
        .map_or(jobs.config.job_timeout, |secs| {
            Duration::from_secs(secs).min(jobs.config.max_job_timeout.max(jobs.config.job_timeout))
        }))
}

/// What runs on the job's instance: its progress routed to the board,
/// `run-job`, and on success the job's outcome written into the call's
/// own transaction.
fn job_body(
    jobs: &Jobs<'_>,
    tenant: &Tenant,
    job: &DueJob,
    attempt: i64,
    last: LastProgress,
) -> BackgroundBody<()> {
    let board_host = jobs.board.clone();
    let clock = jobs.clock.clone();
    let tenant_id = tenant.id.clone();
    let job_id = job.id.clone();
    let to_run = JobToRun {
        id: job.id.clone(),
        name: job.name.clone(),
        args: job.args.clone(),
        attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
    };
    Box::new(move |call| {
        // The body may run more than once (a stale snapshot): each run
        // gets its own copies.
        let (board_host, clock, last) = (board_host.clone(), clock.clone(), last.clone());
        let (tenant_id, job_id, to_run) = (tenant_id.clone(), job_id.clone(), to_run.clone());
        Box::pin(async move {
            let sink_last = last.clone();
            let sink_tenant = tenant_id.clone();
            let sink_job = job_id.clone();
            call.state_mut()
                .jobs
                .report_progress_to(Arc::new(move |progress: Progress| {
                    *sink_last.lock().unwrap_or_else(|e| e.into_inner()) = Some(progress.clone());
                    board_host.update(&sink_tenant, &sink_job, progress);
                }));
            let output = match call.run_job(to_run).await? {
                Ok(output) => output,
                Err(message) => return Ok(Err(message)),
            };
            let JobOutput { result, file_id } = output;
            if let Some(result) = &result
                && result.len() > MAX_JOB_RESULT_BYTES
            {
                return Ok(Err(format!(
                    "the job's result is {} bytes; at most {MAX_JOB_RESULT_BYTES} are kept \
                     (store larger output as a file)",
                    result.len()
                )));
            }
            let file_id = file_id.map(|id| crate::capabilities::log::printable(&id, 200));
            let progress = last.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let now = clock.now();
            let written = match call.state_mut().db.host_connection().await {
                Some(Ok(conn)) => store::succeed(
                    conn,
                    &job_id,
                    now,
                    result.as_deref(),
                    file_id.as_deref(),
                    progress.as_ref(),
                )
                .await
                .map_err(|e| e.to_string()),
                Some(Err(e)) => Err(e.to_string()),
                None => Err("the job's call has no transaction".to_owned()),
            };
            match written {
                Ok(()) => Ok(Ok(())),
                Err(e) => {
                    tracing::error!(job = %job_id, error = %e, "cannot record a job's success");
                    Err(CallError::Trap(
                        "the host could not record the job's outcome".into(),
                    ))
                }
            }
        })
    })
}
