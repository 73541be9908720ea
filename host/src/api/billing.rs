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
use crate::billing::bounds;
use crate::billing::service::Actor;
use crate::capabilities::entitlements::call;
use crate::clock::rfc3339;
use crate::dispatch;
use crate::entitlements::{MAX_QUANTITY, UsageKind};
use crate::error::SoukError;
use crate::souk::Souk;

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
        Principal::Tenant { .. } => Actor::Tenant(&access.tenant.slug),
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
    let plans = souk.billing.plans();
    let modules: Vec<_> = plans
        .modules
        .iter()
        .map(|m| {
            let plans: Vec<_> = m
                .plans
                .iter()
                .map(|p| {
                    let prices: serde_json::Map<String, serde_json::Value> = p
                        .prices
                        .iter()
                        .map(|(currency, price)| (currency.to_string(), json!(price)))
                        .collect();
                    let meters: serde_json::Map<String, serde_json::Value> = p
                        .meters
                        .iter()
                        .map(|(key, meter)| {
                            (
                                key.clone(),
                                json!({"per_period": meter.amount, "reset": "monthly"}),
                            )
                        })
                        .collect();
                    json!({
                        "slug": p.slug,
                        "name": p.name,
                        "free": p.free,
                        "prices": prices,
                        "interval": p.interval,
                        "trial_days": p.trial_days,
                        "features": p.features,
                        "limits": p.limits,
                        "meters": meters,
                    })
                })
                .collect();
            let source = if m.suggested { "module" } else { "operator" };
            json!({"module": m.module.as_str(), "source": source, "plans": plans})
        })
        .collect();
    let bundles: Vec<_> = plans
        .bundles
        .iter()
        .map(|b| {
            let plans: serde_json::Map<String, serde_json::Value> = b
                .plans
                .iter()
                .map(|(module, plan)| (module.to_string(), json!(plan)))
                .collect();
            json!({"slug": b.slug, "name": b.name, "discount_bps": b.discount_bps, "plans": plans})
        })
        .collect();
    Ok(Json(json!({"modules": modules, "bundles": bundles})).into_response())
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
    let view = souk
        .billing
        .cancel(
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
        .billing
        .reactivate(&access.tenant, &module, actor(&access))
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
    let tenant = &access.tenant;
    let mut installations = souk.installer().list(tenant).await?;
    if let Some(module) = &query.module {
        installations.retain(|i| &i.module == module);
        if installations.is_empty() {
            return Err(SoukError::NotFound(format!(
                "module {module:?} is not installed for this tenant"
            ))
            .into());
        }
    }
    let now = souk.billing.clock().now();
    let mut modules = Vec::new();
    for installation in installations {
        dispatch::ensure_grant(&souk, tenant, &installation).await?;
        let engine = souk.billing.engine();
        let lines: Vec<_> = engine
            .usage_view(&tenant.id, &installation.module, now)
            .unwrap_or_default()
            .into_iter()
            .map(|line| {
                json!({
                    "key": line.key,
                    "kind": match line.kind {
                        UsageKind::Count => "count",
                        UsageKind::Meter => "meter",
                    },
                    "used": line.used,
                    "limit": line.limit,
                    "percent": line.percent.map(|p| (p * 100.0).round() / 100.0),
                    "period_start": line.period.map(|p| rfc3339(p.start)),
                    "period_end": line.period.map(|p| rfc3339(p.end)),
                })
            })
            .collect();
        modules.push(json!({
            "module": installation.module,
            "plan": engine.plan(&tenant.id, &installation.module),
            "usage": lines,
        }));
    }
    Ok(Json(json!({"at": rfc3339(now), "modules": modules})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageEvent {
    module: String,
    meter: String,
    #[serde(default = "one_unit")]
    amount: u64,
    idempotency_key: String,
}

fn one_unit() -> u64 {
    1
}

/// Most events one request may carry.
const MAX_EVENTS_PER_REQUEST: usize = 1000;

/// `{"events": [...]}`: several events recorded in one transaction.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageBatch {
    events: Vec<UsageEvent>,
}

/// Records metered usage: one event (201 when counted, 200 when its key
/// was already counted in its period) or a batch (200, one result per event,
/// in order). A batch is all or nothing: an invalid event (named by its
/// index) leaves every event of the request uncounted.
async fn usage_event(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let value: serde_json::Value = parse_json(body)?;
    let batch = value.get("events").is_some();
    let invalid = |e: serde_json::Error| Problem::bad_request(format!("invalid JSON body: {e}"));
    let events = if batch {
        serde_json::from_value::<UsageBatch>(value)
            .map_err(invalid)?
            .events
    } else {
        vec![serde_json::from_value::<UsageEvent>(value).map_err(invalid)?]
    };
    if events.is_empty() || events.len() > MAX_EVENTS_PER_REQUEST {
        return Err(SoukError::Invalid(format!(
            "`events` must hold 1 to {MAX_EVENTS_PER_REQUEST} events"
        ))
        .into());
    }
    let at = |i: usize| {
        if batch {
            format!("events[{i}]: ")
        } else {
            String::new()
        }
    };
    for (i, event) in events.iter().enumerate() {
        if event.amount == 0 || event.amount > MAX_QUANTITY {
            return Err(SoukError::Invalid(format!(
                "{}`amount` must be 1 to {MAX_QUANTITY}, not {}",
                at(i),
                event.amount
            ))
            .into());
        }
        if event.idempotency_key.is_empty()
            || event.idempotency_key.len() > call::MAX_IDEMPOTENCY_KEY
        {
            return Err(SoukError::Invalid(format!(
                "{}`idempotency_key` must be 1 to {} bytes",
                at(i),
                call::MAX_IDEMPOTENCY_KEY
            ))
            .into());
        }
    }
    let tenant = &access.tenant;
    let mut modules: Vec<&str> = events.iter().map(|e| e.module.as_str()).collect();
    modules.sort_unstable();
    modules.dedup();
    for module in modules {
        let installation = souk.installer().require(tenant, module).await?;
        dispatch::ensure_grant(&souk, tenant, &installation).await?;
    }
    let now = souk.billing.clock().now();
    let engine = souk.billing.engine();
    let pool = souk.tenancy.database(tenant).await?;
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(SoukError::from)?;
    // Each event is taken in the engine and written in the transaction;
    // dropping the holds (an error, a refused event, a failed commit) gives
    // every event of the request back.
    let mut holds = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let meter_event = call::MeterEvent {
            tenant_id: &tenant.id,
            module: &event.module,
            meter: &event.meter,
            amount: event.amount,
            idempotency_key: &event.idempotency_key,
            at: now,
        };
        let taken = match call::MeterHold::take(engine, meter_event, false) {
            Ok(mut hold) => hold.write(&mut tx).await.map(|()| hold),
            Err(e) => Err(e),
        };
        match taken {
            Ok(hold) => holds.push(hold),
            Err(
                call::CallUsageError::UnknownKey(message)
                | call::CallUsageError::OutOfRange(message),
            ) => {
                return Err(SoukError::Invalid(format!("{}{message}", at(i))).into());
            }
            Err(other) => return Err(SoukError::Internal(anyhow::anyhow!("{other}")).into()),
        }
    }
    tx.commit().await.map_err(SoukError::from)?;
    let mut counted = false;
    let results: Vec<serde_json::Value> = holds
        .into_iter()
        .zip(&events)
        .map(|(hold, event)| {
            let reading = hold.reading();
            hold.commit();
            counted = reading.counted;
            json!({
                "module": event.module,
                "meter": event.meter,
                "idempotency_key": event.idempotency_key,
                "counted": reading.counted,
                "used": reading.used,
                "limit": reading.allowance,
                "period_start": rfc3339(reading.period.start),
                "period_end": rfc3339(reading.period.end),
            })
        })
        .collect();
    if batch {
        return Ok(Json(json!({ "events": results })).into_response());
    }
    // One event: `counted` is its own.
    let status = if counted {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut body = results.into_iter().next().unwrap_or_default();
    if let Some(fields) = body.as_object_mut() {
        fields.remove("idempotency_key");
    }
    Ok((status, Json(body)).into_response())
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
