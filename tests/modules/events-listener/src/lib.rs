//! Test module `events-listener` (API 0.3.0, built with the SDK): depends
//! on `events-probe` and subscribes to its `item.created`.
//!
//! - Migration `0001_received` creates `received (id, event_id, source,
//!   type, payload, emitted_at)` and `gate (open)` with one row, open.
//! - `on_event` fails with `the gate is closed` while the gate is closed
//!   (the failing variant: close it, and the handler fails at every
//!   attempt until it is opened again); otherwise it records the event and
//!   emits `item.seen` `{"event_id"}` in the same call
//!   (`souk_sdk::events::emit`).
//! - `GET /received` → `200 {"events": [{"event_id", "source", "type",
//!   "payload", "emitted_at"}]}` in the order handled.
//! - `POST /gate` `{"open": bool}` → `200 {"open": bool}`.

use serde::{Deserialize, Serialize};
use serde_json::json;
use souk_sdk::{
    Event, HookError, Migration, Module, Problem, Request, Response, Router, db, events, params,
};

struct Listener;

#[derive(Serialize)]
struct Seen<'a> {
    event_id: &'a str,
}

#[derive(Deserialize)]
struct Gate {
    open: bool,
}

impl Module for Listener {
    fn migrations() -> Vec<Migration> {
        vec![Migration::new(
            "0001_received",
            "CREATE TABLE received (id INTEGER PRIMARY KEY, event_id TEXT NOT NULL, \
             source TEXT NOT NULL, type TEXT NOT NULL, payload TEXT NOT NULL, \
             emitted_at TEXT NOT NULL); \
             CREATE TABLE gate (open INTEGER NOT NULL); \
             INSERT INTO gate (open) VALUES (1)",
            "DROP TABLE gate; DROP TABLE received",
        )]
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .get("/received", received)
            .post("/gate", set_gate)
            .handle(request)
    }

    fn on_event(event: Event) -> Result<(), HookError> {
        let (open,): (i64,) = db::query_one("SELECT open FROM gate", &[])?;
        if open != 1 {
            return Err(HookError::new("the gate is closed"));
        }
        db::execute(
            "INSERT INTO received (event_id, source, type, payload, emitted_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                event.id.as_str(),
                event.source_module.as_str(),
                event.event_type.as_str(),
                event.payload.as_str(),
                event.emitted_at.as_str()
            ],
        )?;
        events::emit(
            "item.seen",
            &Seen {
                event_id: &event.id,
            },
        )
        .map_err(|e| HookError::new(e.to_string()))?;
        Ok(())
    }
}

fn set_gate(request: &Request) -> Result<Response, Problem> {
    let gate: Gate = request.json()?;
    db::execute("UPDATE gate SET open = ?1", params![i64::from(gate.open)])?;
    Ok(Response::json(200, &json!({"open": gate.open})))
}

fn received(_request: &Request) -> Result<Response, Problem> {
    let rows: Vec<(String,)> = db::query_as(
        "SELECT json_object('event_id', event_id, 'source', source, 'type', type, \
         'payload', payload, 'emitted_at', emitted_at) FROM received ORDER BY id",
        &[],
    )?;
    let events: Vec<serde_json::Value> = rows
        .iter()
        .filter_map(|(row,)| serde_json::from_str(row).ok())
        .collect();
    Ok(Response::json(200, &json!({"events": events})))
}

souk_sdk::export_module!(Listener);
