//! Payments through the real binary and HTTP API, against fake eSewa and
//! Khalti servers on loopback (tests/e2e/fake_providers.rs): checkout,
//! the browser's round trip, confirmation by lookup only, the inbox's
//! exactly-once, reconciliation on the manual clock, provider timeouts, a
//! kill -9 between the provider's confirmation and the grant, and invoice
//! numbers under 50 concurrent checkouts.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::fake_providers::{FakeEsewa, FakeKhalti, FakeStripe, esewa_sign};
use crate::support::{Answer, Host, workspace_root};

const START: &str = "2026-01-01T00:00:00Z";
const ESEWA_KEY: &str = "8gBm/:&EnhH.1/q";
const KHALTI_KEY: &str = "test_secret_key_0123456789abcdef";
const STRIPE_KEY: &str = "sk_test_0123456789";
const WEBHOOK_SECRET: &str = "whsec_current_0123456789";
const OLD_WEBHOOK_SECRET: &str = "whsec_previous_0123456789";
/// START as unix seconds.
const START_UNIX: i64 = 1_767_225_600;

struct World {
    host: Host,
    esewa: FakeEsewa,
    khalti: FakeKhalti,
    stripe: FakeStripe,
    browser: reqwest::blocking::Client,
}

fn world() -> World {
    let esewa = FakeEsewa::start(ESEWA_KEY);
    let khalti = FakeKhalti::start(KHALTI_KEY);
    let stripe = FakeStripe::start(STRIPE_KEY);
    let plans = workspace_root().join("tests/e2e/plans-payments");
    let plans = plans.to_str().expect("utf-8").to_owned();
    let host = Host::start_with(
        &[],
        &[
            "--plans",
            &plans,
            "--manual-clock",
            START,
            // Gregorian fiscal years here; the default (`bs`) is tested in
            // payments_renewals.rs.
            "--invoice-fiscal-year-start",
            "07-17",
            "--esewa-base-url",
            &esewa.base,
            "--esewa-secret-key",
            ESEWA_KEY,
            "--khalti-base-url",
            &khalti.base,
            "--khalti-secret-key",
            KHALTI_KEY,
            "--stripe-base-url",
            &stripe.base,
            "--stripe-secret-key",
            STRIPE_KEY,
            "--stripe-webhook-secrets",
            WEBHOOK_SECRET,
            "--payments-http-timeout-secs",
            "2",
            "--seller-name",
            "Souk Nepal Pvt. Ltd.",
            "--seller-pan",
            "609876543",
        ],
    );
    let browser = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("browser");
    World {
        host,
        esewa,
        khalti,
        stripe,
        browser,
    }
}

fn checkout(w: &World, tenant: &str, token: &str, body: Value) -> Answer {
    w.host
        .post(&format!("/v1/tenants/{tenant}/checkout"), token, body)
}

fn checkout_ok(w: &World, tenant: &str, token: &str, body: Value) -> Value {
    let a = checkout(w, tenant, token, body);
    assert_eq!(a.status, 201, "{a:?}");
    a.body
}

/// The path and query of a URL on the host (the browser follows it there,
/// also after a restart moved the host to another port).
fn on_host(_w: &World, url: &str) -> String {
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("{url} is not on the host"));
    rest[rest.find('/').expect("a path")..].to_owned()
}

/// The browser GETs a page of the host, unauthenticated.
fn visit(w: &World, path: &str) -> Answer {
    w.host.request("GET", path, None, None)
}

