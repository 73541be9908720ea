//! Test module `jobs-probe`: queues background jobs from requests with
//! `souk_sdk::jobs` and runs them in `Module::run_job` (module API 0.3.0).
//!
//! Requests:
//! - `POST /enqueue?name=N` queues job `N` with the request body as its
//!   JSON arguments (`{}` when empty) → `201 {"id": "...", "ids": [...]}`,
//!   or `422 {"error": "..."}` when the host refuses it; `&count=K` queues
//!   it K times.
//! - `POST /enqueue-then-fail?name=N` queues job `N`, then answers 500, so
//!   the host rolls the call (and the queued job) back.
//! - `POST /enqueue-refused` tries a bad name and arguments too large for
//!   the host, and answers what the host said to each → `200 {"bad_name":
//!   "...", "too_large": "..."}`.
//! - `GET /rows` → `200 {"rows": [{"job", "note", "attempt"}]}`: what jobs
//!   wrote.
//! - `POST /sleep?ms=M` sleeps M ms in the request → `200 {"slept_ms": M}`.
//! - `GET /read-then-write?ms=M&note=N` reads the rows, sleeps M ms, then
//!   writes a row `("get", N)`; a failed write is swallowed (the worst a
//!   module can do) → `200 {"wrote": true|false, "seen": K, "error": ...}`.
//! - `POST /write?note=N` writes a row `("post", N)` → `201 {}`.
//!
//! Jobs (by name):
//! - `steps` (`{"steps": N, "ms": M}`): reports progress `i/N` after each
//!   of N steps of M ms, writes a row, returns `{"steps": N}`;
//! - `slow` (`{"slow_attempts": K}`): writes a row, and on attempts 1..=K
//!   sleeps an hour (past any deadline: the row is rolled back); later
//!   writes a second row and returns `{"attempt": n}`;
//! - `fail`: writes a row (rolled back) and fails with `always fails
//!   (attempt n)`;
//! - `sleep` (`{"ms": M}`): sleeps M ms, then writes a row;
//! - `read_then_write` (`{"ms": M}`): reads the rows, sleeps M ms, then
//!   writes a row noting how many it saw;
//! - `chain`: queues a `steps` job of one step and writes a row;
//! - `report`: stores a small PDF with `files.put` and returns its id as
//!   the job's result file; `no_such_file` returns an id no file has;
//! - `tick` (the schedule, every hour): writes a row, returns
//!   `{"ticked": true}`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use souk_sdk::db::{self, FromRow};
use souk_sdk::{
    HookError, Job, JobOutput, Migration, Module, Problem, Request, Response, Router, jobs, params,
};

/// The probe.
struct Probe;

/// Arguments every job understands (each reads its own).
#[derive(Default, Deserialize)]
#[serde(default)]
struct Args {
    steps: Option<u64>,
    ms: Option<u64>,
    slow_attempts: Option<u32>,
}

impl Module for Probe {
    fn migrations() -> Vec<Migration> {
        vec![Migration::new(
            "0001_rows",
            "CREATE TABLE rows (id INTEGER PRIMARY KEY, job TEXT NOT NULL, \
             note TEXT NOT NULL, attempt INTEGER NOT NULL)",
            "DROP TABLE rows",
        )]
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .post("/enqueue", |r: &Request| enqueue(r, false))
            .post("/enqueue-then-fail", |r: &Request| enqueue(r, true))
            .post("/enqueue-refused", refused)
            .get("/rows", rows)
            .post("/sleep", sleep)
            .get("/read-then-write", read_then_write)
            .post("/write", write)
            .handle(request)
    }

    fn run_job(job: Job) -> Result<JobOutput, HookError> {
        let args: Args = job.args()?;
        match job.name.as_str() {
            "steps" => {
                let steps = args.steps.unwrap_or(3);
                for i in 1..=steps {
                    sleep_ms(args.ms.unwrap_or(0));
                    jobs::progress(i, steps, format!("step {i} of {steps}"));
                }
                write_row("steps", &format!("{steps} steps"), job.attempt)?;
                JobOutput::json(&json!({ "steps": steps }))
            }
            "slow" => {
                write_row("slow", "started", job.attempt)?;
                if job.attempt <= args.slow_attempts.unwrap_or(1) {
                    sleep_ms(3_600_000);
                }
                write_row("slow", "finished", job.attempt)?;
                JobOutput::json(&json!({ "attempt": job.attempt }))
            }
            "fail" => {
                write_row("fail", "rolled back", job.attempt)?;
                Err(HookError::new(format!(
                    "always fails (attempt {})",
                    job.attempt
                )))
            }
            "sleep" => {
                sleep_ms(args.ms.unwrap_or(0));
                write_row("sleep", "slept", job.attempt)?;
                Ok(JobOutput::none())
            }
            "read_then_write" => {
                let seen = all_rows()?.len();
                sleep_ms(args.ms.unwrap_or(0));
                write_row("read_then_write", &format!("saw {seen}"), job.attempt)?;
                Ok(JobOutput::none())
            }
            "chain" => {
                jobs::enqueue("steps", &json!({ "steps": 1 }))
                    .map_err(|e| HookError::new(e.to_string()))?;
                write_row("chain", "queued a steps job", job.attempt)?;
                Ok(JobOutput::none())
            }
            "report" => {
                let file = souk_sdk::files::put("report.pdf", "application/pdf", REPORT_PDF)
                    .map_err(|e| HookError::new(e.to_string()))?;
                write_row("report", "stored a file", job.attempt)?;
                Ok(JobOutput::file(file.id))
            }
            "no_such_file" => Ok(JobOutput::file("file_that_does_not_exist")),
            "tick" => {
                write_row("tick", "scheduled", job.attempt)?;
                JobOutput::json(&json!({ "ticked": true }))
            }
            other => Err(HookError::new(format!("no job named {other}"))),
        }
    }
}

