//! Stripe subscriptions, refunds that end what they paid for, and voided
//! invoices, through the real binary against the fake Stripe
//! (tests/e2e/fake_providers.rs): a USD tenant subscribes through a
//! Checkout Session in `subscription` mode, Stripe's signed events renew,
//! fail, cancel and delete it — replayed, out of order, forged — and our
//! own cancellation reaches Stripe first.

use std::cell::Cell;
use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_providers::{FakeEsewa, FakeKhalti, FakeStripe};
use crate::support::{Answer, Host, workspace_root};

const START: &str = "2026-01-01T00:00:00Z";
const START_UNIX: i64 = 1_767_225_600;
const DAY: i64 = 86_400;
/// 2026-02-01, 2026-03-01, 2026-04-01 (unix seconds).
const FEB_1: i64 = START_UNIX + 31 * DAY;
const MAR_1: i64 = FEB_1 + 28 * DAY;
const APR_1: i64 = MAR_1 + 31 * DAY;
const ESEWA_KEY: &str = "8gBm/:&EnhH.1/q";
const KHALTI_KEY: &str = "test_secret_key_0123456789abcdef";
const STRIPE_KEY: &str = "sk_test_subs_0123456789";
const WEBHOOK_SECRET: &str = "whsec_subs_0123456789";

struct World {
    host: Host,
    esewa: FakeEsewa,
    khalti: FakeKhalti,
    stripe: FakeStripe,
    browser: reqwest::blocking::Client,
    /// The host's manual clock, unix seconds.
    now: Cell<i64>,
    events: Cell<u32>,
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
        now: Cell::new(START_UNIX),
        events: Cell::new(0),
    }
}

impl World {
    fn advance_to(&self, unix: i64) {
        let by = unix - self.now.get();
        assert!(by >= 0);
        self.host.advance_clock(by);
        self.now.set(unix);
    }

    fn checkout(&self, tenant: &str, token: &str, body: Value) -> Value {
        let a = self
            .host
            .post(&format!("/v1/tenants/{tenant}/checkout"), token, body);
        assert_eq!(a.status, 201, "{a:?}");
        a.body
    }

    /// The payer follows `next` and pays; answers where the provider sends
    /// the browser back.
    fn pay(&self, next: &Value) -> String {
        let res = self
            .browser
            .get(next["url"].as_str().expect("a redirect"))
            .send()
            .unwrap();
        assert_eq!(res.status().as_u16(), 302);
        res.headers()["location"].to_str().unwrap().to_owned()
    }

    fn visit(&self, url: &str) -> Answer {
        let rest = url.strip_prefix("http://127.0.0.1:").expect("on the host");
        self.host
            .request("GET", &rest[rest.find('/').unwrap()..], None, None)
    }

    /// Posts `body` to the webhook signed with `secret` at the host's now.
    fn webhook_signed(&self, body: &str, secret: &str) -> Answer {
        use hmac::Mac as _;
        let t = self.now.get();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        let signature = format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()));
        let res = self
            .browser
            .post(format!("{}/v1/payments/stripe/webhook", self.host.base))
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

    /// A Stripe event of `kind` about `object`, created at `created`.
    fn event(&self, kind: &str, created: i64, object: &Value) -> String {
        self.events.set(self.events.get() + 1);
        json!({
            "id": format!("evt_{}", self.events.get()), "object": "event", "type": kind,
            "created": created, "data": {"object": object},
        })
        .to_string()
    }

    fn deliver(&self, body: &str) -> Value {
        let a = self.webhook_signed(body, WEBHOOK_SECRET);
        assert_eq!(a.status, 200, "{a:?}");
        a.body
    }

    fn subscription(&self, tenant: &str, token: &str) -> Value {
        let a = self
            .host
            .get(&format!("/v1/tenants/{tenant}/subscriptions/cards"), token);
        assert_eq!(a.status, 200, "{a:?}");
        a.body["subscription"].clone()
    }

    fn invoices(&self, tenant: &str, token: &str) -> Vec<Value> {
        self.host.invoices(tenant, token)
    }

    /// A USD tenant subscribes to cards pro through Stripe Checkout and the
    /// session's completion arrives: answers (token, Stripe subscription
    /// id, checkout answer).
    fn subscribed(&self, tenant: &str) -> (String, String, Value) {
        let token = self.host.tenant(tenant);
        let answer = self.checkout(
            tenant,
            &token,
            json!({"provider": "stripe", "module": "cards", "plan": "pro", "currency": "USD"}),
        );
        let url = answer["next"]["url"].as_str().unwrap().to_owned();
        let session_id = url.rsplit('/').next().unwrap().to_owned();
        self.pay(&answer["next"]);
        let session = self.stripe.session(&session_id).unwrap();
        let completed = self.event("checkout.session.completed", self.now.get(), &session);
        assert_eq!(self.deliver(&completed)["outcome"], "granted");
        let sub = session["subscription"].as_str().unwrap().to_owned();
        (token, sub, answer)
    }
}

