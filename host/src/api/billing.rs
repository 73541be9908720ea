//! The billing side of the API: plans, subscriptions, quotes, usage, the
//! notification outbox, maintenance and the manual clock.
//!
//! Tenants (with their token) subscribe, quote, change, cancel and read
//! their usage; the operator also grants and extends subscriptions (comps,
//! support, and — until the payments integration lands — confirmed
//! payments), runs maintenance and reads the outbox.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::{ApiResult, Operator, Problem, TenantAccess, body_bytes, parse_json};
use crate::auth::Principal;
use crate::billing::service::Actor;
use crate::billing::{bounds, listing};
use crate::clock::rfc3339;
use crate::error::SoukError;
use crate::souk::Souk;
use crate::usage::UsageEvent;

/// The billing routes, merged into the main router.
pub(super) fn routes() -> Router<Arc<Souk>> {
    Router::new()
        .route("/v1/plans", get(list_plans))
        .route(
            "/v1/tenants/{tenant}/subscriptions",
            get(list_subscriptions).post(subscribe),
        )
        .route(
            "/v1/tenants/{tenant}/subscriptions/{module}",
            get(show_subscription),
        )
        .route(
            "/v1/tenants/{tenant}/subscriptions/{module}/quote",
            post(quote),
        )
        .route(
            "/v1/tenants/{tenant}/subscriptions/{module}/change",
            post(change_plan),
        )
        .route(
            "/v1/tenants/{tenant}/subscriptions/{module}/cancel",
            post(cancel),
        )
        .route(
            "/v1/tenants/{tenant}/subscriptions/{module}/reactivate",
            post(reactivate),
        )
        .route(
            "/v1/tenants/{tenant}/subscriptions/{module}/grant",
            post(grant),
        )
        .route(
            "/v1/tenants/{tenant}/subscriptions/{module}/extend",
            post(extend),
        )
        .route("/v1/tenants/{tenant}/usage", get(usage))
        .route("/v1/tenants/{tenant}/usage-events", post(usage_event))
        .route("/v1/tenants/{tenant}/notifications", get(tenant_outbox))
        .route("/v1/outbox", get(outbox))
        .route("/v1/maintenance/run", post(run_maintenance))
        .route("/v1/clock", get(show_clock).post(move_clock))
}

fn actor(access: &TenantAccess) -> Actor<'_> {
    match access.principal {
        Principal::Operator => Actor::Operator,
        Principal::Tenant { .. } | Principal::User(_) | Principal::ApiKey(_) => {
            Actor::Tenant(&access.tenant.slug)
        }
    }
}

/// An optional JSON body: empty means the defaults.
fn optional_json<T: serde::de::DeserializeOwned + Default>(
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<T> {
    let bytes = body_bytes(body)?;
    if bytes.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))
}

async fn list_plans(State(souk): State<Arc<Souk>>) -> ApiResult<Response> {
    Ok(Json(listing::listing(&souk.billing.plans())).into_response())
}

