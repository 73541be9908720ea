//! Background jobs as data: the rules a queued job obeys and the queue
//! kept in each tenant's own database (`store`), beside the module data a
//! job works on.
//!
//! A job is queued by a module call (`jobs.enqueue`, through the call's
//! transaction, so a call that rolls back queues nothing) or by a schedule,
//! and run later by the jobs service (`crate::jobs`) through the module's
//! `run-job` export. This module has no I/O but the queue's SQL and knows
//! nothing of the runtime.

pub mod store;

use serde::Serialize;

pub use souk_module_registry::check_job_name;

/// Longest job name (as for schedule names).
pub const MAX_JOB_NAME_LEN: usize = souk_module_registry::schedule::MAX_SCHEDULE_NAME_LEN;

/// Longest progress message kept, in bytes; a longer one is cut.
pub const MAX_PROGRESS_MESSAGE_BYTES: usize = 512;

/// Longest error kept for a failed attempt, in bytes.
pub const MAX_JOB_ERROR_BYTES: usize = 4096;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting to run (first run, or a retry after its backoff).
    Queued,
    /// An attempt is running (or was, when the host stopped: it is queued
    /// again at the next start).
    Running,
    /// `run-job` answered `Ok`; its transaction committed.
    Succeeded,
    /// Every attempt failed; the last error is kept.
    Failed,
    /// Cancelled by the tenant before it ran, or its module was uninstalled.
    Cancelled,
}

impl JobStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a stored status.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }

    /// Whether the job will never run again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// How far a running job is, as it last said (`jobs.progress`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Steps done.
    pub done: u64,
    /// Steps in all (as the module counts them).
    pub total: u64,
    /// What it is doing, printable, at most [`MAX_PROGRESS_MESSAGE_BYTES`].
    pub message: String,
}

/// The bounds `jobs.enqueue` checks.
#[derive(Debug, Clone, Copy)]
pub struct EnqueueLimits {
    /// Largest JSON arguments, in bytes. Default 64 KiB.
    pub max_args_bytes: usize,
    /// Most jobs one call may queue. Default 100.
    pub max_per_call: u32,
    /// Most jobs of one module a tenant may have waiting (queued or
    /// running); past it `enqueue` is refused until some have run, so a
    /// job that queues copies of itself cannot grow the queue without
    /// bound. Default 10,000.
    pub max_backlog: u32,
}

impl Default for EnqueueLimits {
    fn default() -> Self {
        EnqueueLimits {
            max_args_bytes: 64 * 1024,
            max_per_call: 100,
            max_backlog: 10_000,
        }
    }
}

/// Why `jobs.enqueue` refused a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueRefusal {
    /// The name breaks the rule.
    #[error("job name {name:?} {reason}")]
    Name {
        /// The name, cut to a printable length.
        name: String,
        /// The rule broken.
        reason: String,
    },
    /// The arguments are too long.
    #[error("job arguments are {size} bytes; at most {limit} are allowed")]
    ArgsTooLarge {
        /// Their size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The arguments are not one JSON document.
    #[error("job arguments are not valid JSON: {0}")]
    ArgsNotJson(String),
    /// The call queued as many jobs as it may.
    #[error("this call already queued {0} jobs, the most one call may queue")]
    TooMany(u32),
    /// The module has as many jobs waiting as it may.
    #[error(
        "{0} jobs of this module are already waiting to run, the most allowed; try again when some have run"
    )]
    Backlog(u32),
}

/// Checks a job before it is queued.
///
/// # Errors
/// The first rule the job breaks.
pub fn check_job(
    name: &str,
    args: &str,
    queued_by_call: u32,
    limits: EnqueueLimits,
) -> Result<(), EnqueueRefusal> {
    if queued_by_call >= limits.max_per_call {
        return Err(EnqueueRefusal::TooMany(limits.max_per_call));
    }
    check_job_name(name).map_err(|reason| EnqueueRefusal::Name {
        name: name.chars().take(MAX_JOB_NAME_LEN + 1).collect(),
        reason,
    })?;
    if args.len() > limits.max_args_bytes {
        return Err(EnqueueRefusal::ArgsTooLarge {
            size: args.len(),
            limit: limits.max_args_bytes,
        });
    }
    serde_json::from_str::<serde::de::IgnoredAny>(args)
        .map_err(|e| EnqueueRefusal::ArgsNotJson(e.to_string()))?;
    Ok(())
}

/// A new job id: `job_` and 128 random bits in hex, unguessable so an id
/// says nothing about other jobs or tenants.
pub fn new_job_id() -> String {
    format!("job_{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// The delay before retry `attempt + 1` after attempt `attempt` (from 1)
/// failed: `base` doubled per attempt, at most `cap`.
pub fn backoff(
    base: std::time::Duration,
    cap: std::time::Duration,
    attempt: u32,
) -> std::time::Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(cap).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn enqueue_checks_name_size_json_and_count() {
        let limits = EnqueueLimits {
            max_args_bytes: 16,
            max_per_call: 2,
            max_backlog: 10,
        };
        assert_eq!(check_job("report", "{}", 0, limits), Ok(()));
        assert!(matches!(
            check_job("Report", "{}", 0, limits),
            Err(EnqueueRefusal::Name { .. })
        ));
        assert!(matches!(
            check_job(&"a".repeat(65), "{}", 0, limits),
            Err(EnqueueRefusal::Name { .. })
        ));
        assert!(matches!(
            check_job("a", "[1,2,3,4,5,6,7,8,9]", 0, limits),
            Err(EnqueueRefusal::ArgsTooLarge {
                size: 19,
                limit: 16
            })
        ));
        for bad in ["", "{", "{} {}", "nul", "'x'"] {
            assert!(
                matches!(
                    check_job("a", bad, 0, limits),
                    Err(EnqueueRefusal::ArgsNotJson(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            check_job("a", "{}", 2, limits),
            Err(EnqueueRefusal::TooMany(2))
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let base = Duration::from_secs(2);
        let cap = Duration::from_secs(60);
        assert_eq!(backoff(base, cap, 1), Duration::from_secs(2));
        assert_eq!(backoff(base, cap, 2), Duration::from_secs(4));
        assert_eq!(backoff(base, cap, 5), Duration::from_secs(32));
        assert_eq!(backoff(base, cap, 6), cap);
        assert_eq!(backoff(base, cap, 100), cap);
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Succeeded,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ] {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(JobStatus::parse("done"), None);
    }
}