fn subscription_object(w: &World, id: &str, status: &str, cancel_at_period_end: bool) -> Value {
    let mut sub = w.stripe.subscription(id).expect("the fake's subscription");
    sub["status"] = json!(status);
    sub["cancel_at_period_end"] = json!(cancel_at_period_end);
    sub
}

#[test]
fn a_usd_tenant_subscribes_through_checkout_and_each_stripe_renewal_is_invoiced_once() {
    let w = world();
    let token = w.host.tenant("intl-ngo");
    let answer = w.checkout(
        "intl-ngo",
        &token,
        json!({"provider": "stripe", "module": "cards", "plan": "pro", "currency": "USD"}),
    );
    assert_eq!(answer["invoice"]["total"], 499);
    let url = answer["next"]["url"].as_str().unwrap();
    let session_id = url.rsplit('/').next().unwrap().to_owned();
    // Subscription mode: a recurring monthly price, our names in the
    // subscription's metadata.
    let session = w.stripe.session(&session_id).unwrap();
    assert_eq!(session["mode"], "subscription", "{session}");
    assert_eq!(session["fake_recurring"]["interval"], "month");
    let metadata = &session["fake_recurring"]["metadata"];
    assert_eq!(metadata["module"], "cards");
    assert_eq!(metadata["plan"], "pro");
    assert_eq!(metadata["attempt"], answer["attempt"]);
    assert_eq!(w.stripe.unauthorized(), 0);

    // Paid; the browser comes back: the session is retrieved and granted.
    let back = w.pay(&answer["next"]);
    let a = w.visit(&back);
    assert_eq!(a.body["outcome"], "granted", "{a:?}");
    let session = w.stripe.session(&session_id).unwrap();
    assert!(session["payment_intent"].is_null());
    let sub_id = session["subscription"].as_str().unwrap().to_owned();
    let first = w.invoices("intl-ngo", &token);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["provider_reference"], session["invoice"]);
    // The webhook of the same completion, later: nothing more.
    let completed = w.event("checkout.session.completed", w.now.get(), &session);
    assert_eq!(w.deliver(&completed)["outcome"], "ignored");
    // The subscription's first invoice is paid through the session.
    let first_invoice = json!({"id": session["invoice"], "object": "invoice",
        "subscription": sub_id, "billing_reason": "subscription_create",
        "amount_paid": 499, "currency": "usd"});
    let body = w.event("invoice.paid", w.now.get(), &first_invoice);
    assert_eq!(w.deliver(&body)["outcome"], "ignored");
    let s = w.subscription("intl-ngo", &token);
    assert_eq!(
        (s["state"].as_str(), s["plan"].as_str()),
        (Some("active"), Some("pro"))
    );

    // Three days before the period ends, maintenance issues no wallet
    // renewal invoice: Stripe renews this one.
    w.advance_to(FEB_1 - 2 * DAY);
    w.host.run_maintenance();
    let notes = w.host.get("/v1/tenants/intl-ngo/notifications", &token);
    assert_eq!(notes.status, 200, "{notes:?}");
    assert!(
        !notes.body.to_string().contains("renewal_invoice"),
        "{notes:?}"
    );
    assert_eq!(w.invoices("intl-ngo", &token).len(), 1);

    // A month later Stripe renews: our invoice, numbered, paid, once.
    w.advance_to(FEB_1 + 3600);
    let renewal = w
        .stripe
        .renewal_invoice("in_renew_1", &sub_id, 499, FEB_1, MAR_1);
    let paid = w.event("invoice.paid", FEB_1 + 3600, &renewal);
    // Forged: refused, nothing recorded.
    let forged = w.webhook_signed(&paid, "whsec_guessed");
    assert_eq!(forged.status, 400);
    assert_eq!(w.invoices("intl-ngo", &token).len(), 1);
    let a = w.deliver(&paid);
    assert_eq!(a["outcome"], "granted", "{a}");
    let list = w.invoices("intl-ngo", &token);
    assert_eq!(list.len(), 2);
    // Numbered in Nepal's fiscal year (Shrawan 1, 2082 = 17 July 2025), the default.
    assert_eq!(list[0]["number"], "INV-2082/83-000002");
    assert_eq!(list[0]["status"], "paid");
    assert_eq!(list[0]["provider"], "stripe");
    assert_eq!(list[0]["provider_reference"], "in_renew_1");
    assert_eq!(list[0]["total"], 499);
    assert_eq!(list[0]["purchase"]["kind"], "renew");
    let s = w.subscription("intl-ngo", &token);
    assert_eq!(s["state"], "active");
    assert_eq!(s["period_end"], "2026-03-01T00:00:00Z", "{s}");
    // Replayed, and the same Stripe invoice in another event: once.
    let again = w.deliver(&paid);
    assert_eq!(again["repeated"], true);
    let other = w.event("invoice.paid", FEB_1 + 3700, &renewal);
    assert_eq!(w.deliver(&other)["outcome"], "ignored");
    assert_eq!(w.invoices("intl-ngo", &token).len(), 2);
    assert_eq!(
        w.subscription("intl-ngo", &token)["period_end"],
        "2026-03-01T00:00:00Z"
    );

    // The next renewal, then a late invoice for the older period: ignored.
    w.advance_to(MAR_1 + 3600);
    let march = w
        .stripe
        .renewal_invoice("in_renew_2", &sub_id, 499, MAR_1, APR_1);
    assert_eq!(
        w.deliver(&w.event("invoice.paid", MAR_1 + 3600, &march))["outcome"],
        "granted"
    );
    let late = w
        .stripe
        .renewal_invoice("in_renew_1b", &sub_id, 499, FEB_1, MAR_1);
    let a = w.deliver(&w.event("invoice.paid", FEB_1 + 60, &late));
    assert_eq!(a["outcome"], "ignored", "{a}");
    assert_eq!(w.invoices("intl-ngo", &token).len(), 3);
    assert_eq!(
        w.subscription("intl-ngo", &token)["period_end"],
        "2026-04-01T00:00:00Z"
    );

    // Another amount than the plan's: recorded, flagged, not granted.
    w.advance_to(APR_1 + 3600);
    let odd = w
        .stripe
        .renewal_invoice("in_renew_3", &sub_id, 999, APR_1, APR_1 + 30 * DAY);
    assert_eq!(
        w.deliver(&w.event("invoice.paid", APR_1 + 3600, &odd))["outcome"],
        "flagged"
    );
    assert_eq!(w.invoices("intl-ngo", &token).len(), 3);
    let flagged = w.host.get("/v1/payments/flagged", &w.host.operator);
    assert!(
        flagged.body.to_string().contains("the plan costs 499"),
        "{flagged:?}"
    );
    // An event about a Stripe subscription of nobody's: flagged.
    let stray = json!({"id": "in_stray", "object": "invoice", "subscription": "sub_nobody",
        "billing_reason": "subscription_cycle", "amount_paid": 499, "currency": "usd",
        "lines": {"data": [{"period": {"start": APR_1, "end": APR_1 + 30 * DAY}}]}});
    assert_eq!(
        w.deliver(&w.event("invoice.paid", APR_1 + 3600, &stray))["outcome"],
        "flagged"
    );
}

