//! The job queue in a tenant's database: `_souk_jobs` (one row per job,
//! with its attempts, last progress, result or error) and
//! `_souk_job_schedules` (the last slot each schedule fired for).
//!
//! Times are Unix milliseconds from the host clock. The tables' names start
//! with `_souk_`, so no module statement can reach them. This is a store:
//! it answers `sqlx` errors; the jobs service and the `jobs` capability
//! turn them into theirs.

use serde::Serialize;
use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::{JobStatus, Progress};

/// Creates the queue's tables (the host's tenant migration "jobs queue").
///
/// # Errors
/// Database errors.
pub async fn create_tables(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    for sql in [
        "CREATE TABLE IF NOT EXISTS _souk_jobs (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            module TEXT NOT NULL,
            name TEXT NOT NULL,
            args TEXT NOT NULL,
            schedule TEXT,
            status TEXT NOT NULL CHECK (status IN
                ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
            attempts INTEGER NOT NULL DEFAULT 0,
            run_at INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            started_at INTEGER,
            finished_at INTEGER,
            progress_done INTEGER,
            progress_total INTEGER,
            progress_message TEXT,
            result TEXT,
            result_file TEXT,
            error TEXT)",
        "CREATE INDEX IF NOT EXISTS _souk_jobs_due ON _souk_jobs (status, run_at)",
        "CREATE INDEX IF NOT EXISTS _souk_jobs_module ON _souk_jobs (module, seq)",
        "CREATE TABLE IF NOT EXISTS _souk_job_schedules (
            module TEXT NOT NULL,
            schedule TEXT NOT NULL,
            last_slot INTEGER NOT NULL,
            PRIMARY KEY (module, schedule))",
    ] {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Unix milliseconds of `at`.
pub fn millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The instant of Unix milliseconds `ms`.
pub fn instant(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A job to queue.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    /// Its id ([`super::new_job_id`]).
    pub id: &'a str,
    /// The module whose `run-job` runs it.
    pub module: &'a str,
    /// The job name.
    pub name: &'a str,
    /// JSON arguments (checked by [`super::check_job`]).
    pub args: &'a str,
    /// The schedule that queued it, if one did.
    pub schedule: Option<&'a str>,
    /// When it was queued; it is due at once.
    pub now: OffsetDateTime,
}

/// Queues `job`.
///
/// # Errors
/// Database errors.
pub async fn insert(conn: &mut SqliteConnection, job: &NewJob<'_>) -> Result<(), sqlx::Error> {
    let now = millis(job.now);
    sqlx::query(
        "INSERT INTO _souk_jobs (id, module, name, args, schedule, status, run_at, created_at) \
         VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)",
    )
    .bind(job.id)
    .bind(job.module)
    .bind(job.name)
    .bind(job.args)
    .bind(job.schedule)
    .bind(now)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// A queued job the runner may start.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueJob {
    /// Its id.
    pub id: String,
    /// Its module.
    pub module: String,
    /// Its name.
    pub name: String,
    /// Its arguments.
    pub args: String,
    /// Attempts made so far.
    pub attempts: i64,
}

/// Queued jobs due at `now`, oldest due first, at most `limit`.
///
/// # Errors
/// Database errors.
pub async fn due(
    conn: &mut SqliteConnection,
    now: OffsetDateTime,
    limit: u32,
) -> Result<Vec<DueJob>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, module, name, args, attempts FROM _souk_jobs \
         WHERE status = 'queued' AND run_at <= ? ORDER BY run_at, seq LIMIT ?",
    )
    .bind(millis(now))
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await
}

/// How many jobs of `module` wait (queued or running).
///
/// # Errors
/// Database errors.
pub async fn backlog(conn: &mut SqliteConnection, module: &str) -> Result<u64, sqlx::Error> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM _souk_jobs WHERE status IN ('queued', 'running') AND module = ?",
    )
    .bind(module)
    .fetch_one(conn)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// When the earliest queued job is due, if any is queued.
///
/// # Errors
/// Database errors.
pub async fn next_due(conn: &mut SqliteConnection) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    let (at,): (Option<i64>,) =
        sqlx::query_as("SELECT MIN(run_at) FROM _souk_jobs WHERE status = 'queued'")
            .fetch_one(conn)
            .await?;
    Ok(at.map(instant))
}

