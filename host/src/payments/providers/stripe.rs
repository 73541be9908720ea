//! Stripe (docs: PROTOCOLS.md, "Stripe"): Checkout Sessions created with an
//! `Idempotency-Key` (the attempt's id, so a retried creation is the same
//! session), looked up by id, and webhooks verified before anything is read
//! from them: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`, each `v1`
//! compared in constant time with HMAC-SHA256(endpoint secret,
//! `<t>.<raw body>`), other schemes ignored, `|now - t| <= 300 s` on the
//! host's clock. Several secrets may be configured while one rotates.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use time::OffsetDateTime;

use super::{
    Initiated, Initiation, Lookup, NextStep, PaymentProvider, ProviderError, ProviderFuture,
    Secret, transport,
};
use crate::billing::plans::Currency;
use crate::payments::inbox::{Attempt, PaymentStatus, Provider};

const NAME: &str = "Stripe";

/// The tolerance on a webhook's timestamp, seconds (the official
/// libraries' default).
pub const TOLERANCE_SECS: i64 = 300;

/// Stripe's configuration.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// `https://api.stripe.com` (no trailing slash).
    pub base_url: String,
    /// The secret API key (`sk_...`).
    pub secret_key: Secret,
    /// The webhook endpoint's signing secrets (`whsec_...`): the current
    /// one, and the previous one while it rotates.
    pub webhook_secrets: Vec<Secret>,
}

/// The Stripe adapter.
#[derive(Debug, Clone)]
pub struct Stripe {
    config: StripeConfig,
    client: reqwest::Client,
}

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No `Stripe-Signature`, or one without `t` or any `v1`.
    #[error("the webhook carries no usable Stripe-Signature")]
    Malformed,
    /// `t` is more than 300 s from the host's clock.
    #[error("the webhook's timestamp is outside the 300 s tolerance")]
    Stale,
    /// No `v1` matches any configured secret.
    #[error("the webhook's signature does not verify")]
    BadSignature,
    /// The verified body is not a Stripe event.
    #[error("the webhook's body is not a Stripe event")]
    NotAnEvent,
}

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Lowercase hex HMAC-SHA256(`secret`, `<t>.<body>`): what Stripe puts in
/// `v1` (tests and the fake provider sign with it).
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    hex::encode(
        mac(secret, &timestamp.to_string(), body)
            .finalize()
            .into_bytes(),
    )
}

/// Verifies `header` (the `Stripe-Signature` value) over the raw `body`
/// with any of `secrets` at `now`.
///
/// # Errors
/// [`WebhookError`]: malformed, stale, or no matching signature.
pub fn verify_signature(
    header: &str,
    body: &[u8],
    secrets: &[Secret],
    now: OffsetDateTime,
) -> Result<(), WebhookError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" => timestamp = Some(value),
            "v1" => signatures.push(value),
            _ => {}
        }
    }
    let text = timestamp.ok_or(WebhookError::Malformed)?;
    let t: i64 = text.parse().map_err(|_| WebhookError::Malformed)?;
    if signatures.is_empty() {
        return Err(WebhookError::Malformed);
    }
    if (now.unix_timestamp() - t).abs() > TOLERANCE_SECS {
        return Err(WebhookError::Stale);
    }
    for secret in secrets {
        for candidate in &signatures {
            let Ok(bytes) = hex::decode(candidate) else {
                continue;
            };
            // verify_slice compares in constant time.
            if mac(secret.expose(), text, body)
                .verify_slice(&bytes)
                .is_ok()
            {
                return Ok(());
            }
        }
    }
    Err(WebhookError::BadSignature)
}

/// A verified Stripe event, as much of it as Souk reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeEvent {
    /// `evt_...`: the inbox key.
    pub id: String,
    /// e.g. `checkout.session.completed`.
    pub kind: String,
    /// Unix seconds.
    pub created: i64,
    /// `data.object`.
    pub object: Value,
}

/// Parses a verified body.
///
/// # Errors
/// [`WebhookError::NotAnEvent`].
pub fn parse_event(body: &[u8]) -> Result<StripeEvent, WebhookError> {
    let json: Value = serde_json::from_slice(body).map_err(|_| WebhookError::NotAnEvent)?;
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .ok_or(WebhookError::NotAnEvent)
    };
    Ok(StripeEvent {
        id: text(&json["id"])?,
        kind: text(&json["type"])?,
        created: json["created"].as_i64().ok_or(WebhookError::NotAnEvent)?,
        object: json["data"]["object"].clone(),
    })
}

