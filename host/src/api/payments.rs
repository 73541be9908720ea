//! The payments side of the API: checkout, the providers' return pages,
//! invoices for the tenant and the operator, and what the operator watches
//! (flagged events, stuck attempts). See docs/payments.md.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiResult, Operator, Problem, TenantAccess, parse_json};
use crate::billing::money::{format_minor, minor_digits};
use crate::billing::service::PurchaseRequest;
use crate::payments::apply::Recorded;
use crate::payments::checkout::WebhookOutcome;
use crate::payments::inbox::{Attempt, Provider};
use crate::payments::store::Invoice;
use crate::souk::Souk;

/// The payments routes, merged into the main router.
pub(super) fn routes() -> Router<Arc<Souk>> {
    Router::new()
        .route("/v1/tenants/{tenant}/checkout", post(checkout))
        .route("/v1/tenants/{tenant}/invoices", get(tenant_invoices))
        .route(
            "/v1/tenants/{tenant}/invoices/{invoice}",
            get(tenant_invoice),
        )
        .route(
            "/v1/tenants/{tenant}/invoices/{invoice}/html",
            get(invoice_html),
        )
        .route(
            "/v1/tenants/{tenant}/invoices/{invoice}/pdf",
            get(invoice_pdf),
        )
        .route(
            "/v1/tenants/{tenant}/invoices/{invoice}/mark-paid",
            post(mark_paid),
        )
        .route(
            "/v1/tenants/{tenant}/invoices/{invoice}/refund",
            post(refund),
        )
        .route("/v1/tenants/{tenant}/invoices/{invoice}/void", post(void))
        .route("/v1/invoices", get(all_invoices))
        .route("/v1/payments/esewa/return", get(esewa_return))
        .route("/v1/payments/esewa/failure/{attempt}", get(esewa_failure))
        .route("/v1/payments/khalti/return", get(khalti_return))
        .route("/v1/payments/stripe/return", get(stripe_return))
        .route("/v1/payments/stripe/webhook", post(stripe_webhook))
        .route("/v1/payments/flagged", get(flagged))
        .route("/v1/payments/stuck", get(stuck))
}