/// Queues again every job marked running: called before a pass over the
/// tenant's jobs when none runs in this process, so those are attempts a
/// stopped host left unfinished (their attempt counts).
///
/// # Errors
/// Database errors.
pub async fn requeue_running(
    conn: &mut SqliteConnection,
    now: OffsetDateTime,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE _souk_jobs SET status = 'queued', run_at = ?, \
         error = 'the host stopped or failed while the job ran' WHERE status = 'running'",
    )
    .bind(millis(now))
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Marks a queued job running and counts the attempt; answers the attempt
/// number, or `None` when the job is no longer queued (cancelled since).
///
/// # Errors
/// Database errors.
pub async fn claim(
    conn: &mut SqliteConnection,
    id: &str,
    now: OffsetDateTime,
) -> Result<Option<i64>, sqlx::Error> {
    let row: Option<(i64,)> = sqlx::query_as(
        "UPDATE _souk_jobs SET status = 'running', attempts = attempts + 1, started_at = ?, \
         progress_done = NULL, progress_total = NULL, progress_message = NULL \
         WHERE id = ? AND status = 'queued' RETURNING attempts",
    )
    .bind(millis(now))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(n,)| n))
}

/// Records a job's success (in the job's own transaction, so it commits
/// with the job's writes).
///
/// # Errors
/// Database errors.
pub async fn succeed(
    conn: &mut SqliteConnection,
    id: &str,
    now: OffsetDateTime,
    result: Option<&str>,
    file_id: Option<&str>,
    progress: Option<&Progress>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE _souk_jobs SET status = 'succeeded', finished_at = ?, result = ?, \
         result_file = ?, error = NULL, progress_done = ?, progress_total = ?, \
         progress_message = ? WHERE id = ?",
    )
    .bind(millis(now))
    .bind(result)
    .bind(file_id)
    .bind(progress.map(|p| clamp(p.done)))
    .bind(progress.map(|p| clamp(p.total)))
    .bind(progress.map(|p| p.message.as_str()))
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a failed attempt: queued again for `retry_at`, or failed for
/// good when `retry_at` is `None`.
///
/// # Errors
/// Database errors.
pub async fn fail_attempt(
    conn: &mut SqliteConnection,
    id: &str,
    now: OffsetDateTime,
    error: &str,
    progress: Option<&Progress>,
    retry_at: Option<OffsetDateTime>,
) -> Result<(), sqlx::Error> {
    let (status, run_at, finished) = match retry_at {
        Some(at) => ("queued", Some(millis(at)), None),
        None => ("failed", None, Some(millis(now))),
    };
    sqlx::query(
        "UPDATE _souk_jobs SET status = ?, run_at = COALESCE(?, run_at), finished_at = ?, \
         error = ?, progress_done = ?, progress_total = ?, progress_message = ? WHERE id = ?",
    )
    .bind(status)
    .bind(run_at)
    .bind(finished)
    .bind(error)
    .bind(progress.map(|p| clamp(p.done)))
    .bind(progress.map(|p| clamp(p.total)))
    .bind(progress.map(|p| p.message.as_str()))
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Cancels a job if it is still queued; answers whether it was.
///
/// # Errors
/// Database errors.
pub async fn cancel(
    conn: &mut SqliteConnection,
    id: &str,
    now: OffsetDateTime,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE _souk_jobs SET status = 'cancelled', finished_at = ?, error = ? \
         WHERE id = ? AND status = 'queued'",
    )
    .bind(millis(now))
    .bind(reason)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Cancels a job whose attempt could not start because its module is gone
/// (uninstalled, or its tenant removed).
///
/// # Errors
/// Database errors.
pub async fn cancel_running(
    conn: &mut SqliteConnection,
    id: &str,
    now: OffsetDateTime,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE _souk_jobs SET status = 'cancelled', finished_at = ?, error = ? \
         WHERE id = ? AND status IN ('queued', 'running')",
    )
    .bind(millis(now))
    .bind(reason)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives a claimed job back without counting its attempt (the host had no
/// place to run it), due again at `run_at`.
///
/// # Errors
/// Database errors.
pub async fn unclaim(
    conn: &mut SqliteConnection,
    id: &str,
    run_at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE _souk_jobs SET status = 'queued', attempts = MAX(attempts - 1, 0), run_at = ? \
         WHERE id = ? AND status = 'running'",
    )
    .bind(millis(run_at))
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A job as the tenant sees it.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    /// Its id.
    pub id: String,
    /// The module that runs it.
    pub module: String,
    /// Its name.
    pub name: String,
    /// The schedule that queued it, if one did.
    pub schedule: Option<String>,
    /// Where it is.
    pub status: JobStatus,
    /// Attempts made (running ones included).
    pub attempts: i64,
    /// Its last progress (live while it runs), if it reported any.
    pub progress: Option<Progress>,
    /// The JSON result of a job that succeeded, if it left one.
    pub result: Option<serde_json::Value>,
    /// The id of the file it left, if any.
    pub result_file_id: Option<String>,
    /// A signed URL (`/f/...`) that downloads that file for an hour, when
    /// the job succeeded and its module still has the file (set by the
    /// jobs service, not stored).
    pub result_url: Option<String>,
    /// The last attempt's error.
    pub error: Option<String>,
    /// When it was queued (RFC 3339).
    pub created_at: String,
    /// When its last attempt started.
    pub started_at: Option<String>,
    /// When it succeeded, failed or was cancelled.
    pub finished_at: Option<String>,
    /// When it runs next, while queued.
    pub next_run_at: Option<String>,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    seq: i64,
    id: String,
    module: String,
    name: String,
    schedule: Option<String>,
    status: String,
    attempts: i64,
    run_at: i64,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    progress_done: Option<i64>,
    progress_total: Option<i64>,
    progress_message: Option<String>,
    result: Option<String>,
    result_file: Option<String>,
    error: Option<String>,
}

const SELECT_JOB: &str = "SELECT seq, id, module, name, schedule, status, attempts, run_at, \
     created_at, started_at, finished_at, progress_done, progress_total, progress_message, \
     result, result_file, error FROM _souk_jobs";

impl JobRow {
    fn into_record(self) -> (i64, JobRecord) {
        let rfc = |ms: i64| crate::clock::rfc3339(instant(ms));
        let status = JobStatus::parse(&self.status).unwrap_or(JobStatus::Failed);
        let progress = match (self.progress_done, self.progress_total) {
            (Some(done), Some(total)) => Some(Progress {
                done: u64::try_from(done).unwrap_or(0),
                total: u64::try_from(total).unwrap_or(0),
                message: self.progress_message.unwrap_or_default(),
            }),
            _ => None,
        };
        // A result the module returned that is not JSON is shown as a
        // string rather than dropped.
        let result = self
            .result
            .map(|text| serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)));
        let record = JobRecord {
            id: self.id,
            module: self.module,
            name: self.name,
            schedule: self.schedule,
            status,
            attempts: self.attempts,
            progress,
            result,
            result_file_id: self.result_file,
            result_url: None,
            error: self.error,
            created_at: rfc(self.created_at),
            started_at: self.started_at.map(rfc),
            finished_at: self.finished_at.map(rfc),
            next_run_at: (status == JobStatus::Queued).then(|| rfc(self.run_at)),
        };
        (self.seq, record)
    }
}