/// A Checkout Session's state as a payment status.
fn session_status(session: &Value) -> (PaymentStatus, String) {
    let payment = session["payment_status"].as_str().unwrap_or("");
    let status = session["status"].as_str().unwrap_or("");
    let normalised = match (status, payment) {
        (_, "paid" | "no_payment_required") => PaymentStatus::Completed,
        ("expired", _) => PaymentStatus::Failed,
        _ => PaymentStatus::Pending,
    };
    (normalised, format!("{status}/{payment}"))
}

/// What a Checkout Session says, as a lookup. A session in `payment` mode
/// is paid by its payment intent; one in `subscription` mode by the first
/// invoice of the subscription it created (its `payment_intent` is null),
/// whose id becomes the payment's reference, and names that subscription.
pub fn session_lookup(session: &Value) -> Lookup {
    let (status, raw) = session_status(session);
    let subscription = (session["mode"].as_str() == Some("subscription"))
        .then(|| expandable_id(&session["subscription"]))
        .flatten();
    Lookup {
        status,
        raw_status: raw,
        amount: session["amount_total"].as_i64(),
        currency: currency(&session["currency"]),
        payment_reference: expandable_id(&session["payment_intent"])
            .or_else(|| expandable_id(&session["invoice"]))
            .or_else(|| session["id"].as_str().map(str::to_owned))
            .unwrap_or_default(),
        subscription,
    }
}

/// The id of an expandable field: the string itself, or the `id` of the
/// object it was expanded into.
fn expandable_id(value: &Value) -> Option<String> {
    value
        .as_str()
        .or_else(|| value["id"].as_str())
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

fn currency(value: &Value) -> Option<Currency> {
    value
        .as_str()
        .and_then(|c| Currency::parse(&c.to_ascii_uppercase()).ok())
}

/// A Stripe invoice (the object of `invoice.paid` and
/// `invoice.payment_failed`), as much of it as Souk reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeInvoice {
    /// `in_...`.
    pub id: String,
    /// The subscription it bills: `subscription` (API versions before
    /// 2025-03-31) or `parent.subscription_details.subscription`.
    pub subscription: Option<String>,
    /// Why Stripe made it: `subscription_create` (the first, paid through
    /// the Checkout Session), `subscription_cycle` (a renewal), ...
    pub billing_reason: String,
    /// `amount_paid` (for `invoice.paid`) or `amount_due`, minor units.
    pub amount: Option<i64>,
    /// Its currency.
    pub currency: Option<Currency>,
    /// The period its subscription line bills, unix seconds
    /// (`lines.data[0].period`).
    pub period_start: Option<i64>,
    /// The end of that period.
    pub period_end: Option<i64>,
}

/// Reads an invoice object.
///
/// # Errors
/// [`WebhookError::NotAnEvent`] without an `id`.
pub fn parse_invoice(object: &Value, paid: bool) -> Result<StripeInvoice, WebhookError> {
    let id = object["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .ok_or(WebhookError::NotAnEvent)?
        .to_owned();
    let subscription = expandable_id(&object["subscription"])
        .or_else(|| expandable_id(&object["parent"]["subscription_details"]["subscription"]));
    let line = &object["lines"]["data"][0]["period"];
    let amount = if paid {
        object["amount_paid"].as_i64()
    } else {
        object["amount_due"].as_i64()
    };
    Ok(StripeInvoice {
        id,
        subscription,
        billing_reason: object["billing_reason"].as_str().unwrap_or("").to_owned(),
        amount,
        currency: currency(&object["currency"]),
        period_start: line["start"].as_i64(),
        period_end: line["end"].as_i64(),
    })
}

/// A Stripe subscription (the object of `customer.subscription.*`), as
/// much of it as Souk reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeSubscription {
    /// `sub_...`.
    pub id: String,
    /// `incomplete`, `incomplete_expired`, `trialing`, `active`,
    /// `past_due`, `canceled`, `unpaid` or `paused`.
    pub status: String,
    /// `cus_...`.
    pub customer: Option<String>,
    /// Whether it ends at the current period's end.
    pub cancel_at_period_end: bool,
    /// `current_period_end` (before API 2025-03-31) or the first item's,
    /// unix seconds.
    pub current_period_end: Option<i64>,
    /// `metadata[plan]`: Souk's plan it is for (set at checkout; an
    /// operator changing the plan at Stripe sets it to the new plan).
    pub plan: Option<String>,
}