#[test]
fn stripe_failures_make_it_past_due_and_an_older_update_never_undoes_a_deletion() {
    let w = world();
    let (token, sub_id, _) = w.subscribed("fail-org");
    // The renewal fails at Stripe after our period ended: past due, grace.
    w.advance_to(FEB_1 + 3600);
    let mut failed = w
        .stripe
        .renewal_invoice("in_fail_1", &sub_id, 499, FEB_1, MAR_1);
    failed["status"] = json!("open");
    failed["amount_paid"] = json!(0);
    let a = w.deliver(&w.event("invoice.payment_failed", FEB_1 + 3600, &failed));
    assert_eq!(a["outcome"], "failed", "{a}");
    let s = w.subscription("fail-org", &token);
    assert_eq!(s["state"], "past_due");
    assert_eq!(s["grace_ends"], "2026-02-08T00:00:00Z", "{s}");
    assert_eq!(s["access"], true);
    // Stripe's retry succeeds: active again, our invoice issued.
    w.advance_to(FEB_1 + 3 * DAY);
    failed["status"] = json!("paid");
    failed["amount_paid"] = json!(499);
    let a = w.deliver(&w.event("invoice.paid", FEB_1 + 3 * DAY, &failed));
    assert_eq!(a["outcome"], "granted", "{a}");
    let s = w.subscription("fail-org", &token);
    assert_eq!(s["state"], "active");
    assert!(s["grace_ends"].is_null());
    // A failure for the period already paid, arriving late: ignored.
    let late = w
        .stripe
        .renewal_invoice("in_fail_1", &sub_id, 499, FEB_1, MAR_1);
    let a = w.deliver(&w.event("invoice.payment_failed", FEB_1 + 3600, &late));
    assert_eq!(a["outcome"], "ignored", "{a}");
    assert_eq!(w.subscription("fail-org", &token)["state"], "active");

    // Stripe deletes the subscription; an update saying `active` that was
    // created before the deletion arrives after it: still canceled.
    let t = w.now.get();
    let deleted = w.event(
        "customer.subscription.deleted",
        t,
        &subscription_object(&w, &sub_id, "canceled", false),
    );
    let updated = w.event(
        "customer.subscription.updated",
        t - 60,
        &subscription_object(&w, &sub_id, "active", false),
    );
    let a = w.deliver(&deleted);
    assert_eq!(a["outcome"], "applied", "{a}");
    let s = w.subscription("fail-org", &token);
    assert_eq!(s["state"], "canceled");
    assert_eq!(s["access"], false);
    let a = w.deliver(&updated);
    assert_eq!(a["outcome"], "ignored", "{a}");
    assert_eq!(w.subscription("fail-org", &token)["state"], "canceled");
    // Replaying the deletion changes nothing either.
    assert_eq!(w.deliver(&deleted)["repeated"], true);
}

