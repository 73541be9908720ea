//! Test module `hooks-probe`: lifecycle hooks with `files` and `jobs`
//! (module API 0.3.0).
//!
//! - `install` stores `seed.pdf` and queues the job `welcome`;
//! - `run_job("welcome")` answers `{"welcomed": true}`;
//! - `uninstall` refuses (so the uninstall fails) if it could store a file
//!   or queue a job: the host gives the uninstall hook neither;
//! - `GET /files` → `{"files": [...]}`, the module's files.

use serde_json::json;
use souk_sdk::files;
use souk_sdk::{HookError, Job, JobOutput, Module, Problem, Request, Response, Router, jobs};

struct HooksProbe;

const SEED_PDF: &[u8] = b"%PDF-1.4\n% hooks-probe seed\n%%EOF\n";

impl Module for HooksProbe {
    fn install() -> Result<(), HookError> {
        files::put("seed.pdf", "application/pdf", SEED_PDF)
            .map_err(|e| HookError::new(format!("seed file: {e}")))?;
        jobs::enqueue("welcome", &json!({}))
            .map_err(|e| HookError::new(format!("first job: {e}")))?;
        Ok(())
    }

    fn uninstall() -> Result<(), HookError> {
        if files::put("late.pdf", "application/pdf", SEED_PDF).is_ok() {
            return Err(HookError::new("the uninstall hook could store a file"));
        }
        if jobs::enqueue("welcome", &json!({})).is_ok() {
            return Err(HookError::new("the uninstall hook could queue a job"));
        }
        Ok(())
    }

    fn run_job(job: Job) -> Result<JobOutput, HookError> {
        match job.name.as_str() {
            "welcome" => JobOutput::json(&json!({ "welcomed": true })),
            other => Err(HookError::new(format!("no job named {other}"))),
        }
    }

    fn handle(request: Request) -> Response {
        Router::new().get("/files", list).handle(request)
    }
}

fn list(_request: &Request) -> Result<Response, Problem> {
    let page = files::list(None, 100)?;
    Ok(Response::json(200, &json!({ "files": page.files })))
}

souk_sdk::export_module!(HooksProbe);