/// Reads a subscription object.
///
/// # Errors
/// [`WebhookError::NotAnEvent`] without an `id` or `status`.
pub fn parse_subscription(object: &Value) -> Result<StripeSubscription, WebhookError> {
    let text = |v: &Value| v.as_str().filter(|t| !t.is_empty()).map(str::to_owned);
    Ok(StripeSubscription {
        id: text(&object["id"]).ok_or(WebhookError::NotAnEvent)?,
        status: text(&object["status"]).ok_or(WebhookError::NotAnEvent)?,
        customer: expandable_id(&object["customer"]),
        cancel_at_period_end: object["cancel_at_period_end"].as_bool().unwrap_or(false),
        current_period_end: object["current_period_end"]
            .as_i64()
            .or_else(|| object["items"]["data"][0]["current_period_end"].as_i64()),
        plan: text(&object["metadata"]["plan"]),
    })
}

impl Stripe {
    /// The adapter over `config`, using `client`.
    pub fn new(config: StripeConfig, client: reqwest::Client) -> Self {
        Stripe { config, client }
    }

    /// The configured webhook secrets.
    pub fn webhook_secrets(&self) -> &[Secret] {
        &self.config.webhook_secrets
    }

    async fn create(&self, request: &Initiation<'_>) -> Result<Initiated, ProviderError> {
        let currency = request.currency.as_str().to_ascii_lowercase();
        let total = request.total.to_string();
        let success = format!(
            "{}/v1/payments/stripe/return?session_id={{CHECKOUT_SESSION_ID}}",
            request.public_url
        );
        let cancel = format!(
            "{}/v1/payments/stripe/return?attempt={}",
            request.public_url, request.attempt_id
        );
        let mut form = vec![
            ("success_url", success.as_str()),
            ("cancel_url", cancel.as_str()),
            ("client_reference_id", request.attempt_id),
            ("metadata[attempt]", request.attempt_id),
            ("line_items[0][quantity]", "1"),
            ("line_items[0][price_data][currency]", currency.as_str()),
            ("line_items[0][price_data][unit_amount]", total.as_str()),
        ];
        let product;
        match &request.recurring {
            // A subscription Stripe renews: the price recurs at the plan's
            // interval; the subscription carries our names in its metadata.
            Some(recurring) => {
                product = format!("{} — {}", recurring.module, recurring.plan);
                let (interval, count) = match recurring.interval.months() {
                    12 => ("year", "1"),
                    _ => ("month", "1"),
                };
                form.extend([
                    ("mode", "subscription"),
                    ("line_items[0][price_data][recurring][interval]", interval),
                    (
                        "line_items[0][price_data][recurring][interval_count]",
                        count,
                    ),
                    (
                        "line_items[0][price_data][product_data][name]",
                        product.as_str(),
                    ),
                    ("subscription_data[metadata][attempt]", request.attempt_id),
                    ("subscription_data[metadata][tenant]", recurring.tenant_id),
                    ("subscription_data[metadata][module]", recurring.module),
                    ("subscription_data[metadata][plan]", recurring.plan),
                    ("subscription_data[description]", request.invoice_number),
                ]);
            }
            None => form.extend([
                ("mode", "payment"),
                (
                    "line_items[0][price_data][product_data][name]",
                    request.invoice_number,
                ),
            ]),
        }
        let answer = self
            .client
            .post(format!("{}/v1/checkout/sessions", self.config.base_url))
            .bearer_auth(self.config.secret_key.expose())
            .header("Idempotency-Key", request.attempt_id)
            .form(&form)
            .send()
            .await
            .map_err(|e| transport(NAME, &e))?;
        let code = answer.status();
        let body: Value = answer.json().await.map_err(|e| transport(NAME, &e))?;
        if code.is_client_error() {
            return Err(ProviderError::Refused {
                provider: NAME,
                what: format!("session creation answered {}", code.as_u16()),
            });
        }
        match (body["id"].as_str(), body["url"].as_str()) {
            (Some(id), Some(url)) if code.is_success() => Ok(Initiated {
                provider_ref: id.to_owned(),
                next: NextStep::Redirect {
                    url: url.to_owned(),
                },
            }),
            _ => Err(ProviderError::Unexpected {
                provider: NAME,
                what: format!("session creation answered {}", code.as_u16()),
            }),
        }
    }