#[test]
fn a_cancellation_scheduled_at_stripe_is_ours_and_ours_reaches_stripe_first() {
    let w = world();
    let (token, sub_id, _) = w.subscribed("cancel-org");
    // Stripe says it ends at the period end (the customer portal did it).
    let t = w.now.get() + 60;
    w.advance_to(t);
    let a = w.deliver(&w.event(
        "customer.subscription.updated",
        t,
        &subscription_object(&w, &sub_id, "active", true),
    ));
    assert_eq!(a["outcome"], "applied", "{a}");
    let s = w.subscription("cancel-org", &token);
    assert_eq!(
        (s["state"].as_str(), s["access"].as_bool()),
        (Some("canceled"), Some(true))
    );
    // An older update (still renewing) does not undo it.
    let a = w.deliver(&w.event(
        "customer.subscription.updated",
        t - 30,
        &subscription_object(&w, &sub_id, "active", false),
    ));
    assert_eq!(a["outcome"], "ignored", "{a}");
    // Undone at Stripe, later: reactivated.
    let a = w.deliver(&w.event(
        "customer.subscription.updated",
        t + 30,
        &subscription_object(&w, &sub_id, "active", false),
    ));
    assert_eq!(a["outcome"], "applied", "{a}");
    assert_eq!(w.subscription("cancel-org", &token)["state"], "active");

    // Our cancellation while Stripe is down: a clear retryable error,
    // nothing changed here or there.
    let cancel = "/v1/tenants/cancel-org/subscriptions/cards/cancel";
    w.stripe.set_outage(true);
    let a = w.host.post(cancel, &token, json!({"at_period_end": true}));
    assert_eq!(a.status, 503, "{a:?}");
    assert!(a.body["detail"].to_string().contains("try again"), "{a:?}");
    assert_eq!(w.subscription("cancel-org", &token)["state"], "active");
    assert_eq!(
        w.stripe.subscription(&sub_id).unwrap()["cancel_at_period_end"],
        false
    );
    w.stripe.set_outage(false);
    // Retried: Stripe is told first, with an Idempotency-Key, form-encoded.
    let a = w.host.post(cancel, &token, json!({"at_period_end": true}));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["state"], "canceled");
    assert_eq!(
        w.stripe.subscription(&sub_id).unwrap()["cancel_at_period_end"],
        true
    );
    let calls = w.stripe.subscription_calls();
    let (method, id, key, form) = calls.last().unwrap();
    assert_eq!((method.as_str(), id.as_str()), ("POST", sub_id.as_str()));
    assert!(key.is_some());
    assert_eq!(form["cancel_at_period_end"], "true");
    // Stripe's echo of it changes nothing more.
    let a = w.deliver(&w.event(
        "customer.subscription.updated",
        t + 120,
        &subscription_object(&w, &sub_id, "active", true),
    ));
    assert_eq!(a["outcome"], "ignored", "{a}");
    // Reactivated through us: Stripe renews again.
    let a = w.host.post(
        "/v1/tenants/cancel-org/subscriptions/cards/reactivate",
        &token,
        json!({}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        w.stripe.subscription(&sub_id).unwrap()["cancel_at_period_end"],
        false
    );
    // Canceled now: a DELETE at Stripe, access ends.
    let a = w.host.post(cancel, &token, json!({"at_period_end": false}));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["access"], false);
    assert_eq!(
        w.stripe.subscription(&sub_id).unwrap()["status"],
        "canceled"
    );
    let calls = w.stripe.subscription_calls();
    assert_eq!(calls.last().unwrap().0, "DELETE");
    // Another tenant cannot cancel it.
    let other = w.host.tenant("nosy-org");
    let a = w.host.post(
        "/v1/tenants/cancel-org/subscriptions/cards/cancel",
        &other,
        json!({}),
    );
    assert!(a.status == 401 || a.status == 404, "{a:?}");
}