/// The job `id`, if the tenant has it.
///
/// # Errors
/// Database errors.
pub async fn get(conn: &mut SqliteConnection, id: &str) -> Result<Option<JobRecord>, sqlx::Error> {
    let row: Option<JobRow> = sqlx::query_as(&format!("{SELECT_JOB} WHERE id = ?"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| r.into_record().1))
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct JobFilter<'a> {
    /// Only this module's jobs.
    pub module: Option<&'a str>,
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only jobs queued before the one with this position (a page's
    /// cursor).
    pub before: Option<i64>,
}

/// Jobs matching `filter`, newest first, at most `limit`; with the cursor
/// of the next page when there may be one.
///
/// # Errors
/// Database errors.
pub async fn list(
    conn: &mut SqliteConnection,
    filter: &JobFilter<'_>,
    limit: u32,
) -> Result<(Vec<JobRecord>, Option<i64>), sqlx::Error> {
    let rows: Vec<JobRow> = sqlx::query_as(&format!(
        "{SELECT_JOB} WHERE (?1 IS NULL OR module = ?1) AND (?2 IS NULL OR status = ?2) \
         AND (?3 IS NULL OR seq < ?3) ORDER BY seq DESC LIMIT ?4"
    ))
    .bind(filter.module)
    .bind(filter.status.map(JobStatus::as_str))
    .bind(filter.before)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    let full = rows.len() == usize::try_from(limit).unwrap_or(usize::MAX);
    let mut last = None;
    let records = rows
        .into_iter()
        .map(|row| {
            let (seq, record) = row.into_record();
            last = Some(seq);
            record
        })
        .collect();
    Ok((records, if full { last } else { None }))
}

/// The slot a schedule of `module` last fired for in this tenant.
///
/// # Errors
/// Database errors.
pub async fn last_slot(
    conn: &mut SqliteConnection,
    module: &str,
    schedule: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT last_slot FROM _souk_job_schedules WHERE module = ? AND schedule = ?",
    )
    .bind(module)
    .bind(schedule)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(slot,)| slot))
}

