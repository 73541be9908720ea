//! Test module `hook-usage`: lifecycle hooks that count against the
//! tenant's plan (module API 0.3.0). The tests publish this one component
//! under several versions; the upgrade hook does what the patch number of
//! the version it upgrades to asks for:
//!
//! - `install`: takes units of `max_things` until the plan refuses (at most
//!   10,000 tries), stores a 2,000-byte PDF (more than the test plan's
//!   storage allows) and then a small one, tries to seed the storage limit
//!   and an undeclared key, and writes what happened to the `report` table;
//! - `upgrade` to `x.y.1`: takes every unit left, seeds `max_things` at
//!   1,000, stores a small file, then refuses (the host must undo all of
//!   it);
//! - `upgrade` to `x.y.2`: consumes in a loop forever, ignoring refusals
//!   (the host's deadline must stop it and undo it);
//! - any other `upgrade`: seeds `max_things` with the number of rows in
//!   `things` (whatever the plan allows);
//! - `GET /report` → `{"report": {key: value}, "things": n}`;
//! - `POST /things` adds a row and consumes one unit → `201`;
//! - `POST /seed` tries `seed_usage` outside a hook → `200` with the
//!   refusal's message (`409` if the host let it seed).

use serde_json::{Map, Value, json};
use souk_sdk::entitlements::{self, EntitlementError};
use souk_sdk::{
    Gates, HookError, LimitKind, Migration, Module, Problem, Request, Response, Router, db, files,
    params,
};

struct HookUsage;

const MIGRATION: Migration = Migration::new(
    "0001_report",
    "CREATE TABLE report (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE things (id INTEGER PRIMARY KEY)",
    "DROP TABLE things;
    DROP TABLE report",
);

/// A PDF of `size` bytes (a header, padding, an end marker).
fn pdf(size: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.4\n%".to_vec();
    let end = b"\n%%EOF\n";
    bytes.resize(size.saturating_sub(end.len()).max(bytes.len()), b'x');
    bytes.extend_from_slice(end);
    bytes
}

fn note(key: &str, value: impl std::fmt::Display) -> Result<(), HookError> {
    db::execute(
        "INSERT INTO report (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value.to_string()],
    )?;
    Ok(())
}

/// Takes units of `max_things` until the plan refuses; how many it took
/// and the refusal's reason.
fn take_all() -> (u64, String) {
    let mut took = 0;
    for _ in 0..10_000 {
        match entitlements::consume("max_things", 1) {
            Ok(_) => took += 1,
            Err(EntitlementError::Denied(denial)) => return (took, denial.reason.to_string()),
            Err(other) => return (took, other.to_string()),
        }
    }
    (took, "never refused".into())
}

fn describe<T, E: std::fmt::Display>(result: Result<T, E>) -> String {
    match result {
        Ok(_) => "stored".into(),
        Err(e) => e.to_string(),
    }
}

impl Module for HookUsage {
    fn migrations() -> Vec<Migration> {
        vec![MIGRATION]
    }

    fn gates() -> Gates {
        Gates::new()
            .limit(
                "max_things",
                "Things the tenant may keep.",
                LimitKind::Count,
            )
            .limit(
                "storage_bytes",
                "Bytes of files the tenant may keep.",
                LimitKind::Storage,
            )
    }

    fn install() -> Result<(), HookError> {
        let (took, refusal) = take_all();
        note("install_took", took)?;
        note("install_refusal", refusal)?;
        note(
            "install_big_file",
            describe(files::put("big.pdf", "application/pdf", &pdf(2000))),
        )?;
        // Only declared count limits may be seeded.
        note(
            "install_seed_storage",
            describe(entitlements::seed_usage("storage_bytes", 1)),
        )?;
        note(
            "install_seed_undeclared",
            describe(entitlements::seed_usage("max_widgets", 1)),
        )?;
        note(
            "install_small_file",
            describe(files::put("small.pdf", "application/pdf", &pdf(100))),
        )?;
        Ok(())
    }

    fn upgrade(_from: &str) -> Result<(), HookError> {
        let version = souk_sdk::context().module_version;
        match version.rsplit('.').next() {
            Some("1") => {
                let (took, _) = take_all();
                entitlements::seed_usage("max_things", 1000)
                    .map_err(|e| HookError::new(format!("seed: {e}")))?;
                files::put("late.pdf", "application/pdf", &pdf(100))
                    .map_err(|e| HookError::new(format!("file: {e}")))?;
                Err(HookError::new(format!(
                    "took {took} units, seeded 1000, stored a file, and refuse"
                )))
            }
            Some("2") => loop {
                let _ = entitlements::consume("max_things", 1);
            },
            _ => {
                let (rows,): (i64,) = db::query_one("SELECT COUNT(*) FROM things", params![])?;
                let seeded =
                    entitlements::seed_usage("max_things", u64::try_from(rows).unwrap_or(0))
                        .map_err(|e| HookError::new(format!("seed: {e}")))?;
                note("upgrade_seeded", seeded.used)?;
                Ok(())
            }
        }
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .get("/report", report)
            .post("/things", add_thing)
            .post("/seed", seed_outside_a_hook)
            .handle(request)
    }
}

fn report(_request: &Request) -> Result<Response, Problem> {
    let rows: Vec<(String, String)> =
        db::query_as("SELECT key, value FROM report ORDER BY key", params![])?;
    let (things,): (i64,) = db::query_one("SELECT COUNT(*) FROM things", params![])?;
    let report: Map<String, Value> = rows.into_iter().map(|(k, v)| (k, Value::from(v))).collect();
    Ok(Response::json(
        200,
        &json!({ "report": report, "things": things }),
    ))
}

fn add_thing(_request: &Request) -> Result<Response, Problem> {
    entitlements::consume("max_things", 1)?;
    db::execute("INSERT INTO things DEFAULT VALUES", params![])?;
    Ok(Response::json(201, &json!({})))
}

fn seed_outside_a_hook(_request: &Request) -> Result<Response, Problem> {
    match entitlements::seed_usage("max_things", 0) {
        Ok(usage) => Ok(Response::json(409, &json!({ "seeded": usage }))),
        Err(e) => Ok(Response::json(200, &json!({ "refused": e.to_string() }))),
    }
}

souk_sdk::export_module!(HookUsage);
