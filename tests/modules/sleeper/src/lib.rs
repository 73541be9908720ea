//! Test module `sleeper`: blocks in WASI calls (`std::thread::sleep` is a
//! monotonic-clock subscription and a poll), where epoch interruption
//! cannot reach it, so only the host's outer call timeout stops it.
//!
//! Requests: `GET /sleep?ms=N` sleeps N ms (default one hour) and answers
//! `200 {"slept_ms": N}`; `POST /write-then-sleep?ms=N` inserts a row into
//! `naps` and then sleeps, holding the tenant's write lock; `POST /mark`
//! inserts a row and answers `201` at once; `POST /log` writes its body (as
//! text) to the host's log at warn level and answers `204`.
//!
//! The same component misbehaves in its other functions when packaged
//! under another slug (the call context tells it which one it is):
//! `sleeper-install`, `sleeper-uninstall`, `sleeper-upgrade` sleep in that
//! hook (the install hook after writing a row); `sleeper-migrations`
//! sleeps in `migrations()`, `sleeper-gates` in `gates()`; `sleeper-refusal`
//! refuses to install with a 30 MiB message.

use std::time::Duration;

use serde_json::json;
use souk_sdk::{
    HookError, Migration, Module, Problem, Request, Response, Router, context, db, log, params,
};

/// How long a sleep lasts when nothing says otherwise: far beyond any call
/// budget.
const FOREVER_MS: u64 = 3_600_000;

/// The size of `sleeper-refusal`'s install refusal.
const REFUSAL_BYTES: usize = 30 * 1024 * 1024;

/// Sleeps in WASI calls.
struct Sleeper;

/// Whether this module runs under `slug`.
fn is(slug: &str) -> bool {
    context().module_slug == slug
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

impl Module for Sleeper {
    fn migrations() -> Vec<Migration> {
        if is("sleeper-migrations") {
            sleep_ms(FOREVER_MS);
        }
        vec![Migration::new(
            "0001_naps",
            "CREATE TABLE naps (id INTEGER PRIMARY KEY, label TEXT NOT NULL)",
            "DROP TABLE naps",
        )]
    }

    fn gates() -> souk_sdk::Gates {
        if is("sleeper-gates") {
            sleep_ms(FOREVER_MS);
        }
        souk_sdk::Gates::new()
    }

    fn install() -> Result<(), HookError> {
        if is("sleeper-install") {
            db::execute(
                "INSERT INTO naps (label) VALUES (?1)",
                params!["written by the install hook before it slept"],
            )?;
            sleep_ms(FOREVER_MS);
        }
        if is("sleeper-refusal") {
            // One allocation: the module's memory cap leaves no room for two.
            let mut message = String::with_capacity(REFUSAL_BYTES + 16);
            message.push_str("refused: ");
            message.extend(std::iter::repeat_n('x', REFUSAL_BYTES));
            return Err(HookError::new(message));
        }
        Ok(())
    }

    fn uninstall() -> Result<(), HookError> {
        if is("sleeper-uninstall") {
            sleep_ms(FOREVER_MS);
        }
        Ok(())
    }

    fn upgrade(_from: &str) -> Result<(), HookError> {
        if is("sleeper-upgrade") {
            sleep_ms(FOREVER_MS);
        }
        Ok(())
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .get("/sleep", sleep)
            .post("/write-then-sleep", write_then_sleep)
            .post("/mark", mark)
            .post("/log", write_log)
            .handle(request)
    }
}

/// The `ms` query parameter, or [`FOREVER_MS`].
fn requested_ms(request: &Request) -> Result<u64, Problem> {
    Ok(request.query_parsed::<u64>("ms")?.unwrap_or(FOREVER_MS))
}

/// `GET /sleep?ms=N`.
fn sleep(request: &Request) -> Result<Response, Problem> {
    let ms = requested_ms(request)?;
    sleep_ms(ms);
    Ok(Response::json(200, &json!({ "slept_ms": ms })))
}

/// `POST /write-then-sleep?ms=N`.
fn write_then_sleep(request: &Request) -> Result<Response, Problem> {
    let ms = requested_ms(request)?;
    db::execute(
        "INSERT INTO naps (label) VALUES (?1)",
        params!["written before a sleep"],
    )?;
    sleep_ms(ms);
    Ok(Response::json(201, &json!({ "slept_ms": ms })))
}

/// `POST /mark`.
fn mark(_request: &Request) -> Result<Response, Problem> {
    db::execute("INSERT INTO naps (label) VALUES (?1)", params!["mark"])?;
    Ok(Response::json(201, &json!({ "marked": true })))
}

/// `POST /log`: the body, as text, into the host's log.
fn write_log(request: &Request) -> Response {
    log::warn(String::from_utf8_lossy(request.body()));
    Response::new(204)
}

souk_sdk::export_module!(Sleeper);
