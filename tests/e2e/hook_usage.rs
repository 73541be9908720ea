//! Lifecycle hooks count against the tenant's plan, through the real
//! binary: `hook-usage`'s install hook consumes a count limit until the plan
//! refuses and stores files against the storage limit; its upgrade hooks
//! seed a count above the limit, take units and then fail (everything
//! undone), or consume in an endless loop (stopped at the deadline, undone,
//! and the tenant's lifecycle not wedged).

use serde_json::{Value, json};

use crate::support::{Host, package};

const MODULE: &str = "hook-usage";

fn start() -> Host {
    Host::start_on_plans(
        &[MODULE],
        "2026-03-01T09:00:00Z",
        &["--call-timeout-ms", "1500"],
    )
}

/// The same component published as `version`, whose upgrade hook does
/// what that version asks for (see tests/modules/hook-usage).
fn publish(host: &Host, version: &str) {
    let a = host.add_package(package(MODULE, |m| {
        m.replace("version: 1.0.0", &format!("version: {version}"))
    }));
    assert!(
        a.status == 201 || a.status == 200,
        "publish {version}: {a:?}"
    );
}

/// The usage line `key` of the module.
fn usage(host: &Host, token: &str, key: &str) -> Value {
    let a = host.get(&format!("/v1/tenants/acme/usage?module={MODULE}"), token);
    assert_eq!(a.status, 200, "{a:?}");
    a.body["modules"][0]["usage"]
        .as_array()
        .expect("usage lines")
        .iter()
        .find(|line| line["key"] == key)
        .cloned()
        .unwrap_or_else(|| panic!("no {key} line: {a:?}"))
}

fn report(host: &Host, token: &str) -> Value {
    let a = host.get(&format!("/t/acme/m/{MODULE}/report"), token);
    assert_eq!(a.status, 200, "{a:?}");
    a.body
}

fn upgrade(host: &Host, token: &str, version: &str) -> crate::support::Answer {
    host.post(
        &format!("/v1/tenants/acme/modules/{MODULE}/upgrade"),
        token,
        json!({"version": version}),
    )
}

fn installed_version(host: &Host, token: &str) -> String {
    let a = host.get("/v1/tenants/acme/modules", token);
    assert_eq!(a.status, 200, "{a:?}");
    let list = a.body.as_array().or_else(|| a.body["modules"].as_array());
    list.expect("installations")
        .iter()
        .find(|m| m["module"] == MODULE)
        .and_then(|m| m["version"].as_str())
        .expect("installed")
        .to_owned()
}

#[test]
fn an_install_hook_counts_against_the_plan_it_installs_under() {
    let host = start();
    let token = host.tenant_with("acme", MODULE);
    let body = report(&host, &token);
    let r = &body["report"];
    // The free plan's 5 units, then the plan's refusal: not `no_subscription`.
    assert_eq!(r["install_took"], "5", "{body}");
    assert_eq!(r["install_refusal"], "limit_reached", "{body}");
    // files.put in the hook respects the storage limit (1,000 bytes).
    let big = r["install_big_file"].as_str().expect("big file outcome");
    assert!(
        big.contains("storage_bytes") && big.contains("limit_reached"),
        "{body}"
    );
    assert_eq!(r["install_small_file"], "stored", "{body}");
    // Seeding is for the module's own count limits only.
    assert!(
        r["install_seed_storage"]
            .as_str()
            .is_some_and(|m| m.contains("counted by the host")),
        "{body}"
    );
    assert!(
        r["install_seed_undeclared"]
            .as_str()
            .is_some_and(|m| m.contains("not a count limit this module declares")),
        "{body}"
    );
    assert_eq!(usage(&host, &token, "max_things")["used"], 5);
    assert_eq!(usage(&host, &token, "storage_bytes")["used"], 100);
    // The next request gets the host's 402 before the module runs.
    let a = host.post(&format!("/t/acme/m/{MODULE}/things"), &token, json!({}));
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(a.body["reason"], "limit_reached");
    // Seeding is for hooks only.
    let a = host.post(&format!("/t/acme/m/{MODULE}/seed"), &token, json!({}));
    assert_eq!(a.status, 200, "a request could seed: {a:?}");
    assert!(
        a.body["refused"]
            .as_str()
            .is_some_and(|m| m.contains("install and upgrade hooks")),
        "{a:?}"
    );
}

