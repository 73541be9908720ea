//! Webhook endpoints and the event delivery logs (docs/webhooks.md):
//!
//! | method | path |
//! | --- | --- |
//! | GET, POST | `/v1/tenants/{tenant}/modules/{module}/webhooks` |
//! | GET, PATCH, DELETE | `/v1/tenants/{tenant}/modules/{module}/webhooks/{id}` |
//! | POST | `/v1/tenants/{tenant}/modules/{module}/webhooks/{id}/rotate-secret` |
//! | GET | `/v1/tenants/{tenant}/modules/{module}/webhooks/{id}/deliveries` (`?before=&limit=`) |
//! | POST | `/v1/tenants/{tenant}/modules/{module}/webhooks/{id}/deliveries/{delivery}/redeliver` |
//! | GET | `/v1/tenants/{tenant}/modules/{module}/event-deliveries` (`?status=&before=&limit=`) |
//!
//! The operator and the tenant's own token may call them; another tenant's
//! endpoint is a plain 404.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{ApiResult, Problem, TenantAccess, parse_json};
use crate::events::{EndpointChange, NewEndpoint};
use crate::souk::Souk;

/// The webhook routes, merged into the main router.
pub(super) fn routes() -> Router<Arc<Souk>> {
    const BASE: &str = "/v1/tenants/{tenant}/modules/{module}";
    Router::new()
        .route(&format!("{BASE}/webhooks"), get(list).post(create))
        .route(
            &format!("{BASE}/webhooks/{{id}}"),
            get(show).patch(update).delete(remove),
        )
        .route(
            &format!("{BASE}/webhooks/{{id}}/rotate-secret"),
            post(rotate),
        )
        .route(
            &format!("{BASE}/webhooks/{{id}}/deliveries"),
            get(deliveries),
        )
        .route(
            &format!("{BASE}/webhooks/{{id}}/deliveries/{{delivery}}/redeliver"),
            post(redeliver),
        )
        .route(&format!("{BASE}/event-deliveries"), get(module_deliveries))
}

async fn create(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, module)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let new: NewEndpoint = parse_json(body)?;
    let created = souk
        .events()
        .create_endpoint(&access.tenant, &module, new)
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn list(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, module)): Path<(String, String)>,
) -> ApiResult<Response> {
    let endpoints = souk
        .events()
        .list_endpoints(&access.tenant, &module)
        .await?;
    Ok(Json(serde_json::json!({ "endpoints": endpoints })).into_response())
}

async fn show(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, module, id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let endpoint = souk.events().endpoint(&access.tenant, &module, &id).await?;
    Ok(Json(endpoint).into_response())
}

async fn update(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, module, id)): Path<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let change: EndpointChange = parse_json(body)?;
    let endpoint = souk
        .events()
        .update_endpoint(&access.tenant, &module, &id, change)
        .await?;
    Ok(Json(endpoint).into_response())
}

async fn remove(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, module, id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    souk.events()
        .delete_endpoint(&access.tenant, &module, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn rotate(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, module, id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let rotated = souk
        .events()
        .rotate_secret(&access.tenant, &module, &id)
        .await?;
    Ok(Json(rotated).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    #[serde(default)]
    before: Option<i64>,
    #[serde(default)]
    limit: Option<u32>,
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    query
        .map(|Query(q)| q)
        .map_err(|e| Problem::bad_request(e.body_text()))
}

async fn deliveries(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, module, id)): Path<(String, String, String)>,
    page: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let page = query(page)?;
    let found = souk
        .events()
        .deliveries(&access.tenant, &module, &id, page.before, page.limit)
        .await?;
    Ok(Json(found).into_response())
}

async fn redeliver(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, module, id, delivery)): Path<(String, String, String, String)>,
) -> ApiResult<Response> {
    // Not a number: no such delivery, as for any unknown id.
    let Ok(delivery) = delivery.parse::<i64>() else {
        return Err(Problem::from(crate::error::SoukError::NotFound(
            "no such delivery of this endpoint".to_owned(),
        )));
    };
    let queued = souk
        .events()
        .redeliver(&access.tenant, &module, &id, delivery)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(queued)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModulePageQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

async fn module_deliveries(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, module)): Path<(String, String)>,
    page: Result<Query<ModulePageQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let page = query(page)?;
    let found = souk
        .events()
        .module_deliveries(
            &access.tenant,
            &module,
            page.status.as_deref(),
            page.before.as_deref(),
            page.limit,
        )
        .await?;
    Ok(Json(found).into_response())
}
