//! Small fake payment providers on loopback, behaving as
//! ../shared/PROTOCOLS.md documents them, for the payments tests:
//!
//! - [`FakeEsewa`]: the ePay v2 form (checks the signature over its
//!   `signed_field_names` and that the total adds up, then "the payer pays"
//!   and is sent to `success_url?data=<signed base64 JSON>`), and the
//!   status API (`COMPLETE`, `PENDING`, `AMBIGUOUS`, `NOT_FOUND`, ... as
//!   scripted);
//! - [`FakeKhalti`]: initiate and lookup with `Authorization: Key ...`,
//!   paisa amounts of at least 1000 whose breakdown sums to the amount,
//!   `Expired` / `User canceled` with HTTP 400;
//! - [`FakeStripe`]: form-encoded requests with `Authorization: Bearer
//!   <secret key>`, an `Idempotency-Key` required on every POST (a repeated
//!   key answers the first answer), Checkout Sessions in `payment` and
//!   `subscription` mode (a paid subscription session has a null
//!   `payment_intent` and names its `subscription`, `customer` and first
//!   `invoice`), invoices, subscriptions canceled at once (`DELETE`) or at
//!   the period end (`POST cancel_at_period_end`), refunds, and an outage
//!   (503) on demand.
//!
//! Either can be made slow (a timeout) with `set_delay`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac as _;
use serde_json::{Value, json};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Base64(HMAC-SHA256(key, message)), as eSewa signs.
pub fn esewa_sign(key: &str, message: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("hmac key");
    mac.update(message.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("fake provider runtime")
}

fn serve(runtime: &tokio::runtime::Runtime, app: Router) -> SocketAddr {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind fake provider");
    let addr = listener.local_addr().expect("fake provider address");
    runtime.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// One eSewa transaction the fake knows.
#[derive(Debug, Clone)]
struct EsewaTxn {
    total_amount: String,
    status: String,
    ref_id: String,
}

#[derive(Default)]
struct EsewaInner {
    txns: HashMap<String, EsewaTxn>,
    delay: Duration,
    status_calls: usize,
}

struct EsewaShared {
    key: String,
    product_code: String,
    inner: Mutex<EsewaInner>,
}

/// A fake eSewa; stops when dropped.
pub struct FakeEsewa {
    pub base: String,
    shared: Arc<EsewaShared>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeEsewa {
    pub fn start(key: &str) -> FakeEsewa {
        let runtime = runtime();
        let shared = Arc::new(EsewaShared {
            key: key.to_owned(),
            product_code: "EPAYTEST".into(),
            inner: Mutex::new(EsewaInner::default()),
        });
        let app = Router::new()
            .route("/api/epay/main/v2/form", post(esewa_form))
            .route("/api/epay/transaction/status/", get(esewa_status))
            .with_state(shared.clone());
        let addr = serve(&runtime, app);
        FakeEsewa {
            base: format!("http://{addr}"),
            shared,
            _runtime: runtime,
        }
    }

    /// What the status API answers for `uuid` from now on.
    pub fn set_status(&self, uuid: &str, status: &str) {
        let mut inner = self.shared.inner.lock().unwrap();
        if let Some(txn) = inner.txns.get_mut(uuid) {
            txn.status = status.to_owned();
        }
    }

    pub fn set_delay(&self, delay: Duration) {
        self.shared.inner.lock().unwrap().delay = delay;
    }

    pub fn status_calls(&self) -> usize {
        self.shared.inner.lock().unwrap().status_calls
    }

    /// The `data` eSewa would send back for `uuid`, signed over the fields
    /// its `signed_field_names` lists, with `total_amount` written as
    /// `total_text` (literal).
    pub fn success_data(&self, uuid: &str, status: &str, total_text: &str, key: &str) -> String {
        self.success_data_coded(uuid, "000AWEO", status, total_text, key)
    }

    /// As [`FakeEsewa::success_data`], with eSewa's `transaction_code`.
    pub fn success_data_coded(
        &self,
        uuid: &str,
        code: &str,
        status: &str,
        total_text: &str,
        key: &str,
    ) -> String {
        let names =
            "transaction_code,status,total_amount,transaction_uuid,product_code,signed_field_names";
        let message = format!(
            "transaction_code={code},status={status},total_amount={total_text},transaction_uuid={uuid},product_code=EPAYTEST,signed_field_names={names}"
        );
        let json = json!({
            "transaction_code": code,
            "status": status,
            "total_amount": total_text,
            "transaction_uuid": uuid,
            "product_code": "EPAYTEST",
            "signed_field_names": names,
            "signature": esewa_sign(key, &message),
        });
        STANDARD.encode(json.to_string())
    }
}

async fn esewa_form(State(shared): State<Arc<EsewaShared>>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let names = field("signed_field_names");
    let message: Vec<String> = names
        .split(',')
        .map(|n| format!("{n}={}", field(n)))
        .collect();
    if names != "total_amount,transaction_uuid,product_code"
        || esewa_sign(&shared.key, &message.join(",")) != field("signature")
        || field("product_code") != shared.product_code
    {
        return (StatusCode::BAD_REQUEST, "invalid signature").into_response();
    }
    let cents = |t: &str| -> Option<i64> {
        let (w, f) = t.split_once('.').unwrap_or((t, ""));
        let f = format!("{f:0<2}");
        Some(w.parse::<i64>().ok()? * 100 + f[..2].parse::<i64>().ok()?)
    };
    let parts: Option<Vec<i64>> = [
        "amount",
        "tax_amount",
        "product_service_charge",
        "product_delivery_charge",
    ]
    .iter()
    .map(|n| cents(&field(n)))
    .collect();
    let total = cents(&field("total_amount"));
    if parts.map(|p| p.iter().sum::<i64>()) != total || total.is_none() {
        return (StatusCode::BAD_REQUEST, "total_amount does not add up").into_response();
    }
    let uuid = field("transaction_uuid");
    shared.inner.lock().unwrap().txns.insert(
        uuid.clone(),
        EsewaTxn {
            total_amount: field("total_amount"),
            status: "COMPLETE".into(),
            ref_id: format!("REF{}", uuid.len()),
        },
    );
    // The payer pays; eSewa sends the browser back with signed data.
    let names =
        "transaction_code,status,total_amount,transaction_uuid,product_code,signed_field_names";
    // eSewa writes amounts with a decimal (`100.0`).
    let total = field("total_amount");
    let total_text = if total.contains('.') {
        total
    } else {
        format!("{total}.0")
    };
    let message = format!(
        "transaction_code=000AWEO,status=COMPLETE,total_amount={total_text},transaction_uuid={uuid},product_code={},signed_field_names={names}",
        shared.product_code
    );
    let data = json!({
        "transaction_code": "000AWEO",
        "status": "COMPLETE",
        "total_amount": total_text,
        "transaction_uuid": uuid,
        "product_code": shared.product_code,
        "signed_field_names": names,
        "signature": esewa_sign(&shared.key, &message),
    });
    let location = format!(
        "{}?data={}",
        field("success_url"),
        STANDARD.encode(data.to_string())
    );
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

async fn esewa_status(
    State(shared): State<Arc<EsewaShared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let delay = shared.inner.lock().unwrap().delay;
    tokio::time::sleep(delay).await;
    let mut inner = shared.inner.lock().unwrap();
    inner.status_calls += 1;
    let uuid = query.get("transaction_uuid").cloned().unwrap_or_default();
    let total = query.get("total_amount").cloned().unwrap_or_default();
    let product = query.get("product_code").cloned().unwrap_or_default();
    match inner.txns.get(&uuid) {
        Some(txn) if txn.total_amount == total && product == shared.product_code => {
            let amount: f64 = txn.total_amount.parse().unwrap_or(0.0);
            axum::Json(json!({
                "product_code": product,
                "transaction_uuid": uuid,
                "total_amount": amount,
                "status": txn.status,
                "ref_id": if txn.status == "COMPLETE" { Value::from(txn.ref_id.clone()) } else { Value::Null },
            }))
            .into_response()
        }
        _ => axum::Json(json!({
            "product_code": product, "transaction_uuid": uuid, "total_amount": total,
            "status": "NOT_FOUND", "ref_id": null,
        }))
        .into_response(),
    }
}

/// One Khalti payment the fake knows.
#[derive(Debug, Clone)]
pub struct KhaltiPayment {
    pub amount: i64,
    pub status: String,
    pub return_url: String,
    pub purchase_order_id: String,
}

#[derive(Default)]
struct KhaltiInner {
    payments: HashMap<String, KhaltiPayment>,
    delay: Duration,
    next: u32,
    unauthorized: usize,
}

struct KhaltiShared {
    key: String,
    base: Mutex<String>,
    inner: Mutex<KhaltiInner>,
}

/// A fake Khalti; stops when dropped.
pub struct FakeKhalti {
    /// With its trailing slash, like Khalti's `.../api/v2/`.
    pub base: String,
    shared: Arc<KhaltiShared>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeKhalti {
    pub fn start(key: &str) -> FakeKhalti {
        let runtime = runtime();
        let shared = Arc::new(KhaltiShared {
            key: key.to_owned(),
            base: Mutex::new(String::new()),
            inner: Mutex::new(KhaltiInner::default()),
        });
        let app = Router::new()
            .route("/api/v2/epayment/initiate/", post(khalti_initiate))
            .route("/api/v2/epayment/lookup/", post(khalti_lookup))
            .route("/pay/{pidx}", get(khalti_pay))
            .with_state(shared.clone());
        let addr = serve(&runtime, app);
        let base = format!("http://{addr}/api/v2/");
        *shared.base.lock().unwrap() = format!("http://{addr}");
        FakeKhalti {
            base,
            shared,
            _runtime: runtime,
        }
    }

    pub fn set_status(&self, pidx: &str, status: &str) {
        if let Some(p) = self.shared.inner.lock().unwrap().payments.get_mut(pidx) {
            p.status = status.to_owned();
        }
    }

    pub fn set_delay(&self, delay: Duration) {
        self.shared.inner.lock().unwrap().delay = delay;
    }

    pub fn payment(&self, pidx: &str) -> Option<KhaltiPayment> {
        self.shared
            .inner
            .lock()
            .unwrap()
            .payments
            .get(pidx)
            .cloned()
    }

    pub fn unauthorized(&self) -> usize {
        self.shared.inner.lock().unwrap().unauthorized
    }
}

fn khalti_authorized(shared: &KhaltiShared, headers: &HeaderMap) -> bool {
    let ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(format!("Key {}", shared.key).as_str());
    if !ok {
        shared.inner.lock().unwrap().unauthorized += 1;
    }
    ok
}

async fn khalti_initiate(
    State(shared): State<Arc<KhaltiShared>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let delay = shared.inner.lock().unwrap().delay;
    tokio::time::sleep(delay).await;
    if !khalti_authorized(&shared, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"detail": "Invalid token."})),
        )
            .into_response();
    }
    let amount = body["amount"].as_i64().unwrap_or(0);
    let breakdown: i64 = body["amount_breakdown"]
        .as_array()
        .map(|a| a.iter().filter_map(|l| l["amount"].as_i64()).sum())
        .unwrap_or(amount);
    if amount < 1000 || breakdown != amount {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"amount": ["invalid amount"], "error_key": "validation_error"})),
        )
            .into_response();
    }
    for required in [
        "return_url",
        "website_url",
        "purchase_order_id",
        "purchase_order_name",
    ] {
        if body[required].as_str().is_none_or(str::is_empty) {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(
                    json!({required: ["This field is required."], "error_key": "validation_error"}),
                ),
            )
                .into_response();
        }
    }
    let mut inner = shared.inner.lock().unwrap();
    inner.next += 1;
    let pidx = format!("PIDX{:04}bZQLD9wRVWo4CvB", inner.next);
    inner.payments.insert(
        pidx.clone(),
        KhaltiPayment {
            amount,
            status: "Initiated".into(),
            return_url: body["return_url"].as_str().unwrap_or_default().to_owned(),
            purchase_order_id: body["purchase_order_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        },
    );
    let base = shared.base.lock().unwrap().clone();
    axum::Json(json!({
        "pidx": pidx,
        "payment_url": format!("{base}/pay/{pidx}"),
        "expires_at": "2026-01-01T00:30:00+05:45",
        "expires_in": 1800,
    }))
    .into_response()
}

/// The payer pays (or whatever status is set first) and is sent back.
async fn khalti_pay(State(shared): State<Arc<KhaltiShared>>, Path(pidx): Path<String>) -> Response {
    let mut inner = shared.inner.lock().unwrap();
    let Some(payment) = inner.payments.get_mut(&pidx) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if payment.status == "Initiated" {
        payment.status = "Completed".into();
    }
    let location = format!(
        "{}?pidx={pidx}&transaction_id=TXN{pidx}&amount={}&status={}&purchase_order_id={}",
        payment.return_url,
        payment.amount,
        payment.status.replace(' ', "%20"),
        payment.purchase_order_id
    );
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

async fn khalti_lookup(
    State(shared): State<Arc<KhaltiShared>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let delay = shared.inner.lock().unwrap().delay;
    tokio::time::sleep(delay).await;
    if !khalti_authorized(&shared, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"detail": "Invalid token."})),
        )
            .into_response();
    }
    let pidx = body["pidx"].as_str().unwrap_or_default().to_owned();
    let inner = shared.inner.lock().unwrap();
    let Some(payment) = inner.payments.get(&pidx) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"detail": "Not found.", "error_key": "validation_error"})),
        )
            .into_response();
    };
    let code = match payment.status.as_str() {
        "Expired" | "User canceled" => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let completed = payment.status == "Completed";
    (
        code,
        axum::Json(json!({
            "pidx": pidx,
            "total_amount": payment.amount,
            "status": payment.status,
            "transaction_id": if completed { Value::from(format!("TXN{pidx}")) } else { Value::Null },
            "fee": 0,
            "refunded": false,
        })),
    )
        .into_response()
}