#[test]
fn a_failing_upgrade_hook_leaves_no_usage_behind() {
    let host = start();
    let token = host.tenant_with("acme", MODULE);
    // A cooperative upgrade seeds the count from the rows (none): the
    // install's 5 units are free again.
    publish(&host, "1.0.3");
    publish(&host, "1.1.1");
    assert_eq!(upgrade(&host, &token, "1.0.3").status, 200);
    let before_things = usage(&host, &token, "max_things");
    assert_eq!(before_things["used"], 0, "{before_things}");
    let before_bytes = usage(&host, &token, "storage_bytes");
    // 1.1.1's hook takes the 5 units, seeds 1000, stores a file, refuses.
    let a = upgrade(&host, &token, "1.1.1");
    assert_eq!(a.status, 422, "{a:?}");
    assert!(a.detail().contains("took 5 units"), "{a:?}");
    assert_eq!(usage(&host, &token, "max_things"), before_things);
    assert_eq!(usage(&host, &token, "storage_bytes"), before_bytes);
    assert_eq!(installed_version(&host, &token), "1.0.3");
    // The units it took are there for the tenant's requests.
    for _ in 0..5 {
        let a = host.post(&format!("/t/acme/m/{MODULE}/things"), &token, json!({}));
        assert_eq!(a.status, 201, "{a:?}");
    }
    assert_eq!(usage(&host, &token, "max_things")["used"], 5);
}

#[test]
fn an_upgrade_hook_seeds_a_count_above_the_limit_and_requests_then_get_the_402() {
    let host = start();
    let token = host.tenant_with("acme", MODULE);
    // Free plan: the install took all 5 units; no request can add a thing.
    publish(&host, "1.0.3");
    // Put 7 rows behind the module's back (as an older release that did
    // not count would have), then upgrade: the hook counts them all.
    let db = rusqlite::Connection::open(host.tenant_db_path("acme")).expect("open tenant db");
    db.busy_timeout(std::time::Duration::from_secs(5))
        .expect("busy timeout");
    for _ in 0..7 {
        db.execute("INSERT INTO hook_usage__things DEFAULT VALUES", [])
            .expect("insert a row");
    }
    drop(db);
    let a = upgrade(&host, &token, "1.0.3");
    assert_eq!(a.status, 200, "{a:?}");
    let line = usage(&host, &token, "max_things");
    assert_eq!(line["used"], 7, "{line}");
    assert_eq!(line["limit"], 5, "{line}");
    assert_eq!(report(&host, &token)["report"]["upgrade_seeded"], "7");
    let a = host.post(&format!("/t/acme/m/{MODULE}/things"), &token, json!({}));
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(a.body["used"], 7, "{a:?}");
}

#[test]
fn a_hook_consuming_in_an_endless_loop_exceeds_nothing_and_wedges_nothing() {
    let host = start();
    let token = host.tenant_with("acme", MODULE);
    publish(&host, "1.0.2");
    publish(&host, "1.0.3");
    let before = usage(&host, &token, "max_things");
    let a = upgrade(&host, &token, "1.0.2");
    assert_eq!(a.status, 422, "{a:?}");
    assert_eq!(usage(&host, &token, "max_things"), before);
    assert_eq!(installed_version(&host, &token), "1.0.0");
    // Not wedged: the module still serves, and the next upgrade runs.
    report(&host, &token);
    let a = upgrade(&host, &token, "1.0.3");
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(installed_version(&host, &token), "1.0.3");
    assert_eq!(usage(&host, &token, "max_things")["used"], 0);
}
