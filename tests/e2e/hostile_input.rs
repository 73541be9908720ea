//! Untrusted YAML and untrusted numbers, through the real binary: YAML bombs
//! in uploaded manifests and in plan catalogs, quantities and amounts past
//! the host's bounds from a module (`cards`' `/units` routes) and from the
//! usage-event API, an attacker's overflowing usage next to other tenants'
//! maintenance, abuse of the manual clock, a counter an old release left as a
//! REAL, and module versions too long to become file names.
//!
//! Each test asserts on the state afterwards (the tenant database, the
//! subscriptions, the clock), not only on status codes. Memory and time are
//! measured and printed; only memory has a (generous) bound.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::{Value, json};

use crate::support::{Answer, Host, module_files, raw_package};

const START: &str = "2026-01-01T00:00:00Z";

fn start(modules: &[&str]) -> Host {
    Host::start_on_plans(modules, START, &[])
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn cards_manifest() -> String {
    std::fs::read_to_string(module_files("cards").0).expect("cards manifest")
}

fn cards_component() -> Vec<u8> {
    std::fs::read(module_files("cards").1).expect("cards component; run scripts/build-modules")
}

/// `levels` levels of ten aliases each under `plans:`: 10^levels nodes once
/// expanded.
fn laughs_under_plans(levels: usize) -> String {
    let mut text =
        String::from("plans:\n  - &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..=levels {
        let refs = std::iter::repeat_n(format!("*l{}", i - 1), 10)
            .collect::<Vec<_>>()
            .join(", ");
        text.push_str(&format!("  - &l{i} [{refs}]\n"));
    }
    text
}

fn assert_problem(a: &Answer, status: u16, says: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert!(a.body["type"].is_string(), "not a problem document: {a:?}");
    let detail = a.detail();
    assert!(detail.contains(says), "{says:?} not in {detail:?}");
    assert!(!detail.contains("/tmp/"), "a server path in {detail:?}");
}

#[test]
fn manifest_yaml_bombs_are_refused_at_once_and_memory_stays_small() {
    let host = Host::start(&[]);
    let pid = host.pid();
    let manifest = cards_manifest();
    let component = cards_component();
    let nested_keys = {
        let mut t =
            String::from("plans:\n  - &k0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}\n");
        for i in 1..9 {
            let p = i - 1;
            t.push_str(&format!(
                "  - &k{i} {{a: *k{p}, b: *k{p}, c: *k{p}, d: *k{p}, e: *k{p}, f: *k{p}, g: *k{p}, h: *k{p}}}\n"
            ));
        }
        t
    };
    let bombs: Vec<(&str, String, &str)> = vec![
        (
            "alias fan-out, 10^9 nodes",
            laughs_under_plans(9),
            "aliases",
        ),
        (
            "the 3.8 KB shape, 10^6 nodes",
            laughs_under_plans(6),
            "aliases",
        ),
        ("nested aliases in mappings", nested_keys, "aliases"),
        (
            "an alias of the whole description",
            "x-anchor: &d text\n".to_owned(),
            "aliases",
        ),
        (
            "merge keys",
            "plans:\n  - slug: free\n    <<: {name: Free, free: true, interval: monthly}\n"
                .to_owned(),
            "merge keys",
        ),
        (
            "deep flow nesting",
            format!("plans: {}{}\n", "[".repeat(20_000), "]".repeat(20_000)),
            "levels deep",
        ),
        (
            "deep block nesting",
            format!(
                "plans:\n{}",
                (1..60)
                    .map(|i| format!("{}- \n", "  ".repeat(i)))
                    .collect::<String>()
            ),
            "levels deep",
        ),
        (
            "a second document",
            "---\nslug: other\n".to_owned(),
            "more than one document",
        ),
        (
            "a huge scalar past the manifest cap",
            format!("x-huge: '{}'\n", "x".repeat(200_000)),
            "larger than the limit",
        ),
    ];
    let before = status_kib(pid, "VmHWM");
    for (what, bomb, says) in &bombs {
        let text = format!("{manifest}\n{bomb}");
        let started = Instant::now();
        let a = host.add_package(raw_package(&text, &component));
        eprintln!(
            "{what}: {} bytes refused in {:?} (status {})",
            text.len(),
            started.elapsed(),
            a.status
        );
        assert_problem(&a, 422, says);
    }
    let after = status_kib(pid, "VmHWM");
    eprintln!(
        "souk serve peak RSS: {} KiB before the bombs, {} KiB after ({} KiB more); RSS now {} KiB",
        before,
        after,
        after.saturating_sub(before),
        status_kib(pid, "VmRSS")
    );
    // Before the fix the 10^6 shape alone cost ~0.5 GiB.
    assert!(
        after.saturating_sub(before) < 64 * 1024,
        "peak RSS grew by {} KiB",
        after - before
    );
    // Nothing was added, and the host still serves.
    let a = host.get("/v1/modules", &host.operator);
    assert_eq!(a.status, 200, "{a:?}");
    assert!(!a.bytes.windows(5).any(|w| w == b"cards"), "{a:?}");
    assert_eq!(host.get("/healthz", &host.operator).status, 200);
    // The clean manifest still goes in.
    let a = host.add_package(raw_package(&manifest, &component));
    assert_eq!(a.status, 201, "{a:?}");
}

#[test]
fn module_versions_too_long_for_a_file_name_are_refused() {
    let host = Host::start(&[]);
    let manifest = cards_manifest();
    let component = cards_component();
    for version in [
        format!("1.0.0-{}", "a".repeat(300)),
        format!("1.0.0-{}", "a".repeat(59)),
        format!("1.0.0+{}", "b".repeat(250)),
        format!("1.0.0-{}", "x.".repeat(100) + "y"),
    ] {
        let text = manifest.replace("version: 1.0.0", &format!("version: {version}"));
        assert_ne!(text, manifest);
        let a = host.add_package(raw_package(&text, &component));
        assert_problem(&a, 422, "at most 64 bytes");
    }
    let a = host.get("/v1/modules", &host.operator);
    assert!(!a.bytes.windows(5).any(|w| w == b"cards"), "{a:?}");
    // 64 bytes exactly is accepted.
    let version = format!("1.0.0-{}", "a".repeat(58));
    assert_eq!(version.len(), 64);
    let text = manifest.replace("version: 1.0.0", &format!("version: {version}"));
    let a = host.add_package(raw_package(&text, &component));
    assert_eq!(a.status, 201, "{a:?}");
}

#[test]
fn catalog_yaml_bombs_are_refused_by_plans_check() {
    let host = Host::start(&["cards"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = "{ slug: free, name: Free, free: true, interval: monthly }";
    let mut laughs = format!(
        "modules:\n  cards:\n    plans:\n      - {plan}\nbundles:\n  - &b0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    );
    for i in 1..10 {
        laughs.push_str(&format!(
            "  - &b{i} [{}]\n",
            std::iter::repeat_n(format!("*b{}", i - 1), 10)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let cases: Vec<(&str, String, &str)> = vec![
        ("alias fan-out", laughs, "aliases"),
        (
            "one alias",
            format!("modules:\n  cards:\n    plans:\n      - &p {plan}\n      - *p\n"),
            "aliases",
        ),
        (
            "merge keys",
            "modules:\n  cards:\n    plans:\n      - slug: free\n        <<: { name: Free, free: true, interval: monthly }\n".to_owned(),
            "merge keys",
        ),
        (
            "deep nesting",
            format!("modules: {}{}\n", "{a: ".repeat(50_000), "}".repeat(50_000)),
            "levels deep",
        ),
        (
            "too large",
            format!("# {}\nmodules: {{}}\n", "x".repeat(5 * 1024 * 1024)),
            "more than the limit",
        ),
        (
            "a price past the bound",
            "modules:\n  cards:\n    plans:\n      - { slug: pro, name: Pro, interval: monthly, prices: { NPR: 1000000000000000001 } }\n".to_owned(),
            "highest price",
        ),
        (
            "an allowance past what a counter holds",
            "modules:\n  cards:\n    plans:\n      - { slug: free, name: Free, free: true, interval: monthly, limits: { max_cards: 18446744073709551615 } }\n".to_owned(),
            "the most any counter can hold",
        ),
    ];
    for (i, (what, text, says)) in cases.iter().enumerate() {
        let path: PathBuf = dir.path().join(format!("catalog-{i}.yaml"));
        std::fs::write(&path, text).expect("write catalog");
        let started = Instant::now();
        let (ok, out, err) =
            host.cli(&["--plans", path.to_str().expect("utf-8"), "plans", "check"]);
        eprintln!("{what}: refused in {:?}", started.elapsed());
        assert!(!ok, "{what} accepted: {out}");
        assert!(err.contains(says), "{what}: {says:?} not in {err}");
    }
}

/// The count of `key` in the tenant database: its type and value.
fn stored_counter(host: &Host, tenant: &str, key: &str) -> Option<(String, i64)> {
    let db = host.tenant_db(tenant);
    db.query_row(
        "SELECT typeof(used), CAST(used AS INTEGER) FROM _souk_usage_counters WHERE module = 'cards' AND key = ?1",
        [key],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .ok()
}

/// The tenant database opened for writing, as an attacker with an older
/// release's data (or a disk editor) would leave it.
fn tamper(host: &Host, tenant: &str, sql: &str) {
    let db = rusqlite::Connection::open(host.tenant_db_path(tenant)).expect("open");
    db.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    db.execute_batch(sql).expect("tamper");
}

fn units(host: &Host, tenant: &str, token: &str, body: Value) -> Answer {
    host.post(&format!("/t/{tenant}/m/cards/units"), token, body)
}

fn limit_of(host: &Host, tenant: &str, token: &str, key: &str) -> Value {
    let a = host.get(&format!("/t/{tenant}/m/cards/limits/{key}"), token);
    assert_eq!(a.status, 200, "{a:?}");
    a.body["usage"].clone()
}

#[test]
fn overflowing_quantities_from_a_module_are_refused_and_counters_stay_integers() {
    let mut host = start(&["cards"]);
    let token = host.tenant_with("acme", "cards");
    // Business: `max_templates` and the meter are unlimited, so only the
    // host's own bounds stand in the way.
    let a = host.post(
        "/v1/tenants/acme/subscriptions/cards/grant",
        &host.operator,
        json!({"plan": "business"}),
    );
    assert_eq!(a.status, 200, "{a:?}");

    for quantity in [
        json!(9_223_372_036_854_775_807u64),
        json!(u64::MAX),
        json!(1_000_000_000_001u64),
        json!(0),
    ] {
        for key in [None, Some("k")] {
            let a = units(
                &host,
                "acme",
                &token,
                json!({"key": "max_templates", "quantity": quantity, "idempotency_key": key}),
            );
            assert_ne!(a.status, 200, "{quantity} accepted: {a:?}");
            assert_eq!(
                limit_of(&host, "acme", &token, "max_templates")["used"],
                0,
                "{quantity}"
            );
        }
    }
    // The repro: two consumes of i64::MAX. Both refused.
    for _ in 0..2 {
        let a = units(
            &host,
            "acme",
            &token,
            json!({"key": "max_templates", "quantity": i64::MAX}),
        );
        assert_ne!(a.status, 200, "{a:?}");
    }
    let a = units(
        &host,
        "acme",
        &token,
        json!({"key": "max_templates", "quantity": 1_000_000_000_000u64}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["used"], 1_000_000_000_000u64);
    assert_eq!(
        stored_counter(&host, "acme", "max_templates"),
        Some(("integer".to_owned(), 1_000_000_000_000))
    );

    // Next to the top (as if a long life had filled it): the last units
    // fit, one more is refused, nothing wraps or turns into a REAL.
    tamper(
        &host,
        "acme",
        "UPDATE _souk_usage_counters SET used = 9223372036854775802 WHERE module = 'cards' AND key = 'max_templates'",
    );
    host.restart();
    let a = units(
        &host,
        "acme",
        &token,
        json!({"key": "max_templates", "quantity": 5}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["used"], i64::MAX);
    for quantity in [1, 5, 1_000_000_000_000u64] {
        let a = units(
            &host,
            "acme",
            &token,
            json!({"key": "max_templates", "quantity": quantity}),
        );
        assert_ne!(a.status, 200, "{a:?}");
    }
    assert_eq!(
        stored_counter(&host, "acme", "max_templates"),
        Some(("integer".to_owned(), i64::MAX))
    );

    // Amounts of the unmetered meter, through the module.
    for amount in [
        json!(i64::MAX),
        json!(u64::MAX),
        json!(1_000_000_000_001u64),
        json!(0),
    ] {
        let a = host.post(
            "/t/acme/m/cards/units/record",
            &token,
            json!({"amount": amount, "idempotency_key": format!("big-{amount}")}),
        );
        assert_ne!(a.status, 200, "{amount} accepted: {a:?}");
    }
    let a = host.post(
        "/t/acme/m/cards/units/record",
        &token,
        json!({"amount": 1_000_000_000_000u64, "idempotency_key": "fine"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let db = host.tenant_db("acme");
    let events: Vec<(String, i64)> = db
        .prepare("SELECT typeof(amount), amount FROM _souk_usage_events WHERE module = 'cards'")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    assert_eq!(events, [("integer".to_owned(), 1_000_000_000_000)]);
    drop(db);

    // After a restart the module and its uninstall still work.
    host.restart();
    assert_eq!(
        limit_of(&host, "acme", &token, "max_templates")["used"],
        i64::MAX
    );
    assert_eq!(host.get("/t/acme/m/cards/cards", &token).status, 200);
    let a = host.delete("/v1/tenants/acme/modules/cards", &token);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(stored_counter(&host, "acme", "max_templates"), None);
}

#[test]
fn a_counter_an_old_release_left_as_a_real_is_repaired_and_the_module_stays_removable() {
    let mut host = start(&["cards"]);
    let token = host.tenant_with("acme", "cards");
    let a = host.post("/t/acme/m/cards/cards", &token, json!({"name": "one"}));
    assert_eq!(a.status, 201, "{a:?}");
    // What the previous schema let two consumes of i64::MAX store, in a
    // database of a release from before the host's tenant migrations (so
    // without their ledger either).
    tamper(
        &host,
        "acme",
        "DROP TABLE _souk_schema_migrations;
         DROP TABLE _souk_usage_counters;
         CREATE TABLE _souk_usage_counters (module TEXT NOT NULL, key TEXT NOT NULL, used INTEGER NOT NULL, PRIMARY KEY (module, key));
         INSERT INTO _souk_usage_counters VALUES ('cards', 'max_cards', 9223372036854775807);
         UPDATE _souk_usage_counters SET used = used + 9223372036854775807;",
    );
    assert_eq!(
        stored_counter(&host, "acme", "max_cards").map(|c| c.0),
        Some("real".to_owned())
    );
    host.restart();
    assert_eq!(host.get("/t/acme/m/cards/cards", &token).status, 200);
    assert_eq!(
        stored_counter(&host, "acme", "max_cards"),
        Some(("integer".to_owned(), i64::MAX))
    );
    // The repaired table refuses a REAL from now on.
    let db = rusqlite::Connection::open(host.tenant_db_path("acme")).expect("open");
    assert!(
        db.execute("UPDATE _souk_usage_counters SET used = 2.5", [])
            .is_err()
    );
    drop(db);
    let a = host.delete("/v1/tenants/acme/modules/cards", &token);
    assert_eq!(a.status, 200, "{a:?}");
}

fn usage_event(host: &Host, token: &str, body: Value) -> Answer {
    host.post("/v1/tenants/acme/usage-events", token, body)
}

fn meter_used(host: &Host, token: &str) -> Value {
    let a = host.get("/v1/tenants/acme/usage?module=cards", token);
    assert_eq!(a.status, 200, "{a:?}");
    a.body["modules"][0]["usage"]
        .as_array()
        .expect("lines")
        .iter()
        .find(|l| l["key"] == "qr_scans_per_month")
        .expect("meter line")["used"]
        .clone()
}

#[test]
fn overflowing_usage_events_are_refused_and_a_batch_changes_nothing() {
    let host = start(&["cards"]);
    let token = host.tenant_with("acme", "cards");
    let event = |amount: Value, key: &str| json!({"module": "cards", "meter": "qr_scans_per_month", "amount": amount, "idempotency_key": key});
    for (amount, says) in [
        (json!(i64::MAX), "`amount` must be 1 to 1000000000000"),
        (json!(u64::MAX), "`amount` must be 1 to 1000000000000"),
        (
            json!(1_000_000_000_001u64),
            "`amount` must be 1 to 1000000000000",
        ),
        (json!(0), "`amount` must be 1 to 1000000000000"),
        (json!(-1), "invalid JSON body"),
        (json!(1.5), "invalid JSON body"),
        (json!(1e30), "invalid JSON body"),
        (json!("9"), "invalid JSON body"),
    ] {
        let a = usage_event(&host, &token, event(amount.clone(), "k"));
        assert!(a.status == 400 || a.status == 422, "{amount}: {a:?}");
        assert!(a.detail().contains(says), "{amount}: {a:?}");
        assert_eq!(meter_used(&host, &token), 0, "{amount}");
    }
    // Two events of i64::MAX in one batch (the repro), or a good
    // event followed by a bad one: refused whole.
    for batch in [
        json!({"events": [event(json!(i64::MAX), "a"), event(json!(i64::MAX), "b")]}),
        json!({"events": [event(json!(3), "good"), event(json!(u64::MAX), "bad")]}),
    ] {
        let a = usage_event(&host, &token, batch);
        assert_eq!(a.status, 422, "{a:?}");
        assert!(
            a.detail().contains("events[") && a.detail().contains("amount"),
            "{a:?}"
        );
        assert_eq!(meter_used(&host, &token), 0);
    }
    let a = usage_event(
        &host,
        &token,
        json!({"events": [event(json!(1_000_000_000_000u64), "a"), event(json!(1_000_000_000_000u64), "b")]}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(meter_used(&host, &token), 2_000_000_000_000u64);
}

fn subscription_state(host: &Host, tenant: &str) -> String {
    let a = host.get(
        &format!("/v1/tenants/{tenant}/subscriptions/cards"),
        &host.operator,
    );
    assert_eq!(a.status, 200, "{a:?}");
    a.body["subscription"]["state"]
        .as_str()
        .expect("state")
        .to_owned()
}

fn period_end(host: &Host, tenant: &str) -> String {
    let a = host.get(
        &format!("/v1/tenants/{tenant}/subscriptions/cards"),
        &host.operator,
    );
    assert_eq!(a.status, 200, "{a:?}");
    a.body["subscription"]["period_end"]
        .as_str()
        .expect("period_end")
        .to_owned()
}

fn maintain(host: &Host) -> Value {
    let a = host.post("/v1/maintenance/run", &host.operator, json!({}));
    assert_eq!(a.status, 200, "{a:?}");
    a.body
}

#[test]
fn maintenance_proceeds_for_every_other_tenant_after_an_attackers_overflow() {
    let host = start(&["cards"]);
    let tenants = [
        "aaa-victim",
        "attacker",
        "broken",
        "mmm-victim",
        "zzz-victim",
    ];
    let mut tokens = Vec::new();
    for tenant in tenants {
        let token = host.tenant_with(tenant, "cards");
        assert_eq!(subscription_state(&host, tenant), "active");
        assert_eq!(period_end(&host, tenant), "2026-02-01T00:00:00Z");
        let a = host.post(
            &format!("/v1/tenants/{tenant}/usage-events"),
            &token,
            json!({"module": "cards", "meter": "qr_scans_per_month", "idempotency_key": "first"}),
        );
        assert_eq!(a.status, 201, "{a:?}");
        tokens.push(token);
    }
    // The API refuses the attacker's two events of i64::MAX now; rows an
    // older release accepted are put in directly.
    let a = host.post(
        "/v1/tenants/attacker/usage-events",
        &tokens[1],
        json!({"events": [
            {"module": "cards", "meter": "qr_scans_per_month", "amount": i64::MAX, "idempotency_key": "x"},
            {"module": "cards", "meter": "qr_scans_per_month", "amount": i64::MAX, "idempotency_key": "y"},
        ]}),
    );
    assert_eq!(a.status, 422, "{a:?}");
    tamper(
        &host,
        "attacker",
        "INSERT INTO _souk_usage_events SELECT module, meter, period_start, 'x', 9223372036854775807, at FROM _souk_usage_events;
         INSERT INTO _souk_usage_events SELECT module, meter, period_start, 'y', 9223372036854775807, at FROM _souk_usage_events WHERE idempotency_key = 'first';",
    );
    // A tenant whose database cannot answer at all.
    tamper(&host, "broken", "DROP TABLE _souk_usage_events;");

    let a = host.post("/v1/clock", &host.operator, json!({"advance_days": 31}));
    assert_eq!(a.status, 200, "{a:?}");
    for run in 0..2 {
        let report = maintain(&host);
        eprintln!("maintenance run {run}: {report}");
        let failed = report["failed"].as_array().expect("failed");
        assert_eq!(failed.len(), 1, "{report}");
        assert_eq!(failed[0]["module"], "cards", "{report}");
        assert!(
            failed[0]["step"]
                .as_str()
                .unwrap_or_default()
                .starts_with("meter")
        );
        assert!(
            !failed[0]["error"]
                .as_str()
                .unwrap_or_default()
                .contains("/tmp/"),
            "{report}"
        );
    }
    // Every subscription renewed, the attacker's and the broken tenant's
    // included.
    for tenant in tenants {
        assert_eq!(subscription_state(&host, tenant), "active", "{tenant}");
        assert_eq!(
            period_end(&host, tenant),
            "2026-03-01T00:00:00Z",
            "{tenant}"
        );
    }
    // Every meter period closed except the broken tenant's; the attacker's
    // total reads as a full meter, not an error or a wrapped number.
    let a = host.get("/v1/outbox?limit=1000", &host.operator);
    assert_eq!(a.status, 200, "{a:?}");
    let closed: Vec<&Value> = a.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "usage_period_closed")
        .collect();
    assert_eq!(closed.len(), tenants.len() - 1, "{closed:?}");
    let mut totals: Vec<u64> = closed
        .iter()
        .map(|e| {
            let payload: Value =
                serde_json::from_str(e["payload"].as_str().expect("payload text")).expect("json");
            payload["used"].as_u64().expect("used")
        })
        .collect();
    totals.sort_unstable();
    assert_eq!(totals, [1, 1, 1, i64::MAX as u64], "{closed:?}");
}

#[test]
fn clock_abuse_is_refused_and_maintenance_keeps_working() {
    let host = start(&["cards"]);
    let token = host.tenant_with("acme", "cards");
    let a = host.post(
        "/v1/tenants/acme/subscriptions",
        &token,
        json!({"module": "cards", "plan": "pro"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let clock = |host: &Host| {
        let a = host.get("/v1/clock", &host.operator);
        assert_eq!(a.status, 200, "{a:?}");
        a.body["now"].as_str().expect("now").to_owned()
    };
    let before = clock(&host);
    for body in [
        json!({"advance_days": i64::MAX}),
        json!({"advance_days": i64::MIN}),
        json!({"advance_days": 106_751_991_167_301i64}),
        json!({"advance_days": 3661}),
        json!({"advance_days": -1}),
        json!({"advance_seconds": i64::MAX}),
        json!({"advance_seconds": i64::MIN}),
        json!({"advance_seconds": 316_224_001}),
        json!({"set": "9999-12-31T23:59:59Z"}),
        json!({"set": "2200-01-01T00:00:01Z"}),
        json!({"set": "2040-01-01T00:00:00Z"}),
    ] {
        let a = host.post("/v1/clock", &host.operator, body.clone());
        assert_eq!(a.status, 422, "{body}: {a:?}");
        assert!(a.body["type"].is_string(), "{a:?}");
        assert_eq!(clock(&host), before, "{body}");
    }
    let a = host.post("/v1/clock", &host.operator, json!({"advance_days": 1e300}));
    assert_eq!(a.status, 400, "{a:?}");
    assert_eq!(host.get("/healthz", &host.operator).status, 200);
    assert_eq!(maintain(&host)["failed"], json!([]));
    assert_eq!(subscription_state(&host, "acme"), "trialing");

    // The longest moves allowed, up to the latest year: maintenance catches
    // up after each, and the last move is refused at the bound.
    let mut moves = 0;
    loop {
        let a = host.post("/v1/clock", &host.operator, json!({"advance_days": 3660}));
        if a.status != 200 {
            assert_eq!(a.status, 422, "{a:?}");
            assert!(a.detail().contains("2200-01-01"), "{a:?}");
            break;
        }
        moves += 1;
        assert!(moves < 30, "the clock never stopped");
        let report = maintain(&host);
        assert_eq!(report["failed"], json!([]), "{report}");
    }
    eprintln!("moved the clock {moves} times to {}", clock(&host));
    assert!(clock(&host).starts_with("219"), "{}", clock(&host));
    assert_eq!(subscription_state(&host, "acme"), "active");
    let a = host.post(
        "/v1/clock",
        &host.operator,
        json!({"set": "2200-01-01T00:00:00Z"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let report = maintain(&host);
    assert_eq!(report["failed"], json!([]), "{report}");
    assert_eq!(host.get("/t/acme/m/cards/cards", &token).status, 200);
}

/// serde_json stops at 128 levels (its default recursion limit; no crate in
/// the build turns on `unbounded_depth`), so a deep body is a 400, not a
/// stack overflow.
#[test]
fn deeply_nested_json_bodies_are_refused_without_harm() {
    let host = start(&["cards"]);
    let token = host.tenant_with("acme", "cards");
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!(
        "{{\"events\": {}1{}}}",
        "{\"a\": ".repeat(50_000),
        "}".repeat(50_000)
    );
    let just_past = format!("{}{}", "[".repeat(200), "]".repeat(200));
    for path in [
        "/v1/tenants/acme/usage-events",
        "/v1/clock",
        "/v1/tenants/acme/subscriptions",
        "/v1/tenants/acme/modules",
    ] {
        for body in [&deep_array, &deep_object, &just_past] {
            let token = if path == "/v1/clock" {
                &host.operator
            } else {
                &token
            };
            let a = host.request("POST", path, Some(token), Some(body.clone().into_bytes()));
            assert_eq!(a.status, 400, "{path}: {a:?}");
            assert_eq!(a.content_type, "application/problem+json", "{path}: {a:?}");
        }
    }
    assert_eq!(host.get("/healthz", &host.operator).status, 200);
    assert_eq!(host.get("/t/acme/m/cards/cards", &token).status, 200);
}
