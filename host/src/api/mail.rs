//! The tenant's mail log: `GET /v1/tenants/{tenant}/mail?after=&limit=`,
//! what its modules and the host queued in its outbox and what became of
//! each message (queued, sent with the relay's answer, failed with the
//! reason), with the delivery state (whether a relay is configured).
//! Another tenant's log is the usual 404 ([`TenantAccess`]).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::{ApiResult, TenantAccess};
use crate::souk::Souk;

/// The mail routes, merged into the main router.
pub(super) fn routes() -> Router<Arc<Souk>> {
    Router::new().route("/v1/tenants/{tenant}/mail", get(mail_log))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    50
}

async fn mail_log(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Query(query): Query<LogQuery>,
) -> ApiResult<Response> {
    let page = souk
        .mail_log(&access.tenant, query.after, query.limit)
        .await?;
    Ok(Json(page).into_response())
}
