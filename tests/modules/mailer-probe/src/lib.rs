//! Test module `mailer-probe`: queues email through the host's `notify`
//! interface with `souk_sdk::notify` (module API 0.3.0).
//!
//! - Migration `0001_sent` creates `sent (id, message_id)`.
//! - `POST /send` with `{"to": {"user": "<id>"} | {"member": "<number>"},
//!   "subject": "...", "text": "...", "html": "..."?}` queues the message,
//!   records its id in `sent` and answers `201 {"id": "m_..."}`. A refusal
//!   is the SDK's problem document: unknown recipient 404, invalid 400,
//!   the plan's denial 402, unavailable 503.
//! - `POST /send-then-fail`: the same, then answers 500, so the host rolls
//!   the call back and nothing may be sent.
//! - `GET /sent` → `200 {"sent": ["m_...", ...]}`.

use serde::Deserialize;
use serde_json::json;
use souk_sdk::notify::{self, Recipient};
use souk_sdk::{
    Gates, LimitKind, Migration, Module, Problem, Request, Response, Router, db, params,
};

struct MailerProbe;

impl Module for MailerProbe {
    fn migrations() -> Vec<Migration> {
        vec![Migration::new(
            "0001_sent",
            "CREATE TABLE sent (id INTEGER PRIMARY KEY, message_id TEXT NOT NULL)",
            "DROP TABLE sent",
        )]
    }

    fn gates() -> Gates {
        Gates::new().limit(
            "emails_per_month",
            "Emails the module may queue per month.",
            LimitKind::Email,
        )
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .post("/send", send)
            .post("/send-then-fail", send_then_fail)
            .get("/sent", list)
            .handle(request)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum To {
    User(String),
    Member(String),
}

#[derive(Deserialize)]
struct Outgoing {
    to: To,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    html: Option<String>,
}

fn send(request: &Request) -> Result<Response, Problem> {
    let outgoing: Outgoing = request
        .json()
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    let to = match &outgoing.to {
        To::User(id) => Recipient::User(id),
        To::Member(number) => Recipient::Member(number),
    };
    let id = notify::email(
        to,
        &outgoing.subject,
        &outgoing.text,
        outgoing.html.as_deref(),
    )?;
    db::execute(
        "INSERT INTO sent (message_id) VALUES (?1)",
        params![id.as_str()],
    )
    .map_err(|e| Problem::internal(e.to_string()))?;
    Ok(Response::json(201, &json!({ "id": id })))
}

fn send_then_fail(request: &Request) -> Result<Response, Problem> {
    send(request)?;
    Ok(Response::json(
        500,
        &json!({"error": "failing on purpose after queueing"}),
    ))
}

fn list(_request: &Request) -> Result<Response, Problem> {
    let rows = db::query("SELECT message_id FROM sent ORDER BY id", params![])
        .map_err(|e| Problem::internal(e.to_string()))?;
    let ids: Vec<String> = rows
        .iter()
        .filter_map(|row| row.get::<String>("message_id").ok())
        .collect();
    Ok(Response::json(200, &json!({ "sent": ids })))
}

souk_sdk::export_module!(MailerProbe);