/// A call to `/v1/subscriptions/{id}`: (method, id, Idempotency-Key, form).
pub type SubscriptionCall = (String, String, Option<String>, HashMap<String, String>);

#[derive(Default)]
struct StripeInner {
    sessions: HashMap<String, Value>,
    by_key: HashMap<String, String>,
    created: usize,
    unauthorized: usize,
    refunds: HashMap<String, String>,
    subscriptions: HashMap<String, Value>,
    invoices: HashMap<String, Value>,
    /// Calls to /v1/subscriptions: (method, id, Idempotency-Key, form).
    subscription_calls: Vec<SubscriptionCall>,
    /// POST answers by Idempotency-Key (Stripe replays the first answer).
    answered: HashMap<String, Value>,
    outage: bool,
}

struct StripeShared {
    key: String,
    base: Mutex<String>,
    inner: Mutex<StripeInner>,
}

/// A fake Stripe; stops when dropped.
pub struct FakeStripe {
    pub base: String,
    shared: Arc<StripeShared>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeStripe {
    pub fn start(key: &str) -> FakeStripe {
        let runtime = runtime();
        let shared = Arc::new(StripeShared {
            key: key.to_owned(),
            base: Mutex::new(String::new()),
            inner: Mutex::new(StripeInner::default()),
        });
        let app = Router::new()
            .route("/v1/checkout/sessions", post(stripe_create))
            .route("/v1/checkout/sessions/{id}", get(stripe_retrieve))
            .route("/pay/{id}", get(stripe_pay))
            .route("/v1/refunds", post(stripe_refund))
            .route("/v1/invoices/{id}", get(stripe_invoice))
            .route(
                "/v1/subscriptions/{id}",
                post(stripe_update_subscription).delete(stripe_delete_subscription),
            )
            .with_state(shared.clone());
        let addr = serve(&runtime, app);
        let base = format!("http://{addr}");
        *shared.base.lock().unwrap() = base.clone();
        FakeStripe {
            base,
            shared,
            _runtime: runtime,
        }
    }

    pub fn session(&self, id: &str) -> Option<Value> {
        self.shared.inner.lock().unwrap().sessions.get(id).cloned()
    }

    /// Sessions created (a repeated Idempotency-Key creates none).
    pub fn created(&self) -> usize {
        self.shared.inner.lock().unwrap().created
    }

    pub fn unauthorized(&self) -> usize {
        self.shared.inner.lock().unwrap().unauthorized
    }

    /// Refunds made (a repeated Idempotency-Key makes none).
    pub fn refunds(&self) -> usize {
        self.shared.inner.lock().unwrap().refunds.len()
    }

    pub fn subscription(&self, id: &str) -> Option<Value> {
        self.shared
            .inner
            .lock()
            .unwrap()
            .subscriptions
            .get(id)
            .cloned()
    }

    /// Calls to `/v1/subscriptions/{id}`: (method, id, Idempotency-Key,
    /// form fields).
    pub fn subscription_calls(&self) -> Vec<SubscriptionCall> {
        self.shared.inner.lock().unwrap().subscription_calls.clone()
    }

    /// Every API call answers 503 while `down`.
    pub fn set_outage(&self, down: bool) {
        self.shared.inner.lock().unwrap().outage = down;
    }

    /// Stripe renews `subscription`: a paid invoice `id` for the period
    /// `start..end` (unix seconds) of `amount`, as `invoice.paid` carries
    /// it (also kept, so a refund of it finds its payment intent).
    pub fn renewal_invoice(
        &self,
        id: &str,
        subscription: &str,
        amount: i64,
        start: i64,
        end: i64,
    ) -> Value {
        let mut inner = self.shared.inner.lock().unwrap();
        let currency = inner
            .subscriptions
            .get(subscription)
            .and_then(|s| s["currency"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "usd".into());
        let invoice = json!({
            "id": id, "object": "invoice", "subscription": subscription,
            "billing_reason": "subscription_cycle", "status": "paid",
            "amount_due": amount, "amount_paid": amount, "currency": currency,
            "payment_intent": format!("pi_{id}"),
            "lines": {"object": "list", "data": [
                {"object": "line_item", "amount": amount, "period": {"start": start, "end": end}}
            ]},
        });
        inner.invoices.insert(id.to_owned(), invoice.clone());
        if let Some(sub) = inner.subscriptions.get_mut(subscription) {
            sub["current_period_end"] = json!(end);
        }
        invoice
    }
}

fn stripe_error(code: StatusCode, kind: &str) -> Response {
    (
        code,
        axum::Json(json!({"error": {"type": kind, "code": "resource_missing"}})),
    )
        .into_response()
}

/// The checks every fake Stripe API call makes: the outage, the key.
fn stripe_gate(shared: &StripeShared, headers: &HeaderMap) -> Option<Response> {
    if shared.inner.lock().unwrap().outage {
        return Some(stripe_error(StatusCode::SERVICE_UNAVAILABLE, "api_error"));
    }
    if !stripe_authorized(shared, headers) {
        return Some(stripe_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
        ));
    }
    None
}

async fn stripe_invoice(
    State(shared): State<Arc<StripeShared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = stripe_gate(&shared, &headers) {
        return refused;
    }
    match shared.inner.lock().unwrap().invoices.get(&id) {
        Some(invoice) => axum::Json(invoice.clone()).into_response(),
        None => stripe_error(StatusCode::NOT_FOUND, "invalid_request_error"),
    }
}

async fn stripe_update_subscription(
    State(shared): State<Arc<StripeShared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(refused) = stripe_gate(&shared, &headers) {
        return refused;
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut inner = shared.inner.lock().unwrap();
    inner
        .subscription_calls
        .push(("POST".into(), id.clone(), key.clone(), form.clone()));
    let Some(key) = key else {
        return (
            StatusCode::BAD_REQUEST,
            "the fake requires an Idempotency-Key",
        )
            .into_response();
    };
    if let Some(first) = inner.answered.get(&key) {
        return axum::Json(first.clone()).into_response();
    }
    let Some(sub) = inner.subscriptions.get_mut(&id) else {
        return stripe_error(StatusCode::NOT_FOUND, "invalid_request_error");
    };
    if sub["status"] == "canceled" {
        return stripe_error(StatusCode::BAD_REQUEST, "invalid_request_error");
    }
    match form.get("cancel_at_period_end").map(String::as_str) {
        Some("true") => sub["cancel_at_period_end"] = json!(true),
        Some("false") => sub["cancel_at_period_end"] = json!(false),
        _ => return stripe_error(StatusCode::BAD_REQUEST, "invalid_request_error"),
    }
    let answer = sub.clone();
    inner.answered.insert(key, answer.clone());
    axum::Json(answer).into_response()
}

async fn stripe_delete_subscription(
    State(shared): State<Arc<StripeShared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = stripe_gate(&shared, &headers) {
        return refused;
    }
    let mut inner = shared.inner.lock().unwrap();
    inner
        .subscription_calls
        .push(("DELETE".into(), id.clone(), None, HashMap::new()));
    let Some(sub) = inner.subscriptions.get_mut(&id) else {
        return stripe_error(StatusCode::NOT_FOUND, "invalid_request_error");
    };
    sub["status"] = json!("canceled");
    axum::Json(sub.clone()).into_response()
}

async fn stripe_refund(
    State(shared): State<Arc<StripeShared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !stripe_authorized(&shared, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"type": "invalid_request_error"}})),
        )
            .into_response();
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return (
            StatusCode::BAD_REQUEST,
            "the fake requires an Idempotency-Key",
        )
            .into_response();
    };
    let intent = form.get("payment_intent").cloned().unwrap_or_default();
    let mut inner = shared.inner.lock().unwrap();
    if inner.outage {
        return stripe_error(StatusCode::SERVICE_UNAVAILABLE, "api_error");
    }
    let paid = inner
        .sessions
        .values()
        .chain(inner.invoices.values())
        .any(|s| s["payment_intent"] == json!(intent));
    if !paid {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"error": {"type": "invalid_request_error", "code": "resource_missing"}}),
            ),
        )
            .into_response();
    }
    let next = inner.refunds.len() + 1;
    let id = inner
        .refunds
        .entry(key)
        .or_insert_with(|| format!("re_{next:04}"))
        .clone();
    axum::Json(
        json!({"id": id, "object": "refund", "payment_intent": intent, "status": "succeeded"}),
    )
    .into_response()
}