    async fn retrieve(&self, attempt: &Attempt) -> Result<Lookup, ProviderError> {
        let answer = self
            .client
            .get(format!(
                "{}/v1/checkout/sessions/{}",
                self.config.base_url, attempt.provider_ref
            ))
            .bearer_auth(self.config.secret_key.expose())
            .send()
            .await
            .map_err(|e| transport(NAME, &e))?;
        let code = answer.status();
        let body: Value = answer.json().await.map_err(|e| transport(NAME, &e))?;
        if !code.is_success() || body["id"].as_str() != Some(attempt.provider_ref.as_str()) {
            return Err(ProviderError::Unexpected {
                provider: NAME,
                what: format!("session lookup answered {}", code.as_u16()),
            });
        }
        Ok(session_lookup(&body))
    }
}

impl Stripe {
    /// Refunds the payment `reference` in full: a payment intent
    /// (`pi_...`), or a Stripe invoice (`in_...`, a subscription's
    /// payment), whose payment intent is read first. `key` is the
    /// `Idempotency-Key` (one per invoice, so a retry is the same refund).
    /// Answers Stripe's refund id.
    ///
    /// # Errors
    /// [`ProviderError`] as for a session's creation.
    pub async fn refund(&self, reference: &str, key: &str) -> Result<String, ProviderError> {
        let intent = if reference.starts_with("in_") {
            self.invoice_payment_intent(reference).await?
        } else {
            reference.to_owned()
        };
        let body = self
            .send(
                self.client
                    .post(format!("{}/v1/refunds", self.config.base_url))
                    .header("Idempotency-Key", key)
                    .form(&[("payment_intent", intent.as_str())]),
                "the refund",
            )
            .await?;
        body["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| unexpected("the refund answered no id"))
    }

    /// The payment intent that paid Stripe invoice `invoice`.
    async fn invoice_payment_intent(&self, invoice: &str) -> Result<String, ProviderError> {
        let body = self
            .send(
                self.client.get(format!(
                    "{}/v1/invoices/{}",
                    self.config.base_url,
                    form_path(invoice)
                )),
                "the invoice lookup",
            )
            .await?;
        expandable_id(&body["payment_intent"])
            .ok_or_else(|| unexpected("the invoice names no payment intent"))
    }

    /// Cancels Stripe subscription `id` at once (`DELETE
    /// /v1/subscriptions/{id}`; Stripe ignores an `Idempotency-Key` on a
    /// `DELETE`, and canceling is idempotent by itself). Answers the
    /// subscription as Stripe then has it.
    ///
    /// # Errors
    /// [`ProviderError`] as for a session's creation.
    pub async fn cancel_now(&self, id: &str) -> Result<StripeSubscription, ProviderError> {
        let url = format!(
            "{}/v1/subscriptions/{}",
            self.config.base_url,
            form_path(id)
        );
        let body = self
            .send(self.client.delete(url), "the cancellation")
            .await?;
        parse_subscription(&body)
            .map_err(|_| unexpected("the cancellation answered no subscription"))
    }

    /// Sets Stripe subscription `id` to end at its period's end, or to
    /// renew again (`POST /v1/subscriptions/{id}` with
    /// `cancel_at_period_end`, `Idempotency-Key: key`). Answers the
    /// subscription as Stripe then has it.
    ///
    /// # Errors
    /// [`ProviderError`] as for a session's creation.
    pub async fn set_cancel_at_period_end(
        &self,
        id: &str,
        cancel: bool,
        key: &str,
    ) -> Result<StripeSubscription, ProviderError> {
        let url = format!(
            "{}/v1/subscriptions/{}",
            self.config.base_url,
            form_path(id)
        );
        let flag = if cancel { "true" } else { "false" };
        let request = self
            .client
            .post(url)
            .header("Idempotency-Key", key)
            .form(&[("cancel_at_period_end", flag)]);
        let body = self.send(request, "the subscription update").await?;
        parse_subscription(&body)
            .map_err(|_| unexpected("the subscription update answered no subscription"))
    }

    /// Sends `request` with the secret key and reads its JSON answer.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Value, ProviderError> {
        let answer = request
            .bearer_auth(self.config.secret_key.expose())
            .send()
            .await
            .map_err(|e| transport(NAME, &e))?;
        let code = answer.status();
        let body: Value = answer.json().await.map_err(|e| transport(NAME, &e))?;
        if code.is_client_error() {
            return Err(ProviderError::Refused {
                provider: NAME,
                what: format!("{what} answered {}", code.as_u16()),
            });
        }
        if !code.is_success() {
            return Err(unexpected(&format!("{what} answered {}", code.as_u16())));
        }
        Ok(body)
    }
}

