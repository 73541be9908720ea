//! The jobs endpoints (docs/jobs.md): a tenant's background jobs, one job,
//! its progress as Server-Sent Events, and cancelling a queued one.
//!
//! | method | path | who |
//! | --- | --- | --- |
//! | GET | `/v1/tenants/{tenant}/jobs` (`?module=&status=&limit=&cursor=`) | operator, the tenant |
//! | GET | `/v1/tenants/{tenant}/jobs/{id}` | operator, the tenant |
//! | GET | `/v1/tenants/{tenant}/jobs/{id}/events` (`text/event-stream`) | operator, the tenant |
//! | POST | `/v1/tenants/{tenant}/jobs/{id}/cancel` | operator, the tenant |
//!
//! Another tenant's job is answered like a job that does not exist.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use super::{ApiResult, Problem, TenantAccess};
use crate::job_queue::store::JobRecord;
use crate::job_queue::{JobStatus, Progress};
use crate::souk::Souk;
use crate::tenancy::Tenant;

/// How often a stream looks at its job when nothing signalled a change
/// (another process's writes, a status change the board did not see).
const STREAM_POLL: Duration = Duration::from_millis(500);

/// The least time between two looks at the job: a job reporting progress
/// in a tight loop wakes its streams constantly, and each look reads the
/// tenant database; progress faster than this is coalesced.
const STREAM_MIN_GAP: Duration = Duration::from_millis(100);

/// Between two keep-alive comments on a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(super) fn routes() -> Router<Arc<Souk>> {
    Router::new()
        .route("/v1/tenants/{tenant}/jobs", get(list_jobs))
        .route("/v1/tenants/{tenant}/jobs/{id}", get(show_job))
        .route("/v1/tenants/{tenant}/jobs/{id}/events", get(job_events))
        .route("/v1/tenants/{tenant}/jobs/{id}/cancel", post(cancel_job))
}

/// Query of `GET /v1/tenants/{tenant}/jobs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    module: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

async fn list_jobs(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(JobStatus::parse(text).ok_or_else(|| {
            Problem::bad_request(
                "status must be one of queued, running, succeeded, failed, cancelled",
            )
        })?),
    };
    let page = souk
        .jobs()
        .list(
            &access.tenant,
            query.module.as_deref(),
            status,
            query.limit.unwrap_or(50),
            query.cursor.as_deref(),
        )
        .await?;
    Ok(Json(page).into_response())
}

async fn show_job(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    Ok(Json(souk.jobs().get(&access.tenant, &id).await?).into_response())
}

async fn cancel_job(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    Ok(Json(souk.jobs().cancel(&access.tenant, &id).await?).into_response())
}

/// `GET .../jobs/{id}/events`: the job's state now (`status`), then each
/// change as it happens — `progress` while it runs, `status` when it is
/// queued again for a retry or starts an attempt — and finally one of
/// `done`, `failed` or `cancelled` with the whole job, after which the
/// stream ends. Quiet stretches carry keep-alive comments.
async fn job_events(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    // A job the tenant does not have is a 404 before any stream starts.
    souk.jobs().get(&access.tenant, &id).await?;
    let follow = Follow {
        changes: souk.jobs().board.subscribe(),
        souk,
        tenant: access.tenant,
        id,
        last: None,
        finished: false,
        looked: None,
    };
    let stream = futures_util::stream::unfold(follow, |mut follow| async move {
        let event = follow.next_event().await?;
        Some((Ok::<_, Infallible>(event), follow))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// What one stream remembers of the job it follows.
struct Follow {
    souk: Arc<Souk>,
    tenant: Tenant,
    id: String,
    changes: watch::Receiver<u64>,
    /// What the last event told: status, attempts, progress.
    last: Option<(JobStatus, i64, Option<Progress>)>,
    finished: bool,
    /// When the job was last read.
    looked: Option<tokio::time::Instant>,
}

impl Follow {
    /// The next event, waiting for a change; `None` once the final one was
    /// sent.
    async fn next_event(&mut self) -> Option<Event> {
        if self.finished {
            return None;
        }
        loop {
            if self.souk.jobs().board.is_closed() {
                return None;
            }
            if let Some(last) = self.looked {
                tokio::time::sleep_until(last + STREAM_MIN_GAP).await;
            }
            self.looked = Some(tokio::time::Instant::now());
            let job = match self.souk.jobs().get(&self.tenant, &self.id).await {
                Ok(job) => job,
                Err(e) => {
                    self.finished = true;
                    return Some(
                        Event::default()
                            .event("error")
                            .data(json!({ "detail": e.to_string() }).to_string()),
                    );
                }
            };
            let seen = (job.status, job.attempts, job.progress.clone());
            if job.status.is_final() {
                self.finished = true;
                let name = match job.status {
                    JobStatus::Succeeded => "done",
                    JobStatus::Cancelled => "cancelled",
                    _ => "failed",
                };
                return Some(json_event(name, &job));
            }
            if self.last.as_ref() != Some(&seen) {
                let status_changed = self
                    .last
                    .as_ref()
                    .is_none_or(|(status, attempts, _)| (*status, *attempts) != (seen.0, seen.1));
                self.last = Some(seen);
                return Some(if status_changed {
                    status_event(&job)
                } else {
                    progress_event(&job)
                });
            }
            // Whichever comes first: a change on the board, or the poll.
            let _ = tokio::time::timeout(STREAM_POLL, self.changes.changed()).await;
        }
    }
}

fn json_event(name: &str, value: &impl serde::Serialize) -> Event {
    let data = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    Event::default().event(name).data(data)
}

fn status_event(job: &JobRecord) -> Event {
    json_event(
        "status",
        &json!({
            "status": job.status,
            "attempts": job.attempts,
            "progress": job.progress,
            "error": job.error,
            "next_run_at": job.next_run_at,
        }),
    )
}

fn progress_event(job: &JobRecord) -> Event {
    let progress = job.progress.clone().unwrap_or_default();
    json_event(
        "progress",
        &json!({
            "done": progress.done,
            "total": progress.total,
            "message": progress.message,
            "attempt": job.attempts,
        }),
    )
}
