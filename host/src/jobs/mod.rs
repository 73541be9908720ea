//! Background jobs: the service that runs the queue kept in each tenant's
//! database ([`crate::job_queue`]) and answers the tenant's questions about
//! it.
//!
//! - [`runner`]: the worker task. It asks the work hints which tenants have
//!   jobs due and runs them through the module's `run-job` export, each in
//!   its own transaction ([`Dispatcher::run_background`]), at most
//!   [`JobsConfig::per_tenant`] at once per tenant and [`JobsConfig::global`]
//!   in all, bounded by the job deadline; failed attempts are retried with
//!   exponential backoff up to [`JobsConfig::max_attempts`].
//! - [`schedules`]: the task that queues a manifest's scheduled jobs for
//!   every tenant with the module installed, once per slot.
//! - [`Jobs`]: what the API asks (list, show, cancel, follow a job's
//!   progress), borrowing the parts it needs.
//! - [`JobBoard`]: the live progress of running jobs, in memory.
//!
//! Both tasks reach the host through [`JobsHost`], which the composition
//! root implements, so this module never names it.

pub mod runner;
pub mod schedules;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

use crate::capabilities::files::rows;
use crate::capabilities::files::signed::Grant;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::control_plane::ControlPlane;
use crate::dispatch::Dispatcher;
use crate::error::SoukError;
use crate::job_queue::store::{self, JobFilter, JobRecord};
use crate::job_queue::{EnqueueLimits, JobStatus, Progress};
use crate::tenancy::{Tenancy, Tenant};
use crate::work::WorkHints;

/// How jobs run: the `souk serve` knobs (docs/jobs.md).
#[derive(Debug, Clone, Copy)]
pub struct JobsConfig {
    /// What `jobs.enqueue` accepts.
    pub enqueue: EnqueueLimits,
    /// The deadline of one attempt (instantiation and `run-job`). Default
    /// 30 s. A plan may set its own (`runtime.job_timeout_secs`), up to
    /// [`JobsConfig::max_job_timeout`].
    pub job_timeout: Duration,
    /// The longest job deadline a plan may set. Default 10 minutes.
    pub max_job_timeout: Duration,
    /// Jobs of one tenant running at once. Default 2.
    pub per_tenant: u32,
    /// Jobs running at once in the host. Default 8.
    pub global: u32,
    /// Attempts before a job is `failed`. Default 5.
    pub max_attempts: u32,
    /// The delay before the first retry, doubled for each further one.
    /// Default 10 s.
    pub backoff: Duration,
    /// The longest delay between two attempts. Default 1 hour.
    pub max_backoff: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            enqueue: EnqueueLimits::default(),
            job_timeout: Duration::from_secs(30),
            max_job_timeout: Duration::from_secs(600),
            per_tenant: 2,
            global: 8,
            max_attempts: 5,
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(3_600),
        }
    }
}

/// What the jobs tasks reach of the host; implemented by the composition
/// root, held by the tasks for as long as they run.
pub trait JobsHost: Send + Sync + 'static {
    /// The jobs service, borrowing the host's parts.
    fn jobs(&self) -> Jobs<'_>;
}

/// The jobs service: borrows the parts jobs go through (built by the
/// composition root, `Souk::jobs`).
pub struct Jobs<'a> {
    /// Finds tenants and opens their databases.
    pub tenancy: &'a Tenancy,
    /// Lists installations (schedules).
    pub control: &'a ControlPlane,
    /// Reads manifests (schedules).
    pub catalog: &'a Catalog,
    /// Runs `run-job` in a background call.
    pub dispatcher: Dispatcher<'a>,
    /// Which tenants have jobs due.
    pub work: &'a WorkHints,
    /// Live progress.
    pub board: &'a Arc<JobBoard>,
    /// The host's clock.
    pub clock: &'a Arc<dyn Clock>,
    /// The knobs.
    pub config: &'a JobsConfig,
}

/// What [`Jobs::list`] answers: a page of jobs, newest first.
#[derive(Debug, serde::Serialize)]
pub struct JobPage {
    /// The jobs.
    pub jobs: Vec<JobRecord>,
    /// Pass as `cursor` for the next page; none on the last.
    pub next_cursor: Option<String>,
}

/// Most jobs on one page.
pub const MAX_PAGE: u32 = 100;

/// How long a job's `result_url` downloads its result file: one hour from
/// when the job was read.
pub const RESULT_URL_TTL_SECS: i64 = 3_600;

