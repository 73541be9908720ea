//! Test module `events-probe` (API 0.3.0, written with `wit-bindgen`
//! against `wit/since_v0.3.0`): items whose creation emits an event.
//!
//! - Migration `0001_items` creates `items (id, name)`.
//! - `POST /items` `{"name": ...}` inserts an item and emits
//!   `item.created` `{"id", "name"}` → `201 {"id", "event_id"}`.
//! - `POST /items-then-fail` does the same, then answers 500: the host
//!   rolls the call back, the item and the event with it.
//! - `POST /emit` `{"type": ..., "payload": "<text>", "times": N}` emits
//!   the payload text as it is, N times (default 1) → `200 {"event_ids"}`,
//!   or `422 {"error": "invalid" | "unavailable", "message"}` at the first
//!   refusal (the call still commits what was emitted before it).
//! - `GET /items` → `200 {"items": [{"id", "name"}]}`.
//!
//! The manifest declares `item.created` and `item.noted`, and the feature
//! `webhooks` that webhooks of its events need.

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use serde_json::{Value as Json, json};

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit/since_v0.3.0",
        world: "module",
    });
}

use bindings::exports::souk::module::guest::{
    Event, Feature, FeatureKind, GateSet, Guest, Job, JobOutput, Migration, Request, Response,
};
use bindings::souk::module::types::Value;
use bindings::souk::module::{db, events};

/// The events probe.
struct Probe;

impl Guest for Probe {
    fn migrations() -> Vec<Migration> {
        vec![Migration {
            id: "0001_items".into(),
            up: "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)".into(),
            down: "DROP TABLE items".into(),
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
            features: vec![Feature {
                key: "webhooks".into(),
                description: "Webhooks for item events".into(),
                kind: FeatureKind::Plain,
            }],
            limits: Vec::new(),
        }
    }

    fn handle(request: Request) -> Response {
        let body: Json = serde_json::from_slice(&request.body).unwrap_or(Json::Null);
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/items") => list(),
            ("POST", "/items") => create(&body, false),
            ("POST", "/items-then-fail") => create(&body, true),
            ("POST", "/emit") => emit(&body),
            _ => json(404, &json!({"error": "not found"})),
        }
    }

    fn run_job(_job: Job) -> Result<JobOutput, String> {
        Err("this module has no jobs".into())
    }

    fn on_event(_event: Event) -> Result<(), String> {
        Err("this module subscribes to nothing".into())
    }
}

fn json(status: u16, body: &Json) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

fn refusal(error: events::EventError) -> Response {
    let (kind, message) = match error {
        events::EventError::Invalid(m) => ("invalid", m),
        events::EventError::Unavailable(m) => ("unavailable", m),
    };
    json(422, &json!({"error": kind, "message": message}))
}

fn create(body: &Json, then_fail: bool) -> Response {
    let name = body["name"].as_str().unwrap_or("unnamed").to_owned();
    let inserted = db::execute(
        "INSERT INTO items (name) VALUES (?1)",
        &[Value::Text(name.clone())],
    );
    let id = match inserted {
        Ok(result) => result.last_insert_id.unwrap_or_default(),
        Err(e) => return json(500, &json!({"error": e.message})),
    };
    let payload = json!({"id": id, "name": name}).to_string();
    let event_id = match events::emit("item.created", &payload) {
        Ok(event_id) => event_id,
        Err(e) => return refusal(e),
    };
    if then_fail {
        return json(
            500,
            &json!({"error": "failing on purpose after emitting", "event_id": event_id}),
        );
    }
    json(201, &json!({"id": id, "event_id": event_id}))
}

fn emit(body: &Json) -> Response {
    let event_type = body["type"].as_str().unwrap_or_default();
    let payload = body["payload"].as_str().unwrap_or_default();
    let times = body["times"].as_u64().unwrap_or(1);
    let mut ids = Vec::new();
    for _ in 0..times {
        match events::emit(event_type, payload) {
            Ok(id) => ids.push(id),
            Err(e) => return refusal(e),
        }
    }
    json(200, &json!({"event_ids": ids}))
}

fn list() -> Response {
    let rows = match db::query("SELECT id, name FROM items ORDER BY id", &[]) {
        Ok(rows) => rows,
        Err(e) => return json(500, &json!({"error": e.message})),
    };
    let items: Vec<Json> = rows
        .rows
        .into_iter()
        .map(|row| match row.as_slice() {
            [Value::Integer(id), Value::Text(name)] => json!({"id": id, "name": name}),
            _ => Json::Null,
        })
        .collect();
    json(200, &json!({"items": items}))
}

bindings::export!(Probe with_types_in bindings);
