//! Membership 1.2.0 through the real binary: members counted against the
//! plan's `max_members` (tests/e2e/plans-card), and a tenant on 1.1.0 (API
//! 0.2.0, members never counted) upgrading in place with its data kept and
//! its existing members counted by the upgrade hook, even above the limit.

use serde_json::{Value, json};

use crate::support::{Host, workspace_root};

/// A host on the Digital Card test plans (small limits) and a manual clock.
pub fn start(modules: &[&str]) -> Host {
    start_with(modules, &[])
}

/// [`start`] with extra `souk` arguments.
pub fn start_with(modules: &[&str], args: &[&str]) -> Host {
    let plans = workspace_root().join("tests/e2e/plans-card");
    let plans = plans.to_str().expect("utf-8 path").to_owned();
    let mut all = vec!["--plans", &plans, "--manual-clock", "2026-03-01T09:00:00Z"];
    all.extend_from_slice(args);
    Host::start_with(modules, &all)
}

fn add_member(host: &Host, token: &str, number: &str) -> crate::support::Answer {
    host.post(
        "/t/acme/m/membership/members",
        token,
        json!({"number": number, "name": format!("Member {number}")}),
    )
}

/// The tenant's `max_members` usage line.
fn members_usage(host: &Host, token: &str) -> Value {
    let a = host.get("/v1/tenants/acme/usage?module=membership", token);
    assert_eq!(a.status, 200, "{a:?}");
    a.body["modules"][0]["usage"]
        .as_array()
        .expect("usage lines")
        .iter()
        .find(|line| line["key"] == "max_members")
        .cloned()
        .unwrap_or_else(|| panic!("no max_members line: {a:?}"))
}

fn install_1_1(host: &Host, token: &str) {
    let a = host.post(
        "/v1/tenants/acme/modules",
        token,
        json!({"module": "membership", "version": "1.1.0"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
}

fn upgrade(host: &Host, token: &str) {
    let a = host.post(
        "/v1/tenants/acme/modules/membership/upgrade",
        token,
        json!({}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["installation"]["version"], "1.2.0");
    assert_eq!(
        a.body["applied_migrations"],
        json!(["0003_member_counting"])
    );
}

#[test]
fn a_fresh_install_counts_members_against_the_plan() {
    let host = start(&["membership"]);
    let token = host.tenant("acme");
    host.install_ok("acme", &token, "membership");
    for n in 1..=3 {
        let a = add_member(&host, &token, &format!("M-{n}"));
        assert_eq!(a.status, 201, "{a:?}");
        if n == 1 {
            // A duplicate number is a 409 and takes no unit.
            let a = add_member(&host, &token, "M-1");
            assert_eq!(a.status, 409, "{a:?}");
            assert_eq!(members_usage(&host, &token)["used"], 1);
        }
    }
    assert_eq!(members_usage(&host, &token)["used"], 3);
    // The route gate refuses the 4th: the module never runs.
    let a = add_member(&host, &token, "M-4");
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(a.body["feature"], "max_members");
    assert_eq!(a.body["reason"], "limit_reached");
    assert_eq!(a.body["upgrade_plan"], "plus");
    // Deleting gives the unit back; a refused create took none.
    assert_eq!(
        host.delete("/t/acme/m/membership/members/M-2", &token)
            .status,
        204
    );
    assert_eq!(members_usage(&host, &token)["used"], 2);
    let a = add_member(&host, &token, "M-4");
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(members_usage(&host, &token)["used"], 3);
}

#[test]
fn an_upgrade_from_1_1_keeps_members_and_notes_and_counts_them() {
    let host = start(&["membership-1.0", "membership-1.1", "membership"]);
    let token = host.tenant("acme");
    install_1_1(&host, &token);
    for n in 1..=2 {
        let a = add_member(&host, &token, &format!("M-{n}"));
        assert_eq!(a.status, 201, "{a:?}");
    }
    // 1.1.0 counts nothing.
    assert_eq!(members_usage(&host, &token)["used"], 0);

    upgrade(&host, &token);
    let a = host.get("/t/acme/m/membership/members", &token);
    assert_eq!(a.status, 200, "{a:?}");
    let numbers: Vec<&str> = a.body["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["number"].as_str().expect("number"))
        .collect();
    assert_eq!(numbers, ["M-1", "M-2"]);
    assert_eq!(a.body["members"][0]["name"], "Member M-1");

    // The upgrade hook counted the two existing members: the usage shows
    // them before any request changed the list.
    assert_eq!(members_usage(&host, &token)["used"], 2);
    let a = add_member(&host, &token, "M-3");
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(members_usage(&host, &token)["used"], 3);
    let a = add_member(&host, &token, "M-4");
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(
        host.get("/t/acme/m/membership/members/M-1", &token).status,
        200
    );
    // Deleting a member counted by the hook gives its unit back.
    assert_eq!(
        host.delete("/t/acme/m/membership/members/M-1", &token)
            .status,
        204
    );
    assert_eq!(members_usage(&host, &token)["used"], 2);
}

#[test]
fn a_tenant_over_its_new_limit_keeps_its_members_and_adds_none_until_they_fit() {
    let host = start(&["membership-1.1", "membership"]);
    let token = host.tenant("acme");
    install_1_1(&host, &token);
    for n in 1..=4 {
        let a = add_member(&host, &token, &format!("M-{n}"));
        assert_eq!(a.status, 201, "{a:?}");
    }
    upgrade(&host, &token);
    // Four members on a plan of three: all kept and counted, none added.
    let usage = members_usage(&host, &token);
    assert_eq!(usage["used"], 4, "{usage}");
    assert_eq!(usage["limit"], 3, "{usage}");
    let a = host.get("/t/acme/m/membership/members", &token);
    assert_eq!(a.body["members"].as_array().map(Vec::len), Some(4), "{a:?}");
    let a = add_member(&host, &token, "M-5");
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(a.body["reason"], "limit_reached");
    assert_eq!(a.body["used"], 4, "{a:?}");
    // Deleting gives units back; once they fit, a member can be added.
    for number in ["M-1", "M-2"] {
        let a = host.delete(&format!("/t/acme/m/membership/members/{number}"), &token);
        assert_eq!(a.status, 204, "{a:?}");
    }
    assert_eq!(members_usage(&host, &token)["used"], 2);
    let a = add_member(&host, &token, "M-5");
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(members_usage(&host, &token)["used"], 3);
}
