//! Module API 0.3.0 through the real binary: a module built with the SDK
//! for 0.3.0 links, names its caller precisely, and learns whether an
//! idempotent count was a replay; a module built for 0.2.0 beside it keeps
//! the older view.

use serde_json::{Value, json};

use crate::support::Host;

#[test]
fn a_v0_3_module_sees_its_caller_as_a_tenant_token_with_its_name() {
    let host = Host::start(&["probe-v0_3"]);
    let token = host.tenant_with("acme", "probe");
    let a = host.get("/t/acme/m/probe/whoami", &token);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["module"], "probe", "{a:?}");
    assert_eq!(a.body["version"], "1.0.0", "{a:?}");
    let caller = &a.body["caller"];
    assert_eq!(caller["kind"], "tenant-token", "{a:?}");
    assert_eq!(caller["name"], "admin", "{a:?}");
    assert!(
        caller["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("tok_")),
        "{a:?}"
    );
    // Nothing a token-holding caller does not have: no role, no member.
    assert_eq!(caller.get("role"), None, "{a:?}");
    assert_eq!(caller.get("member_number"), None, "{a:?}");

    let op = host.get("/t/acme/m/probe/whoami", &host.operator);
    assert_eq!(op.body["caller"]["kind"], "operator", "{op:?}");
}

#[test]
fn an_idempotent_count_says_when_it_was_a_replay() {
    let host = Host::start(&["probe-v0_3"]);
    let token = host.tenant_with("acme", "probe");
    let count = |path: &str| {
        let a = host.post(path, &token, json!({}));
        assert_eq!(a.status, 200, "{a:?}");
        (a.body["used"].clone(), a.body["replay"].clone())
    };
    assert_eq!(count("/t/acme/m/probe/items/k1"), (json!(1), json!(false)));
    assert_eq!(count("/t/acme/m/probe/items/k1"), (json!(1), json!(true)));
    assert_eq!(count("/t/acme/m/probe/items/k2"), (json!(2), json!(false)));

    assert_eq!(count("/t/acme/m/probe/scans/s1"), (json!(1), json!(false)));
    assert_eq!(count("/t/acme/m/probe/scans/s1"), (json!(1), json!(true)));

    // A replay is remembered across a restart (the keys are in the tenant's
    // database, not only in memory).
    let mut host = host;
    host.restart();
    let a = host.post("/t/acme/m/probe/items/k1", &token, json!({}));
    assert_eq!(
        (a.body["used"].clone(), a.body["replay"].clone()),
        (json!(2), json!(true)),
        "{a:?}"
    );
}

#[test]
fn modules_of_every_api_version_run_side_by_side() {
    let host = Host::start(&["probe-v0_3", "notes-v1", "legacy-v0_1"]);
    let token = host.tenant("acme");
    for module in ["probe", "notes", "legacy"] {
        host.install_ok("acme", &token, module);
    }
    let a = host.get("/t/acme/m/probe/whoami", &token);
    assert_eq!(a.status, 200, "{a:?}");
    let a = host.request(
        "POST",
        "/t/acme/m/legacy/entries",
        Some(&token),
        Some(b"hello".to_vec()),
    );
    assert!(a.status < 300, "{a:?}");
    let listed = host.get("/t/acme/m/legacy/entries", &token);
    assert_eq!(
        listed.body["entries"][0]["text"],
        Value::from("hello"),
        "{listed:?}"
    );
    let notes = host.get("/t/acme/m/notes/notes", &token);
    assert_eq!(notes.status, 200, "{notes:?}");
    // A 0.2.0 module sees the same caller as the 0.2.0 API describes it.
    let who = host.get("/t/acme/m/notes/whoami", &token);
    assert_eq!(who.status, 200, "{who:?}");
    assert_eq!(
        who.body["context"]["caller"]["kind"], "tenant-token",
        "{who:?}"
    );
}
