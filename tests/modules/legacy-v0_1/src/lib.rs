//! Test module `legacy`: a module built directly against the first module
//! API (`wit/since_v0.1.0`) with `wit-bindgen`, without the SDK (which now
//! targets a newer API). It proves a component built against API 0.1.0 keeps
//! working on a host that has moved on.
//!
//! - Migration `0001_entries` creates `entries (id, text, tenant)`.
//! - `POST /entries` inserts the request body (UTF-8 text) as an entry,
//!   stamped with the tenant id from `context`, and logs it → `201
//!   {"id": N, "text": "...", "tenant": "..."}`.
//! - `GET /entries` → `200 {"entries": [{"id", "text", "tenant"}, ...]}`.
//!
//! Anything else is a 404 (wrong path) or 405 (wrong method).

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use serde_json::{Value as Json, json};

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/since_v0.1.0",
        world: "module",
    });
}

use bindings::exports::souk::module::guest::{GateSet, Guest, Migration, Request, Response};
use bindings::souk::module::types::Value;
use bindings::souk::module::{context, db, log};

/// The legacy test module.
struct Legacy;

impl Guest for Legacy {
    fn migrations() -> Vec<Migration> {
        vec![Migration {
            id: "0001_entries".into(),
            up: "CREATE TABLE entries (id INTEGER PRIMARY KEY, text TEXT NOT NULL, tenant TEXT NOT NULL)"
                .into(),
            down: "DROP TABLE entries".into(),
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
            ("GET", "/entries") => list(),
            ("POST", "/entries") => create(request.body),
            (_, "/entries") => json(405, &json!({"error": "method not allowed"})),
            _ => json(404, &json!({"error": "not found"})),
        }
    }
}

fn json(status: u16, body: &Json) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

fn db_failure(error: &db::DbError) -> Response {
    json(
        500,
        &json!({"error": format!("{:?}", error.kind), "message": error.message}),
    )
}

fn create(body: Vec<u8>) -> Response {
    let Ok(text) = String::from_utf8(body) else {
        return json(400, &json!({"error": "the body must be UTF-8 text"}));
    };
    let tenant = context::current().tenant_id;
    let params = [Value::Text(text.clone()), Value::Text(tenant.clone())];
    match db::execute(
        "INSERT INTO entries (text, tenant) VALUES (?1, ?2)",
        &params,
    ) {
        Ok(result) => {
            let id = result.last_insert_id.unwrap_or_default();
            log::log(log::Level::Info, &format!("legacy: entry {id} created"));
            json(201, &json!({"id": id, "text": text, "tenant": tenant}))
        }
        Err(error) => db_failure(&error),
    }
}

fn list() -> Response {
    let rows = match db::query("SELECT id, text, tenant FROM entries ORDER BY id", &[]) {
        Ok(rows) => rows,
        Err(error) => return db_failure(&error),
    };
    let entries: Vec<Json> = rows
        .rows
        .into_iter()
        .map(|row| {
            let mut row = row.into_iter().map(|value| match value {
                Value::Integer(n) => json!(n),
                Value::Text(s) => json!(s),
                Value::Real(x) => json!(x),
                Value::Null | Value::Blob(_) => Json::Null,
            });
            json!({
                "id": row.next().unwrap_or(Json::Null),
                "text": row.next().unwrap_or(Json::Null),
                "tenant": row.next().unwrap_or(Json::Null),
            })
        })
        .collect();
    json(200, &json!({"entries": entries}))
}

bindings::export!(Legacy with_types_in bindings);