fn form_field(next: &Value, name: &str) -> String {
    next["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f[0] == name)
        .unwrap_or_else(|| panic!("no field {name} in {next}"))[1]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The browser posts eSewa's form; the payer pays; answers where eSewa
/// sends the browser back.
fn pay_esewa(w: &World, next: &Value) -> String {
    assert_eq!(next["kind"], "form_post", "{next}");
    let action = next["action"].as_str().unwrap();
    assert_eq!(action, format!("{}/api/epay/main/v2/form", w.esewa.base));
    let fields: Vec<(String, String)> = next["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f[0].as_str().unwrap().to_owned(),
                f[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let res = w.browser.post(action).form(&fields).send().unwrap();
    assert_eq!(res.status().as_u16(), 302, "the fake refused the form");
    res.headers()["location"].to_str().unwrap().to_owned()
}

fn pay_khalti(w: &World, next: &Value) -> String {
    assert_eq!(next["kind"], "redirect", "{next}");
    let res = w.browser.get(next["url"].as_str().unwrap()).send().unwrap();
    assert_eq!(res.status().as_u16(), 302);
    res.headers()["location"].to_str().unwrap().to_owned()
}

fn subscription(w: &World, tenant: &str, token: &str, module: &str) -> Option<Value> {
    let a = w.host.get(
        &format!("/v1/tenants/{tenant}/subscriptions/{module}"),
        token,
    );
    (a.status == 200).then_some(a.body)
}

fn invoices(w: &World, tenant: &str, token: &str) -> Vec<Value> {
    w.host.invoices(tenant, token)
}

fn maintain(w: &World) -> Value {
    w.host.run_maintenance()
}

fn advance_seconds(w: &World, seconds: i64) {
    w.host.advance_clock(seconds);
}

#[test]
fn a_tenant_in_npr_pays_digital_card_pro_with_esewa_exactly_once() {
    let w = world();
    let token = w.host.tenant("npr-org");
    let answer = checkout_ok(
        &w,
        "npr-org",
        &token,
        json!({"provider": "esewa", "module": "cards", "plan": "pro", "pan": "301234567"}),
    );
    let invoice = &answer["invoice"];
    assert_eq!(invoice["number"], "INV-2025/26-000001");
    assert_eq!(invoice["status"], "open");
    assert_eq!(invoice["seller"]["pan"], "609876543");
    assert_eq!(invoice["buyer"]["pan"], "301234567");
    let lines: Vec<(String, i64)> = invoice["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap().to_owned(),
                l["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(lines, vec![("plan".into(), 49_900), ("tax".into(), 6_487)]);
    assert_eq!(invoice["total"], 56_387);
    assert_eq!(invoice["total_text"], "563.87");
    let next = &answer["next"];
    assert_eq!(form_field(next, "amount"), "499");
    assert_eq!(form_field(next, "tax_amount"), "64.87");
    assert_eq!(form_field(next, "total_amount"), "563.87");
    assert_eq!(
        form_field(next, "transaction_uuid"),
        answer["attempt"].as_str().unwrap()
    );
    assert_eq!(
        form_field(next, "signed_field_names"),
        "total_amount,transaction_uuid,product_code"
    );
    let message = format!(
        "total_amount=563.87,transaction_uuid={},product_code=EPAYTEST",
        answer["attempt"].as_str().unwrap()
    );
    assert_eq!(
        form_field(next, "signature"),
        esewa_sign(ESEWA_KEY, &message)
    );
    // Nothing is granted before payment.
    assert!(subscription(&w, "npr-org", &token, "cards").is_none());

    let back = pay_esewa(&w, next);
    let done = visit(&w, &on_host(&w, &back));
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(done.body["outcome"], "granted");
    assert_eq!(done.body["invoice_status"], "paid");
    let sub = subscription(&w, "npr-org", &token, "cards").unwrap();
    assert_eq!(sub["subscription"]["state"], "active");
    assert_eq!(sub["subscription"]["plan"], "pro");
    let history = sub["history"].as_array().unwrap().len();
    // The browser reloads the page: nothing moves.
    let again = visit(&w, &on_host(&w, &back));
    assert_eq!(again.status, 200);
    assert_eq!(again.body["invoice_status"], "paid");
    let sub = subscription(&w, "npr-org", &token, "cards").unwrap();
    assert_eq!(sub["history"].as_array().unwrap().len(), history);
    assert_eq!(sub["subscription"]["prepaid_periods"], 0);
    let listed = invoices(&w, "npr-org", &token);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "paid");
    assert_eq!(listed[0]["provider"], "esewa");
    assert!(listed[0]["paid_at"].is_string());
    // The operator sees every tenant's invoices; another tenant sees none.
    let all = w.host.get("/v1/invoices", &w.host.operator);
    assert_eq!(all.body["invoices"].as_array().unwrap().len(), 1);
    let other = w.host.tenant("other-org");
    assert!(invoices(&w, "other-org", &other).is_empty());
    let id = listed[0]["id"].as_str().unwrap();
    let peek = w
        .host
        .get(&format!("/v1/tenants/other-org/invoices/{id}"), &other);
    assert_eq!(peek.status, 404);
}

#[test]
fn esewa_data_is_verified_over_its_own_literal_fields_and_never_trusted_alone() {
    let w = world();
    let token = w.host.tenant("acme");
    let answer = checkout_ok(
        &w,
        "acme",
        &token,
        json!({"provider": "esewa", "module": "cards", "plan": "pro"}),
    );
    let uuid = answer["attempt"].as_str().unwrap().to_owned();
    // The payer pays at eSewa, but the browser's return is what we forge.
    let _ = pay_esewa(&w, &answer["next"]);
    let calls = w.esewa.status_calls();
    let path = |data: &str| {
        format!(
            "/v1/payments/esewa/return?data={}",
            data.replace('+', "%2B")
                .replace(' ', "%20")
                .replace('/', "%2F")
                .replace('=', "%3D")
        )
    };

    // Signed with another key: refused, eSewa not even asked.
    let forged = w
        .esewa
        .success_data(&uuid, "COMPLETE", "563.87", "not-the-key");
    let a = visit(&w, &path(&forged));
    assert_eq!(a.status, 422, "{a:?}");
    // Signed over `563.87`, sent as `563.870`: the literal text counts.
    let good = w.esewa.success_data(&uuid, "COMPLETE", "563.87", ESEWA_KEY);
    let json = String::from_utf8(STANDARD.decode(&good).unwrap()).unwrap();
    let tampered = STANDARD.encode(json.replace("\"563.87\"", "\"563.870\""));
    let a = visit(&w, &path(&tampered));
    assert_eq!(a.status, 422, "{a:?}");
    // 1000.0 is not 1000: signed over 1000.0, sent 1000.
    let thousand = w.esewa.success_data(&uuid, "COMPLETE", "1000.0", ESEWA_KEY);
    let json = String::from_utf8(STANDARD.decode(&thousand).unwrap()).unwrap();
    let a = visit(
        &w,
        &path(&STANDARD.encode(json.replace("\"1000.0\"", "\"1000\""))),
    );
    assert_eq!(a.status, 422, "{a:?}");
    assert_eq!(
        w.esewa.status_calls(),
        calls,
        "nothing forged reached the status API"
    );
    assert!(subscription(&w, "acme", &token, "cards").is_none());

    // A thousands separator in a correctly signed answer verifies; the
    // grant still comes from the status API only (which knows 563.87).
    let separated = w
        .esewa
        .success_data(&uuid, "COMPLETE", "2,700.0", ESEWA_KEY);
    let a = visit(&w, &path(&separated));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["outcome"], "granted");
    assert_eq!(w.esewa.status_calls(), calls + 1);
    // A `+` of the Base64 arriving as a space still verifies (and changes
    // nothing now).
    let plus = (0..3)
        .map(|i| {
            let code = format!("{}~~~", "0".repeat(i));
            w.esewa
                .success_data_coded(&uuid, &code, "COMPLETE", "563.87", ESEWA_KEY)
        })
        .find(|d| d.contains('+'))
        .expect("some encoding has a +");
    let spaced = plus.replace('+', " ");
    let a = visit(&w, &path(&spaced));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["invoice_status"], "paid");
    let sub = subscription(&w, "acme", &token, "cards").unwrap();
    assert_eq!(sub["subscription"]["state"], "active");
    assert_eq!(sub["subscription"]["prepaid_periods"], 0);
}

#[test]
fn esewa_pending_is_held_then_completed_by_reconciliation() {
    let w = world();
    let token = w.host.tenant("acme");
    let answer = checkout_ok(
        &w,
        "acme",
        &token,
        json!({"provider": "esewa", "module": "cards", "plan": "pro"}),
    );
    let uuid = answer["attempt"].as_str().unwrap().to_owned();
    let back = pay_esewa(&w, &answer["next"]);
    w.esewa.set_status(&uuid, "PENDING");
    let a = visit(&w, &on_host(&w, &back));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["outcome"], "held");
    assert!(subscription(&w, "acme", &token, "cards").is_none());
    // Not due yet: eSewa is not asked.
    let calls = w.esewa.status_calls();
    maintain(&w);
    assert_eq!(w.esewa.status_calls(), calls);
    // Five minutes on, still pending, then ambiguous: held each time.
    advance_seconds(&w, 301);
    maintain(&w);
    assert_eq!(w.esewa.status_calls(), calls + 1);
    w.esewa.set_status(&uuid, "AMBIGUOUS");
    advance_seconds(&w, 301);
    let report = maintain(&w);
    assert!(report["changes"].to_string().contains("held"), "{report}");
    assert!(subscription(&w, "acme", &token, "cards").is_none());
    // eSewa times out: the attempt is kept and asked again later.
    w.esewa.set_delay(Duration::from_secs(4));
    advance_seconds(&w, 301);
    let report = maintain(&w);
    assert_eq!(report["failed"].as_array().unwrap().len(), 1, "{report}");
    w.esewa.set_delay(Duration::ZERO);
    w.esewa.set_status(&uuid, "COMPLETE");
    advance_seconds(&w, 301);
    let report = maintain(&w);
    assert!(
        report["changes"].to_string().contains("granted"),
        "{report}"
    );
    let sub = subscription(&w, "acme", &token, "cards").unwrap();
    assert_eq!(sub["subscription"]["state"], "active");
    // Final: no more lookups.
    let calls = w.esewa.status_calls();
    advance_seconds(&w, 301);
    maintain(&w);
    assert_eq!(w.esewa.status_calls(), calls);
}

#[test]
fn khalti_pays_only_on_a_completed_lookup() {
    let w = world();
    let token = w.host.tenant("kathmandu-club");
    let answer = checkout_ok(
        &w,
        "kathmandu-club",
        &token,
        json!({"provider": "khalti", "module": "cards", "plan": "pro"}),
    );
    let url = answer["next"]["url"].as_str().unwrap().to_owned();
    let pidx = url.rsplit('/').next().unwrap().to_owned();
    let payment = w.khalti.payment(&pidx).unwrap();
    assert_eq!(payment.amount, 56_387);
    assert_eq!(
        payment.purchase_order_id,
        answer["attempt"].as_str().unwrap()
    );
    assert_eq!(
        payment.return_url,
        format!("{}/v1/payments/khalti/return", w.host.base)
    );
    let back = pay_khalti(&w, &answer["next"]);
    let a = visit(&w, &on_host(&w, &back));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["outcome"], "granted");
    let sub = subscription(&w, "kathmandu-club", &token, "cards").unwrap();
    assert_eq!(sub["subscription"]["state"], "active");
    assert_eq!(w.khalti.unauthorized(), 0);

    // Another tenant: Khalti says Pending, then User canceled.
    let token2 = w.host.tenant("pokhara-club");
    let answer = checkout_ok(
        &w,
        "pokhara-club",
        &token2,
        json!({"provider": "khalti", "module": "cards", "plan": "pro"}),
    );
    let pidx = answer["next"]["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    w.khalti.set_status(&pidx, "Pending");
    let back = pay_khalti(&w, &answer["next"]);
    // The query says whatever it says; only lookup counts.
    let forged = on_host(&w, &back).replace("status=Pending", "status=Completed");
    let a = visit(&w, &forged);
    assert_eq!(a.body["outcome"], "held", "{a:?}");
    assert!(subscription(&w, "pokhara-club", &token2, "cards").is_none());
    w.khalti.set_status(&pidx, "User canceled");
    advance_seconds(&w, 301);
    maintain(&w);
    let a = visit(&w, &forged);
    assert_eq!(a.body["outcome"], "failed", "{a:?}");
    assert!(subscription(&w, "pokhara-club", &token2, "cards").is_none());
    let listed = invoices(&w, "pokhara-club", &token2);
    assert_eq!(listed[0]["status"], "open");
    // A lookup for a pidx Souk never issued is a 404, not a grant.
    let a = visit(&w, "/v1/payments/khalti/return?pidx=PIDX9999nothing");
    assert_eq!(a.status, 404);
}

#[test]
fn a_provider_that_times_out_loses_nothing_and_grants_nothing() {
    let w = world();
    let token = w.host.tenant("acme");
    w.khalti.set_delay(Duration::from_secs(4));
    let a = checkout(
        &w,
        "acme",
        &token,
        json!({"provider": "khalti", "module": "cards", "plan": "pro"}),
    );
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(
        a.body["type"],
        "https://souk.dev/problems/payment-provider-unavailable"
    );
    let detail = a.detail();
    assert!(
        detail.contains("Khalti") && detail.contains("INV-2025/26-000001"),
        "{detail}"
    );
    assert!(!detail.contains(KHALTI_KEY));
    assert!(subscription(&w, "acme", &token, "cards").is_none());
    let listed = invoices(&w, "acme", &token);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "open");
    // Retry once Khalti answers: the same invoice, no new number.
    w.khalti.set_delay(Duration::ZERO);
    let answer = checkout_ok(
        &w,
        "acme",
        &token,
        json!({"provider": "khalti", "module": "cards", "plan": "pro"}),
    );
    assert_eq!(answer["invoice"]["number"], "INV-2025/26-000001");
    let back = pay_khalti(&w, &answer["next"]);
    assert_eq!(visit(&w, &on_host(&w, &back)).body["outcome"], "granted");
    assert_eq!(invoices(&w, "acme", &token).len(), 1);
}

#[test]
fn a_kill_between_the_providers_confirmation_and_the_grant_grants_once_after_restart() {
    let mut w = world();
    let token = w.host.tenant("acme");
    let answer = checkout_ok(
        &w,
        "acme",
        &token,
        json!({"provider": "esewa", "module": "cards", "plan": "pro"}),
    );
    // eSewa confirmed the payment; Souk is killed (SIGKILL) before the
    // browser's return reaches it.
    let back = pay_esewa(&w, &answer["next"]);
    w.host.restart();
    assert!(subscription(&w, "acme", &token, "cards").is_none());
    advance_seconds(&w, 301);
    let report = maintain(&w);
    assert!(
        report["changes"].to_string().contains("granted"),
        "{report}"
    );
    // The late return and a second run change nothing.
    let a = visit(&w, &on_host(&w, &back));
    assert_eq!(a.body["invoice_status"], "paid", "{a:?}");
    advance_seconds(&w, 301);
    maintain(&w);
    let sub = subscription(&w, "acme", &token, "cards").unwrap();
    assert_eq!(sub["subscription"]["state"], "active");
    assert_eq!(sub["subscription"]["prepaid_periods"], 0);
    let paid: Vec<&Value> = sub["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| {
            h["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("payment "))
        })
        .collect();
    assert_eq!(paid.len(), 1, "{sub}");
}

#[test]
fn a_tenant_buys_a_bundle_in_one_payment() {
    let w = world();
    let token = w.host.tenant("party");
    let answer = checkout_ok(
        &w,
        "party",
        &token,
        json!({"provider": "khalti", "bundle": "starter"}),
    );
    let invoice = &answer["invoice"];
    let lines: Vec<(String, i64)> = invoice["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap().to_owned(),
                l["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            ("plan".into(), 49_900),
            ("plan".into(), 39_900),
            ("bundle_discount".into(), -13_470),
            ("tax".into(), 9_923)
        ]
    );
    assert_eq!(invoice["total"], 86_253);
    let back = pay_khalti(&w, &answer["next"]);
    assert_eq!(visit(&w, &on_host(&w, &back)).body["outcome"], "granted");
    for module in ["cards", "forum"] {
        let sub = subscription(&w, "party", &token, module).unwrap();
        assert_eq!(sub["subscription"]["state"], "active", "{module}");
    }
}

#[test]
fn invoice_numbers_are_gap_free_under_50_concurrent_checkouts() {
    let w = world();
    let tokens: Vec<(String, String)> = (0..50)
        .map(|i| {
            let slug = format!("org-{i}");
            let token = w.host.tenant(&slug);
            (slug, token)
        })
        .collect();
    let numbers: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = tokens
            .iter()
            .map(|(slug, token)| {
                let w = &w;
                scope.spawn(move || {
                    let a = checkout(
                        w,
                        slug,
                        token,
                        json!({"provider": "esewa", "module": "cards", "plan": "pro"}),
                    );
                    assert_eq!(a.status, 201, "{a:?}");
                    a.body["invoice"]["number"].as_str().unwrap().to_owned()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut numbers = numbers;
    numbers.sort();
    let expected: Vec<String> = (1..=50).map(|n| format!("INV-2025/26-{n:06}")).collect();
    assert_eq!(numbers, expected);
}

#[test]
fn nonsense_checkouts_are_refused_and_free_plans_need_no_checkout() {
    let w = world();
    let token = w.host.tenant("acme");
    let a = checkout(
        &w,
        "acme",
        &token,
        json!({"provider": "esewa", "module": "cards", "plan": "free"}),
    );
    assert_eq!(a.status, 422, "{a:?}");
    let a = checkout(
        &w,
        "acme",
        &token,
        json!({"provider": "esewa", "module": "cards"}),
    );
    assert_eq!(a.status, 400, "{a:?}");
    let a = checkout(
        &w,
        "acme",
        &token,
        json!({"provider": "paypal", "module": "cards", "plan": "pro"}),
    );
    assert_eq!(a.status, 400, "{a:?}");
    // None of them took an invoice number.
    let answer = checkout_ok(
        &w,
        "acme",
        &token,
        json!({"provider": "esewa", "module": "cards", "plan": "pro"}),
    );
    assert_eq!(answer["invoice"]["number"], "INV-2025/26-000001");
}

/// Posts a Stripe webhook with `body` and a `Stripe-Signature` header.
fn webhook(w: &World, body: &str, signature: &str) -> Answer {
    let res = w
        .browser
        .post(format!("{}/v1/payments/stripe/webhook", w.host.base))
        .header("stripe-signature", signature)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .unwrap();
    let status = res.status().as_u16();
    let bytes = res.bytes().unwrap().to_vec();
    Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        content_type: String::new(),
        bytes,
    }
}

fn stripe_sign(secret: &str, t: i64, body: &str) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn session_event(id: &str, kind: &str, created: i64, session: &Value) -> String {
    json!({
        "id": id, "object": "event", "type": kind, "created": created,
        "data": {"object": session},
    })
    .to_string()
}

#[test]
fn a_tenant_in_usd_pays_with_stripe_and_only_verified_webhooks_count() {
    let w = world();
    let token = w.host.tenant("intl-ngo");
    let answer = checkout_ok(
        &w,
        "intl-ngo",
        &token,
        json!({"provider": "stripe", "module": "cards", "plan": "pro", "currency": "USD"}),
    );
    let invoice = &answer["invoice"];
    assert_eq!(invoice["currency"], "USD");
    assert_eq!(invoice["total"], 499);
    assert_eq!(invoice["tax"], 0);
    assert_eq!(invoice["lines"].as_array().unwrap().len(), 1);
    let url = answer["next"]["url"].as_str().unwrap();
    let session_id = url.rsplit('/').next().unwrap().to_owned();
    let session = w.stripe.session(&session_id).unwrap();
    assert_eq!(session["amount_total"], 499);
    assert_eq!(session["currency"], "usd");
    assert_eq!(session["client_reference_id"], answer["attempt"]);
    assert_eq!(w.stripe.created(), 1);
    assert_eq!(w.stripe.unauthorized(), 0);

    // The card is paid at Stripe; the browser never comes back.
    let _ = w.browser.get(url).send().unwrap();
    let paid = w.stripe.session(&session_id).unwrap();
    let body = session_event("evt_2", "checkout.session.completed", START_UNIX, &paid);

    // Forged, stale, wrong scheme, re-serialised: refused, nothing granted.
    let forged = format!(
        "t={START_UNIX},v1={}",
        stripe_sign("whsec_guessed", START_UNIX, &body)
    );
    assert_eq!(webhook(&w, &body, &forged).status, 400);
    let stale_t = START_UNIX - 301;
    let stale = format!(
        "t={stale_t},v1={}",
        stripe_sign(WEBHOOK_SECRET, stale_t, &body)
    );
    assert_eq!(webhook(&w, &body, &stale).status, 400);
    let v0 = format!(
        "t={START_UNIX},v0={}",
        stripe_sign(WEBHOOK_SECRET, START_UNIX, &body)
    );
    assert_eq!(webhook(&w, &body, &v0).status, 400);
    let good = format!(
        "t={START_UNIX},v1={}",
        stripe_sign(WEBHOOK_SECRET, START_UNIX, &body)
    );
    let reserialised =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(&body).unwrap()).unwrap();
    assert_eq!(webhook(&w, &reserialised, &good).status, 400);
    let old_only = format!(
        "t={START_UNIX},v1={}",
        stripe_sign(OLD_WEBHOOK_SECRET, START_UNIX, &body)
    );
    assert_eq!(webhook(&w, &body, &old_only).status, 400);
    assert!(subscription(&w, "intl-ngo", &token, "cards").is_none());

    // While Stripe rotates the secret it signs with both: every v1 is tried.
    let rotating = format!(
        "t={START_UNIX},v1={},v1={}",
        stripe_sign(OLD_WEBHOOK_SECRET, START_UNIX, &body),
        stripe_sign(WEBHOOK_SECRET, START_UNIX, &body)
    );
    let a = webhook(&w, &body, &rotating);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["outcome"], "granted");
    let sub = subscription(&w, "intl-ngo", &token, "cards").unwrap();
    assert_eq!(sub["subscription"]["state"], "active");
    let history = sub["history"].as_array().unwrap().len();

    // Replayed: acknowledged, nothing changes.
    let a = webhook(&w, &body, &good);
    assert_eq!(a.status, 200);
    assert_eq!(a.body["repeated"], true);
    // Out of order: an older event saying the session expired is ignored.
    let mut expired = paid.clone();
    expired["status"] = json!("expired");
    expired["payment_status"] = json!("unpaid");
    let older = session_event(
        "evt_1",
        "checkout.session.expired",
        START_UNIX - 60,
        &expired,
    );
    let sig = format!(
        "t={START_UNIX},v1={}",
        stripe_sign(WEBHOOK_SECRET, START_UNIX, &older)
    );
    let a = webhook(&w, &older, &sig);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["outcome"], "ignored");
    // The browser's late return changes nothing either.
    let a = visit(
        &w,
        &format!("/v1/payments/stripe/return?session_id={session_id}"),
    );
    assert_eq!(a.body["invoice_status"], "paid", "{a:?}");
    let sub = subscription(&w, "intl-ngo", &token, "cards").unwrap();
    assert_eq!(sub["subscription"]["state"], "active");
    assert_eq!(sub["history"].as_array().unwrap().len(), history);
    let listed = invoices(&w, "intl-ngo", &token);
    assert_eq!(listed[0]["provider"], "stripe");
    // A subscription-mode session is paid by the subscription's first
    // Stripe invoice (its own payment intent is null).
    assert_eq!(
        listed[0]["provider_reference"],
        w.stripe.session(&session_id).unwrap()["invoice"]
    );

    // A subscription event about nothing of ours is recorded and flagged.
    let stray =
        json!({"id": "evt_9", "object": "event", "type": "invoice.paid", "created": START_UNIX,
        "data": {"object": {"id": "in_1", "amount_paid": 499, "currency": "usd"}}})
        .to_string();
    let sig = format!(
        "t={START_UNIX},v1={}",
        stripe_sign(WEBHOOK_SECRET, START_UNIX, &stray)
    );
    assert_eq!(webhook(&w, &stray, &sig).body["outcome"], "flagged");
    let flagged = w.host.get("/v1/payments/flagged", &w.host.operator);
    assert_eq!(
        flagged.body["flagged"].as_array().unwrap().len(),
        1,
        "{flagged:?}"
    );
    // Another event type: acknowledged, unrecorded.
    let other = json!({"id": "evt_10", "object": "event", "type": "charge.updated", "created": START_UNIX, "data": {"object": {}}}).to_string();
    let sig = format!(
        "t={START_UNIX},v1={}",
        stripe_sign(WEBHOOK_SECRET, START_UNIX, &other)
    );
    assert_eq!(webhook(&w, &other, &sig).body["outcome"], "unhandled");
}

#[test]
fn a_retried_stripe_checkout_reuses_the_invoice_and_only_the_live_session_grants() {
    let w = world();
    let token = w.host.tenant("intl");
    let body =
        json!({"provider": "stripe", "module": "cards", "plan": "business", "currency": "USD"});
    let answer = checkout_ok(&w, "intl", &token, body.clone());
    // A retried checkout reuses the invoice, and a new attempt.
    let again = checkout_ok(&w, "intl", &token, body);
    assert_eq!(again["invoice"]["number"], answer["invoice"]["number"]);
    assert_eq!(w.stripe.created(), 2);
    // Paying the first (superseded, canceled) session is flagged, not granted.
    let first = answer["next"]["url"].as_str().unwrap();
    let _ = w.browser.get(first).send().unwrap();
    let first_id = first.rsplit('/').next().unwrap();
    let body = session_event(
        "evt_a",
        "checkout.session.completed",
        START_UNIX,
        &w.stripe.session(first_id).unwrap(),
    );
    let sig = format!(
        "t={START_UNIX},v1={}",
        stripe_sign(WEBHOOK_SECRET, START_UNIX, &body)
    );
    let a = webhook(&w, &body, &sig);
    assert_eq!(a.body["outcome"], "flagged", "{a:?}");
    advance_seconds(&w, 301);
    maintain(&w);
    assert!(subscription(&w, "intl", &token, "cards").is_none());
    let back = pay_khalti(&w, &again["next"]);
    let a = visit(&w, &on_host(&w, &back));
    assert_eq!(a.body["outcome"], "granted", "{a:?}");
    let sub = subscription(&w, "intl", &token, "cards").unwrap();
    assert_eq!(sub["subscription"]["plan"], "business");
}

#[test]
fn the_operator_records_bank_transfers_through_the_api_and_the_cli() {
    let w = world();
    let token = w.host.tenant("bank-org");
    let answer = checkout_ok(
        &w,
        "bank-org",
        &token,
        json!({"provider": "esewa", "module": "cards", "plan": "pro"}),
    );
    let id = answer["invoice"]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/tenants/bank-org/invoices/{id}/mark-paid");
    // The tenant cannot mark its own invoice paid.
    let a = w.host.post(&path, &token, json!({"reference": "NIC-1"}));
    assert!(a.status == 401 || a.status == 403, "{a:?}");
    let a = w.host.post(
        &path,
        &w.host.operator,
        json!({"reference": "NIC-ASIA 0001"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["outcome"], "granted");
    assert_eq!(a.body["invoice"]["provider"], "manual");
    assert_eq!(a.body["invoice"]["provider_reference"], "NIC-ASIA 0001");
    let sub = subscription(&w, "bank-org", &token, "cards").unwrap();
    assert_eq!(sub["subscription"]["state"], "active");
    // The eSewa attempt of the same invoice is canceled: its payment is
    // flagged, never a second period.
    let back = pay_esewa(&w, &answer["next"]);
    let late = visit(&w, &on_host(&w, &back));
    assert_eq!(late.body["outcome"], "flagged", "{late:?}");
    let audit = w.host.get("/v1/tenants/bank-org/audit", &w.host.operator);
    assert!(
        audit.body.to_string().contains("payment_manual"),
        "{audit:?}"
    );

    // The CLI twin, on another tenant's invoice.
    let token2 = w.host.tenant("cli-org");
    let answer = checkout_ok(
        &w,
        "cli-org",
        &token2,
        json!({"provider": "khalti", "module": "cards", "plan": "pro"}),
    );
    let id2 = answer["invoice"]["id"].as_str().unwrap().to_owned();
    let plans = workspace_root().join("tests/e2e/plans-payments");
    let plans = plans.to_str().unwrap();
    let common = ["--plans", plans, "--manual-clock", START];
    let mut args: Vec<&str> = common.to_vec();
    args.extend([
        "payment",
        "mark-paid",
        "--tenant",
        "cli-org",
        "--invoice",
        &id2,
        "--reference",
        "REF-2",
    ]);
    let (ok, out, err) = w.host.cli(&args);
    assert!(ok, "{out}{err}");
    assert!(out.contains("granted"), "{out}");
    let mut args: Vec<&str> = common.to_vec();
    args.extend(["payment", "invoices"]);
    let (ok, out, err) = w.host.cli(&args);
    assert!(ok, "{err}");
    assert_eq!(out.matches("\tpaid\t").count(), 2, "{out}");
    let sub = subscription(&w, "cli-org", &token2, "cards").unwrap();
    assert_eq!(sub["subscription"]["state"], "active");
}

#[test]
fn a_paid_invoice_downloads_as_pdf_and_printable_html() {
    let w = world();
    let token = w.host.tenant("print-org");
    let answer = checkout_ok(
        &w,
        "print-org",
        &token,
        json!({"provider": "khalti", "bundle": "starter"}),
    );
    let back = pay_khalti(&w, &answer["next"]);
    assert_eq!(visit(&w, &on_host(&w, &back)).body["outcome"], "granted");
    let id = answer["invoice"]["id"].as_str().unwrap();
    let pdf = w
        .host
        .get(&format!("/v1/tenants/print-org/invoices/{id}/pdf"), &token);
    assert_eq!(pdf.status, 200);
    assert_eq!(pdf.content_type, "application/pdf");
    assert!(pdf.bytes.starts_with(b"%PDF-"));
    let shown =
        crate::payments_renewals::pdf_extract::pdf_text(&pdf.bytes).expect("the PDF parses");
    for expected in [
        "Tax Invoice INV-2025/26-000001",
        "Starter bundle discount 15%",
        "NPR -134.70",
        "NPR 99.23",
        "NPR 862.53",
        "Souk Nepal Pvt. Ltd.",
    ] {
        assert!(
            shown.iter().any(|s| s == expected),
            "{expected} not in the PDF: {shown:?}"
        );
    }
    let html = w
        .host
        .get(&format!("/v1/tenants/print-org/invoices/{id}/html"), &token);
    assert_eq!(html.status, 200);
    assert!(html.content_type.starts_with("text/html"));
    let page = String::from_utf8_lossy(&html.bytes);
    assert!(page.contains("NPR 862.53") && page.contains("paid"));
    // Another tenant: a plain 404.
    let other = w.host.tenant("nosy-org");
    let a = w
        .host
        .get(&format!("/v1/tenants/nosy-org/invoices/{id}/pdf"), &other);
    assert_eq!(a.status, 404);
}

#[test]
fn a_refund_voids_the_paid_invoice_with_a_numbered_credit_note() {
    let w = world();
    // Stripe: refunded through its API, once.
    let token = w.host.tenant("card-org");
    let answer = checkout_ok(
        &w,
        "card-org",
        &token,
        json!({"provider": "stripe", "module": "cards", "plan": "pro", "currency": "USD"}),
    );
    let back = pay_khalti(&w, &answer["next"]);
    assert_eq!(visit(&w, &on_host(&w, &back)).body["outcome"], "granted");
    let id = answer["invoice"]["id"].as_str().unwrap();
    let path = format!("/v1/tenants/card-org/invoices/{id}/refund");
    let a = w.host.post(&path, &token, json!({"reason": "asked"}));
    assert!(a.status == 401 || a.status == 403, "{a:?}");
    let a = w.host.post(
        &path,
        &w.host.operator,
        json!({"reason": "duplicate purchase"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["credit_note"]["number"], "CN-2025/26-000001");
    assert_eq!(a.body["credit_note"]["amount"], 499);
    assert_eq!(a.body["credit_note"]["refund_reference"], "re_0001");
    assert_eq!(w.stripe.refunds(), 1);
    let a = w
        .host
        .post(&path, &w.host.operator, json!({"reason": "again"}));
    assert_eq!(a.status, 409, "{a:?}");
    assert_eq!(w.stripe.refunds(), 1);
    let invoice = w
        .host
        .get(&format!("/v1/tenants/card-org/invoices/{id}"), &token);
    assert_eq!(invoice.body["status"], "void");
    // eSewa: refunded outside Souk, recorded with the operator's reference.
    let token = w.host.tenant("wallet-org");
    let answer = checkout_ok(
        &w,
        "wallet-org",
        &token,
        json!({"provider": "esewa", "module": "cards", "plan": "pro"}),
    );
    let back = pay_esewa(&w, &answer["next"]);
    assert_eq!(visit(&w, &on_host(&w, &back)).body["outcome"], "granted");
    let id = answer["invoice"]["id"].as_str().unwrap();
    let path = format!("/v1/tenants/wallet-org/invoices/{id}/refund");
    let a = w
        .host
        .post(&path, &w.host.operator, json!({"reason": "closed"}));
    assert_eq!(a.status, 422, "a wallet refund needs a reference: {a:?}");
    let a = w.host.post(
        &path,
        &w.host.operator,
        json!({"reason": "closed", "reference": "eSewa refund 77"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["credit_note"]["number"], "CN-2025/26-000002");
    assert_eq!(a.body["credit_note"]["amount"], 56_387);
    let audit = w.host.get("/v1/tenants/wallet-org/audit", &w.host.operator);
    assert!(
        audit.body.to_string().contains("payment_refund"),
        "{audit:?}"
    );
}

#[test]
fn the_operator_sees_attempts_stuck_longer_than_a_day() {
    let w = world();
    let token = w.host.tenant("slow-org");
    let answer = checkout_ok(
        &w,
        "slow-org",
        &token,
        json!({"provider": "khalti", "module": "cards", "plan": "pro"}),
    );
    let pidx = answer["next"]["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    w.khalti.set_status(&pidx, "Pending");
    let stuck = w.host.get("/v1/payments/stuck", &w.host.operator);
    assert_eq!(
        stuck.body["stuck"].as_array().unwrap().len(),
        0,
        "{stuck:?}"
    );
    advance_seconds(&w, 86_401);
    maintain(&w);
    let stuck = w.host.get("/v1/payments/stuck", &w.host.operator);
    let list = stuck.body["stuck"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{stuck:?}");
    assert_eq!(list[0]["attempt"], answer["attempt"]);
    assert_eq!(list[0]["status"], "pending");
    // Tenants do not see the operator's lists.
    assert_eq!(w.host.get("/v1/payments/stuck", &token).status, 403);
    assert!(subscription(&w, "slow-org", &token, "cards").is_none());
}

#[test]
fn a_wallet_payer_gets_the_renewal_invoice_before_the_period_ends_and_pays_it() {
    let w = world();
    let token = w.host.tenant("renew-org");
    let answer = checkout_ok(
        &w,
        "renew-org",
        &token,
        json!({"provider": "esewa", "module": "cards", "plan": "pro"}),
    );
    let back = pay_esewa(&w, &answer["next"]);
    assert_eq!(visit(&w, &on_host(&w, &back)).body["outcome"], "granted");
    // Period: Jan 1 to Feb 1. Nothing before the notice.
    advance_seconds(&w, 27 * 86_400);
    let report = maintain(&w);
    assert!(
        !report["changes"].to_string().contains("renewal invoice"),
        "{report}"
    );
    advance_seconds(&w, 2 * 86_400);
    let report = maintain(&w);
    assert!(
        report["changes"]
            .to_string()
            .contains("renewal invoice renew-org/cards: INV-2025/26-000002"),
        "{report}"
    );
    let notes = w.host.get("/v1/tenants/renew-org/notifications", &token);
    assert!(
        notes.body.to_string().contains("renewal_invoice"),
        "{notes:?}"
    );
    assert!(
        notes.body.to_string().contains("INV-2025/26-000002"),
        "{notes:?}"
    );
    // A second run issues nothing new.
    let report = maintain(&w);
    assert!(
        !report["changes"].to_string().contains("renewal invoice"),
        "{report}"
    );
    assert_eq!(invoices(&w, "renew-org", &token).len(), 2);
    // Paying the renewal through checkout pays that very invoice.
    let renewal = checkout_ok(
        &w,
        "renew-org",
        &token,
        json!({"provider": "khalti", "module": "cards", "plan": "pro"}),
    );
    assert_eq!(renewal["invoice"]["number"], "INV-2025/26-000002");
    let back = pay_khalti(&w, &renewal["next"]);
    assert_eq!(visit(&w, &on_host(&w, &back)).body["outcome"], "granted");
    let sub = subscription(&w, "renew-org", &token, "cards").unwrap();
    assert_eq!(sub["subscription"]["prepaid_periods"], 1);
    // The period ends: renewed with the prepaid period, not past due.
    advance_seconds(&w, 3 * 86_400);
    maintain(&w);
    let sub = subscription(&w, "renew-org", &token, "cards").unwrap();
    assert_eq!(sub["subscription"]["state"], "active");
    assert_eq!(sub["subscription"]["prepaid_periods"], 0);
}