fn stripe_authorized(shared: &StripeShared, headers: &HeaderMap) -> bool {
    let ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(format!("Bearer {}", shared.key).as_str());
    if !ok {
        shared.inner.lock().unwrap().unauthorized += 1;
    }
    ok
}

async fn stripe_create(
    State(shared): State<Arc<StripeShared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = stripe_gate(&shared, &headers) {
        return refused;
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return (
            StatusCode::BAD_REQUEST,
            "the fake requires an Idempotency-Key",
        )
            .into_response();
    };
    let mut inner = shared.inner.lock().unwrap();
    if let Some(id) = inner.by_key.get(&key) {
        return axum::Json(inner.sessions[id].clone()).into_response();
    }
    let amount: i64 = form
        .get("line_items[0][price_data][unit_amount]")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let mode = form.get("mode").cloned().unwrap_or_default();
    let interval = form
        .get("line_items[0][price_data][recurring][interval]")
        .cloned();
    let valid = match mode.as_str() {
        "payment" => interval.is_none(),
        // A subscription needs a recurring price.
        "subscription" => interval
            .as_deref()
            .is_some_and(|i| ["day", "week", "month", "year"].contains(&i)),
        _ => false,
    };
    if amount <= 0 || !valid {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"type": "invalid_request_error"}})),
        )
            .into_response();
    }
    let metadata: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("subscription_data[metadata][")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_owned(), Value::from(v.clone())))
        })
        .collect();
    inner.created += 1;
    let id = format!("cs_test_{:04}", inner.created);
    let base = shared.base.lock().unwrap().clone();
    let session = json!({
        "id": id,
        "object": "checkout.session",
        "url": format!("{base}/pay/{id}"),
        "status": "open",
        "payment_status": "unpaid",
        "amount_total": amount,
        "currency": form.get("line_items[0][price_data][currency]").cloned().unwrap_or_default(),
        "client_reference_id": form.get("client_reference_id").cloned().unwrap_or_default(),
        "success_url": form.get("success_url").cloned().unwrap_or_default(),
        "payment_intent": null,
        "mode": mode,
        "subscription": null,
        "customer": null,
        "invoice": null,
        "fake_recurring": {"interval": interval, "metadata": metadata},
    });
    inner.by_key.insert(key, id.clone());
    inner.sessions.insert(id, session.clone());
    axum::Json(session).into_response()
}