/// An invoice as the API shows it: amounts in minor units, and as text.
pub(super) fn invoice_view(invoice: &Invoice) -> Value {
    let digits = minor_digits(invoice.currency);
    let lines: Vec<Value> = invoice
        .lines
        .iter()
        .map(|l| {
            json!({
                "kind": l.kind.as_str(),
                "description": l.description,
                "module": l.module,
                "plan": l.plan,
                "amount": l.amount,
                "amount_text": format_minor(l.amount, digits),
            })
        })
        .collect();
    json!({
        "id": invoice.id,
        "number": invoice.number,
        "status": invoice.status.as_str(),
        "currency": invoice.currency.as_str(),
        "lines": lines,
        "subtotal": invoice.totals.subtotal,
        "tax": invoice.totals.tax,
        "total": invoice.totals.total,
        "total_text": format_minor(invoice.totals.total, digits),
        "purchase": invoice.purchase,
        "seller": invoice.seller,
        "buyer": {"name": invoice.buyer_name, "pan": invoice.buyer_pan},
        "provider": invoice.provider,
        "provider_reference": invoice.provider_reference,
        "created_at": invoice.created_at,
        "issued_at": invoice.issued_at,
        "paid_at": invoice.paid_at,
        "voided_at": invoice.voided_at,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckoutRequest {
    provider: String,
    #[serde(default)]
    module: Option<String>,
    #[serde(default)]
    plan: Option<String>,
    #[serde(default)]
    bundle: Option<String>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    pan: Option<String>,
}

/// The base URL the browser reached this host at (the Host header).
pub(super) fn public_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

async fn checkout(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: CheckoutRequest = parse_json(body)?;
    let provider = Provider::parse(&request.provider)
        .filter(|p| *p != Provider::Manual)
        .ok_or_else(|| Problem::bad_request("`provider` must be one of esewa, khalti, stripe"))?;
    let purchase = match (&request.module, &request.plan, &request.bundle) {
        (Some(module), Some(plan), None) => PurchaseRequest::Plan {
            module,
            plan,
            currency: request.currency.as_deref(),
        },
        (None, None, Some(bundle)) => PurchaseRequest::Bundle {
            bundle,
            currency: request.currency.as_deref(),
        },
        _ => {
            return Err(Problem::bad_request(
                "give `module` and `plan`, or `bundle`",
            ));
        }
    };
    let answer = souk
        .payments()
        .checkout(
            &access.tenant,
            purchase,
            provider,
            request.pan.as_deref(),
            &public_url(&headers),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "invoice": invoice_view(&answer.invoice),
            "attempt": answer.attempt,
            "provider": answer.provider,
            "next": answer.next,
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    limit: Option<u32>,
}

fn limit(query: &ListQuery) -> u32 {
    query.limit.unwrap_or(100).clamp(1, 500)
}

async fn tenant_invoices(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Query(query): Query<ListQuery>,
) -> ApiResult<Response> {
    let list = souk
        .payments()
        .invoices(Some(&access.tenant), limit(&query))
        .await?;
    let views: Vec<Value> = list.iter().map(invoice_view).collect();
    Ok(Json(json!({ "invoices": views })).into_response())
}

async fn tenant_invoice(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let invoice = souk.payments().invoice(Some(&access.tenant), &id).await?;
    Ok(Json(invoice_view(&invoice)).into_response())
}

/// The printable HTML: no scripts, nothing external.
async fn invoice_html(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let invoice = souk.payments().invoice(Some(&access.tenant), &id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        crate::payments::document::html(&invoice),
    )
        .into_response())
}

/// The PDF, as a download named after the invoice's number.
async fn invoice_pdf(
    State(souk): State<Arc<Souk>>,
    access: TenantAccess,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let invoice = souk.payments().invoice(Some(&access.tenant), &id).await?;
    let name: String = invoice
        .number
        .as_deref()
        .unwrap_or("invoice")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.pdf\""),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        crate::payments::document::pdf(&invoice)
            .map_err(|e| crate::error::SoukError::Internal(anyhow::anyhow!(e)))?,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkPaidRequest {
    reference: String,
}

/// Operator: the invoice was paid by bank transfer (audited).
async fn mark_paid(
    State(souk): State<Arc<Souk>>,
    _: Operator,
    access: TenantAccess,
    Path((_, id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: MarkPaidRequest = parse_json(body)?;
    let payments = souk.payments();
    let recorded = payments
        .mark_paid_by_transfer(&access.tenant, &id, &request.reference)
        .await?;
    let invoice = payments.invoice(Some(&access.tenant), &id).await?;
    Ok(Json(json!({
        "outcome": recorded.outcome.as_str(),
        "reason": recorded.reason,
        "repeated": recorded.repeated,
        "invoice": invoice_view(&invoice),
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundRequest {
    reason: String,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    keep_access: bool,
}

/// Operator: refunds a paid invoice (Stripe through its API; wallets and
/// bank transfers as done outside Souk); answers the credit note.
async fn refund(
    State(souk): State<Arc<Souk>>,
    _: Operator,
    access: TenantAccess,
    Path((_, id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: RefundRequest = parse_json(body)?;
    let note = souk
        .payments()
        .refund(
            &access.tenant,
            &id,
            &request.reason,
            request.reference.as_deref(),
            request.keep_access,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "credit_note": note }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VoidRequest {
    reason: String,
}

/// Operator: voids an open invoice (its attempts canceled; a late payment
/// for it is flagged, never granted). A paid invoice is refunded instead
/// (409).
async fn void(
    State(souk): State<Arc<Souk>>,
    _: Operator,
    access: TenantAccess,
    Path((_, id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: VoidRequest = parse_json(body)?;
    let invoice = souk
        .payments()
        .void_invoice(&access.tenant, &id, &request.reason)
        .await?;
    Ok(Json(invoice_view(&invoice)).into_response())
}

async fn all_invoices(
    State(souk): State<Arc<Souk>>,
    _: Operator,
    Query(query): Query<ListQuery>,
) -> ApiResult<Response> {
    let list = souk.payments().invoices(None, limit(&query)).await?;
    let views: Vec<Value> = list.iter().map(invoice_view).collect();
    Ok(Json(json!({ "invoices": views })).into_response())
}

/// What the browser sees when it comes back: the outcome and the invoice's
/// status (never the provider's raw answer).
async fn returned(souk: &Souk, recorded: &Recorded, attempt: &Attempt) -> ApiResult<Response> {
    let invoice = souk.payments().invoice(None, &attempt.invoice_id).await?;
    let message = match recorded.outcome.as_str() {
        "granted" => "Payment confirmed; your subscription is active.",
        "held" => "Payment pending with the provider; it will be confirmed shortly.",
        "ignored" if invoice.status.as_str() == "paid" => "Payment confirmed.",
        "failed" => "The payment did not go through; nothing was charged by Souk.",
        _ => "The payment needs the operator's attention; nothing was granted yet.",
    };
    Ok(Json(json!({
        "outcome": recorded.outcome.as_str(),
        "message": message,
        "invoice": invoice.number,
        "invoice_status": invoice.status.as_str(),
    }))
    .into_response())
}

#[derive(Deserialize)]
struct EsewaReturn {
    data: String,
}

async fn esewa_return(
    State(souk): State<Arc<Souk>>,
    Query(query): Query<EsewaReturn>,
) -> ApiResult<Response> {
    let (recorded, attempt) = souk.payments().esewa_return(&query.data).await?;
    returned(&souk, &recorded, &attempt).await
}

async fn esewa_failure(
    State(souk): State<Arc<Souk>>,
    Path(attempt): Path<String>,
) -> ApiResult<Response> {
    // The failure page carries nothing signed: ask eSewa about the attempt.
    let (recorded, attempt) = souk.payments().esewa_failure(&attempt).await?;
    returned(&souk, &recorded, &attempt).await
}

#[derive(Deserialize)]
struct KhaltiReturn {
    pidx: String,
}

async fn khalti_return(
    State(souk): State<Arc<Souk>>,
    Query(query): Query<KhaltiReturn>,
) -> ApiResult<Response> {
    let (recorded, attempt) = souk.payments().khalti_return(&query.pidx).await?;
    returned(&souk, &recorded, &attempt).await
}

#[derive(Deserialize)]
struct StripeReturn {
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    attempt: Option<String>,
}

async fn stripe_return(
    State(souk): State<Arc<Souk>>,
    Query(query): Query<StripeReturn>,
) -> ApiResult<Response> {
    let payments = souk.payments();
    let (recorded, attempt) = match (&query.session_id, &query.attempt) {
        (Some(session), _) => payments.stripe_return(session).await?,
        // Canceled at Stripe: the attempt's session is asked.
        (None, Some(attempt)) => payments.stripe_cancel(attempt).await?,
        (None, None) => return Err(Problem::bad_request("no `session_id`")),
    };
    returned(&souk, &recorded, &attempt).await
}

/// Stripe's webhook endpoint: the raw body, verified before it is parsed.
/// 200 for anything verified (Stripe stops retrying), 400 otherwise.
async fn stripe_webhook(
    State(souk): State<Arc<Souk>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = super::body_bytes(body)?;
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let outcome = souk
        .payments()
        .stripe_webhook(signature, &body)
        .await
        .map_err(|e| match e {
            crate::error::SoukError::Invalid(why) => Problem::bad_request(why),
            other => other.into(),
        })?;
    let answer = match outcome {
        WebhookOutcome::Recorded(r) => json!({
            "received": true,
            "outcome": r.outcome.as_str(),
            "repeated": r.repeated,
        }),
        WebhookOutcome::Unhandled => json!({"received": true, "outcome": "unhandled"}),
    };
    Ok(Json(answer).into_response())
}

async fn flagged(State(souk): State<Arc<Souk>>, _: Operator) -> ApiResult<Response> {
    let list = souk.payments().flagged().await?;
    let rows: Vec<Value> = list
        .into_iter()
        .map(|f| {
            json!({
                "provider": f.provider, "event_id": f.event_id, "attempt": f.attempt_id,
                "status": f.status, "amount": f.amount, "reason": f.reason,
                "received_at": f.received_at,
            })
        })
        .collect();
    Ok(Json(json!({ "flagged": rows })).into_response())
}

async fn stuck(State(souk): State<Arc<Souk>>, _: Operator) -> ApiResult<Response> {
    let list = souk.payments().stuck_attempts().await?;
    let rows: Vec<Value> = list
        .into_iter()
        .map(|a| {
            json!({
                "attempt": a.id, "invoice": a.invoice_id, "provider": a.provider.as_str(),
                "status": a.status.as_str(), "amount": a.amount,
                "currency": a.currency.as_str(), "created_at": a.created_at,
            })
        })
        .collect();
    Ok(Json(json!({ "stuck": rows })).into_response())
}