fn unexpected(what: &str) -> ProviderError {
    ProviderError::Unexpected {
        provider: NAME,
        what: what.to_owned(),
    }
}

/// A Stripe id as one path segment: ids are `[A-Za-z0-9_]`; anything else
/// is percent-encoded so it cannot reach another path.
fn form_path(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

impl PaymentProvider for Stripe {
    fn provider(&self) -> Provider {
        Provider::Stripe
    }

    fn initiate<'a>(&'a self, request: &'a Initiation<'a>) -> ProviderFuture<'a, Initiated> {
        Box::pin(self.create(request))
    }

    fn lookup<'a>(&'a self, attempt: &'a Attempt) -> ProviderFuture<'a, Lookup> {
        Box::pin(self.retrieve(attempt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    const BODY: &[u8] = br#"{"id":"evt_1","type":"checkout.session.completed","created":1767225600,"data":{"object":{}}}"#;
    const T: i64 = 1_767_225_600;

    fn secrets(list: &[&str]) -> Vec<Secret> {
        list.iter().map(|s| Secret::new(*s)).collect()
    }

    #[test]
    fn a_signature_over_t_and_the_raw_body_verifies_within_300_seconds() {
        let header = format!("t={T},v1={}", signature("whsec_new", T, BODY));
        let ok = secrets(&["whsec_new"]);
        assert_eq!(verify_signature(&header, BODY, &ok, at(T)), Ok(()));
        assert_eq!(verify_signature(&header, BODY, &ok, at(T + 300)), Ok(()));
        assert_eq!(verify_signature(&header, BODY, &ok, at(T - 300)), Ok(()));
        assert_eq!(
            verify_signature(&header, BODY, &ok, at(T + 301)),
            Err(WebhookError::Stale)
        );
        assert_eq!(
            verify_signature(&header, BODY, &ok, at(T - 301)),
            Err(WebhookError::Stale)
        );
    }

    #[test]
    fn forged_reserialised_and_other_scheme_signatures_are_refused() {
        let ok = secrets(&["whsec_new"]);
        let forged = format!("t={T},v1={}", signature("whsec_guess", T, BODY));
        assert_eq!(
            verify_signature(&forged, BODY, &ok, at(T)),
            Err(WebhookError::BadSignature)
        );
        // The same JSON re-serialised (spaces) is other bytes.
        let header = format!("t={T},v1={}", signature("whsec_new", T, BODY));
        let spaced = String::from_utf8(BODY.to_vec()).unwrap().replace(",", ", ");
        assert_eq!(
            verify_signature(&header, spaced.as_bytes(), &ok, at(T)),
            Err(WebhookError::BadSignature)
        );
        // A v0 with the right value is ignored; only v1 counts.
        let v0 = format!("t={T},v0={}", signature("whsec_new", T, BODY));
        assert_eq!(
            verify_signature(&v0, BODY, &ok, at(T)),
            Err(WebhookError::Malformed)
        );
        // Another t than the one signed.
        let moved = format!("t={},v1={}", T + 1, signature("whsec_new", T, BODY));
        assert_eq!(
            verify_signature(&moved, BODY, &ok, at(T)),
            Err(WebhookError::BadSignature)
        );
        for bad in ["", "v1=abc", "t=abc,v1=00", "t=1"] {
            assert_eq!(
                verify_signature(bad, BODY, &ok, at(T)),
                Err(WebhookError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            verify_signature(&format!("t={T},v1=zz"), BODY, &ok, at(T)),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn every_v1_is_tried_while_a_secret_rotates() {
        // Stripe signs with the old and the new secret during a rotation.
        let header = format!(
            "t={T},v1={},v1={},v0=ignored",
            signature("whsec_old", T, BODY),
            signature("whsec_new", T, BODY)
        );
        assert_eq!(
            verify_signature(&header, BODY, &secrets(&["whsec_new"]), at(T)),
            Ok(())
        );
        assert_eq!(
            verify_signature(&header, BODY, &secrets(&["whsec_old"]), at(T)),
            Ok(())
        );
        // The host holding both secrets takes a delivery signed by either.
        let old_only = format!("t={T},v1={}", signature("whsec_old", T, BODY));
        assert_eq!(
            verify_signature(
                &old_only,
                BODY,
                &secrets(&["whsec_new", "whsec_old"]),
                at(T)
            ),
            Ok(())
        );
        assert_eq!(
            verify_signature(&old_only, BODY, &secrets(&["whsec_new"]), at(T)),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn sessions_map_to_payment_statuses() {
        let paid = serde_json::json!({"id": "cs_1", "status": "complete", "payment_status": "paid",
            "amount_total": 499, "currency": "usd", "payment_intent": "pi_1"});
        let lookup = session_lookup(&paid);
        assert_eq!(lookup.status, PaymentStatus::Completed);
        assert_eq!(lookup.amount, Some(499));
        assert_eq!(lookup.currency, Currency::parse("USD").ok());
        assert_eq!(lookup.payment_reference, "pi_1");
        let open = serde_json::json!({"id": "cs_1", "status": "open", "payment_status": "unpaid"});
        assert_eq!(session_lookup(&open).status, PaymentStatus::Pending);
        let expired =
            serde_json::json!({"id": "cs_1", "status": "expired", "payment_status": "unpaid"});
        assert_eq!(session_lookup(&expired).status, PaymentStatus::Failed);
        assert_eq!(
            parse_event(BODY).unwrap().kind,
            "checkout.session.completed"
        );
        assert_eq!(parse_event(b"{}"), Err(WebhookError::NotAnEvent));
    }

    #[test]
    fn a_subscription_session_is_paid_by_its_first_invoice_and_names_its_subscription() {
        let paid = serde_json::json!({"id": "cs_2", "mode": "subscription", "status": "complete",
            "payment_status": "paid", "amount_total": 499, "currency": "usd",
            "payment_intent": null, "subscription": "sub_9", "invoice": {"id": "in_9"}});
        let lookup = session_lookup(&paid);
        assert_eq!(lookup.status, PaymentStatus::Completed);
        assert_eq!(lookup.subscription.as_deref(), Some("sub_9"));
        assert_eq!(lookup.payment_reference, "in_9");
        // A payment-mode session names no subscription even if one is set.
        let one_off = serde_json::json!({"id": "cs_3", "mode": "payment", "status": "complete",
            "payment_status": "paid", "payment_intent": "pi_3", "subscription": "sub_x"});
        let lookup = session_lookup(&one_off);
        assert_eq!(lookup.subscription, None);
        assert_eq!(lookup.payment_reference, "pi_3");
    }

    #[test]
    fn invoices_and_subscriptions_read_both_api_shapes() {
        let old = serde_json::json!({"id": "in_1", "subscription": "sub_1",
            "billing_reason": "subscription_cycle", "amount_paid": 499, "amount_due": 499,
            "currency": "usd", "lines": {"data": [{"period": {"start": 10, "end": 20}}]}});
        let invoice = parse_invoice(&old, true).unwrap();
        assert_eq!(invoice.subscription.as_deref(), Some("sub_1"));
        assert_eq!(
            (invoice.period_start, invoice.period_end),
            (Some(10), Some(20))
        );
        assert_eq!(invoice.amount, Some(499));
        assert_eq!(invoice.currency, Currency::parse("USD").ok());
        let new = serde_json::json!({"id": "in_2", "amount_paid": 0, "amount_due": 499,
            "parent": {"subscription_details": {"subscription": "sub_2"}}});
        let invoice = parse_invoice(&new, false).unwrap();
        assert_eq!(invoice.subscription.as_deref(), Some("sub_2"));
        assert_eq!(
            invoice.amount,
            Some(499),
            "a failed invoice is read by its amount due"
        );
        assert_eq!(invoice.period_end, None);
        assert!(parse_invoice(&serde_json::json!({"id": ""}), true).is_err());

        let sub = parse_subscription(&serde_json::json!({"id": "sub_1", "status": "active",
            "customer": {"id": "cus_1"}, "cancel_at_period_end": true,
            "items": {"data": [{"current_period_end": 99}]}, "metadata": {"plan": "pro"}}))
        .unwrap();
        assert_eq!(sub.customer.as_deref(), Some("cus_1"));
        assert!(sub.cancel_at_period_end);
        assert_eq!(sub.current_period_end, Some(99));
        assert_eq!(sub.plan.as_deref(), Some("pro"));
        assert!(parse_subscription(&serde_json::json!({"id": "sub_1"})).is_err());
        // An id cannot reach another path of the API.
        assert_eq!(form_path("sub_1/../refunds"), "sub_1%2F..%2Frefunds");
    }
}
