//! Test module `files-probe`: every function of the host's `files`
//! interface (API 0.3.0) behind an HTTP route, through
//! [`souk_sdk::files`].
//!
//! - `POST /files?name=N&type=T` stores the body → `201` file info;
//! - `POST /files/fail?name=N&type=T` stores the body, then answers `500`
//!   (the host rolls the call back);
//! - `GET /files?cursor=C&limit=L` → `{"files": [...], "next_cursor"}`;
//! - `GET /files/{id}` → file info; `GET /files/{id}/bytes` → the bytes;
//! - `DELETE /files/{id}` → `204`;
//! - `GET /files/{id}/url?ttl=S` → `{"url": "/f/..."}`.
//!
//! A refusal is the SDK's problem document for it: 404, 415 (type), 413
//! (size, with `limit`), 402 (the plan's denial), 400, 503.

use serde_json::json;
use souk_sdk::files::{self, FileInfo};
use souk_sdk::{Gates, LimitKind, Module, Problem, Request, Response, Router};

struct FilesProbe;

impl Module for FilesProbe {
    fn gates() -> Gates {
        Gates::new().limit(
            "attachment_bytes",
            "Bytes of attachments the tenant may keep.",
            LimitKind::Storage,
        )
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .post("/files", |r: &Request| put(r, false))
            .post("/files/fail", |r: &Request| put(r, true))
            .get("/files", list)
            .get("/files/{id}", get)
            .delete("/files/{id}", delete)
            .get("/files/{id}/bytes", read)
            .get("/files/{id}/url", signed_url)
            .handle(request)
    }
}

fn put(request: &Request, fail: bool) -> Result<Response, Problem> {
    let name = request.query("name").unwrap_or_default();
    let content_type = request.query("type").unwrap_or_default();
    let file = files::put(&name, &content_type, request.body())?;
    if fail {
        return Ok(Response::json(
            500,
            &json!({"error": "failing on purpose", "file": file}),
        ));
    }
    Ok(Response::json(201, &file))
}

fn list(request: &Request) -> Result<Response, Problem> {
    let limit = request.query_parsed::<u32>("limit")?.unwrap_or(100);
    let page = files::list(request.query("cursor").as_deref(), limit)?;
    Ok(Response::json(200, &page))
}

fn get(request: &Request) -> Result<Response, Problem> {
    let file: FileInfo = files::get(request.param("id")?)?;
    Ok(Response::json(200, &file))
}

fn delete(request: &Request) -> Result<Response, Problem> {
    files::delete(request.param("id")?)?;
    Ok(Response::no_content())
}

fn read(request: &Request) -> Result<Response, Problem> {
    let bytes = files::read(request.param("id")?)?;
    Ok(Response::new(200)
        .with_header("content-type", "application/octet-stream")
        .with_body(bytes))
}

fn signed_url(request: &Request) -> Result<Response, Problem> {
    let ttl = request.query_parsed::<u32>("ttl")?.unwrap_or(60);
    let url = files::signed_url(request.param("id")?, ttl)?;
    Ok(Response::json(200, &json!({"url": url})))
}

souk_sdk::export_module!(FilesProbe);
