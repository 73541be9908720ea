//! Subscriptions and entitlements through the real binary and HTTP API: a
//! Digital Card style module (`cards`) walked through free, trial, grace,
//! expiry, downgrade, operator grants, upgrades with proration and
//! cancellation on a manual clock; limits from the route gate and from the
//! module's own calls; idempotent metering; races for the last unit; cache
//! invalidation on plan change.

use serde_json::{Value, json};

use crate::support::{Answer, Host, plans_dir};

const START: &str = "2026-01-01T00:00:00Z";

/// A host with the test plans on a manual clock. The races below send up
/// to 24 requests of one tenant at once, so its call cap is raised above
/// that: they test the limits, not the cap (tests/e2e/fairness.rs does).
fn start(modules: &[&str]) -> Host {
    Host::start_on_plans(
        modules,
        START,
        &["--max-instances", "64", "--tenant-concurrency", "32"],
    )
}

fn advance_days(host: &Host, days: i64) {
    let a = host.post("/v1/clock", &host.operator, json!({"advance_days": days}));
    assert_eq!(a.status, 200, "{a:?}");
}

fn maintain(host: &Host) -> Value {
    let a = host.post("/v1/maintenance/run", &host.operator, json!({}));
    assert_eq!(a.status, 200, "{a:?}");
    a.body
}

fn subscription(host: &Host, tenant: &str, token: &str) -> Value {
    let a = host.get(&format!("/v1/tenants/{tenant}/subscriptions/cards"), token);
    assert_eq!(a.status, 200, "{a:?}");
    a.body["subscription"].clone()
}

fn create_card(host: &Host, tenant: &str, token: &str, name: &str) -> Answer {
    host.post(
        &format!("/t/{tenant}/m/cards/cards"),
        token,
        json!({ "name": name }),
    )
}

fn card_count(host: &Host, tenant: &str, token: &str) -> usize {
    let a = host.get(&format!("/t/{tenant}/m/cards/cards"), token);
    assert_eq!(a.status, 200, "{a:?}");
    a.body["cards"].as_array().expect("cards").len()
}

fn usage_of(host: &Host, tenant: &str, token: &str, key: &str) -> Value {
    let a = host.get(&format!("/v1/tenants/{tenant}/usage?module=cards"), token);
    assert_eq!(a.status, 200, "{a:?}");
    a.body["modules"][0]["usage"]
        .as_array()
        .expect("usage lines")
        .iter()
        .find(|line| line["key"] == key)
        .cloned()
        .unwrap_or_else(|| panic!("no usage line {key}: {a:?}"))
}

/// Runs `request(0..n)` on `n` threads at once; the answers' statuses, in order.
fn race(n: usize, request: impl Fn(usize) -> u16 + Sync) -> Vec<u16> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let request = &request;
                scope.spawn(move || request(i))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    })
}

fn assert_denied(a: &Answer, status: u16, feature: &str, reason: &str, upgrade: Option<&str>) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(a.content_type, "application/problem+json", "{a:?}");
    assert_eq!(
        a.body["type"], "https://souk.dev/problems/entitlement-denied",
        "{a:?}"
    );
    assert_eq!(a.body["feature"], feature, "{a:?}");
    assert_eq!(a.body["reason"], reason, "{a:?}");
    assert_eq!(a.body["upgrade_plan"], json!(upgrade), "{a:?}");
}

fn outbox_kinds(host: &Host, tenant: &str, token: &str) -> Vec<String> {
    let a = host.get(&format!("/v1/tenants/{tenant}/notifications"), token);
    assert_eq!(a.status, 200, "{a:?}");
    a.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind").to_owned())
        .collect()
}

