//! Test module `files-probe`: every function of the host's `files`
//! interface (API 0.3.0) behind an HTTP route, written directly against
//! `wit/since_v0.3.0` with `wit-bindgen`.
//!
//! - `POST /files?name=N&type=T` stores the body → `201` file info;
//! - `POST /files/fail?name=N&type=T` stores the body, then answers `500`
//!   (the host rolls the call back);
//! - `GET /files?cursor=C&limit=L` → `{"files": [...], "next_cursor"}`;
//! - `GET /files/{id}` → file info; `GET /files/{id}/bytes` → the bytes;
//! - `DELETE /files/{id}` → `204`;
//! - `GET /files/{id}/url?ttl=S` → `{"url": "/f/..."}`.
//!
//! A `file-error` answers: `not-found` 404, `type-not-allowed` 415,
//! `too-large` 413, `denied` 402 (with the denial), `invalid` 400,
//! `unavailable` 503, each as `{"error": kind, "message"?, ...}`.

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
use bindings::souk::module::files::{self, FileError, FileInfo};

struct Probe;

impl Guest for Probe {
    fn migrations() -> Vec<Migration> {
        Vec::new()
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
                key: "attachment_bytes".into(),
                description: "Bytes of attachments the tenant may keep.".into(),
                kind: LimitKind::Storage,
            }],
        }
    }

    fn handle(request: Request) -> Response {
        let query = parse_query(&request.query);
        let param = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
        match (request.method.as_str(), segments.as_slice()) {
            ("POST", ["files"]) => put(&param, request.body, false),
            ("POST", ["files", "fail"]) => put(&param, request.body, true),
            ("GET", ["files"]) => {
                let limit = param("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
                match files::list(param("cursor").as_deref(), limit) {
                    Ok(page) => json(
                        200,
                        &json!({
                            "files": page.files.iter().map(info).collect::<Vec<_>>(),
                            "next_cursor": page.next_cursor,
                        }),
                    ),
                    Err(e) => failure(e),
                }
            }
            ("GET", ["files", id]) => match files::get(id) {
                Ok(file) => json(200, &info(&file)),
                Err(e) => failure(e),
            },
            ("DELETE", ["files", id]) => match files::delete(id) {
                Ok(()) => Response {
                    status: 204,
                    headers: Vec::new(),
                    body: Vec::new(),
                },
                Err(e) => failure(e),
            },
            ("GET", ["files", id, "bytes"]) => match files::read(id) {
                Ok(bytes) => Response {
                    status: 200,
                    headers: vec![("content-type".into(), "application/octet-stream".into())],
                    body: bytes,
                },
                Err(e) => failure(e),
            },
            ("GET", ["files", id, "url"]) => {
                let ttl = param("ttl").and_then(|t| t.parse().ok()).unwrap_or(60);
                match files::signed_url(id, ttl) {
                    Ok(url) => json(200, &json!({"url": url})),
                    Err(e) => failure(e),
                }
            }
            _ => json(404, &json!({"error": "no such route"})),
        }
    }

    fn run_job(_job: Job) -> Result<JobOutput, String> {
        Err("files-probe runs no jobs".into())
    }

    fn on_event(_event: Event) -> Result<(), String> {
        Ok(())
    }
}

fn put(param: &dyn Fn(&str) -> Option<String>, body: Vec<u8>, fail: bool) -> Response {
    let name = param("name").unwrap_or_default();
    let content_type = param("type").unwrap_or_default();
    match files::put(&name, &content_type, &body) {
        Ok(file) if fail => json(
            500,
            &json!({"error": "failing on purpose", "file": info(&file)}),
        ),
        Ok(file) => json(201, &info(&file)),
        Err(e) => failure(e),
    }
}

fn info(file: &FileInfo) -> Json {
    json!({
        "id": file.id,
        "name": file.name,
        "content_type": file.content_type,
        "size": file.size,
        "sha256": file.sha256,
        "created_at": file.created_at,
    })
}

fn failure(error: FileError) -> Response {
    match error {
        FileError::NotFound => json(404, &json!({"error": "not-found"})),
        FileError::TypeNotAllowed(m) => {
            json(415, &json!({"error": "type-not-allowed", "message": m}))
        }
        FileError::TooLarge(limit) => json(413, &json!({"error": "too-large", "limit": limit})),
        FileError::Denied(d) => json(
            402,
            &json!({
                "error": "denied",
                "reason": d.reason,
                "key": d.key,
                "used": d.used,
                "limit": d.limit,
            }),
        ),
        FileError::Invalid(m) => json(400, &json!({"error": "invalid", "message": m})),
        FileError::Unavailable(m) => json(503, &json!({"error": "unavailable", "message": m})),
    }
}

fn json(status: u16, body: &Json) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

/// `a=b&c=d` with `%XX` and `+` decoded.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() && text.is_char_boundary(i + 3) => {
                match u8::from_str_radix(&text[i + 1..i + 3], 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

bindings::export!(Probe with_types_in bindings);