impl Jobs<'_> {
    /// A page of `tenant`'s jobs matching `module` and `status`, at most
    /// `limit` (1 to [`MAX_PAGE`]), after `cursor`.
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for a limit out of range or a cursor this host
    /// did not hand out; database failures.
    pub async fn list(
        &self,
        tenant: &Tenant,
        module: Option<&str>,
        status: Option<JobStatus>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<JobPage, SoukError> {
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(SoukError::Invalid(format!("limit must be 1 to {MAX_PAGE}")));
        }
        let before = match cursor {
            None => None,
            Some(text) => Some(text.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                SoukError::Invalid("cursor is not one this host handed out".into())
            })?),
        };
        let pool = self.tenancy.database(tenant).await?;
        let mut conn = pool.acquire().await?;
        let filter = JobFilter {
            module,
            status,
            before,
        };
        let (mut jobs, next) = store::list(&mut conn, &filter, limit).await?;
        for job in &mut jobs {
            self.overlay_live(&tenant.id, job);
            self.sign_result(&mut conn, &tenant.id, job).await?;
        }
        Ok(JobPage {
            jobs,
            next_cursor: next.map(|n| n.to_string()),
        })
    }

    /// The job `id` of `tenant`.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when the tenant has no such job; database
    /// failures.
    pub async fn get(&self, tenant: &Tenant, id: &str) -> Result<JobRecord, SoukError> {
        let pool = self.tenancy.database(tenant).await?;
        let mut conn = pool.acquire().await?;
        let mut job = store::get(&mut conn, id)
            .await?
            .ok_or_else(|| job_not_found(id))?;
        self.overlay_live(&tenant.id, &mut job);
        self.sign_result(&mut conn, &tenant.id, &mut job).await?;
        Ok(job)
    }

    /// Cancels a queued job of `tenant`.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when the tenant has no such job,
    /// [`SoukError::Conflict`] when it is not queued (running or finished);
    /// database failures.
    pub async fn cancel(&self, tenant: &Tenant, id: &str) -> Result<JobRecord, SoukError> {
        let pool = self.tenancy.database(tenant).await?;
        let mut conn = pool.acquire().await?;
        let now = self.clock.now();
        if !store::cancel(&mut conn, id, now, "cancelled by the tenant").await? {
            let job = store::get(&mut conn, id)
                .await?
                .ok_or_else(|| job_not_found(id))?;
            return Err(SoukError::Conflict(format!(
                "job {id} is {}; only a queued job can be cancelled",
                job.status.as_str()
            )));
        }
        self.board.changed();
        store::get(&mut conn, id)
            .await?
            .ok_or_else(|| job_not_found(id))
    }

    /// A succeeded job's result file, when its module has it, gets a
    /// signed download URL valid for [`RESULT_URL_TTL_SECS`]: the file id
    /// is the module's word, so it is looked up among the module's own
    /// files first (an id of another module or of no file gets no URL).
    async fn sign_result(
        &self,
        conn: &mut sqlx::SqliteConnection,
        tenant_id: &str,
        job: &mut JobRecord,
    ) -> Result<(), SoukError> {
        let Some(file_id) = job.result_file_id.as_deref() else {
            return Ok(());
        };
        if job.status != JobStatus::Succeeded
            || rows::get(conn, &job.module, file_id).await?.is_none()
        {
            return Ok(());
        }
        let token = self.dispatcher.files.signer.sign(&Grant {
            tenant_id: tenant_id.to_owned(),
            module: job.module.clone(),
            file_id: file_id.to_owned(),
            expires: self.clock.now().unix_timestamp() + RESULT_URL_TTL_SECS,
        });
        job.result_url = Some(format!("/f/{token}"));
        Ok(())
    }

    /// A running job's progress is the live one, newer than the stored.
    fn overlay_live(&self, tenant_id: &str, job: &mut JobRecord) {
        if job.status == JobStatus::Running
            && let Some(live) = self.board.progress(tenant_id, &job.id)
        {
            job.progress = Some(live);
        }
    }
}

/// The answer for a job the tenant does not have (another tenant's
/// included: the same words).
fn job_not_found(id: &str) -> SoukError {
    SoukError::NotFound(format!(
        "no job {} in this tenant",
        crate::capabilities::log::printable(id, 80)
    ))
}

/// The live progress of running jobs, by tenant and job, and a signal that
/// something changed (a job's progress or status) for the streams that
/// follow jobs.
pub struct JobBoard {
    live: Mutex<HashMap<(String, String), Progress>>,
    changes: watch::Sender<u64>,
    /// Set when the host shuts down: streams following jobs end.
    closed: std::sync::atomic::AtomicBool,
}

impl Default for JobBoard {
    fn default() -> Self {
        JobBoard {
            live: Mutex::new(HashMap::new()),
            changes: watch::Sender::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl JobBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Progress>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a running job's progress.
    pub fn update(&self, tenant_id: &str, job_id: &str, progress: Progress) {
        self.lock()
            .insert((tenant_id.to_owned(), job_id.to_owned()), progress);
        self.changed();
    }

    /// A running job's last progress.
    pub fn progress(&self, tenant_id: &str, job_id: &str) -> Option<Progress> {
        self.lock()
            .get(&(tenant_id.to_owned(), job_id.to_owned()))
            .cloned()
    }

    /// Forgets a job's live progress (its attempt ended and the stored row
    /// has it now).
    pub fn clear(&self, tenant_id: &str, job_id: &str) {
        self.lock()
            .remove(&(tenant_id.to_owned(), job_id.to_owned()));
        self.changed();
    }

    /// Tells the streams that some job changed.
    pub fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The host is shutting down: every stream following a job ends (a
    /// reader reconnects to the next host), so none holds the shutdown up.
    pub fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.changed();
    }

    /// Whether [`JobBoard::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A receiver that sees [`JobBoard::changed`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// The instant `after` from `now`, on the host clock.
pub(crate) fn later(now: OffsetDateTime, after: Duration) -> OffsetDateTime {
    time::Duration::try_from(after)
        .ok()
        .and_then(|d| now.checked_add(d))
        .unwrap_or(now)
}
