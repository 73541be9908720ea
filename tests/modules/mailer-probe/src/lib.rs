//! Test module `mailer-probe`: queues email through the host's `notify`
//! interface (module API 0.3.0), written directly against
//! `wit/since_v0.3.0` with `wit-bindgen`.
//!
//! - Migration `0001_sent` creates `sent (id, message_id)`.
//! - `POST /send` with `{"to": {"user": "<id>"} | {"member": "<number>"},
//!   "subject": "...", "text": "...", "html": "..."?}` queues the message,
//!   records its id in `sent` and answers `201 {"id": "m_..."}`. A refusal
//!   is a problem document: unknown recipient 404, invalid 400, denied by
//!   the plan 402 (with the denial's fields), unavailable 503.
//! - `POST /send-then-fail`: the same, then answers 500, so the host rolls
//!   the call back and nothing may be sent.
//! - `GET /sent` → `200 {"sent": ["m_...", ...]}`.

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
    Event, GateSet, Guest, Job, JobOutput, Limit, LimitKind, Migration, Request, Response,
};
use bindings::souk::module::db;
use bindings::souk::module::notify;
use bindings::souk::module::types::Value;

/// The mailer probe.
struct MailerProbe;

impl Guest for MailerProbe {
    fn migrations() -> Vec<Migration> {
        vec![Migration {
            id: "0001_sent".into(),
            up: "CREATE TABLE sent (id INTEGER PRIMARY KEY, message_id TEXT NOT NULL)".into(),
            down: "DROP TABLE sent".into(),
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
            limits: vec![Limit {
                key: "emails_per_month".into(),
                description: "Emails the module may queue per month.".into(),
                kind: LimitKind::Email,
            }],
        }
    }

    fn handle(request: Request) -> Response {
        match (request.method.as_str(), request.path.as_str()) {
            ("POST", "/send") => send(&request.body),
            ("POST", "/send-then-fail") => {
                let sent = send(&request.body);
                if sent.status != 201 {
                    return sent;
                }
                json(500, &json!({"error": "failing on purpose after queueing"}))
            }
            ("GET", "/sent") => list(),
            _ => json(404, &json!({"error": "not found"})),
        }
    }

    fn run_job(_job: Job) -> Result<JobOutput, String> {
        Err("mailer-probe runs no jobs".into())
    }

    fn on_event(_event: Event) -> Result<(), String> {
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

fn problem(status: u16, kind: &str, detail: &str, extra: Json) -> Response {
    let mut body = json!({
        "type": format!("https://souk.dev/problems/mailer-probe/{kind}"),
        "title": kind,
        "status": status,
        "detail": detail,
    });
    if let (Some(body), Json::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    Response {
        status,
        headers: vec![("content-type".into(), "application/problem+json".into())],
        body: body.to_string().into_bytes(),
    }
}

fn send(body: &[u8]) -> Response {
    let Ok(body) = serde_json::from_slice::<Json>(body) else {
        return problem(400, "bad-json", "the body must be JSON", Json::Null);
    };
    let text_of = |key: &str| body.get(key).and_then(Json::as_str).map(str::to_owned);
    let to = match body.get("to") {
        Some(to) => match (to.get("user"), to.get("member")) {
            (Some(Json::String(id)), None) => notify::Recipient::User(id.clone()),
            (None, Some(Json::String(number))) => notify::Recipient::Member(number.clone()),
            _ => return problem(400, "bad-recipient", "to: {user} or {member}", Json::Null),
        },
        None => return problem(400, "bad-recipient", "to is required", Json::Null),
    };
    let message = notify::Message {
        to,
        subject: text_of("subject").unwrap_or_default(),
        text: text_of("text").unwrap_or_default(),
        html: text_of("html"),
    };
    let id = match notify::email(&message) {
        Ok(id) => id,
        Err(notify::NotifyError::UnknownRecipient(m)) => {
            return problem(404, "unknown-recipient", &m, Json::Null);
        }
        Err(notify::NotifyError::Invalid(m)) => return problem(400, "invalid", &m, Json::Null),
        Err(notify::NotifyError::Unavailable(m)) => {
            return problem(503, "unavailable", &m, Json::Null);
        }
        Err(notify::NotifyError::Denied(denial)) => {
            return problem(
                402,
                "denied",
                &format!("`{}` denied: {}", denial.key, denial.reason),
                json!({
                    "reason": denial.reason,
                    "feature": denial.key,
                    "used": denial.used,
                    "limit": denial.limit,
                }),
            );
        }
    };
    if let Err(error) = db::execute(
        "INSERT INTO sent (message_id) VALUES (?1)",
        &[Value::Text(id.clone())],
    ) {
        return problem(500, "db", &error.message, Json::Null);
    }
    json(201, &json!({"id": id}))
}

fn list() -> Response {
    match db::query("SELECT message_id FROM sent ORDER BY id", &[]) {
        Ok(rows) => {
            let ids: Vec<Json> = rows
                .rows
                .into_iter()
                .filter_map(|row| match row.into_iter().next() {
                    Some(Value::Text(id)) => Some(json!(id)),
                    _ => None,
                })
                .collect();
            json(200, &json!({"sent": ids}))
        }
        Err(error) => problem(500, "db", &error.message, Json::Null),
    }
}

bindings::export!(MailerProbe with_types_in bindings);
