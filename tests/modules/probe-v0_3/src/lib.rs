//! A module built with the SDK for API 0.3.0 that shows what the host tells
//! it: `GET /whoami` answers the call's context (tenant, module, version,
//! caller); `POST /items/{key}` takes one unit of `max_items` under the
//! idempotency key `{key}` and `POST /scans/{key}` records one scan under
//! it, each answering `{"used", "limit", "replay"}`.

use serde_json::json;
use souk_sdk::entitlements::{self, Counted};
use souk_sdk::{Gates, LimitKind, Module, Problem, Request, Response, Router, context};

struct Probe;

impl Module for Probe {
    fn gates() -> Gates {
        Gates::new()
            .limit("max_items", "Items a tenant may keep.", LimitKind::Count)
            .limit("scans", "Scans per month.", LimitKind::Meter)
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .get("/whoami", whoami)
            .post("/items/{key}", take_item)
            .post("/scans/{key}", record_scan)
            .handle(request)
    }
}

fn whoami(_request: &Request) -> Response {
    let context = context();
    Response::json(
        200,
        &json!({
            "tenant_id": context.tenant_id,
            "module": context.module_slug,
            "version": context.module_version,
            "caller": context.caller,
        }),
    )
}

fn answer(counted: Counted) -> Response {
    Response::json(
        200,
        &json!({
            "used": counted.usage.used,
            "limit": counted.usage.limit,
            "replay": counted.replay,
        }),
    )
}

fn take_item(request: &Request) -> Result<Response, Problem> {
    let key = request.param("key")?;
    Ok(answer(entitlements::consume_once_counted(
        "max_items",
        1,
        key,
    )?))
}

fn record_scan(request: &Request) -> Result<Response, Problem> {
    let key = request.param("key")?;
    Ok(answer(entitlements::record_usage_counted("scans", 1, key)?))
}

souk_sdk::export_module!(Probe);
