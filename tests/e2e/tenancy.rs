//! Tenants, tokens and data isolation.

use serde_json::json;

use crate::support::Host;

fn add_member(host: &Host, tenant: &str, token: &str, number: &str, name: &str) {
    let a = host.post(
        &format!("/t/{tenant}/m/membership/members"),
        token,
        json!({"number": number, "name": name, "email": format!("{}@example.org", number.to_lowercase())}),
    );
    assert_eq!(a.status, 201, "add member: {a:?}");
}

fn member_numbers(host: &Host, tenant: &str, token: &str) -> Vec<String> {
    let a = host.get(&format!("/t/{tenant}/m/membership/members"), token);
    assert_eq!(a.status, 200, "{a:?}");
    a.body["members"]
        .as_array()
        .expect("members array")
        .iter()
        .map(|m| m["number"].as_str().expect("number").to_owned())
        .collect()
}

#[test]
fn two_tenants_cannot_see_each_others_members() {
    let host = Host::start(&["membership"]);
    let acme = host.tenant("acme");
    let beta = host.tenant("beta");
    host.install_ok("acme", &acme, "membership");
    host.install_ok("beta", &beta, "membership");
    add_member(&host, "acme", &acme, "A-1", "Asha");
    add_member(&host, "beta", &beta, "B-1", "Bikash");

    assert!(member_numbers(&host, "acme", &acme).contains(&"A-1".to_owned()));
    assert!(!member_numbers(&host, "acme", &acme).contains(&"B-1".to_owned()));
    assert!(!member_numbers(&host, "beta", &beta).contains(&"A-1".to_owned()));

    // Each tenant's data is in its own database file.
    let acme_db = host.tenant_db("acme");
    let numbers: Vec<String> = acme_db
        .prepare("SELECT number FROM membership__members")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(numbers.contains(&"A-1".to_owned()) && !numbers.contains(&"B-1".to_owned()));
}

#[test]
fn another_tenants_token_gets_404_indistinguishable_from_no_tenant() {
    let host = Host::start(&["membership"]);
    let acme = host.tenant("acme");
    let beta = host.tenant("beta");
    host.install_ok("acme", &acme, "membership");
    add_member(&host, "acme", &acme, "A-1", "Asha");

    let foreign = host.get("/t/acme/m/membership/members", &beta);
    let missing = host.get("/t/nobody/m/membership/members", &beta);
    assert_eq!(foreign.status, 404);
    assert_eq!(missing.status, 404);
    assert_eq!(foreign.body["type"], missing.body["type"]);
    assert!(!foreign.bytes.windows(3).any(|w| w == b"A-1"));
    for path in [
        "/v1/tenants/acme",
        "/v1/tenants/acme/modules",
        "/v1/tenants/acme/audit",
    ] {
        assert_eq!(host.get(path, &beta).status, 404, "{path}");
    }
    let a = host.install("acme", &beta, "membership");
    assert_eq!(a.status, 404, "{a:?}");
    assert_eq!(
        host.delete("/v1/tenants/acme/modules/membership", &beta)
            .status,
        404
    );
    // Still installed and intact for its owner.
    assert_eq!(member_numbers(&host, "acme", &acme), vec!["A-1".to_owned()]);
}

#[test]
fn requests_without_a_valid_token_are_refused() {
    let host = Host::start(&["membership"]);
    let acme = host.tenant_with("acme", "membership");

    let none = host.request("GET", "/t/acme/m/membership/members", None, None);
    assert_eq!(none.status, 401);
    assert_eq!(none.content_type, "application/problem+json");
    assert_eq!(none.body["type"], "https://souk.dev/problems/unauthorized");
    assert_eq!(
        host.get("/t/acme/m/membership/members", "souk_tk_made-up")
            .status,
        401
    );
    assert_eq!(
        host.get("/t/acme/m/membership/members", "souk_op_made-up")
            .status,
        401
    );
    assert_eq!(host.request("GET", "/v1/tenants", None, None).status, 401);

    // Tenant tokens do not reach operator endpoints.
    let a = host.get("/v1/tenants", &acme);
    assert_eq!(a.status, 403, "{a:?}");
    let a = host.post("/v1/tenants", &acme, json!({"slug": "evil"}));
    assert_eq!(a.status, 403, "{a:?}");

    // A revoked token stops working at once.
    let tokens = host.get("/v1/tenants/acme/tokens", &host.operator);
    let id = tokens.body[0]["id"].as_str().unwrap().to_owned();
    assert!(tokens.body[0].get("token").is_none() && tokens.body[0].get("token_hash").is_none());
    assert_eq!(host.get("/t/acme/m/membership/members", &acme).status, 200);
    let a = host.delete(&format!("/v1/tenants/acme/tokens/{id}"), &host.operator);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(host.get("/t/acme/m/membership/members", &acme).status, 401);
}