/// The bytes the `report` job stores: a (tiny) PDF.
const REPORT_PDF: &[u8] = b"%PDF-1.4\n% jobs-probe report\n%%EOF\n";

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn write_row(job: &str, note: &str, attempt: u32) -> Result<(), HookError> {
    db::execute(
        "INSERT INTO rows (job, note, attempt) VALUES (?1, ?2, ?3)",
        params![job, note, i64::from(attempt)],
    )?;
    Ok(())
}

/// `POST /enqueue` and `POST /enqueue-then-fail`.
fn enqueue(request: &Request, fail: bool) -> Result<Response, Problem> {
    let name = request.query("name").unwrap_or_else(|| "steps".to_owned());
    let count = request.query_parsed::<u32>("count")?.unwrap_or(1);
    let args: serde_json::Value = if request.body().is_empty() {
        json!({})
    } else {
        request.json()?
    };
    let mut ids = Vec::new();
    for _ in 0..count {
        match jobs::enqueue(&name, &args) {
            Ok(id) => ids.push(id),
            Err(e) => {
                return Ok(Response::json(
                    422,
                    &json!({ "error": e.to_string(), "ids": ids }),
                ));
            }
        }
    }
    if fail {
        return Ok(Response::json(
            500,
            &json!({ "error": "failing after the enqueue", "ids": ids }),
        ));
    }
    Ok(Response::json(
        201,
        &json!({ "id": ids.first(), "ids": ids }),
    ))
}

/// `POST /sleep?ms=M`: sleeps in the request (the call deadline).
fn sleep(request: &Request) -> Result<Response, Problem> {
    let ms = request.query_parsed::<u64>("ms")?.unwrap_or(0);
    sleep_ms(ms);
    Ok(Response::json(200, &json!({ "slept_ms": ms })))
}

/// `GET /read-then-write?ms=M&note=N`: a read, a pause, a write, in a
/// deferred transaction; a failed write is swallowed into the answer.
fn read_then_write(request: &Request) -> Result<Response, Problem> {
    let ms = request.query_parsed::<u64>("ms")?.unwrap_or(0);
    let note = request.query("note").unwrap_or_default();
    let seen = all_rows()?.len();
    sleep_ms(ms);
    let (wrote, error) = match write_row("get", &note, 0) {
        Ok(()) => (true, None),
        Err(e) => (false, Some(e.to_string())),
    };
    Ok(Response::json(
        200,
        &json!({ "wrote": wrote, "seen": seen, "error": error }),
    ))
}

/// `POST /write?note=N`.
fn write(request: &Request) -> Result<Response, Problem> {
    let note = request.query("note").unwrap_or_default();
    write_row("post", &note, 0).map_err(|e| Problem::internal(e.to_string()))?;
    Ok(Response::json(201, &json!({})))
}

/// Every row, in order.
fn all_rows() -> Result<Vec<RowWritten>, db::QueryError> {
    db::query_as("SELECT job, note, attempt FROM rows ORDER BY id", params![])
}

/// `POST /enqueue-refused`.
fn refused(_request: &Request) -> Response {
    let bad_name = jobs::enqueue("Bad Name", &json!({})).err();
    let too_large = jobs::enqueue("steps", &"x".repeat(100 * 1024)).err();
    Response::json(
        200,
        &json!({
            "bad_name": bad_name.map(|e| e.to_string()),
            "too_large": too_large.map(|e| e.to_string()),
        }),
    )
}

/// One row jobs wrote.
struct RowWritten {
    job: String,
    note: String,
    attempt: i64,
}

impl FromRow for RowWritten {
    fn from_row(row: &db::Row<'_>) -> Result<Self, db::DecodeError> {
        Ok(RowWritten {
            job: row.get("job")?,
            note: row.get("note")?,
            attempt: row.get("attempt")?,
        })
    }
}

/// `GET /rows`.
fn rows(_request: &Request) -> Result<Response, Problem> {
    let rows = all_rows()?;
    let rows: Vec<_> = rows
        .into_iter()
        .map(|r| json!({ "job": r.job, "note": r.note, "attempt": r.attempt }))
        .collect();
    Ok(Response::json(200, &json!({ "rows": rows })))
}

souk_sdk::export_module!(Probe);
