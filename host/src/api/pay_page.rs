//! Payment links (docs/payments.md, "Renewals"): the page a person opens
//! from a renewal invoice's email, and the buttons on it. Whoever holds
//! the link's token may see the invoice and pay it; nothing else.
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | GET | `/pay/{token}` | the invoice, with a button per provider while it is open |
//! | POST | `/pay/{token}/{provider}` | starts a payment of that invoice: 303 to Khalti's or Stripe's page, or a page with eSewa's signed form |
//!
//! A token that does not verify, has expired or names no invoice is a
//! plain 404 (the same answer for all three). Pages are HTML with no
//! scripts and nothing external.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::{ApiResult, Problem};
use crate::payments::document::{self, PayButton};
use crate::payments::inbox::Provider;
use crate::payments::pay_link::{LinkPayment, PayPage};
use crate::payments::providers::NextStep;
use crate::souk::Souk;

/// The payment-link routes, merged into the main router.
pub(super) fn routes() -> Router<Arc<Souk>> {
    Router::new()
        .route("/pay/{token}", get(show))
        .route("/pay/{token}/{provider}", post(pay))
}

fn label(provider: Provider) -> &'static str {
    match provider {
        Provider::Esewa => "eSewa",
        Provider::Khalti => "Khalti",
        Provider::Stripe => "card (Stripe)",
        Provider::Manual => "bank transfer",
    }
}

/// An HTML page: no scripts, nothing external, not cached (the link is a
/// bearer token; the invoice's state changes).
fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

fn page(token: &str, page: &PayPage) -> String {
    let buttons: Vec<String> = page
        .providers
        .iter()
        .map(|p| format!("Pay with {}", label(*p)))
        .collect();
    let buttons: Vec<PayButton<'_>> = page
        .providers
        .iter()
        .zip(buttons.iter())
        .map(|(p, text)| PayButton {
            provider: p.as_str(),
            label: text,
        })
        .collect();
    document::pay_page(&page.invoice, token, &buttons)
}

async fn show(State(souk): State<Arc<Souk>>, Path(token): Path<String>) -> ApiResult<Response> {
    let shown = souk.payments().pay_page(&token).await?;
    Ok(html(StatusCode::OK, page(&token, &shown)))
}

async fn pay(
    State(souk): State<Arc<Souk>>,
    Path((token, provider)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let provider = Provider::parse(&provider)
        .filter(|p| *p != Provider::Manual)
        .ok_or_else(|| Problem::bad_request("the provider must be esewa, khalti or stripe"))?;
    let paid = souk
        .payments()
        .pay_by_link(&token, provider, &super::payments::public_url(&headers))
        .await?;
    match paid {
        // Paid or void meanwhile: the page says so, and offers nothing.
        LinkPayment::NotOpen(shown) => Ok(html(StatusCode::CONFLICT, page(&token, &shown))),
        LinkPayment::Started(started) => Ok(match &started.next {
            NextStep::Redirect { url } => {
                (StatusCode::SEE_OTHER, [(header::LOCATION, url.as_str())]).into_response()
            }
            NextStep::FormPost { action, fields } => html(
                StatusCode::OK,
                document::provider_form_page(&started.invoice, label(provider), action, fields),
            ),
        }),
    }
}