/// The lifecycle, end to end: free install, pro trial, limits from
/// the route gate and from the module, trial end without payment, grace,
/// expiry and downgrade with data kept, an operator grant, an upgrade with
/// proration, cancel at period end.
#[test]
fn digital_card_lifecycle_through_the_api() {
    let host = start(&["cards"]);
    let token = host.tenant("acme");

    // Free install: the free plan starts without payment.
    host.install_ok("acme", &token, "cards");
    let s = subscription(&host, "acme", &token);
    assert_eq!(
        (s["plan"].as_str(), s["state"].as_str()),
        (Some("free"), Some("active"))
    );

    // Free allows 3 cards; the 4th is refused by the route gate (the module
    // never runs) with a 402 naming the limit and the upgrade.
    for n in 1..=3 {
        let a = create_card(&host, "acme", &token, &format!("card {n}"));
        assert_eq!(a.status, 201, "{a:?}");
        assert_eq!(a.body["usage"], json!({"used": n, "limit": 3}), "{a:?}");
    }
    let a = create_card(&host, "acme", &token, "card 4");
    assert_denied(&a, 402, "max_cards", "limit_reached", Some("pro"));
    assert_eq!(
        (a.body["used"].as_u64(), a.body["limit"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(card_count(&host, "acme", &token), 3);
    // A feature the plan lacks.
    let a = host.post(
        "/t/acme/m/cards/cards/batch",
        &token,
        json!({"count": 2, "prefix": "b"}),
    );
    assert_denied(
        &a,
        402,
        "batch_generation",
        "feature_not_in_plan",
        Some("pro"),
    );

    // The quote shows the trial; starting it needs no payment.
    let q = host.post(
        "/v1/tenants/acme/subscriptions/cards/quote",
        &token,
        json!({"plan": "pro"}),
    );
    assert_eq!(q.status, 200, "{q:?}");
    assert_eq!(
        (q.body["kind"].as_str(), q.body["amount_due_now"].as_u64()),
        (Some("trial"), Some(0))
    );
    assert_eq!(q.body["trial_days"], 30);
    let a = host.post(
        "/v1/tenants/acme/subscriptions",
        &token,
        json!({"module": "cards", "plan": "pro"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(
        (a.body["plan"].as_str(), a.body["state"].as_str()),
        (Some("pro"), Some("trialing"))
    );

    // The trial's limits apply at once (no restart, no wait).
    let a = create_card(&host, "acme", &token, "card 4");
    assert_eq!(a.status, 201, "{a:?}");
    let a = host.post(
        "/t/acme/m/cards/cards/batch",
        &token,
        json!({"count": 5, "prefix": "batch"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["usage"], json!({"used": 9, "limit": 10}));
    // The module's own consume refuses 5 more (only 1 left): all or nothing.
    let a = host.post(
        "/t/acme/m/cards/cards/batch",
        &token,
        json!({"count": 5, "prefix": "more"}),
    );
    assert_denied(&a, 402, "max_cards", "limit_reached", Some("business"));
    assert_eq!(card_count(&host, "acme", &token), 9);
    let line = usage_of(&host, "acme", &token, "max_cards");
    assert_eq!(line["used"], 9);
    assert_eq!(line["limit"], 10);
    assert_eq!(line["percent"], 90.0);
    assert_eq!(line["kind"], "count");

    // Three days before the trial ends: a notification, written once.
    advance_days(&host, 27);
    maintain(&host);
    let second = maintain(&host);
    assert_eq!(
        second["changes"],
        json!([]),
        "second run changed something: {second}"
    );
    assert_eq!(second["notifications"], 0, "{second}");
    assert_eq!(outbox_kinds(&host, "acme", &token), vec!["trial_ending"]);

    // The trial ends unpaid: past due, but access continues during grace.
    advance_days(&host, 3);
    maintain(&host);
    let s = subscription(&host, "acme", &token);
    assert_eq!(s["state"], "past_due", "{s}");
    assert_eq!(s["access"], true, "{s}");
    assert_eq!(s["trial_unpaid"], true, "{s}");
    let a = create_card(&host, "acme", &token, "in grace");
    assert_eq!(a.status, 201, "{a:?}");

    // Grace (7 days) runs out: expired, then moved to the free plan. The
    // data stays; usage above the free limit blocks new cards only.
    advance_days(&host, 7);
    let report = maintain(&host);
    assert!(
        report["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .any(|c| c
                .as_str()
                .is_some_and(|c| c.ends_with("downgraded to free"))),
        "{report}"
    );
    let s = subscription(&host, "acme", &token);
    assert_eq!(
        (s["plan"].as_str(), s["state"].as_str()),
        (Some("free"), Some("active")),
        "{s}"
    );
    assert_eq!(card_count(&host, "acme", &token), 10);
    let a = create_card(&host, "acme", &token, "over");
    assert_denied(&a, 402, "max_cards", "limit_reached", Some("pro"));
    assert_eq!(
        (a.body["used"].as_u64(), a.body["limit"].as_u64()),
        (Some(10), Some(3))
    );
    let line = usage_of(&host, "acme", &token, "max_cards");
    assert_eq!(
        (line["used"].as_u64(), line["limit"].as_u64()),
        (Some(10), Some(3))
    );
    assert!(line["percent"].as_f64().expect("percent") > 300.0, "{line}");
    // Releasing is always allowed.
    let a = host.delete("/t/acme/m/cards/cards/1", &token);
    assert_eq!(a.status, 204, "{a:?}");
    assert_eq!(usage_of(&host, "acme", &token, "max_cards")["used"], 9);
    let kinds = outbox_kinds(&host, "acme", &token);
    for kind in ["trial_ending", "trial_ended", "expired", "downgraded"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }

    // One trial per tenant and module: pro now needs payment.
    let a = host.post(
        "/v1/tenants/acme/subscriptions",
        &token,
        json!({"module": "cards", "plan": "pro"}),
    );
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(a.body["type"], "https://souk.dev/problems/payment-required");
    // A tenant cannot grant itself a plan.
    let a = host.post(
        "/v1/tenants/acme/subscriptions/cards/grant",
        &token,
        json!({"plan": "pro"}),
    );
    assert_eq!(a.status, 403, "{a:?}");

    // The operator grants pro; the tenant continues at once.
    let a = host.post(
        "/v1/tenants/acme/subscriptions/cards/grant",
        &host.operator,
        json!({"plan": "pro"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        (a.body["plan"].as_str(), a.body["state"].as_str()),
        (Some("pro"), Some("active"))
    );
    let a = create_card(&host, "acme", &token, "after grant");
    assert_eq!(a.status, 201, "{a:?}");

    // Upgrade with proration, 10 days into a 28-day period (7 Feb - 7 Mar):
    // credit for 18/28 of pro rounded up, 18/28 of business rounded down.
    advance_days(&host, 10);
    let q = host.post(
        "/v1/tenants/acme/subscriptions/cards/quote",
        &token,
        json!({"plan": "business"}),
    );
    assert_eq!(q.status, 200, "{q:?}");
    let credit = (49_900u64 * 18).div_ceil(28);
    let charge = 149_900u64 * 18 / 28;
    assert_eq!(q.body["kind"], "upgrade");
    assert_eq!(q.body["credit"], credit, "{q:?}");
    assert_eq!(q.body["amount_due_now"], charge - credit, "{q:?}");
    // Upgrading costs money: the tenant is told, nothing changes.
    let a = host.post(
        "/v1/tenants/acme/subscriptions/cards/change",
        &token,
        json!({"plan": "business"}),
    );
    assert_eq!(a.status, 402, "{a:?}");
    assert!(a.detail().contains(&(charge - credit).to_string()), "{a:?}");
    let a = host.get("/t/acme/m/cards/templates/premium", &token);
    assert_denied(
        &a,
        402,
        "premium_templates",
        "feature_not_in_plan",
        Some("business"),
    );
    // The operator applies it (settled outside Souk until payments land).
    let a = host.post(
        "/v1/tenants/acme/subscriptions/cards/change",
        &host.operator,
        json!({"plan": "business"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.body["charged"]["amount_due_now"],
        q.body["amount_due_now"]
    );
    assert_eq!(a.body["subscription"]["plan"], "business");
    let a = host.get("/t/acme/m/cards/templates/premium", &token);
    assert_eq!(a.status, 200, "{a:?}");

    // Cancel at period end: access until then, then back to free.
    let a = host.post(
        "/v1/tenants/acme/subscriptions/cards/cancel",
        &token,
        json!({"at_period_end": true}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        (a.body["state"].as_str(), a.body["access"].as_bool()),
        (Some("canceled"), Some(true))
    );
    let a = host.get("/t/acme/m/cards/templates/premium", &token);
    assert_eq!(a.status, 200, "{a:?}");
    advance_days(&host, 18);
    maintain(&host);
    let s = subscription(&host, "acme", &token);
    assert_eq!(
        (s["plan"].as_str(), s["state"].as_str()),
        (Some("free"), Some("active")),
        "{s}"
    );
    let a = host.get("/t/acme/m/cards/templates/premium", &token);
    assert_denied(
        &a,
        402,
        "premium_templates",
        "feature_not_in_plan",
        Some("business"),
    );

    // The history tells the whole story.
    let a = host.get("/v1/tenants/acme/subscriptions/cards", &token);
    let actions: Vec<&str> = a.body["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        [
            "subscribed",
            "trial_started",
            "trial_ended",
            "expired",
            "downgraded",
            "granted",
            "plan_changed",
            "canceled",
            "expired",
            "downgraded"
        ]
    );
}

#[test]
fn installing_a_module_without_a_free_plan_needs_a_subscription() {
    let host = start(&["notes-v1"]);
    let token = host.tenant("acme");
    let a = host.install("acme", &token, "notes");
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(a.body["type"], "https://souk.dev/problems/payment-required");
    assert!(a.detail().contains("standard"), "{a:?}");
    assert_eq!(host.get("/v1/tenants/acme/modules", &token).body, json!([]));
    // No trial: subscribing needs payment too.
    let a = host.post(
        "/v1/tenants/acme/subscriptions",
        &token,
        json!({"module": "notes", "plan": "standard"}),
    );
    assert_eq!(a.status, 402, "{a:?}");
    // Bad input is named.
    let a = host.post(
        "/v1/tenants/acme/subscriptions",
        &token,
        json!({"module": "notes", "plan": "gold"}),
    );
    assert_eq!(a.status, 422, "{a:?}");
    assert!(a.detail().contains("standard"), "{a:?}");
    let a = host.post(
        "/v1/tenants/acme/subscriptions",
        &token,
        json!({"module": "notes", "plan": "standard", "currency": "nepali"}),
    );
    assert_eq!(a.status, 422, "{a:?}");
    let a = host.post(
        "/v1/tenants/acme/subscriptions/notes/grant",
        &host.operator,
        json!({"plan": "standard", "periods": 0}),
    );
    assert_eq!(a.status, 422, "{a:?}");
    // The operator grants it (a comp); now it installs.
    let a = host.post(
        "/v1/tenants/acme/subscriptions/notes/grant",
        &host.operator,
        json!({"plan": "standard", "periods": 3}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["prepaid_periods"], 2);
    host.install_ok("acme", &token, "notes");
    // Prepaid periods renew without payment; when they run out the renewal
    // fails and grace starts.
    for _ in 0..3 {
        advance_days(&host, 31);
        maintain(&host);
    }
    let a = host.get("/v1/tenants/acme/subscriptions/notes", &token);
    assert_eq!(a.body["subscription"]["state"], "past_due", "{a:?}");
    assert_eq!(a.body["subscription"]["access"], true, "{a:?}");
    advance_days(&host, 8);
    maintain(&host);
    let a = host.get("/v1/tenants/acme/subscriptions/notes", &token);
    assert_eq!(a.body["subscription"]["state"], "expired", "{a:?}");
    // Still installed, data kept, but gated: no free plan to fall back to.
    assert_eq!(
        host.get("/v1/tenants/acme/modules", &token).body[0]["module"],
        "notes"
    );
    let a = host.get("/t/acme/m/notes/notes", &token);
    assert_eq!(a.status, 402, "{a:?}");
    // Extending brings it back at once.
    let a = host.post(
        "/v1/tenants/acme/subscriptions/notes/extend",
        &host.operator,
        json!({"periods": 1}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["state"], "active", "{a:?}");
    let a = host.get("/t/acme/m/notes/notes", &token);
    assert_eq!(a.status, 200, "{a:?}");
}

#[test]
fn usage_events_are_idempotent_and_counted_per_period() {
    let host = start(&["cards"]);
    let token = host.tenant_with("acme", "cards");
    let event = |key: &str, amount: u64| {
        host.post(
            "/v1/tenants/acme/usage-events",
            &token,
            json!({"module": "cards", "meter": "qr_scans_per_month", "amount": amount, "idempotency_key": key}),
        )
    };
    let a = event("scan-1", 1);
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(
        (a.body["counted"].as_bool(), a.body["used"].as_u64()),
        (Some(true), Some(1))
    );
    let a = event("scan-1", 1);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        (a.body["counted"].as_bool(), a.body["used"].as_u64()),
        (Some(false), Some(1))
    );
    let a = event("scan-2", 2);
    assert_eq!(a.body["used"], 3, "{a:?}");
    // The module records through the entitlements import, same meter.
    let a = host.post("/t/acme/m/cards/scans", &token, json!({"key": "scan-3"}));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body, json!({"used": 4, "limit": 5}));
    let a = host.post("/t/acme/m/cards/scans", &token, json!({"key": "scan-3"}));
    assert_eq!(a.body, json!({"used": 4, "limit": 5}), "{a:?}");
    // A metered route charges one unit per 2xx answer.
    assert_eq!(create_card(&host, "acme", &token, "c").status, 201);
    let a = host.get("/t/acme/m/cards/cards/1/qr", &token);
    assert_eq!(a.status, 200, "{a:?}");
    let line = usage_of(&host, "acme", &token, "qr_scans_per_month");
    assert_eq!(
        (line["used"].as_u64(), line["limit"].as_u64()),
        (Some(5), Some(5))
    );
    assert_eq!(line["percent"], 100.0);
    assert_eq!(line["period_start"], START);
    // The allowance is used up: the gate refuses the route, the module's
    // own record is refused, reported events are still counted (facts).
    let a = host.get("/t/acme/m/cards/cards/1/qr", &token);
    assert_denied(&a, 402, "qr_scans_per_month", "limit_reached", Some("pro"));
    let a = host.post("/t/acme/m/cards/scans", &token, json!({"key": "scan-4"}));
    assert_denied(&a, 402, "qr_scans_per_month", "limit_reached", Some("pro"));
    assert_eq!(event("scan-5", 1).body["used"], 6);
    // A 404 from the module is not charged.
    advance_days(&host, 31);
    let a = host.get("/t/acme/m/cards/cards/99/qr", &token);
    assert_eq!(a.status, 404, "{a:?}");
    // A new month: a new period from zero; the old key counts again there.
    let line = usage_of(&host, "acme", &token, "qr_scans_per_month");
    assert_eq!(line["used"], 0, "{line}");
    assert_eq!(line["period_start"], "2026-02-01T00:00:00Z", "{line}");
    // Maintenance closes January: its total goes to the outbox, once.
    let report = maintain(&host);
    assert_eq!(report["periods_closed"], 1, "{report}");
    assert_eq!(maintain(&host)["periods_closed"], 0);
    let a = host.get("/v1/tenants/acme/notifications", &token);
    let closed = a.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["kind"] == "usage_period_closed")
        .cloned()
        .unwrap_or_else(|| panic!("no usage_period_closed: {a:?}"));
    let payload: Value =
        serde_json::from_str(closed["payload"].as_str().expect("payload")).expect("json");
    assert_eq!(payload["meter"], "qr_scans_per_month");
    assert_eq!(payload["used"], 6, "{payload}");
    assert_eq!(payload["allowance"], 5, "{payload}");
    assert_eq!(payload["period_start"], START, "{payload}");
    assert_eq!(event("scan-1", 1).status, 201);
    // Usage survives a restart (it lives in the tenant database).
    let mut host = host;
    host.restart();
    let line = usage_of(&host, "acme", &token, "qr_scans_per_month");
    assert_eq!(line["used"], 1, "{line}");
    assert_eq!(usage_of(&host, "acme", &token, "max_cards")["used"], 1);
    // Bad events are refused and change nothing.
    for body in [
        json!({"module": "cards", "meter": "nope", "idempotency_key": "k"}),
        json!({"module": "cards", "meter": "max_cards", "idempotency_key": "k"}),
        json!({"module": "cards", "meter": "qr_scans_per_month", "idempotency_key": ""}),
    ] {
        let a = host.post("/v1/tenants/acme/usage-events", &token, body.clone());
        assert_eq!(a.status, 422, "{body}: {a:?}");
    }
    let a = host.post(
        "/v1/tenants/acme/usage-events",
        &token,
        json!({"module": "cards", "meter": "qr_scans_per_month", "amount": -1, "idempotency_key": "k"}),
    );
    assert_eq!(a.status, 400, "{a:?}");
    let a = host.post(
        "/v1/tenants/acme/usage-events",
        &token,
        json!({"module": "membership", "meter": "x", "idempotency_key": "k"}),
    );
    assert_eq!(a.status, 404, "{a:?}");
    assert_eq!(
        usage_of(&host, "acme", &token, "qr_scans_per_month")["used"],
        1
    );
}

#[test]
fn usage_event_batches_are_all_or_nothing() {
    let host = start(&["cards"]);
    let token = host.tenant_with("acme", "cards");
    let event = |key: &str| json!({"module": "cards", "meter": "qr_scans_per_month", "idempotency_key": key});
    let a = host.post(
        "/v1/tenants/acme/usage-events",
        &token,
        json!({"events": [event("a"), event("b"), event("a")]}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let counted: Vec<bool> = a.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["counted"].as_bool().expect("counted"))
        .collect();
    assert_eq!(counted, [true, true, false]);
    // One bad event refuses the whole batch, naming it.
    let bad = json!({"module": "cards", "meter": "nope", "idempotency_key": "d"});
    let a = host.post(
        "/v1/tenants/acme/usage-events",
        &token,
        json!({"events": [event("c"), bad]}),
    );
    assert_eq!(a.status, 422, "{a:?}");
    assert!(a.detail().starts_with("events[1]"), "{a:?}");
    assert_eq!(
        usage_of(&host, "acme", &token, "qr_scans_per_month")["used"],
        2
    );
    // "c" was not counted: it counts now.
    let a = host.post("/v1/tenants/acme/usage-events", &token, event("c"));
    assert_eq!(a.status, 201, "{a:?}");
    for body in [
        json!({"events": []}),
        json!({"events": [event("x")], "extra": 1}),
    ] {
        let a = host.post("/v1/tenants/acme/usage-events", &token, body.clone());
        assert!(a.status == 400 || a.status == 422, "{body}: {a:?}");
    }
    let a = host.post(
        "/v1/tenants/acme/usage-events",
        &token,
        json!({"module": "cards", "meter": "qr_scans_per_month", "idempotency_key": "k", "amout": 2}),
    );
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.detail().contains("amout"), "{a:?}");
}

#[test]
fn parallel_requests_racing_for_the_last_unit_never_exceed_the_limit() {
    let host = start(&["cards"]);
    let token = host.tenant_with("acme", "cards");
    let a = host.post(
        "/v1/tenants/acme/subscriptions/cards/grant",
        &host.operator,
        json!({"plan": "pro"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    for n in 0..8 {
        assert_eq!(
            create_card(&host, "acme", &token, &format!("c{n}")).status,
            201
        );
    }
    // Two units left, 24 requests race for them.
    let statuses = race(24, |n| {
        create_card(&host, "acme", &token, &format!("race {n}")).status
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 402).count(),
        22,
        "{statuses:?}"
    );
    assert_eq!(card_count(&host, "acme", &token), 10);
    assert_eq!(usage_of(&host, "acme", &token, "max_cards")["used"], 10);
}

#[test]
fn usage_taken_by_a_failing_request_is_rolled_back_with_its_data() {
    let host = start(&["cards"]);
    let token = host.tenant_with("acme", "cards");
    assert_eq!(create_card(&host, "acme", &token, "kept").status, 201);
    let a = host.post("/t/acme/m/cards/cards/doomed", &token, json!({}));
    assert_eq!(a.status, 500, "{a:?}");
    assert_eq!(card_count(&host, "acme", &token), 1);
    assert_eq!(usage_of(&host, "acme", &token, "max_cards")["used"], 1);
    assert_eq!(
        usage_of(&host, "acme", &token, "qr_scans_per_month")["used"],
        0
    );
    // The same idempotency key counts when retried after the rollback.
    let a = host.post(
        "/t/acme/m/cards/scans",
        &token,
        json!({"key": "doomed-scan"}),
    );
    assert_eq!(a.body, json!({"used": 1, "limit": 5}), "{a:?}");
    // And nothing of it reached the tenant database either.
    let db = host.tenant_db("acme");
    let used: i64 = db
        .query_row(
            "SELECT used FROM _souk_usage_counters WHERE module = 'cards' AND key = 'max_cards'",
            [],
            |r| r.get(0),
        )
        .expect("counter row");
    assert_eq!(used, 1);
}

#[test]
fn parallel_requests_on_a_metered_route_never_exceed_the_allowance() {
    let host = start(&["cards"]);
    let token = host.tenant_with("acme", "cards");
    assert_eq!(create_card(&host, "acme", &token, "c").status, 201);
    // The free plan allows 5 scans a month; 20 requests race for them.
    let statuses = race(20, |_| {
        host.get("/t/acme/m/cards/cards/1/qr", &token).status
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 402).count(),
        15,
        "{statuses:?}"
    );
    let line = usage_of(&host, "acme", &token, "qr_scans_per_month");
    assert_eq!(line["used"], 5, "{line}");
    let db = host.tenant_db("acme");
    let rows: i64 = db
        .query_row("SELECT count(*) FROM _souk_usage_events", [], |r| r.get(0))
        .expect("events");
    assert_eq!(rows, 5);
}

#[test]
fn usage_goes_with_the_data_through_uninstall_and_restore() {
    let host = start(&["cards"]);
    let token = host.tenant_with("acme", "cards");
    for n in 0..3 {
        assert_eq!(
            create_card(&host, "acme", &token, &format!("c{n}")).status,
            201
        );
    }
    let a = host.delete("/v1/tenants/acme/modules/cards", &token);
    assert_eq!(a.status, 200, "{a:?}");
    let archive = a.body["archive"]["id"]
        .as_str()
        .expect("archive id")
        .to_owned();
    // A fresh install starts from zero: the cards are gone.
    host.install_ok("acme", &token, "cards");
    assert_eq!(usage_of(&host, "acme", &token, "max_cards")["used"], 0);
    assert_eq!(
        host.delete("/v1/tenants/acme/modules/cards", &token).status,
        200
    );
    // Restoring the archive brings the cards back, and the units they hold:
    // uninstall-and-restore is no way around a limit.
    let a = host.post(
        "/v1/tenants/acme/modules",
        &token,
        json!({"module": "cards", "restore_archive": archive}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(card_count(&host, "acme", &token), 3);
    assert_eq!(usage_of(&host, "acme", &token, "max_cards")["used"], 3);
    let a = create_card(&host, "acme", &token, "c4");
    assert_denied(&a, 402, "max_cards", "limit_reached", Some("pro"));
}

#[test]
fn plan_changes_reach_the_cache_at_once_even_from_another_process() {
    let host = start(&["cards"]);
    let token = host.tenant("acme");
    let other = host.tenant("beta");
    host.install_ok("acme", &token, "cards");
    host.install_ok("beta", &other, "cards");
    let premium = |host: &Host| host.get("/t/acme/m/cards/templates/premium", &token);
    assert_eq!(premium(&host).status, 402);
    // Through the API.
    let a = host.post(
        "/v1/tenants/acme/subscriptions/cards/grant",
        &host.operator,
        json!({"plan": "business"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(premium(&host).status, 200);
    // The module sees the same grant through its import.
    let a = host.get("/t/acme/m/cards/limits/max_cards", &token);
    assert_eq!(a.body["usage"], json!({"used": 0, "limit": 1000}), "{a:?}");
    // The other tenant is untouched.
    let a = host.get("/t/beta/m/cards/templates/premium", &other);
    assert_denied(
        &a,
        402,
        "premium_templates",
        "feature_not_in_plan",
        Some("business"),
    );
    // Through the CLI, a separate process writing the same database.
    let (ok, out, err) = host.cli(&[
        "--plans",
        &plans_dir(),
        "subscription",
        "grant",
        "--tenant",
        "acme",
        "--module",
        "cards",
        "--plan",
        "free",
    ]);
    assert!(ok, "{out}{err}");
    let a = premium(&host);
    assert_denied(
        &a,
        402,
        "premium_templates",
        "feature_not_in_plan",
        Some("business"),
    );
    let a = host.get("/t/acme/m/cards/limits/max_cards", &token);
    assert_eq!(a.body["usage"], json!({"used": 0, "limit": 3}), "{a:?}");
    // Another tenant's subscriptions are invisible.
    let a = host.get("/v1/tenants/acme/subscriptions/cards", &other);
    assert_eq!(a.status, 404, "{a:?}");
    let a = host.post(
        "/v1/tenants/acme/subscriptions/cards/cancel",
        &other,
        json!({}),
    );
    assert_eq!(a.status, 404, "{a:?}");
}

#[test]
fn maintenance_from_the_cli_is_idempotent_and_the_clock_only_moves_forward() {
    let host = start(&["cards"]);
    let token = host.tenant_with("acme", "cards");
    let a = host.post(
        "/v1/tenants/acme/subscriptions",
        &token,
        json!({"module": "cards", "plan": "pro"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let at = "2026-02-01T00:00:00Z";
    let plans = plans_dir();
    let args = [
        "--plans",
        &plans,
        "--manual-clock",
        at,
        "maintenance",
        "run",
    ];
    let (ok, out, err) = host.cli(&args);
    assert!(ok, "{out}{err}");
    assert!(out.contains("trial_ended"), "{out}");
    let (ok, out, err) = host.cli(&args);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("0 change(s), 0 notification(s), 0 metering period(s) closed"),
        "{out}"
    );
    let a = host.post(
        "/v1/clock",
        &host.operator,
        json!({"set": "2025-01-01T00:00:00Z"}),
    );
    assert_eq!(a.status, 422, "{a:?}");
    let a = host.post("/v1/clock", &token, json!({"advance_days": 1}));
    assert_eq!(a.status, 403, "{a:?}");
    let a = host.post(
        "/v1/clock",
        &host.operator,
        json!({"advance_days": 1, "set": at}),
    );
    assert_eq!(a.status, 422, "{a:?}");
}

#[test]
fn tenants_using_a_module_before_it_was_priced_move_to_its_free_plan() {
    let mut host = Host::start(&["cards"]);
    let token = host.tenant_with("acme", "cards");
    // Unpriced: everything the module declares, without limits.
    for n in 0..4 {
        assert_eq!(
            create_card(&host, "acme", &token, &format!("c{n}")).status,
            201
        );
    }
    assert_eq!(
        host.get("/t/acme/m/cards/templates/premium", &token).status,
        200
    );
    host.restart_with(&["--plans", &plans_dir()]);
    // Priced now: the first request puts the tenant on the free plan.
    let a = host.get("/t/acme/m/cards/templates/premium", &token);
    assert_denied(
        &a,
        402,
        "premium_templates",
        "feature_not_in_plan",
        Some("business"),
    );
    let s = subscription(&host, "acme", &token);
    assert_eq!(
        (s["plan"].as_str(), s["state"].as_str()),
        (Some("free"), Some("active"))
    );
    assert_eq!(card_count(&host, "acme", &token), 4);
    let a = create_card(&host, "acme", &token, "over");
    assert_denied(&a, 402, "max_cards", "limit_reached", Some("pro"));
}

const SUGGESTED_PLANS: &str = "plans:
  - slug: starter
    name: Starter
    free: true
    interval: monthly
    features: [card_creation]
    limits: { max_cards: 2 }
  - slug: plus
    name: Plus
    prices: { NPR: 19900 }
    interval: monthly
    trial_days: 7
    features: [card_creation, premium_templates]
    limits: { max_cards: 50 }
";

#[test]
fn a_module_suggests_the_plans_an_operator_has_not_set() {
    let mut host = Host::start(&[]);
    let token = host.tenant("acme");
    // A suggestion that grants an undeclared feature refuses the package.
    let bad = crate::support::package("cards", |m| {
        format!(
            "{m}{}",
            SUGGESTED_PLANS.replace("premium_templates", "teleportation")
        )
    });
    let a = host.add_package(bad);
    assert_eq!(a.status, 422, "{a:?}");
    assert!(a.detail().contains("teleportation"), "{a:?}");
    let a = host.add_package(crate::support::package("cards", |m| {
        format!("{m}{SUGGESTED_PLANS}")
    }));
    assert_eq!(a.status, 201, "{a:?}");
    let a = host.get("/v1/plans", &token);
    let cards = &a.body["modules"][0];
    assert_eq!(
        (cards["module"].as_str(), cards["source"].as_str()),
        (Some("cards"), Some("module")),
        "{a:?}"
    );
    assert_eq!(cards["plans"][1]["trial_days"], 7);
    // The suggested free plan starts on install and is enforced.
    host.install_ok("acme", &token, "cards");
    let s = subscription(&host, "acme", &token);
    assert_eq!(s["plan"], "starter", "{s}");
    let a = host.get("/t/acme/m/cards/templates/premium", &token);
    assert_denied(
        &a,
        402,
        "premium_templates",
        "feature_not_in_plan",
        Some("plus"),
    );
    assert_eq!(create_card(&host, "acme", &token, "1").status, 201);
    assert_eq!(create_card(&host, "acme", &token, "2").status, 201);
    let a = create_card(&host, "acme", &token, "3");
    assert_denied(&a, 402, "max_cards", "limit_reached", Some("plus"));
    // The operator's catalog, once given, takes precedence.
    host.restart_with(&["--plans", &plans_dir()]);
    let a = host.get("/v1/plans", &token);
    let cards = a.body["modules"]
        .as_array()
        .expect("modules")
        .iter()
        .find(|m| m["module"] == "cards")
        .cloned()
        .expect("cards priced");
    assert_eq!(cards["source"], "operator", "{cards}");
}

#[test]
fn a_catalog_granting_an_undeclared_feature_is_refused_at_start() {
    let host = start(&["cards"]);
    let bad = host.dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "modules:\n  cards:\n    plans:\n      - slug: free\n        name: Free\n        free: true\n        interval: monthly\n        features: [teleportation]\n",
    )
    .expect("write catalog");
    let (ok, out, err) = host.cli(&[
        "--plans",
        bad.to_str().expect("utf-8"),
        "maintenance",
        "run",
    ]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("teleportation") && err.contains("free"),
        "{err}"
    );
    // `souk plans check` says the same before anything is served, and
    // lists the plans in effect when they fit.
    let (ok, _, err) = host.cli(&["--plans", bad.to_str().expect("utf-8"), "plans", "check"]);
    assert!(!ok && err.contains("teleportation"), "{err}");
    let (ok, out, err) = host.cli(&["--plans", &plans_dir(), "plans", "check"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("cards\tfree, pro, business\t(operator)"),
        "{out}"
    );
}

#[test]
fn modules_built_against_the_old_api_keep_working() {
    let host = start(&["legacy-v0_1"]);
    let token = host.tenant_with("acme", "legacy");
    let a = host.get("/v1/modules", &token);
    let legacy = a
        .body
        .as_array()
        .expect("modules")
        .iter()
        .find(|m| m["slug"] == "legacy")
        .cloned();
    assert!(legacy.is_some(), "{a:?}");
    let a = host.request(
        "POST",
        "/t/acme/m/legacy/entries",
        Some(&token),
        Some(b"hello from 0.1.0".to_vec()),
    );
    assert!(a.status == 201 || a.status == 200, "{a:?}");
    let a = host.get("/t/acme/m/legacy/entries", &token);
    assert_eq!(a.status, 200, "{a:?}");
    assert!(
        String::from_utf8_lossy(&a.bytes).contains("hello from 0.1.0"),
        "{a:?}"
    );
}
