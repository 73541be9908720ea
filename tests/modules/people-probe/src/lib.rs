//! Test module `people-probe` (API 0.3.0): one route of each access level
//! (`public`, `member`, `admin`), for GET and POST, each answering the
//! call context the host gave it — above all the caller — and the headers
//! it received, so tests can check who the host said was calling and that
//! no credential arrived. API keys need the `api_access` feature.

use serde_json::json;
use souk_sdk::{Gates, Module, Request, Response, Router, context};

/// The probe.
struct Probe;

impl Module for Probe {
    fn gates() -> Gates {
        Gates::new().feature("api_access", "Call the probe with an API key.")
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .get("/public", echo)
            .post("/public", echo)
            .get("/member", echo)
            .post("/member", echo)
            .get("/admin", echo)
            .post("/admin", echo)
            .handle(request)
    }
}

/// Every route: the call context and the headers received.
fn echo(request: &Request) -> Response {
    Response::json(
        200,
        &json!({
            "method": request.method(),
            "context": context(),
            "headers": request.headers(),
        }),
    )
}

souk_sdk::export_module!(Probe);