#[test]
fn a_refund_ends_what_it_paid_for_unless_access_is_kept() {
    let w = world();
    // Stripe: the first period's invoice, refunded after a renewal was
    // paid, paid a period that is over: nothing changes.
    let (token, sub_id, answer) = w.subscribed("card-org");
    w.advance_to(FEB_1 + 3600);
    let renewal = w
        .stripe
        .renewal_invoice("in_card_2", &sub_id, 499, FEB_1, MAR_1);
    assert_eq!(
        w.deliver(&w.event("invoice.paid", FEB_1 + 3600, &renewal))["outcome"],
        "granted"
    );
    let id = answer["invoice"]["id"].as_str().unwrap();
    // Stripe down: a retryable error, nothing refunded, nothing changed.
    w.stripe.set_outage(true);
    let a = w.host.post(
        &format!("/v1/tenants/card-org/invoices/{id}/refund"),
        &w.host.operator,
        json!({"reason": "first month on the house"}),
    );
    assert_eq!(a.status, 503, "{a:?}");
    w.stripe.set_outage(false);
    assert_eq!(w.stripe.refunds(), 0);
    let invoice = w
        .host
        .get(&format!("/v1/tenants/card-org/invoices/{id}"), &token);
    assert_eq!(invoice.body["status"], "paid");
    let a = w.host.post(
        &format!("/v1/tenants/card-org/invoices/{id}/refund"),
        &w.host.operator,
        json!({"reason": "first month on the house"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["credit_note"]["refund_reference"], "re_0001");
    assert_eq!(a.body["credit_note"]["subscriptions"], json!([]));
    assert_eq!(w.subscription("card-org", &token)["state"], "active");
    assert_eq!(w.stripe.subscription(&sub_id).unwrap()["status"], "active");
    // The current period's invoice (Stripe's renewal) refunded: canceled
    // now, at Stripe first.
    let current = w
        .invoices("card-org", &token)
        .into_iter()
        .find(|i| i["provider_reference"] == "in_card_2")
        .unwrap();
    let a = w.host.post(
        &format!(
            "/v1/tenants/card-org/invoices/{}/refund",
            current["id"].as_str().unwrap()
        ),
        &w.host.operator,
        json!({"reason": "charged by mistake"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["credit_note"]["refund_reference"], "re_0002");
    assert_eq!(
        a.body["credit_note"]["subscriptions"],
        json!(["cards: canceled"])
    );
    assert_eq!(w.stripe.refunds(), 2);
    assert_eq!(
        w.stripe.subscription(&sub_id).unwrap()["status"],
        "canceled"
    );
    let s = w.subscription("card-org", &token);
    assert_eq!(
        (s["state"].as_str(), s["access"].as_bool()),
        (Some("canceled"), Some(false))
    );
    let audit = w.host.get("/v1/tenants/card-org/audit", &w.host.operator);
    assert!(
        audit.body.to_string().contains("cards: canceled"),
        "{audit:?}"
    );

    // eSewa with keep_access: the subscription stays.
    let token = w.host.tenant("keep-org");
    let answer = w.checkout(
        "keep-org",
        &token,
        json!({"provider": "khalti", "module": "cards", "plan": "pro"}),
    );
    assert_eq!(w.visit(&w.pay(&answer["next"])).body["outcome"], "granted");
    let id = answer["invoice"]["id"].as_str().unwrap();
    let a = w.host.post(
        &format!("/v1/tenants/keep-org/invoices/{id}/refund"),
        &w.host.operator,
        json!({"reason": "goodwill", "reference": "Khalti refund 9", "keep_access": true}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["credit_note"]["subscriptions"], json!([]));
    assert_eq!(w.subscription("keep-org", &token)["state"], "active");

    // A prepaid renewal refunded: the period is taken back, access stays.
    let token = w.host.tenant("ahead-org");
    let first = w.checkout(
        "ahead-org",
        &token,
        json!({"provider": "khalti", "module": "cards", "plan": "pro"}),
    );
    assert_eq!(w.visit(&w.pay(&first["next"])).body["outcome"], "granted");
    let renewal = w.checkout(
        "ahead-org",
        &token,
        json!({"provider": "khalti", "module": "cards", "plan": "pro"}),
    );
    assert_eq!(w.visit(&w.pay(&renewal["next"])).body["outcome"], "granted");
    assert_eq!(w.subscription("ahead-org", &token)["prepaid_periods"], 1);
    let id = renewal["invoice"]["id"].as_str().unwrap();
    let a = w.host.post(
        &format!("/v1/tenants/ahead-org/invoices/{id}/refund"),
        &w.host.operator,
        json!({"reason": "renewed twice", "reference": "Khalti refund 10"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(
        a.body["credit_note"]["subscriptions"],
        json!(["cards: prepaid_period_refunded"])
    );
    let s = w.subscription("ahead-org", &token);
    assert_eq!(
        (s["state"].as_str(), s["prepaid_periods"].as_u64()),
        (Some("active"), Some(0))
    );
}

#[test]
fn a_voided_invoice_takes_no_late_payment_and_a_paid_one_is_not_voided() {
    let w = world();
    let token = w.host.tenant("void-org");
    let answer = w.checkout(
        "void-org",
        &token,
        json!({"provider": "khalti", "module": "cards", "plan": "pro"}),
    );
    let id = answer["invoice"]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/tenants/void-org/invoices/{id}/void");
    // Not the tenant's to void; not another tenant's either.
    let a = w.host.post(&path, &token, json!({"reason": "mine"}));
    assert!(a.status == 401 || a.status == 403, "{a:?}");
    w.host.tenant("other-org");
    let a = w.host.post(
        &format!("/v1/tenants/other-org/invoices/{id}/void"),
        &w.host.operator,
        json!({"reason": "wrong tenant"}),
    );
    assert_eq!(a.status, 404, "{a:?}");
    let a = w.host.post(&path, &w.host.operator, json!({"reason": ""}));
    assert_eq!(a.status, 422, "{a:?}");
    let a = w.host.post(
        &path,
        &w.host.operator,
        json!({"reason": "ordered by mistake"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["status"], "void");
    assert_eq!(a.body["number"], answer["invoice"]["number"]);
    let a = w
        .host
        .post(&path, &w.host.operator, json!({"reason": "again"}));
    assert_eq!(a.status, 409, "{a:?}");
    // The payer pays anyway: recorded and flagged, never granted.
    let late = w.visit(&w.pay(&answer["next"]));
    assert_eq!(late.body["outcome"], "flagged", "{late:?}");
    assert_eq!(late.body["invoice_status"], "void");
    let sub = w
        .host
        .get("/v1/tenants/void-org/subscriptions/cards", &token);
    assert_eq!(sub.status, 404, "{sub:?}");
    let flagged = w.host.get("/v1/payments/flagged", &w.host.operator);
    assert!(
        flagged.body.to_string().contains("canceled attempt"),
        "{flagged:?}"
    );
    let audit = w.host.get("/v1/tenants/void-org/audit", &w.host.operator);
    assert!(audit.body.to_string().contains("payment_void"), "{audit:?}");

    // A paid invoice is refunded, not voided.
    let answer = w.checkout(
        "void-org",
        &token,
        json!({"provider": "esewa", "module": "cards", "plan": "pro"}),
    );
    let action = answer["next"]["action"].as_str().unwrap().to_owned();
    let fields: Vec<(String, String)> = answer["next"]["fields"]
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
    let back = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(w.visit(&back).body["outcome"], "granted");
    let paid = answer["invoice"]["id"].as_str().unwrap();
    let a = w.host.post(
        &format!("/v1/tenants/void-org/invoices/{paid}/void"),
        &w.host.operator,
        json!({"reason": "too late"}),
    );
    assert_eq!(a.status, 409, "{a:?}");
    assert!(a.body["detail"].to_string().contains("refund"), "{a:?}");

    // The CLI twin.
    let token = w.host.tenant("cli-void");
    let answer = w.checkout(
        "cli-void",
        &token,
        json!({"provider": "khalti", "module": "cards", "plan": "pro"}),
    );
    let id = answer["invoice"]["id"].as_str().unwrap();
    let plans = workspace_root().join("tests/e2e/plans-payments");
    let (ok, out, err) = w.host.cli(&[
        "--plans",
        plans.to_str().unwrap(),
        "--manual-clock",
        START,
        "payment",
        "void",
        "--tenant",
        "cli-void",
        "--invoice",
        id,
        "--reason",
        "duplicate",
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("void"), "{out}");
    let a = w
        .host
        .get(&format!("/v1/tenants/cli-void/invoices/{id}"), &token);
    assert_eq!(a.body["status"], "void");
    let _ = &w.esewa;
    let _ = &w.khalti;
}