async fn stripe_retrieve(
    State(shared): State<Arc<StripeShared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !stripe_authorized(&shared, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"type": "invalid_request_error"}})),
        )
            .into_response();
    }
    match shared.inner.lock().unwrap().sessions.get(&id) {
        Some(session) => axum::Json(session.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({"error": {"type": "invalid_request_error", "code": "resource_missing"}}),
            ),
        )
            .into_response(),
    }
}

/// The payer pays by card; Stripe sends the browser to the success URL.
async fn stripe_pay(State(shared): State<Arc<StripeShared>>, Path(id): Path<String>) -> Response {
    let mut inner = shared.inner.lock().unwrap();
    let Some(session) = inner.sessions.get_mut(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    session["status"] = json!("complete");
    session["payment_status"] = json!("paid");
    let mut created = None;
    if session["mode"] == "subscription" {
        // Paid through the subscription's first invoice: the session has
        // no payment intent of its own.
        let n = id.trim_start_matches("cs_test_").to_owned();
        let (sub_id, invoice_id) = (format!("sub_{n}"), format!("in_{n}_first"));
        session["subscription"] = json!(sub_id);
        session["customer"] = json!(format!("cus_{n}"));
        session["invoice"] = json!(invoice_id);
        let amount = session["amount_total"].clone();
        let currency = session["currency"].clone();
        let subscription = json!({
            "id": sub_id, "object": "subscription", "status": "active",
            "customer": format!("cus_{n}"), "cancel_at_period_end": false,
            "currency": currency, "latest_invoice": invoice_id,
            "metadata": session["fake_recurring"]["metadata"].clone(),
            "items": {"object": "list", "data": [{"price": {
                "unit_amount": amount, "currency": currency,
                "recurring": {"interval": session["fake_recurring"]["interval"].clone()}}}]},
        });
        let invoice = json!({
            "id": invoice_id, "object": "invoice", "subscription": sub_id,
            "billing_reason": "subscription_create", "status": "paid",
            "amount_paid": amount, "amount_due": amount, "currency": currency,
            "payment_intent": format!("pi_{invoice_id}"),
        });
        created = Some((sub_id, subscription, invoice_id, invoice));
    } else {
        session["payment_intent"] = json!(format!("pi_{id}"));
    }
    let location = session["success_url"]
        .as_str()
        .unwrap_or_default()
        .replace("{CHECKOUT_SESSION_ID}", &id);
    if let Some((sub_id, subscription, invoice_id, invoice)) = created {
        inner.subscriptions.insert(sub_id, subscription);
        inner.invoices.insert(invoice_id, invoice);
    }
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}