/// Records that a schedule fired for `slot` (in the transaction that
/// queues its job, so a slot fires exactly once).
///
/// # Errors
/// Database errors.
pub async fn record_slot(
    conn: &mut SqliteConnection,
    module: &str,
    schedule: &str,
    slot: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO _souk_job_schedules (module, schedule, last_slot) VALUES (?, ?, ?) \
         ON CONFLICT (module, schedule) DO UPDATE SET last_slot = excluded.last_slot",
    )
    .bind(module)
    .bind(schedule)
    .bind(slot)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::Connection as _;

    use super::*;

    async fn conn() -> SqliteConnection {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        create_tables(&mut conn).await.unwrap();
        conn
    }

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    async fn queue(conn: &mut SqliteConnection, id: &str, module: &str, now: OffsetDateTime) {
        let job = NewJob {
            id,
            module,
            name: "work",
            args: "{\"n\": 1}",
            schedule: None,
            now,
        };
        insert(conn, &job).await.unwrap();
    }

    #[tokio::test]
    async fn an_attempt_is_claimed_once_and_a_retry_waits_for_its_time() {
        let mut conn = conn().await;
        queue(&mut conn, "job_a", "cards", at(0)).await;
        assert_eq!(due(&mut conn, at(0), 10).await.unwrap().len(), 1);
        assert_eq!(claim(&mut conn, "job_a", at(1)).await.unwrap(), Some(1));
        // Claimed: neither due nor claimable again.
        assert!(due(&mut conn, at(1), 10).await.unwrap().is_empty());
        assert_eq!(claim(&mut conn, "job_a", at(1)).await.unwrap(), None);
        let progress = Progress {
            done: 1,
            total: 4,
            message: "one".into(),
        };
        fail_attempt(
            &mut conn,
            "job_a",
            at(2),
            "boom",
            Some(&progress),
            Some(at(12)),
        )
        .await
        .unwrap();
        assert!(due(&mut conn, at(11), 10).await.unwrap().is_empty());
        assert_eq!(next_due(&mut conn).await.unwrap(), Some(at(12)));
        let job = get(&mut conn, "job_a").await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Queued);
        assert_eq!(job.error.as_deref(), Some("boom"));
        assert_eq!(job.progress, Some(progress));
        assert_eq!(job.next_run_at, Some(crate::clock::rfc3339(at(12))));
        let again = due(&mut conn, at(12), 10).await.unwrap();
        assert_eq!(again[0].attempts, 1);
        assert_eq!(claim(&mut conn, "job_a", at(12)).await.unwrap(), Some(2));
        succeed(
            &mut conn,
            "job_a",
            at(13),
            Some("{\"ok\":true}"),
            None,
            None,
        )
        .await
        .unwrap();
        let job = get(&mut conn, "job_a").await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Succeeded);
        assert_eq!(job.result, Some(serde_json::json!({"ok": true})));
        assert_eq!(job.error, None);
        assert_eq!(job.progress, None, "a new attempt starts without progress");
        assert_eq!(next_due(&mut conn).await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_last_failure_is_final_and_only_queued_jobs_cancel() {
        let mut conn = conn().await;
        queue(&mut conn, "job_a", "cards", at(0)).await;
        queue(&mut conn, "job_b", "cards", at(0)).await;
        claim(&mut conn, "job_a", at(0)).await.unwrap();
        fail_attempt(&mut conn, "job_a", at(1), "boom", None, None)
            .await
            .unwrap();
        let job = get(&mut conn, "job_a").await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Failed);
        assert!(job.finished_at.is_some() && job.next_run_at.is_none());
        assert!(!cancel(&mut conn, "job_a", at(2), "no").await.unwrap());
        assert!(
            cancel(&mut conn, "job_b", at(2), "by the tenant")
                .await
                .unwrap()
        );
        assert_eq!(claim(&mut conn, "job_b", at(3)).await.unwrap(), None);
        assert!(!cancel(&mut conn, "job_missing", at(2), "no").await.unwrap());
    }

    #[tokio::test]
    async fn running_jobs_of_a_stopped_host_are_queued_again() {
        let mut conn = conn().await;
        queue(&mut conn, "job_a", "cards", at(0)).await;
        claim(&mut conn, "job_a", at(0)).await.unwrap();
        assert_eq!(requeue_running(&mut conn, at(5)).await.unwrap(), 1);
        let due = due(&mut conn, at(5), 10).await.unwrap();
        assert_eq!((due[0].id.as_str(), due[0].attempts), ("job_a", 1));
        // A claim given back does not count.
        claim(&mut conn, "job_a", at(6)).await.unwrap();
        unclaim(&mut conn, "job_a", at(7)).await.unwrap();
        let job = get(&mut conn, "job_a").await.unwrap().unwrap();
        assert_eq!((job.status, job.attempts), (JobStatus::Queued, 1));
    }

    #[tokio::test]
    async fn lists_page_newest_first_and_filter() {
        let mut conn = conn().await;
        for i in 0..5 {
            let module = if i % 2 == 0 { "cards" } else { "forum" };
            queue(&mut conn, &format!("job_{i}"), module, at(i)).await;
        }
        let filter = JobFilter::default();
        let (page, next) = list(&mut conn, &filter, 2).await.unwrap();
        let ids: Vec<&str> = page.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["job_4", "job_3"]);
        let filter = JobFilter {
            before: next,
            ..JobFilter::default()
        };
        let (page, next) = list(&mut conn, &filter, 2).await.unwrap();
        assert_eq!(page[0].id, "job_2");
        let filter = JobFilter {
            before: next,
            ..JobFilter::default()
        };
        let (page, next) = list(&mut conn, &filter, 2).await.unwrap();
        assert_eq!((page.len(), next), (1, None));
        let forum = JobFilter {
            module: Some("forum"),
            ..JobFilter::default()
        };
        assert_eq!(list(&mut conn, &forum, 10).await.unwrap().0.len(), 2);
        claim(&mut conn, "job_0", at(9)).await.unwrap();
        let running = JobFilter {
            status: Some(JobStatus::Running),
            ..JobFilter::default()
        };
        let (page, _) = list(&mut conn, &running, 10).await.unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].id, "job_0");
    }

    #[tokio::test]
    async fn the_backlog_counts_waiting_jobs_of_one_module() {
        let mut conn = conn().await;
        queue(&mut conn, "job_a", "cards", at(0)).await;
        queue(&mut conn, "job_b", "cards", at(0)).await;
        queue(&mut conn, "job_c", "cards", at(0)).await;
        queue(&mut conn, "job_d", "forum", at(0)).await;
        claim(&mut conn, "job_a", at(1)).await.unwrap();
        assert_eq!(backlog(&mut conn, "cards").await.unwrap(), 3);
        claim(&mut conn, "job_b", at(1)).await.unwrap();
        succeed(&mut conn, "job_b", at(2), None, None, None)
            .await
            .unwrap();
        cancel(&mut conn, "job_c", at(2), "no").await.unwrap();
        assert_eq!(backlog(&mut conn, "cards").await.unwrap(), 1);
        assert_eq!(backlog(&mut conn, "forum").await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_schedule_remembers_its_last_slot() {
        let mut conn = conn().await;
        assert_eq!(
            last_slot(&mut conn, "cards", "nightly").await.unwrap(),
            None
        );
        record_slot(&mut conn, "cards", "nightly", 86_400)
            .await
            .unwrap();
        record_slot(&mut conn, "cards", "nightly", 172_800)
            .await
            .unwrap();
        assert_eq!(
            last_slot(&mut conn, "cards", "nightly").await.unwrap(),
            Some(172_800)
        );
        assert_eq!(
            last_slot(&mut conn, "forum", "nightly").await.unwrap(),
            None
        );
    }
}
