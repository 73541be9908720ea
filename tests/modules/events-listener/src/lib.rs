//! Test module `events-listener` (API 0.3.0, written with `wit-bindgen`
//! against `wit/since_v0.3.0`): depends on `events-probe` and subscribes
//! to its `item.created`.
//!
//! - Migration `0001_received` creates `received (id, event_id, source,
//!   type, payload, emitted_at)` and `gate (open)` with one row, open.
//! - `on-event` fails with `the gate is closed` while the gate is closed
//!   (the failing variant: close it, and the handler fails every time
//!   until it is opened again); otherwise it records the event and emits
//!   `item.seen` `{"event_id"}` in the same call.
//! - `GET /received` → `200 {"events": [{"event_id", "source", "type",
//!   "payload", "emitted_at"}]}` in the order handled.
//! - `POST /gate` `{"open": bool}` → `200 {"open": bool}`.

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
    Event, GateSet, Guest, Job, JobOutput, Migration, Request, Response,
};
use bindings::souk::module::types::Value;
use bindings::souk::module::{db, events};

/// The events listener.
struct Listener;

impl Guest for Listener {
    fn migrations() -> Vec<Migration> {
        vec![Migration {
            id: "0001_received".into(),
            up: "CREATE TABLE received (id INTEGER PRIMARY KEY, event_id TEXT NOT NULL, \
                 source TEXT NOT NULL, type TEXT NOT NULL, payload TEXT NOT NULL, \
                 emitted_at TEXT NOT NULL); \
                 CREATE TABLE gate (open INTEGER NOT NULL); \
                 INSERT INTO gate (open) VALUES (1)"
                .into(),
            down: "DROP TABLE gate; DROP TABLE received".into(),
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
        let body: Json = serde_json::from_slice(&request.body).unwrap_or(Json::Null);
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/received") => received(),
            ("POST", "/gate") => set_gate(body["open"].as_bool().unwrap_or(true)),
            _ => json(404, &json!({"error": "not found"})),
        }
    }

    fn run_job(_job: Job) -> Result<JobOutput, String> {
        Err("this module has no jobs".into())
    }

    fn on_event(event: Event) -> Result<(), String> {
        let open = db::query("SELECT open FROM gate", &[])
            .map_err(|e| e.message)?
            .rows
            .first()
            .is_some_and(|row| matches!(row.first(), Some(Value::Integer(1))));
        if !open {
            return Err("the gate is closed".into());
        }
        db::execute(
            "INSERT INTO received (event_id, source, type, payload, emitted_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            &[
                Value::Text(event.id.clone()),
                Value::Text(event.source_module),
                Value::Text(event.event_type),
                Value::Text(event.payload),
                Value::Text(event.emitted_at),
            ],
        )
        .map_err(|e| e.message)?;
        events::emit("item.seen", &json!({"event_id": event.id}).to_string())
            .map_err(|e| format!("{e:?}"))?;
        Ok(())
    }
}

fn json(status: u16, body: &Json) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

fn set_gate(open: bool) -> Response {
    match db::execute(
        "UPDATE gate SET open = ?1",
        &[Value::Integer(i64::from(open))],
    ) {
        Ok(_) => json(200, &json!({"open": open})),
        Err(e) => json(500, &json!({"error": e.message})),
    }
}

fn received() -> Response {
    let rows = match db::query(
        "SELECT event_id, source, type, payload, emitted_at FROM received ORDER BY id",
        &[],
    ) {
        Ok(rows) => rows,
        Err(e) => return json(500, &json!({"error": e.message})),
    };
    let text = |v: &Value| match v {
        Value::Text(s) => json!(s),
        _ => Json::Null,
    };
    let events: Vec<Json> = rows
        .rows
        .iter()
        .map(|row| {
            json!({
                "event_id": text(&row[0]),
                "source": text(&row[1]),
                "type": text(&row[2]),
                "payload": text(&row[3]),
                "emitted_at": text(&row[4]),
            })
        })
        .collect();
    json(200, &json!({"events": events}))
}

bindings::export!(Listener with_types_in bindings);