async fn list_subscriptions(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
) -> ApiResult<Response> {
    let list = souk.billing.list(&access.tenant).await?;
    Ok(Json(json!({ "subscriptions": list })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeRequest {
    module: String,
    plan: String,
    #[serde(default)]
    currency: Option<String>,
}

async fn subscribe(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: SubscribeRequest = parse_json(body)?;
    let view = souk
        .billing
        .subscribe(
            &access.tenant,
            &request.module,
            &request.plan,
            request.currency.as_deref(),
            actor(&access),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn show_subscription(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, module)): Path<(String, String)>,
) -> ApiResult<Response> {
    let view = souk.billing.show(&access.tenant, &module).await?;
    let history = souk.billing.history(&access.tenant, &module).await?;
    Ok(Json(json!({"subscription": view, "history": history})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanRequest {
    plan: String,
}

async fn quote(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, module)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: PlanRequest = parse_json(body)?;
    let quote = souk
        .billing
        .quote(&access.tenant, &module, &request.plan)
        .await?;
    Ok(Json(quote).into_response())
}

async fn change_plan(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, module)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: PlanRequest = parse_json(body)?;
    let (view, quote) = souk
        .billing
        .change_plan(&access.tenant, &module, &request.plan, actor(&access))
        .await?;
    Ok(Json(json!({"subscription": view, "charged": quote})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelRequest {
    #[serde(default = "yes")]
    at_period_end: bool,
}

impl Default for CancelRequest {
    fn default() -> Self {
        CancelRequest {
            at_period_end: true,
        }
    }
}

fn yes() -> bool {
    true
}

async fn cancel(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, module)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: CancelRequest = optional_json(body)?;
    // Through payments: a subscription Stripe renews is canceled there first.
    let view = souk
        .payments()
        .cancel_subscription(
            &access.tenant,
            &module,
            request.at_period_end,
            actor(&access),
        )
        .await?;
    Ok(Json(view).into_response())
}

async fn reactivate(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, module)): Path<(String, String)>,
) -> ApiResult<Response> {
    let view = souk
        .payments()
        .reactivate_subscription(&access.tenant, &module, actor(&access))
        .await?;
    Ok(Json(view).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantRequest {
    plan: String,
    #[serde(default = "one")]
    periods: u32,
    #[serde(default)]
    currency: Option<String>,
}

fn one() -> u32 {
    1
}

async fn grant(
    State(souk): State<Arc<Souk>>,
    _: Operator,
    access: TenantAccess,
    Path((_, module)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: GrantRequest = parse_json(body)?;
    let view = souk
        .billing
        .grant(
            &access.tenant,
            &module,
            &request.plan,
            request.periods,
            request.currency.as_deref(),
        )
        .await?;
    Ok(Json(view).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendRequest {
    periods: u32,
}

async fn extend(
    State(souk): State<Arc<Souk>>,
    _: Operator,
    access: TenantAccess,
    Path((_, module)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: ExtendRequest = parse_json(body)?;
    let view = souk
        .billing
        .extend(&access.tenant, &module, request.periods)
        .await?;
    Ok(Json(view).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    #[serde(default)]
    module: Option<String>,
}

async fn usage(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Query(query): Query<UsageQuery>,
) -> ApiResult<Response> {
    let report = souk
        .usage()
        .report(&access.tenant, query.module.as_deref())
        .await?;
    Ok(Json(report).into_response())
}

/// `{"events": [...]}`: several events recorded in one transaction.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageBatch {
    events: Vec<UsageEvent>,
}

/// Records metered usage: one event (201 when counted, 200 when its key
/// was already counted in its period) or a batch (200, one result per event,
/// in order). A batch is all or nothing: an invalid event (named by its
/// index) leaves every event of the request uncounted. Concurrent requests
/// share a transaction (group commit, `usage::group`); each is answered
/// once its events have committed.
async fn usage_event(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let value: serde_json::Value = parse_json(body)?;
    let invalid = |e: serde_json::Error| Problem::bad_request(format!("invalid JSON body: {e}"));
    let tenant = &access.tenant;
    if value.get("events").is_some() {
        let batch = serde_json::from_value::<UsageBatch>(value).map_err(invalid)?;
        let results = souk.usage().record_batch(tenant, batch.events).await?;
        return Ok(Json(json!({ "events": results })).into_response());
    }
    let event = serde_json::from_value::<UsageEvent>(value).map_err(invalid)?;
    let recorded = souk.usage().record_one(tenant, event).await?;
    let status = if recorded.counted {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(recorded)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboxQuery {
    #[serde(default)]
    after: i64,
    #[serde(default = "page")]
    limit: i64,
}

fn page() -> i64 {
    100
}

async fn outbox(
    State(souk): State<Arc<Souk>>,
    _: Operator,
    Query(query): Query<OutboxQuery>,
) -> ApiResult<Response> {
    let events = souk
        .billing
        .outbox(None, query.after, query.limit.clamp(1, 1000))
        .await?;
    Ok(Json(json!({ "events": events })).into_response())
}

async fn tenant_outbox(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Query(query): Query<OutboxQuery>,
) -> ApiResult<Response> {
    let events = souk
        .billing
        .outbox(
            Some(&access.tenant),
            query.after,
            query.limit.clamp(1, 1000),
        )
        .await?;
    Ok(Json(json!({ "events": events })).into_response())
}

async fn run_maintenance(State(souk): State<Arc<Souk>>, _: Operator) -> ApiResult<Response> {
    let report = souk.run_maintenance().await?;
    Ok(Json(report).into_response())
}

async fn show_clock(State(souk): State<Arc<Souk>>, _: Operator) -> ApiResult<Response> {
    let now = souk.billing.clock().now();
    Ok(Json(json!({"now": rfc3339(now), "manual": souk.manual_clock.is_some()})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockRequest {
    #[serde(default)]
    advance_seconds: Option<i64>,
    #[serde(default)]
    advance_days: Option<i64>,
    #[serde(default)]
    set: Option<String>,
}

async fn move_clock(
    State(souk): State<Arc<Souk>>,
    _: Operator,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: ClockRequest = parse_json(body)?;
    let now = souk.billing.clock().now();
    let invalid = |e: bounds::BoundsError| SoukError::Invalid(e.to_string());
    let target = match (request.set, request.advance_seconds, request.advance_days) {
        (Some(text), None, None) => {
            let target =
                time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| {
                        SoukError::Invalid(format!("`set`: {text:?} is not RFC 3339: {e}"))
                    })?;
            // Backwards moves are refused by the clock with their own message.
            if target >= now {
                bounds::check_target(now, target).map_err(invalid)?;
            }
            target
        }
        (None, Some(seconds), None) => bounds::advance(now, seconds, 1).map_err(invalid)?,
        (None, None, Some(days)) => bounds::advance(now, days, 86_400).map_err(invalid)?,
        _ => {
            return Err(SoukError::Invalid(
                "give exactly one of `set`, `advance_seconds`, `advance_days`".to_owned(),
            )
            .into());
        }
    };
    souk.set_manual_clock(target)?;
    Ok(Json(json!({"now": rfc3339(target), "manual": true})).into_response())
}
