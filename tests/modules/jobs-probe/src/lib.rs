//! Test module `jobs-probe`: queues background jobs from requests and runs
//! them through `run-job` (module API 0.3.0, written with `wit-bindgen`
//! directly against `wit/since_v0.3.0`).
//!
//! Requests:
//! - `POST /enqueue?name=N` queues job `N` with the request body as its
//!   JSON arguments (`{}` when empty) → `201 {"id": "..."}`, or `422
//!   {"error": "..."}` when the host refuses it; `&count=K` queues it K
//!   times (the ids in `"ids"`).
//! - `POST /enqueue-then-fail?name=N` queues job `N`, then answers 500, so
//!   the host rolls the call (and the queued job) back.
//! - `POST /enqueue-refused` tries a bad name and bad JSON and answers what
//!   the host said to each → `200 {"bad_name": "...", "bad_json": "..."}`.
//! - `GET /rows` → `200 {"rows": [{"job", "note", "attempt"}]}`: what jobs
//!   wrote.
//!
//! Jobs (by name):
//! - `steps` (`{"steps": N, "ms": M}`): reports progress `i/N` after each
//!   of N steps of M ms, writes a row, returns `{"steps": N}`;
//! - `slow` (`{"slow_attempts": K}`): on attempts 1..=K sleeps an hour
//!   (past any deadline; its row is rolled back), later writes a row and
//!   returns `{"attempt": n}`;
//! - `fail`: writes a row (rolled back) and fails with `always fails
//!   (attempt n)`;
//! - `sleep` (`{"ms": M}`): sleeps M ms, then writes a row;
//! - `chain`: queues a `steps` job of one step and writes a row;
//! - `tick` (the schedule, every hour): writes a row.

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use std::time::Duration;

use serde_json::{Value as Json, json};

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/since_v0.3.0",
        world: "module",
    });
}

use bindings::exports::souk::module::guest::{
    Event, GateSet, Guest, Job, JobOutput, Migration, Request, Response,
};
use bindings::souk::module::types::Value;
use bindings::souk::module::{db, jobs};

/// The probe.
struct Probe;

fn answer(status: u16, body: &Json) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn write_row(job: &str, note: &str, attempt: u32) -> Result<(), String> {
    db::execute(
        "INSERT INTO rows (job, note, attempt) VALUES (?1, ?2, ?3)",
        &[
            Value::Text(job.into()),
            Value::Text(note.into()),
            Value::Integer(i64::from(attempt)),
        ],
    )
    .map(|_| ())
    .map_err(|e| e.message)
}

fn job_error(e: jobs::JobError) -> String {
    match e {
        jobs::JobError::Invalid(m) => format!("invalid: {m}"),
        jobs::JobError::Unavailable(m) => format!("unavailable: {m}"),
    }
}

fn enqueue(request: &Request, fail: bool) -> Response {
    let name = query_param(&request.query, "name").unwrap_or("steps");
    let count: u32 = query_param(&request.query, "count")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let args = if request.body.is_empty() {
        "{}".to_owned()
    } else {
        String::from_utf8_lossy(&request.body).into_owned()
    };
    let mut ids = Vec::new();
    for _ in 0..count {
        match jobs::enqueue(name, &args) {
            Ok(id) => ids.push(id),
            Err(e) => return answer(422, &json!({ "error": job_error(e), "ids": ids })),
        }
    }
    if fail {
        return answer(500, &json!({ "error": "failing after the enqueue", "ids": ids }));
    }
    answer(201, &json!({ "id": ids.first(), "ids": ids }))
}

