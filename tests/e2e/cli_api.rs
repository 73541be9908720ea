//! The CLI and the API are twins: each pair below does the same thing once
//! through `souk <command>` (a separate process on the same data directory)
//! and once over HTTP, for two tenants set up alike, and compares what they
//! answer and what they wrote. Both go through the same service function,
//! so any difference is a bug.

use serde_json::{Value, json};

use crate::support::{Host, plans_dir};

const START: &str = "2026-01-01T00:00:00Z";

/// The global options the host and every CLI run share: the test plans and
/// the same manual clock, so both sides see the same instant.
fn global_args() -> Vec<String> {
    vec![
        "--plans".to_owned(),
        plans_dir(),
        "--manual-clock".to_owned(),
        START.to_owned(),
    ]
}

fn start() -> Host {
    let args = global_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Host::start_with(&["cards"], &args)
}

/// Runs `souk --json <args>` with the shared global options; its JSON
/// output, or the error text when it failed.
fn cli_json(host: &Host, args: &[&str]) -> Result<Value, String> {
    let mut all = global_args();
    all.push("--json".to_owned());
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let (ok, out, err) = host.cli(&all);
    if !ok {
        return Err(format!("{out}{err}"));
    }
    serde_json::from_str(&out).map_err(|e| format!("not JSON ({e}): {out}{err}"))
}

/// Two tenants with `cards` installed: one driven through the CLI, one
/// through the API (its token returned).
fn two_tenants(host: &Host) -> String {
    host.tenant_with("via-cli", "cards");
    host.tenant_with("via-api", "cards")
}

/// The usage events a tenant's database holds, in key order.
fn event_rows(host: &Host, tenant: &str) -> Vec<(String, String, i64, String, i64, i64)> {
    let db = host.tenant_db(tenant);
    let mut stmt = db
        .prepare(
            "SELECT module, meter, period_start, idempotency_key, amount, at \
             FROM _souk_usage_events ORDER BY module, meter, period_start, idempotency_key",
        )
        .expect("prepare");
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .expect("query")
    .map(|r| r.expect("row"))
    .collect()
}

#[test]
fn usage_events_through_the_cli_and_the_api_give_the_same_rows_answers_and_report() {
    let host = start();
    let token = two_tenants(&host);
    // A new key, another new key, and a repeat of the first (not counted).
    for (key, amount) in [("scan-1", 1), ("scan-2", 2), ("scan-1", 1)] {
        let a = host.post(
            "/v1/tenants/via-api/usage-events",
            &token,
            json!({"module": "cards", "meter": "qr_scans_per_month", "amount": amount, "idempotency_key": key}),
        );
        assert!(a.status == 200 || a.status == 201, "{a:?}");
        let amount = amount.to_string();
        let recorded = cli_json(
            &host,
            &[
                "usage",
                "record",
                "--tenant",
                "via-cli",
                "--module",
                "cards",
                "--meter",
                "qr_scans_per_month",
                "--amount",
                &amount,
                "--idempotency-key",
                key,
            ],
        )
        .expect("usage record");
        assert_eq!(recorded, a.body, "event {key}");
    }
    let rows = event_rows(&host, "via-api");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(event_rows(&host, "via-cli"), rows);
    // The same report: the CLI reads the tenant database afresh, the API
    // its server's engine; both saw the same events.
    let report = cli_json(&host, &["usage", "show", "--tenant", "via-cli"]).expect("usage show");
    let a = host.get("/v1/tenants/via-api/usage", &token);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(report, a.body);
    let meter = a.body["modules"][0]["usage"]
        .as_array()
        .expect("usage lines")
        .iter()
        .find(|line| line["key"] == "qr_scans_per_month")
        .cloned()
        .expect("meter line");
    assert_eq!(meter["used"], 3, "{meter}");
    // And the same refusal, for the same reason, with nothing written.
    let a = host.post(
        "/v1/tenants/via-api/usage-events",
        &token,
        json!({"module": "cards", "meter": "no_such_meter", "idempotency_key": "x"}),
    );
    assert_eq!(a.status, 422, "{a:?}");
    let refused = cli_json(
        &host,
        &[
            "usage",
            "record",
            "--tenant",
            "via-cli",
            "--module",
            "cards",
            "--meter",
            "no_such_meter",
            "--idempotency-key",
            "x",
        ],
    )
    .expect_err("an unknown meter is refused");
    assert!(refused.contains(&a.detail()), "{refused} vs {}", a.detail());
    assert_eq!(event_rows(&host, "via-cli"), event_rows(&host, "via-api"));
}

#[test]
fn the_plan_listing_is_the_same_through_the_cli_and_the_api() {
    let host = start();
    let token = host.tenant("acme");
    let a = host.get("/v1/plans", &token);
    assert_eq!(a.status, 200, "{a:?}");
    let listing = cli_json(&host, &["plans", "list"]).expect("plans list");
    assert_eq!(listing, a.body);
    // `plans check` prints the summary of that same listing.
    let summary: Vec<Value> = a.body["modules"]
        .as_array()
        .expect("modules")
        .iter()
        .map(|m| {
            let plans: Vec<Value> = m["plans"]
                .as_array()
                .expect("plans")
                .iter()
                .map(|p| p["slug"].clone())
                .collect();
            json!({"module": m["module"], "plans": plans, "source": m["source"]})
        })
        .collect();
    assert!(!summary.is_empty(), "{a:?}");
    let check = cli_json(&host, &["plans", "check"]).expect("plans check");
    assert_eq!(check, Value::Array(summary));
}

#[test]
fn a_cli_subscription_grant_is_the_same_as_the_apis() {
    let host = start();
    two_tenants(&host);
    let a = host.post(
        "/v1/tenants/via-api/subscriptions/cards/grant",
        &host.operator,
        json!({"plan": "pro", "periods": 3}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let granted = cli_json(
        &host,
        &[
            "subscription",
            "grant",
            "--tenant",
            "via-cli",
            "--module",
            "cards",
            "--plan",
            "pro",
            "--periods",
            "3",
        ],
    )
    .expect("subscription grant");
    assert_eq!(granted, a.body);
    assert_eq!(granted["plan"], "pro", "{granted}");
    // Listed alike by both, and the server sees the CLI's grant.
    let listed = cli_json(&host, &["subscription", "list", "--tenant", "via-cli"])
        .expect("subscription list");
    let a = host.get("/v1/tenants/via-api/subscriptions", &host.operator);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(listed, a.body["subscriptions"]);
    let a = host.get("/v1/tenants/via-cli/subscriptions", &host.operator);
    assert_eq!(a.body["subscriptions"], listed);
    // Extending: the same again.
    let a = host.post(
        "/v1/tenants/via-api/subscriptions/cards/extend",
        &host.operator,
        json!({"periods": 1}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let extended = cli_json(
        &host,
        &[
            "subscription",
            "extend",
            "--tenant",
            "via-cli",
            "--module",
            "cards",
            "--periods",
            "1",
        ],
    )
    .expect("subscription extend");
    assert_eq!(extended, a.body);
}