#[test]
fn operator_token_file_is_private_and_tokens_are_stored_hashed() {
    use std::os::unix::fs::PermissionsExt;
    let host = Host::start(&[]);
    let token = host.tenant("acme");
    let mode = std::fs::metadata(host.data_dir().join("operator-token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let control = std::fs::read(host.data_dir().join("control.sqlite")).unwrap();
    let wal = std::fs::read(host.data_dir().join("control.sqlite-wal")).unwrap_or_default();
    for bytes in [control, wal] {
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "token stored in clear"
        );
    }
}

#[test]
fn malformed_api_input_gets_a_4xx_problem_never_a_500() {
    let host = Host::start(&["membership"]);
    let op = host.operator.clone();
    let cases: Vec<(&str, &str, Option<&[u8]>)> = vec![
        ("POST", "/v1/tenants", Some(b"{not json")),
        ("POST", "/v1/tenants", Some(b"")),
        ("POST", "/v1/tenants", Some(b"{\"slug\": 5}")),
        ("POST", "/v1/tenants", Some(b"{\"slug\": \"Bad Slug!\"}")),
        (
            "POST",
            "/v1/tenants",
            Some(b"{\"slug\": \"ok\", \"surprise\": 1}"),
        ),
        (
            "POST",
            "/v1/tenants/nobody/modules",
            Some(b"{\"module\": \"membership\"}"),
        ),
        ("GET", "/v1/nothing-here", None),
    ];
    for (method, path, body) in cases {
        let a = host.request(method, path, Some(&op), body.map(<[u8]>::to_vec));
        assert!((400..500).contains(&a.status), "{method} {path}: {a:?}");
        assert_eq!(
            a.content_type, "application/problem+json",
            "{method} {path}"
        );
        assert!(!a.detail().is_empty(), "{method} {path}: {a:?}");
    }
    let a = host.post("/v1/tenants", &op, json!({"slug": "dup"}));
    assert_eq!(a.status, 201);
    let a = host.post("/v1/tenants", &op, json!({"slug": "dup"}));
    assert_eq!(a.status, 409, "{a:?}");

    // Oversized bodies are refused with 413 before reaching a module.
    let token = host.tenant_with("acme", "membership");
    let big = vec![b'x'; 2 * 1024 * 1024];
    let a = host.request(
        "POST",
        "/t/acme/m/membership/members",
        Some(&token),
        Some(big),
    );
    assert_eq!(a.status, 413, "{a:?}");
}

#[test]
fn modules_receive_the_callers_identity_never_the_token() {
    let host = Host::start(&["notes-v1"]);
    let token = host.tenant_with("acme", "notes");
    let a = host.get("/t/acme/m/notes/whoami", &token);
    assert_eq!(a.status, 200, "{a:?}");
    let text = String::from_utf8_lossy(&a.bytes).into_owned();
    assert!(!text.contains(&token), "the module saw the token: {text}");
    assert!(
        !text.to_ascii_lowercase().contains("authorization"),
        "{text}"
    );
    assert!(
        text.contains("tenant-token") || text.contains("tenant_token"),
        "{text}"
    );
    assert!(text.contains("tok_"), "caller id missing: {text}");
    assert!(text.contains("1.0.0"), "module version missing: {text}");
}

#[test]
fn the_cli_and_the_api_share_state() {
    let host = Host::start(&["membership"]);
    let (ok, out, err) = host.cli(&["tenant", "create", "cli-made", "--name", "CLI Made"]);
    assert!(ok, "{out}{err}");
    let (ok, token, err) = host.cli(&["tenant", "token", "create", "cli-made", "--name", "ops"]);
    assert!(ok, "{err}");
    let token = token.trim().to_owned();
    let (ok, out, err) = host.cli(&["module", "install", "cli-made", "membership"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("membership 1.2.0"), "{out}");
    let a = host.get("/v1/tenants/cli-made/modules", &token);
    assert_eq!(a.status, 200);
    assert_eq!(a.body[0]["module"], "membership");
    add_member(&host, "cli-made", &token, "C-1", "Chandra");
    let (ok, out, _) = host.cli(&["--json", "module", "installed", "cli-made"]);
    assert!(ok && out.contains("\"membership\""), "{out}");
    let (ok, _, err) = host.cli(&["tenant", "create", "cli-made"]);
    assert!(!ok && err.contains("already exists"), "{err}");
}

/// The server keeps tokens, tenants and installations in memory; a change
/// committed by another process sharing the data directory (the CLI) must
/// still count from the very next request.
#[test]
fn changes_made_by_another_process_count_at_the_next_request() {
    let host = Host::start(&["membership"]);
    let acme = host.tenant_with("acme", "membership");
    let beta = host.tenant_with("beta", "membership");
    // Warm every cache the request path has.
    for _ in 0..2 {
        assert_eq!(host.get("/t/acme/m/membership/members", &acme).status, 200);
        assert_eq!(host.get("/t/beta/m/membership/members", &beta).status, 200);
    }

    // A token revoked by the CLI.
    let tokens = host.get("/v1/tenants/acme/tokens", &host.operator);
    let id = tokens.body[0]["id"].as_str().unwrap().to_owned();
    let (ok, stdout, stderr) = host.cli(&["tenant", "token", "revoke", "acme", &id]);
    assert!(ok, "{stdout}{stderr}");
    let a = host.get("/t/acme/m/membership/members", &acme);
    assert_eq!(a.status, 401, "{a:?}");

    // A module uninstalled by the CLI.
    let (ok, stdout, stderr) = host.cli(&["module", "uninstall", "beta", "membership"]);
    assert!(ok, "{stdout}{stderr}");
    let a = host.get("/t/beta/m/membership/members", &beta);
    assert_eq!(a.status, 404, "{a:?}");

    // A token created by the CLI works at once.
    let (ok, stdout, stderr) = host.cli(&["tenant", "token", "create", "acme", "--name", "cli"]);
    assert!(ok, "{stdout}{stderr}");
    let fresh = stdout
        .split_whitespace()
        .find(|w| w.starts_with("souk_tk_"))
        .expect("the CLI prints the new token")
        .to_owned();
    assert_eq!(host.get("/t/acme/m/membership/members", &fresh).status, 200);
}
