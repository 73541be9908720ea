//! A module built for API 0.3.0 that declares a feature of kind `sso` (so
//! a plan granting it allows the tenant's single sign-on) and two routes
//! for signed-in members: `GET /me` answers the caller the host names, and
//! `POST /notes` (a request that changes state, so a cookie-signed one
//! needs its CSRF token) answers the same with status 201.

use serde_json::json;
use souk_sdk::{FeatureKind, Gates, Module, Request, Response, Router, context};

struct SsoProbe;

impl Module for SsoProbe {
    fn gates() -> Gates {
        Gates::new().feature_of_kind(
            "sso",
            "Sign in with the tenant's OpenID Connect provider.",
            FeatureKind::Sso,
        )
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .get("/me", |_: &Request| caller(200))
            .post("/notes", |_: &Request| caller(201))
            .handle(request)
    }
}

fn caller(status: u16) -> Response {
    let context = context();
    Response::json(
        status,
        &json!({"tenant_id": context.tenant_id, "caller": context.caller}),
    )
}

souk_sdk::export_module!(SsoProbe);
