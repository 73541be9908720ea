//! The background jobs knobs (docs/jobs.md): global options, so the
//! commands that open the host (`serve` first) share them.

use std::time::Duration;

use clap::Args;

use crate::job_queue::EnqueueLimits;
use crate::jobs::JobsConfig;

/// How background jobs run.
#[derive(Debug, Args)]
pub(super) struct JobOptions {
    /// Deadline of one job attempt, in seconds (a plan may set its own,
    /// up to --max-job-timeout-secs).
    #[arg(
        long,
        global = true,
        env = "SOUK_JOB_TIMEOUT_SECS",
        default_value_t = 30
    )]
    job_timeout_secs: u64,
    /// The longest job deadline a plan may set, in seconds.
    #[arg(
        long,
        global = true,
        env = "SOUK_MAX_JOB_TIMEOUT_SECS",
        default_value_t = 600
    )]
    max_job_timeout_secs: u64,
    /// Jobs of one tenant that run at once.
    #[arg(long, global = true, env = "SOUK_JOBS_PER_TENANT", default_value_t = 2)]
    jobs_per_tenant: u32,
    /// Jobs that run at once in the whole host.
    #[arg(long, global = true, env = "SOUK_JOBS_GLOBAL", default_value_t = 8)]
    jobs_global: u32,
    /// Attempts before a job is marked failed.
    #[arg(
        long,
        global = true,
        env = "SOUK_JOB_MAX_ATTEMPTS",
        default_value_t = 5
    )]
    job_max_attempts: u32,
    /// Delay before a failed job's first retry, in milliseconds; doubled
    /// for each further retry.
    #[arg(
        long,
        global = true,
        env = "SOUK_JOB_BACKOFF_MS",
        default_value_t = 10_000
    )]
    job_backoff_ms: u64,
    /// The longest delay between two attempts of a job, in seconds.
    #[arg(
        long,
        global = true,
        env = "SOUK_JOB_MAX_BACKOFF_SECS",
        default_value_t = 3_600
    )]
    job_max_backoff_secs: u64,
    /// Largest JSON arguments of one job, in bytes.
    #[arg(
        long,
        global = true,
        env = "SOUK_JOB_MAX_ARGS_BYTES",
        default_value_t = 65_536
    )]
    job_max_args_bytes: usize,
    /// Most jobs one module call may queue.
    #[arg(long, global = true, env = "SOUK_JOBS_PER_CALL", default_value_t = 100)]
    jobs_per_call: u32,
    /// Most jobs of one module a tenant may have waiting (queued or
    /// running); `jobs.enqueue` is refused past it.
    #[arg(
        long,
        global = true,
        env = "SOUK_JOBS_MAX_BACKLOG",
        default_value_t = 10_000
    )]
    jobs_max_backlog: u32,
    /// How long a job or an `on-event` delivery may go on once it has
    /// written, in milliseconds: it holds its tenant's write lock from its
    /// first write, and is stopped and rolled back (a failed attempt) when
    /// it holds it longer.
    #[arg(
        long,
        global = true,
        env = "SOUK_BACKGROUND_WRITE_BUDGET_MS",
        default_value_t = 2_000
    )]
    background_write_budget_ms: u64,
}

impl JobOptions {
    /// The write-phase budget of background calls (at least 1 ms).
    pub(super) fn background_write_budget(&self) -> Duration {
        Duration::from_millis(self.background_write_budget_ms.max(1))
    }

    /// The configuration these options give (each at least 1).
    pub(super) fn config(&self) -> JobsConfig {
        let job_timeout = Duration::from_secs(self.job_timeout_secs.max(1));
        JobsConfig {
            enqueue: EnqueueLimits {
                max_args_bytes: self.job_max_args_bytes.max(2),
                max_per_call: self.jobs_per_call.max(1),
                max_backlog: self.jobs_max_backlog.max(1),
            },
            job_timeout,
            max_job_timeout: Duration::from_secs(self.max_job_timeout_secs).max(job_timeout),
            per_tenant: self.jobs_per_tenant.max(1),
            global: self.jobs_global.max(1),
            max_attempts: self.job_max_attempts.max(1),
            backoff: Duration::from_millis(self.job_backoff_ms.max(1)),
            max_backoff: Duration::from_secs(self.job_max_backoff_secs.max(1)),
        }
    }
}
