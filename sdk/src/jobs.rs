//! Background jobs (module API 0.3.0): work queued for after the request,
//! run by the host through [`crate::Module::run_job`] in a transaction of
//! its own, with a longer deadline, retried with backoff when it fails.
//!
//! ```
//! use serde::Serialize;
//! use souk_sdk::{Job, JobOutput, HookError, Problem, Request, Response, jobs};
//!
//! #[derive(Serialize)]
//! struct Batch {
//!     first: u32,
//!     count: u32,
//! }
//!
//! // In a route: queue the work; it runs only if this request commits.
//! fn generate(_request: &Request) -> Result<Response, Problem> {
//!     let id = jobs::enqueue("generate_cards", &Batch { first: 1, count: 1000 })?;
//!     Ok(Response::json(202, &serde_json::json!({ "job": id })))
//! }
//!
//! // In `Module::run_job`: do it, saying how far it is.
//! fn run_job(job: Job) -> Result<JobOutput, HookError> {
//!     let batch: serde_json::Value = job.args()?;
//!     let count = batch["count"].as_u64().unwrap_or(0);
//!     for done in 1..=count {
//!         // ... one card ...
//!         if done % 100 == 0 {
//!             jobs::progress(done, count, format!("{done} cards"));
//!         }
//!     }
//!     JobOutput::json(&serde_json::json!({ "cards": count }))
//! }
//! # let _ = (generate, run_job);
//! ```
//!
//! The tenant reads a job's status, progress and result at
//! `GET /v1/tenants/{tenant}/jobs/{id}` and follows it as Server-Sent
//! Events at `.../events` (docs/jobs.md).
//!
//! # Native builds and API 0.2.0
//!
//! Outside a component (and in a component built for API 0.2.0, which has
//! no jobs) [`enqueue`] answers [`JobError::Unavailable`] and [`progress`]
//! does nothing.

use std::fmt::Display;

use serde::Serialize;

use crate::http::{IntoResponse, Problem, Response};

/// Why a job was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The name or the arguments were refused (the message says why): a
    /// name is `[a-z][a-z0-9_.-]*`, at most 64 characters; the arguments
    /// are one JSON document within the host's size limit; one call queues
    /// a bounded number of jobs.
    #[error("job refused: {0}")]
    Invalid(String),
    /// The host could not queue it now; the request may be retried.
    #[error("job not queued: {0}")]
    Unavailable(String),
}

/// The problem `type` of a job the module could not queue.
pub const JOB_NOT_QUEUED_TYPE: &str = "https://souk.dev/problems/job-not-queued";

/// A refused job is the module's own mistake (a bad name, arguments too
/// large, too many in one call): 500; a host that cannot queue it now (the
/// module's backlog is full, or no jobs here): 503, which the client may
/// retry. Either way the call rolls back.
impl From<JobError> for Problem {
    fn from(error: JobError) -> Self {
        let status = match error {
            JobError::Unavailable(_) => 503,
            JobError::Invalid(_) => 500,
        };
        Problem::new(status, JOB_NOT_QUEUED_TYPE, "Job not queued").with_detail(error.to_string())
    }
}

/// See `From<JobError> for Problem`.
impl From<JobError> for Response {
    fn from(error: JobError) -> Self {
        Response::problem(&Problem::from(error))
    }
}

impl IntoResponse for JobError {
    fn into_response(self) -> Response {
        self.into()
    }
}

/// Queues job `name` with `args` (serialised as JSON) in this call's
/// transaction: it is handed to [`crate::Module::run_job`] after the call
/// commits, and never if the call fails. Returns the job's id.
///
/// # Errors
///
/// [`JobError::Invalid`] when the host refuses the name or the arguments
/// (or they do not serialise), [`JobError::Unavailable`] when it cannot
/// queue it now.
pub fn enqueue(name: &str, args: &impl Serialize) -> Result<String, JobError> {
    let args = serde_json::to_string(args)
        .map_err(|e| JobError::Invalid(format!("the arguments do not serialise: {e}")))?;
    crate::runtime::jobs::enqueue(name, &args)
}

/// Inside [`crate::Module::run_job`]: how far the job is (`done` of
/// `total` steps, and what it is doing). The tenant sees the latest while
/// the job runs; it is kept with the attempt's outcome. Ignored outside a
/// job.
pub fn progress(done: u64, total: u64, message: impl Display) {
    crate::runtime::jobs::progress(done, total, &message.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_component_nothing_is_queued() {
        assert!(matches!(
            enqueue("export", &serde_json::json!({})),
            Err(JobError::Unavailable(_))
        ));
    }

    #[test]
    fn errors_are_problems_the_module_or_the_host_owns() {
        let refused = Response::from(JobError::Invalid("bad name".into()));
        assert_eq!(refused.status(), 500);
        let later = Response::from(JobError::Unavailable("backlog full".into()));
        assert_eq!(later.status(), 503);
        let body: serde_json::Value = serde_json::from_slice(later.body()).unwrap();
        assert_eq!(body["type"], JOB_NOT_QUEUED_TYPE);
        assert_eq!(body["detail"], "job not queued: backlog full");
        let hook = crate::HookError::from(JobError::Invalid("bad name".into()));
        assert_eq!(hook.message(), "job refused: bad name");
    }
}