fn rows() -> Response {
    match db::query("SELECT job, note, attempt FROM rows ORDER BY id", &[]) {
        Ok(set) => {
            let rows: Vec<Json> = set
                .rows
                .into_iter()
                .map(|row| {
                    let text = |v: &Value| match v {
                        Value::Text(t) => json!(t),
                        Value::Integer(n) => json!(n),
                        _ => Json::Null,
                    };
                    json!({ "job": text(&row[0]), "note": text(&row[1]), "attempt": text(&row[2]) })
                })
                .collect();
            answer(200, &json!({ "rows": rows }))
        }
        Err(e) => answer(500, &json!({ "error": e.message })),
    }
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

impl Guest for Probe {
    fn migrations() -> Vec<Migration> {
        vec![Migration {
            id: "0001_rows".into(),
            up: "CREATE TABLE rows (id INTEGER PRIMARY KEY, job TEXT NOT NULL, note TEXT NOT NULL, attempt INTEGER NOT NULL)"
                .into(),
            down: "DROP TABLE rows".into(),
        }]
    }

    fn install() -> Result<(), String> {
        Ok(())
    }

    fn uninstall() -> Result<(), String> {
        Ok(())
    }

    fn upgrade(_from_version: String) -> Result<(), String> {
        Ok(())
    }

    fn gates() -> GateSet {
        GateSet {
            features: Vec::new(),
            limits: Vec::new(),
        }
    }

    fn handle(request: Request) -> Response {
        match (request.method.as_str(), request.path.as_str()) {
            ("POST", "/enqueue") => enqueue(&request, false),
            ("POST", "/enqueue-then-fail") => enqueue(&request, true),
            ("POST", "/enqueue-refused") => {
                let bad_name = jobs::enqueue("Bad Name", "{}").map_err(job_error);
                let bad_json = jobs::enqueue("steps", "{not json").map_err(job_error);
                answer(
                    200,
                    &json!({ "bad_name": bad_name.err(), "bad_json": bad_json.err() }),
                )
            }
            ("GET", "/rows") => rows(),
            _ => answer(404, &json!({ "error": "no such route" })),
        }
    }

    fn run_job(job: Job) -> Result<JobOutput, String> {
        let args: Json = serde_json::from_str(&job.args).map_err(|e| e.to_string())?;
        let number = |key: &str, default: u64| args[key].as_u64().unwrap_or(default);
        match job.name.as_str() {
            "steps" => {
                let steps = number("steps", 3);
                let ms = number("ms", 0);
                for i in 1..=steps {
                    sleep_ms(ms);
                    jobs::progress(i, steps, &format!("step {i} of {steps}"));
                }
                write_row("steps", &format!("{steps} steps"), job.attempt)?;
                Ok(JobOutput {
                    result: Some(json!({ "steps": steps }).to_string()),
                    file_id: None,
                })
            }
            "slow" => {
                write_row("slow", "started", job.attempt)?;
                if u64::from(job.attempt) <= number("slow_attempts", 1) {
                    sleep_ms(3_600_000);
                }
                write_row("slow", "finished", job.attempt)?;
                Ok(JobOutput {
                    result: Some(json!({ "attempt": job.attempt }).to_string()),
                    file_id: None,
                })
            }
            "fail" => {
                write_row("fail", "rolled back", job.attempt)?;
                Err(format!("always fails (attempt {})", job.attempt))
            }
            "sleep" => {
                sleep_ms(number("ms", 0));
                write_row("sleep", "slept", job.attempt)?;
                Ok(JobOutput {
                    result: None,
                    file_id: None,
                })
            }
            "chain" => {
                jobs::enqueue("steps", "{\"steps\": 1}").map_err(job_error)?;
                write_row("chain", "queued a steps job", job.attempt)?;
                Ok(JobOutput {
                    result: None,
                    file_id: None,
                })
            }
            "tick" => {
                write_row("tick", "scheduled", job.attempt)?;
                Ok(JobOutput {
                    result: Some("{\"ticked\": true}".into()),
                    file_id: None,
                })
            }
            other => Err(format!("no job named {other}")),
        }
    }

    fn on_event(_event: Event) -> Result<(), String> {
        Ok(())
    }
}

bindings::export!(Probe with_types_in bindings);
