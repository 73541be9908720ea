//! The `jobs` capability (API 0.3.0): a module queues work to run after
//! the call (`jobs.enqueue`) and, inside `run-job`, says how far a job is
//! (`jobs.progress`).
//!
//! Per-call state: a [`JobsState`] — when the call may queue jobs (the
//! host clock's time at its start, set by whoever builds a request's or a
//! background call's state; a call without it, a lifecycle hook or a
//! detached call, is answered `unavailable`), how many it queued, and, in
//! a job's own call, where its progress goes. The interface reaches it,
//! the call's database handle (a job is written into the call's own
//! transaction, so a call that rolls back queues nothing) and the call's
//! work marks (so whoever commits wakes the jobs worker) through a
//! [`JobsView`].
//!
//! Progress is host state, not module data: it goes to the [`ProgressSink`]
//! the jobs service gave the call, in memory for live readers, and the
//! service writes the last one with the attempt's outcome — so it is kept
//! even when the job's transaction rolls back.

use std::sync::Arc;

use time::OffsetDateTime;
use wasmtime::component::{HasData, Linker};

use crate::capabilities::context::CallContext;
use crate::capabilities::db::ModuleDb;
use crate::capabilities::log::printable;
use crate::job_queue::store::{self, NewJob};
use crate::job_queue::{EnqueueLimits, EnqueueRefusal, MAX_PROGRESS_MESSAGE_BYTES, Progress};
use crate::work::{WorkKind, WorkMarks};

/// Where a running job's progress goes (the jobs service's live board).
pub type ProgressSink = Arc<dyn Fn(Progress) + Send + Sync>;

/// The `jobs` capability's state in one call.
#[derive(Default)]
pub struct JobsState {
    /// The bounds of `enqueue`.
    limits: EnqueueLimits,
    /// The host clock's time at the call's start: when a queued job is
    /// due. `None`: this call cannot queue jobs.
    now: Option<OffsetDateTime>,
    /// Jobs this call queued.
    queued: u32,
    /// Jobs of the module waiting when this call first queued one.
    backlog: Option<u64>,
    /// In a job's own call: where its progress goes.
    progress: Option<ProgressSink>,
}

impl JobsState {
    /// The state of a call that may queue jobs: a request or a background
    /// call starting at `now` (host clock).
    pub fn new(limits: EnqueueLimits, now: OffsetDateTime) -> Self {
        JobsState {
            limits,
            now: Some(now),
            queued: 0,
            backlog: None,
            progress: None,
        }
    }

    /// Makes this call a job's: its `jobs.progress` goes to `sink`.
    pub fn report_progress_to(&mut self, sink: ProgressSink) {
        self.progress = Some(sink);
    }
}

/// What the `jobs` interface reaches of a call's state.
pub struct JobsView<'a> {
    /// The capability's own state.
    pub jobs: &'a mut JobsState,
    /// The call's database handle: a queued job is written in its
    /// transaction.
    pub db: &'a mut ModuleDb,
    /// The call's context: the module a job is queued for.
    pub context: &'a CallContext,
    /// The kinds of deferred work the call queued.
    pub work: &'a mut WorkMarks,
}

/// Why `enqueue` did not queue a job.
#[derive(Debug, thiserror::Error)]
enum EnqueueError {
    /// The job was refused (its name, arguments, or one too many).
    #[error(transparent)]
    Invalid(#[from] EnqueueRefusal),
    /// The host could not queue it now.
    #[error("{0}")]
    Unavailable(String),
}

impl JobsView<'_> {
    /// Checks and queues one job; answers its id.
    async fn enqueue(&mut self, name: &str, args: &str) -> Result<String, EnqueueError> {
        let Some(now) = self.jobs.now else {
            return Err(EnqueueError::Unavailable(
                "jobs can be queued from requests, jobs and event handlers, not from this call"
                    .into(),
            ));
        };
        crate::job_queue::check_job(name, args, self.jobs.queued, self.jobs.limits)?;
        let id = crate::job_queue::new_job_id();
        let conn = match self.db.host_connection().await {
            Some(Ok(conn)) => conn,
            Some(Err(e)) => {
                tracing::warn!(tenant = %self.context.tenant_id, module = %self.context.module_slug, error = %e, "cannot queue a job");
                return Err(EnqueueError::Unavailable(
                    "the tenant database is not available now".into(),
                ));
            }
            None => {
                return Err(EnqueueError::Unavailable(
                    "this call has no database transaction to queue the job in".into(),
                ));
            }
        };
        let backlog = match self.jobs.backlog {
            Some(n) => n,
            None => match store::backlog(conn, &self.context.module_slug).await {
                Ok(n) => *self.jobs.backlog.insert(n),
                Err(e) => {
                    tracing::warn!(tenant = %self.context.tenant_id, module = %self.context.module_slug, error = %e, "cannot count the waiting jobs");
                    return Err(EnqueueError::Unavailable(
                        "the job could not be written; the call may be retried".into(),
                    ));
                }
            },
        };
        let limit = self.jobs.limits.max_backlog;
        if backlog + u64::from(self.jobs.queued) >= u64::from(limit) {
            return Err(EnqueueRefusal::Backlog(limit).into());
        }
        let job = NewJob {
            id: &id,
            module: &self.context.module_slug,
            name,
            args,
            schedule: None,
            now,
        };
        if let Err(e) = store::insert(conn, &job).await {
            tracing::warn!(tenant = %self.context.tenant_id, module = %self.context.module_slug, error = %e, "cannot queue a job");
            return Err(EnqueueError::Unavailable(
                "the job could not be written; the call may be retried".into(),
            ));
        }
        self.jobs.queued += 1;
        self.work.mark(WorkKind::Jobs);
        Ok(id)
    }

    /// Hands progress to the job's sink; ignored outside a job.
    fn progress(&mut self, done: u64, total: u64, message: &str) {
        if let Some(sink) = &self.jobs.progress {
            sink(Progress {
                done,
                total,
                message: printable(message, MAX_PROGRESS_MESSAGE_BYTES),
            });
        }
    }
}

/// The [`HasData`] of the `jobs` interface: its host functions get a
/// [`JobsView`].
struct JobsData;

impl HasData for JobsData {
    type Data<'a> = JobsView<'a>;
}

mod v0_3_0 {
    use super::{EnqueueError, JobsView};
    use crate::wit::v0_3_0::souk::module::jobs as wit;

    impl wit::Host for JobsView<'_> {
        async fn enqueue(
            &mut self,
            name: String,
            args: String,
        ) -> wasmtime::Result<Result<String, wit::JobError>> {
            Ok(match JobsView::enqueue(self, &name, &args).await {
                Ok(id) => Ok(id),
                Err(EnqueueError::Invalid(refusal)) => {
                    Err(wit::JobError::Invalid(refusal.to_string()))
                }
                Err(EnqueueError::Unavailable(message)) => Err(wit::JobError::Unavailable(message)),
            })
        }

        async fn progress(
            &mut self,
            done: u64,
            total: u64,
            message: String,
        ) -> wasmtime::Result<()> {
            JobsView::progress(self, done, total, &message);
            Ok(())
        }
    }
}

/// Links the `jobs` interface (API 0.3.0); `view` picks the capability's
/// state, the database handle, the context and the work marks out of the
/// store data.
///
/// # Errors
/// When the linker already defines the interface.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> JobsView<'_>,
) -> wasmtime::Result<()> {
    crate::wit::v0_3_0::souk::module::jobs::add_to_linker::<T, JobsData>(linker, view)
}
