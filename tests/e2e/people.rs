//! People: users, invitations, sign-in, sessions (cookie and CSRF), route
//! access levels and API keys, through the real binary and HTTP.
//!
//! `public` and `member` routes and the API-key feature gate are tested
//! with `tests/modules/people-probe` (API 0.3.0); the rest runs against the
//! 0.2.0 `notes` module, all of whose routes are `admin`, so today's
//! behaviour of admin routes is held too.

use std::time::Instant;

use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::{Value, json};

use crate::support::Host;

pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// How a request authenticates.
#[derive(Clone, Copy)]
pub(crate) enum Cred<'a> {
    Nobody,
    Bearer(&'a str),
    /// The session cookie, with the CSRF header when given.
    Cookie(&'a str, Option<&'a str>),
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
    pub(crate) text: String,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text)
    }
}

pub(crate) fn call(
    host: &Host,
    method: &str,
    path: &str,
    cred: Cred<'_>,
    body: Option<Value>,
) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = host
        .client
        .request(method, format!("{}{}", host.base, path));
    match cred {
        Cred::Nobody => {}
        Cred::Bearer(token) => req = req.bearer_auth(token),
        Cred::Cookie(session, csrf) => {
            req = req.header("cookie", format!("theme=dark; souk_session={session}"));
            if let Some(csrf) = csrf {
                req = req.header("x-csrf-token", csrf);
            }
        }
    }
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let res = req.send().expect("request sent");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

/// Creates a user as `admin`; answers (user id, invitation token).
fn create_user(
    host: &Host,
    tenant: &str,
    admin: &str,
    email: &str,
    role: &str,
) -> (String, String) {
    let r = call(
        host,
        "POST",
        &format!("/v1/tenants/{tenant}/users"),
        Cred::Bearer(admin),
        Some(
            json!({"email": email, "display_name": format!("{role} {email}"), "role": role, "member_number": "M-42"}),
        ),
    );
    assert_eq!(r.status, 201, "create user: {r:?}");
    let invitation = &r.body["invitation"];
    assert!(
        invitation["link"]
            .as_str()
            .unwrap()
            .ends_with(&format!("#token={}", invitation["token"].as_str().unwrap())),
        "{r:?}"
    );
    (
        r.body["user"]["id"].as_str().unwrap().to_owned(),
        invitation["token"].as_str().unwrap().to_owned(),
    )
}

fn accept(host: &Host, token: &str, password: &str) -> Reply {
    call(
        host,
        "POST",
        "/v1/invitations/accept",
        Cred::Nobody,
        Some(json!({"token": token, "password": password})),
    )
}

fn sign_in(host: &Host, tenant: &str, email: &str, password: &str) -> Reply {
    call(
        host,
        "POST",
        &format!("/v1/tenants/{tenant}/sessions"),
        Cred::Nobody,
        Some(json!({"email": email, "password": password})),
    )
}

/// A signed-in user: (user id, session token, CSRF token).
pub(crate) fn person(
    host: &Host,
    tenant: &str,
    admin: &str,
    email: &str,
    role: &str,
) -> (String, String, String) {
    let (id, invitation) = create_user(host, tenant, admin, email, role);
    let r = accept(host, &invitation, PASSWORD);
    assert_eq!(r.status, 200, "accept: {r:?}");
    assert_eq!(r.body["status"], "active");
    let r = sign_in(host, tenant, email, PASSWORD);
    assert_eq!(r.status, 201, "sign in: {r:?}");
    (
        id,
        r.body["token"].as_str().unwrap().to_owned(),
        r.body["csrf_token"].as_str().unwrap().to_owned(),
    )
}

fn advance(host: &Host, seconds: i64) {
    let a = host.post(
        "/v1/clock",
        &host.operator,
        json!({"advance_seconds": seconds}),
    );
    assert_eq!(a.status, 200, "move clock: {a:?}");
}

#[test]
fn a_member_signs_in_and_is_kept_off_admin_routes_and_the_tenant_api() {
    let host = Host::start(&["notes-v1"]);
    let admin = host.tenant_with("acme", "notes");
    let (id, session, _) = person(&host, "acme", &admin, "Mia@Example.org", "member");

    // Signed in: the cookie is HttpOnly, SameSite=Lax, Path=/, not Secure
    // on the loopback default; the CSRF cookie is readable by scripts.
    let r = sign_in(&host, "acme", "mia@example.ORG", PASSWORD);
    assert_eq!(r.status, 201, "{r:?}");
    let cookies: Vec<&str> = r
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let token = r.body["token"].as_str().unwrap();
    assert!(token.starts_with("souk_ss_"));
    let session_cookie = cookies
        .iter()
        .find(|c| c.starts_with("souk_session="))
        .expect("session cookie");
    assert!(
        session_cookie.starts_with(&format!("souk_session={token};")),
        "{session_cookie}"
    );
    for part in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session_cookie.contains(part), "{session_cookie}");
    }
    assert!(!session_cookie.contains("Secure"), "{session_cookie}");
    let csrf_cookie = cookies
        .iter()
        .find(|c| c.starts_with("souk_csrf="))
        .unwrap();
    assert!(!csrf_cookie.contains("HttpOnly"), "{csrf_cookie}");
    assert_eq!(r.body["user"]["id"], id.as_str());
    assert_eq!(r.body["user"]["role"], "member");

    // Who am I.
    let r = call(
        &host,
        "GET",
        "/v1/tenants/acme/sessions/current",
        Cred::Bearer(&session),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["role"], "member");
    assert_eq!(r.body["member_number"], "M-42");
    // Every route of a 0.2.0 module is an admin route: 403 for a member.
    let r = call(
        &host,
        "GET",
        "/t/acme/m/notes/whoami",
        Cred::Bearer(&session),
        None,
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.body["type"], "https://souk.dev/problems/forbidden");
    // The tenant's API is for administrators: 403.
    for path in [
        "/v1/tenants/acme/users",
        "/v1/tenants/acme/modules",
        "/v1/modules",
    ] {
        let r = call(&host, "GET", path, Cred::Bearer(&session), None);
        assert_eq!(r.status, 403, "{path}: {r:?}");
    }
    // Their own sessions they may see; another user's not.
    let r = call(
        &host,
        "GET",
        &format!("/v1/tenants/acme/users/{id}/sessions"),
        Cred::Bearer(&session),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    let (other, _) = create_user(&host, "acme", &admin, "ola@example.org", "member");
    let r = call(
        &host,
        "GET",
        &format!("/v1/tenants/acme/users/{other}/sessions"),
        Cred::Bearer(&session),
        None,
    );
    assert_eq!(r.status, 403, "{r:?}");
}

#[test]
fn an_admin_user_uses_admin_routes_and_the_tenant_api_with_csrf_on_cookie_writes() {
    let host = Host::start(&["notes-v1"]);
    let admin = host.tenant_with("acme", "notes");
    let (id, session, csrf) = person(&host, "acme", &admin, "ann@example.org", "admin");

    // An admin route, as a bearer: the module is told who (the nearest
    // older kind for a 0.2.0 module) and gets no credential.
    let r = call(
        &host,
        "GET",
        "/t/acme/m/notes/whoami",
        Cred::Bearer(&session),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["context"]["caller"]["id"], id.as_str());
    assert_eq!(r.body["context"]["caller"]["name"], "admin ann@example.org");
    assert_eq!(r.body["context"]["caller"]["kind"], "tenant-token");
    // By cookie (with a CSRF header too): neither reaches the module.
    let r = call(
        &host,
        "GET",
        "/t/acme/m/notes/whoami",
        Cred::Cookie(&session, Some(&csrf)),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let headers = r.body["headers"].to_string().to_lowercase();
    for private in ["cookie", "authorization", "x-csrf-token", &session, &csrf] {
        assert!(
            !headers.contains(&private.to_lowercase()),
            "{private} reached the module: {headers}"
        );
    }

    // A cookie-signed write needs the CSRF token; a bearer does not.
    let note = json!({"body": "hello"});
    let r = call(
        &host,
        "POST",
        "/t/acme/m/notes/notes",
        Cred::Cookie(&session, None),
        Some(note.clone()),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(
        r.body["detail"].as_str().unwrap().contains("X-CSRF-Token"),
        "{r:?}"
    );
    let r = call(
        &host,
        "POST",
        "/t/acme/m/notes/notes",
        Cred::Cookie(&session, Some("forged")),
        Some(note.clone()),
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = call(
        &host,
        "POST",
        "/t/acme/m/notes/notes",
        Cred::Cookie(&session, Some(&csrf)),
        Some(note.clone()),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let r = call(
        &host,
        "POST",
        "/t/acme/m/notes/notes",
        Cred::Bearer(&session),
        Some(note),
    );
    assert_eq!(r.status, 201, "{r:?}");
    // The same on /v1.
    let new = json!({"email": "bo@example.org"});
    let r = call(
        &host,
        "POST",
        "/v1/tenants/acme/users",
        Cred::Cookie(&session, None),
        Some(new.clone()),
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = call(
        &host,
        "POST",
        "/v1/tenants/acme/users",
        Cred::Cookie(&session, Some(&csrf)),
        Some(new),
    );
    assert_eq!(r.status, 201, "{r:?}");
    // Reads by cookie need no CSRF token.
    let r = call(
        &host,
        "GET",
        "/v1/tenants/acme/users?limit=2",
        Cred::Cookie(&session, None),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["users"].as_array().unwrap().len(), 2);
    let next = r.body["next"].as_str().expect("a next page").to_owned();
    let r = call(
        &host,
        "GET",
        &format!("/v1/tenants/acme/users?after={next}"),
        Cred::Cookie(&session, None),
        None,
    );
    assert_eq!(r.body["users"].as_array().unwrap().len(), 0, "{r:?}");
    // Operator-only endpoints stay the operator's.
    let r = call(&host, "GET", "/v1/tenants", Cred::Bearer(&session), None);
    assert_eq!(r.status, 403, "{r:?}");

    // An admin demoted to member loses admin routes at the next request.
    let r = call(
        &host,
        "PATCH",
        &format!("/v1/tenants/acme/users/{id}"),
        Cred::Bearer(&admin),
        Some(json!({"role": "member"})),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = call(
        &host,
        "GET",
        "/t/acme/m/notes/whoami",
        Cred::Bearer(&session),
        None,
    );
    assert_eq!(r.status, 403, "{r:?}");
    // Disabled: every session ends.
    let r = call(
        &host,
        "PATCH",
        &format!("/v1/tenants/acme/users/{id}"),
        Cred::Bearer(&admin),
        Some(json!({"status": "disabled"})),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "disabled");
    let r = call(
        &host,
        "GET",
        "/v1/tenants/acme/sessions/current",
        Cred::Bearer(&session),
        None,
    );
    assert_eq!(r.status, 401, "{r:?}");
    let r = sign_in(&host, "acme", "ann@example.org", PASSWORD);
    assert_eq!(r.status, 401, "a disabled user cannot sign in: {r:?}");
}

#[test]
fn another_tenants_session_is_answered_as_no_such_tenant() {
    let host = Host::start(&["notes-v1"]);
    let acme = host.tenant_with("acme", "notes");
    host.tenant_with("globex", "notes");
    let (_, session, csrf) = person(&host, "acme", &acme, "ann@example.org", "admin");
    let nowhere = call(
        &host,
        "GET",
        "/t/nowhere/m/notes/whoami",
        Cred::Bearer(&session),
        None,
    );
    assert_eq!(nowhere.status, 404, "{nowhere:?}");
    for (method, path) in [
        ("GET", "/t/globex/m/notes/whoami"),
        ("GET", "/t/globex/m/notes/no-such-route"),
        ("GET", "/t/globex/m/not-installed/x"),
        ("GET", "/v1/tenants/globex"),
        ("GET", "/v1/tenants/globex/users"),
    ] {
        let r = call(&host, method, path, Cred::Bearer(&session), None);
        assert_eq!(r.status, 404, "{path}: {r:?}");
        assert_eq!(
            r.body["detail"].as_str().unwrap(),
            nowhere.body["detail"]
                .as_str()
                .unwrap()
                .replace("nowhere", "globex"),
            "{path}"
        );
        let r = call(
            &host,
            method,
            path,
            Cred::Cookie(&session, Some(&csrf)),
            None,
        );
        assert_eq!(r.status, 404, "{path}: {r:?}");
    }
    // Without any credential a module route says only that one is needed,
    // whether or not the tenant, module or route exists.
    let unknown = call(
        &host,
        "GET",
        "/t/nowhere/m/notes/whoami",
        Cred::Nobody,
        None,
    );
    assert_eq!(unknown.status, 401, "{unknown:?}");
    for path in [
        "/t/globex/m/notes/whoami",
        "/t/globex/m/notes/none",
        "/t/globex/m/nope/x",
    ] {
        let r = call(&host, "GET", path, Cred::Nobody, None);
        assert_eq!((r.status, &r.body), (401, &unknown.body), "{path}");
    }
}

#[test]
fn sessions_expire_when_idle_and_at_their_age_and_can_be_revoked() {
    let host = Host::start_with(
        &["notes-v1"],
        &[
            "--manual-clock",
            "2026-01-01T00:00:00Z",
            "--session-idle-secs",
            "3600",
            "--session-max-secs",
            "7200",
        ],
    );
    let admin = host.tenant_with("acme", "notes");
    let (id, session, _) = person(&host, "acme", &admin, "ann@example.org", "admin");
    let works = |token: &str| {
        call(
            &host,
            "GET",
            "/t/acme/m/notes/whoami",
            Cred::Bearer(token),
            None,
        )
        .status
    };

    // Idle: used every 50 minutes it lives on; 60 unused minutes end it.
    advance(&host, 3000);
    assert_eq!(works(&session), 200);
    advance(&host, 3000);
    assert_eq!(works(&session), 200);
    advance(&host, 3600);
    assert_eq!(works(&session), 401, "idle past an hour");

    // Absolute: however busy, two hours end it.
    let r = sign_in(&host, "acme", "ann@example.org", PASSWORD);
    let busy = r.body["token"].as_str().unwrap().to_owned();
    for _ in 0..4 {
        advance(&host, 1790);
        assert_eq!(works(&busy), 200);
    }
    advance(&host, 100);
    assert_eq!(works(&busy), 401, "past two hours");

    // Revocation: listed, revoked by an admin, signed out by the user.
    let one = sign_in(&host, "acme", "ann@example.org", PASSWORD).body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let two = sign_in(&host, "acme", "ann@example.org", PASSWORD);
    let two_id = two.body["session"]["id"].as_str().unwrap().to_owned();
    let two = two.body["token"].as_str().unwrap().to_owned();
    let r = call(
        &host,
        "GET",
        &format!("/v1/tenants/acme/users/{id}/sessions"),
        Cred::Bearer(&admin),
        None,
    );
    assert_eq!(r.body.as_array().unwrap().len(), 4, "{r:?}");
    assert!(
        !r.text.contains("souk_ss_"),
        "no secret in the listing: {r:?}"
    );
    let r = call(
        &host,
        "DELETE",
        &format!("/v1/tenants/acme/users/{id}/sessions/{two_id}"),
        Cred::Bearer(&admin),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body["revoked_at"].is_string(), "{r:?}");
    assert_eq!(works(&two), 401);
    assert_eq!(works(&one), 200);
    let r = call(
        &host,
        "DELETE",
        "/v1/tenants/acme/sessions/current",
        Cred::Bearer(&one),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let cleared: Vec<&str> = r
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("souk_session=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    assert_eq!(works(&one), 401);
    let audit = host.get("/v1/tenants/acme/audit", &admin);
    let actions: Vec<&str> = audit
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "user_create",
        "invitation_accept",
        "login",
        "session_revoke",
        "logout",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
}

fn min_millis(mut f: impl FnMut() -> Reply, expect: u16) -> (u128, Reply) {
    let mut best = u128::MAX;
    let mut last = None;
    for _ in 0..3 {
        let started = Instant::now();
        let r = f();
        best = best.min(started.elapsed().as_millis());
        assert_eq!(r.status, expect, "{r:?}");
        last = Some(r);
    }
    (best, last.unwrap())
}

#[test]
fn wrong_passwords_and_unknown_addresses_answer_alike_and_are_throttled() {
    let host = Host::start_with(
        &["notes-v1"],
        &[
            "--manual-clock",
            "2026-01-01T00:00:00Z",
            "--login-failures-per-account",
            "3",
            "--login-failures-per-address",
            "10",
            "--login-window-secs",
            "600",
        ],
    );
    let admin = host.tenant_with("acme", "notes");
    person(&host, "acme", &admin, "ann@example.org", "member");
    person(&host, "acme", &admin, "bob@example.org", "member");

    // Alike in words and (roughly) in time: the unknown address is checked
    // against a dummy hash, so it is not much faster than a wrong password.
    let (wrong_ms, wrong) = min_millis(
        || sign_in(&host, "acme", "ann@example.org", "not the password"),
        401,
    );
    let (unknown_ms, unknown) = min_millis(
        || sign_in(&host, "acme", "nobody@example.org", PASSWORD),
        401,
    );
    let (_, no_tenant) = min_millis(
        || sign_in(&host, "nowhere", "ann@example.org", PASSWORD),
        401,
    );
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.body, no_tenant.body);
    assert!(
        unknown_ms * 4 >= wrong_ms,
        "unknown {unknown_ms} ms, wrong {wrong_ms} ms"
    );

    // Ann's account had 3 failures: refused even with the right password.
    let r = sign_in(&host, "acme", "ANN@example.org", PASSWORD);
    assert_eq!(r.status, 429, "{r:?}");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=600).contains(&retry), "{retry}");
    // Bob's account is fine: this address has 9 failures (unknown
    // addresses and tenants count for it too), one short of its limit.
    assert_eq!(
        sign_in(&host, "acme", "bob@example.org", PASSWORD).status,
        201
    );
    // One more from this address, and it is refused for every account.
    assert_eq!(
        sign_in(&host, "acme", "bob@example.org", "wrong wrong wrong").status,
        401
    );
    let r = sign_in(&host, "acme", "bob@example.org", PASSWORD);
    assert_eq!(r.status, 429, "the address is over its limit: {r:?}");
    // The window passes: both work again.
    advance(&host, 601);
    assert_eq!(
        sign_in(&host, "acme", "ann@example.org", PASSWORD).status,
        201
    );

    // Per account, not per address: three failures for bob lock bob only.
    for _ in 0..3 {
        assert_eq!(
            sign_in(&host, "acme", "bob@example.org", "wrong wrong wrong").status,
            401
        );
    }
    assert_eq!(
        sign_in(&host, "acme", "bob@example.org", PASSWORD).status,
        429
    );
    assert_eq!(
        sign_in(&host, "acme", "ann@example.org", PASSWORD).status,
        201
    );

    let audit = host.get("/v1/tenants/acme/audit", &admin);
    let failed = audit
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "login_failed")
        .count();
    // Known users' failures only: ann 3, bob 1 + 3.
    assert_eq!(failed, 7, "{:?}", audit.body);
}

#[test]
fn an_invitation_works_once_and_expires() {
    let host = Host::start_with(
        &["notes-v1"],
        &[
            "--manual-clock",
            "2026-01-01T00:00:00Z",
            "--invitation-ttl-hours",
            "48",
        ],
    );
    let admin = host.tenant_with("acme", "notes");
    let (id, token) = create_user(&host, "acme", &admin, "ann@example.org", "member");
    // An invited user cannot sign in yet.
    assert_eq!(
        sign_in(&host, "acme", "ann@example.org", PASSWORD).status,
        401
    );
    // A weak password is refused and leaves the invitation usable.
    let r = accept(&host, &token, "short");
    assert_eq!(r.status, 422, "{r:?}");
    assert!(!r.text.contains("short\""), "{r:?}");
    assert_eq!(accept(&host, &token, PASSWORD).status, 200);
    let again = accept(&host, &token, "another long password");
    assert_eq!(again.status, 404, "{again:?}");
    assert_eq!(accept(&host, "made-up", PASSWORD).body, again.body);
    assert_eq!(
        sign_in(&host, "acme", "ann@example.org", "another long password").status,
        401
    );

    // Expiry: 48 hours.
    let (_, late) = create_user(&host, "acme", &admin, "lee@example.org", "member");
    advance(&host, 48 * 3600);
    let r = accept(&host, &late, PASSWORD);
    assert_eq!(r.body, again.body, "{r:?}");
    // A new invitation replaces it.
    let users = call(
        &host,
        "GET",
        "/v1/tenants/acme/users",
        Cred::Bearer(&admin),
        None,
    );
    let lee = users.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "lee@example.org")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = call(
        &host,
        "POST",
        &format!("/v1/tenants/acme/users/{lee}/invitation"),
        Cred::Bearer(&admin),
        None,
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        accept(&host, r.body["token"].as_str().unwrap(), PASSWORD).status,
        200
    );
    assert_eq!(
        sign_in(&host, "acme", "lee@example.org", PASSWORD).status,
        201
    );

    // Addresses are unique per tenant, without case.
    let r = call(
        &host,
        "POST",
        "/v1/tenants/acme/users",
        Cred::Bearer(&admin),
        Some(json!({"email": "ANN@example.org"})),
    );
    assert_eq!(r.status, 409, "{r:?}");
    let r = call(
        &host,
        "POST",
        "/v1/tenants/acme/users",
        Cred::Bearer(&admin),
        Some(json!({"email": "not an address"})),
    );
    assert_eq!(r.status, 422, "{r:?}");
    let r = call(
        &host,
        "PATCH",
        &format!("/v1/tenants/acme/users/{id}"),
        Cred::Bearer(&admin),
        Some(json!({})),
    );
    assert_eq!(r.status, 422, "nothing to change: {r:?}");
    // Another tenant's user is not this tenant's: 404, and no cursor.
    let globex = host.tenant("globex");
    let r = call(
        &host,
        "GET",
        &format!("/v1/tenants/globex/users/{id}"),
        Cred::Bearer(&globex),
        None,
    );
    assert_eq!(r.status, 404, "{r:?}");
    let r = call(
        &host,
        "GET",
        &format!("/v1/tenants/globex/users?after={id}"),
        Cred::Bearer(&globex),
        None,
    );
    assert_eq!(r.body["users"], json!([]), "{r:?}");
    // Deleted: gone, with its sessions.
    let r = call(
        &host,
        "DELETE",
        &format!("/v1/tenants/acme/users/{id}"),
        Cred::Bearer(&admin),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        call(
            &host,
            "GET",
            &format!("/v1/tenants/acme/users/{id}"),
            Cred::Bearer(&admin),
            None
        )
        .status,
        404
    );
}

#[test]
fn passwords_never_appear_in_any_answer_or_log() {
    // One failure locks an account: the throttled sign-in is logged.
    let host = Host::start_logged(&["notes-v1"], &["--login-failures-per-account", "1"]);
    let admin = host.tenant_with("acme", "notes");
    let secret = "zebra-quokka-secret-91";
    let wrong = "walrus-narwhal-wrong-37";
    let (id, token) = create_user(&host, "acme", &admin, "ann@example.org", "admin");
    let mut answers = vec![
        accept(&host, &token, "tiny-pw"),
        accept(&host, &token, secret),
        sign_in(&host, "acme", "ann@example.org", wrong),
        sign_in(&host, "acme", "nobody@example.org", wrong),
        call(
            &host,
            "POST",
            "/v1/tenants/acme/sessions",
            Cred::Nobody,
            Some(json!({"email": "ann@example.org", "password": secret, "extra": secret})),
        ),
    ];
    let throttled = sign_in(&host, "acme", "ann@example.org", secret);
    assert_eq!(throttled.status, 429, "{throttled:?}");
    answers.push(throttled);
    // A successful sign-in's answer (another account: ann's is locked).
    let (_, bea) = create_user(&host, "acme", &admin, "bea@example.org", "member");
    answers.push(accept(&host, &bea, secret));
    let signed = sign_in(&host, "acme", "bea@example.org", secret);
    assert_eq!(signed.status, 201, "{signed:?}");
    answers.push(signed);
    answers.push(call(
        &host,
        "GET",
        &format!("/v1/tenants/acme/users/{id}"),
        Cred::Bearer(&admin),
        None,
    ));
    answers.push(call(
        &host,
        "GET",
        "/v1/tenants/acme/users",
        Cred::Bearer(&admin),
        None,
    ));
    answers.push(call(
        &host,
        "GET",
        "/v1/tenants/acme/audit",
        Cred::Bearer(&admin),
        None,
    ));
    for answer in &answers {
        for text in [secret, wrong, "tiny-pw", "argon2", "password_hash"] {
            assert!(!answer.text.contains(text), "{text} in {answer:?}");
        }
    }
    let log = host.stop_for_log();
    assert!(
        log.iter()
            .any(|l| l.contains("sign-ins throttled") && l.contains("ann@example.org")),
        "{log:?}"
    );
    for line in log {
        for text in [secret, wrong, "tiny-pw"] {
            assert!(!line.contains(text), "{text} logged: {line}");
        }
    }
}

#[test]
fn users_are_managed_from_the_cli_too() {
    let host = Host::start(&["notes-v1"]);
    host.tenant("acme");
    let (ok, out, err) = host.cli(&[
        "user",
        "create",
        "acme",
        "cli@example.org",
        "--role",
        "admin",
        "--name",
        "Cli User",
    ]);
    assert!(ok, "{out}{err}");
    let link = out
        .lines()
        .find(|l| l.contains("#token="))
        .expect("an invitation link");
    let token = link.rsplit("#token=").next().unwrap().trim();
    assert_eq!(accept(&host, token, PASSWORD).status, 200);
    let (ok, out, err) = host.cli(&["--json", "user", "list", "acme"]);
    assert!(ok, "{out}{err}");
    let page: Value = serde_json::from_str(&out).unwrap();
    let user = &page["users"][0];
    assert_eq!(
        (
            user["email"].as_str(),
            user["status"].as_str(),
            user["role"].as_str()
        ),
        (Some("cli@example.org"), Some("active"), Some("admin"))
    );
    let id = user["id"].as_str().unwrap();
    let session = sign_in(&host, "acme", "cli@example.org", PASSWORD);
    let token = session.body["token"].as_str().unwrap();
    assert_eq!(
        call(
            &host,
            "GET",
            "/v1/tenants/acme/users",
            Cred::Bearer(token),
            None
        )
        .status,
        200
    );
    let (ok, out, err) = host.cli(&["user", "update", "acme", id, "--disable"]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        call(
            &host,
            "GET",
            "/v1/tenants/acme/users",
            Cred::Bearer(token),
            None
        )
        .status,
        401
    );
    let (ok, _, err) = host.cli(&["user", "show", "acme", "usr_0000000000000000"]);
    assert!(!ok);
    assert!(err.contains("no user"), "{err}");
}

/// Records an API key straight in the control plane, as the people
/// service stores one (sha256 of the key), for a module whatever its API:
/// no module built for API 0.3.0 (the only ones that take keys) can run
/// yet, and the credential checks around keys are the host's alone.
fn plant_key(host: &Host, tenant: &str, module: &str, read_only: bool, revoked: bool) -> String {
    use sha2::Digest as _;
    let key = format!(
        "souk_ak_planted{}{}",
        u8::from(read_only),
        u8::from(revoked)
    );
    let hash = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    let db = rusqlite::Connection::open(host.data_dir().join("control.sqlite")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    db.execute(
        "INSERT INTO api_keys (id, tenant_id, module_slug, name, read_only, key_hash, created_at, revoked_at) \
         VALUES (?1, ?2, ?3, 'planted', ?4, ?5, '2026-01-01T00:00:00Z', ?6)",
        rusqlite::params![
            format!("key_{:016x}", rand_id(&key)),
            host.tenant_id(tenant),
            module,
            read_only,
            hash,
            revoked.then_some("2026-01-02T00:00:00Z"),
        ],
    )
    .unwrap();
    key
}

fn rand_id(text: &str) -> u64 {
    text.bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
}

#[test]
fn api_keys_are_module_scoped_read_only_when_asked_and_never_reach_v1() {
    let host = Host::start(&["notes-v1", "cards"]);
    let admin = host.tenant_with("acme", "notes");
    host.install_ok("acme", &admin, "cards");
    // A module without `api_keys` takes no keys: a clear 422.
    let r = call(
        &host,
        "POST",
        "/v1/tenants/acme/api-keys",
        Cred::Bearer(&admin),
        Some(json!({"module": "notes", "name": "crm"})),
    );
    assert_eq!(r.status, 422, "{r:?}");
    assert!(
        r.body["detail"].as_str().unwrap().contains("api_keys"),
        "{r:?}"
    );
    let r = call(
        &host,
        "POST",
        "/v1/tenants/acme/api-keys",
        Cred::Bearer(&admin),
        Some(json!({"module": "absent", "name": "crm"})),
    );
    assert_eq!(r.status, 404, "{r:?}");

    let key = plant_key(&host, "acme", "notes", false, false);
    let read_only = plant_key(&host, "acme", "notes", true, false);
    let revoked = plant_key(&host, "acme", "notes", false, true);
    // Never on /v1.
    for path in ["/v1/tenants/acme", "/v1/tenants/acme/users", "/v1/modules"] {
        let r = call(&host, "GET", path, Cred::Bearer(&key), None);
        assert_eq!(r.status, 401, "{path}: {r:?}");
    }
    // Another module's routes: answered as no credential at all.
    let nobody = call(&host, "GET", "/t/acme/m/cards/cards", Cred::Nobody, None);
    let r = call(
        &host,
        "GET",
        "/t/acme/m/cards/cards",
        Cred::Bearer(&key),
        None,
    );
    assert_eq!((r.status, &r.body), (401, &nobody.body), "{r:?}");
    // A read-only key may not write.
    let r = call(
        &host,
        "POST",
        "/t/acme/m/notes/notes",
        Cred::Bearer(&read_only),
        Some(json!({"body": "x"})),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert!(
        r.body["detail"].as_str().unwrap().contains("read-only"),
        "{r:?}"
    );
    // A revoked key is unknown.
    let r = call(
        &host,
        "GET",
        "/t/acme/m/notes/notes",
        Cred::Bearer(&revoked),
        None,
    );
    assert_eq!((r.status, &r.body), (401, &nobody.body), "{r:?}");
    // Its own module, which no longer declares `api_keys`: refused, 403.
    let r = call(
        &host,
        "GET",
        "/t/acme/m/notes/notes",
        Cred::Bearer(&key),
        None,
    );
    assert_eq!(r.status, 403, "{r:?}");
    // Listed without secrets.
    let r = call(
        &host,
        "GET",
        "/v1/tenants/acme/api-keys",
        Cred::Bearer(&admin),
        None,
    );
    assert_eq!(r.body.as_array().unwrap().len(), 3, "{r:?}");
    assert!(!r.text.contains("souk_ak_"), "{r:?}");
    let id = r.body[0]["id"].as_str().unwrap().to_owned();
    assert!(
        r.body[0]["last_used_at"].is_string(),
        "last use recorded: {r:?}"
    );
    let r = call(
        &host,
        "DELETE",
        &format!("/v1/tenants/acme/api-keys/{id}"),
        Cred::Bearer(&admin),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body["revoked_at"].is_string());
    let r = call(
        &host,
        "GET",
        "/t/acme/m/notes/notes",
        Cred::Bearer(&key),
        None,
    );
    assert_eq!(r.status, 401, "revoked now: {r:?}");
}

// ---- Needs a module built for API 0.3.0 (people-probe) ----

fn probe_host(args: &[&str]) -> (Host, String) {
    let host = Host::start_with(&["people-probe", "notes-v1"], args);
    let admin = host.tenant_with("acme", "people-probe");
    (host, admin)
}

#[test]
fn member_routes_take_members_and_name_them() {
    let (host, admin) = probe_host(&[]);
    let (id, session, csrf) = person(&host, "acme", &admin, "mia@example.org", "member");
    let r = call(
        &host,
        "GET",
        "/t/acme/m/people-probe/member",
        Cred::Bearer(&session),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let caller = &r.body["context"]["caller"];
    assert!(caller.to_string().contains(&id), "{caller}");
    assert!(
        caller.to_string().contains("M-42"),
        "member number: {caller}"
    );
    let r = call(
        &host,
        "POST",
        "/t/acme/m/people-probe/member",
        Cred::Cookie(&session, Some(&csrf)),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = call(
        &host,
        "POST",
        "/t/acme/m/people-probe/member",
        Cred::Cookie(&session, None),
        None,
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = call(
        &host,
        "GET",
        "/t/acme/m/people-probe/admin",
        Cred::Bearer(&session),
        None,
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = call(
        &host,
        "GET",
        "/t/acme/m/people-probe/member",
        Cred::Nobody,
        None,
    );
    assert_eq!(r.status, 401, "{r:?}");
    // Admin credentials reach member routes too.
    let r = call(
        &host,
        "GET",
        "/t/acme/m/people-probe/member",
        Cred::Bearer(&admin),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    // Another tenant's member: no such tenant.
    let globex = host.tenant_with("globex", "people-probe");
    let (_, theirs, _) = person(&host, "globex", &globex, "gus@example.org", "member");
    let r = call(
        &host,
        "GET",
        "/t/acme/m/people-probe/member",
        Cred::Bearer(&theirs),
        None,
    );
    assert_eq!(r.status, 404, "{r:?}");
}

#[test]
fn public_routes_need_no_credential_and_are_rate_limited_per_address() {
    let (host, admin) = probe_host(&[
        "--manual-clock",
        "2026-01-01T00:00:00Z",
        "--public-burst",
        "3",
        "--public-per-minute",
        "6",
    ]);
    for _ in 0..3 {
        let r = call(
            &host,
            "GET",
            "/t/acme/m/people-probe/public",
            Cred::Nobody,
            None,
        );
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            r.body["context"]["caller"]
                .to_string()
                .contains("anonymous"),
            "{r:?}"
        );
    }
    let r = call(
        &host,
        "POST",
        "/t/acme/m/people-probe/public",
        Cred::Nobody,
        None,
    );
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.headers["retry-after"].to_str().unwrap(), "10");
    // A credential still names the caller, and is not limited.
    let (id, session, _) = person(&host, "acme", &admin, "mia@example.org", "member");
    let r = call(
        &host,
        "GET",
        "/t/acme/m/people-probe/public",
        Cred::Bearer(&session),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body["context"]["caller"].to_string().contains(&id),
        "{r:?}"
    );
    // The bucket refills with the clock.
    advance(&host, 10);
    assert_eq!(
        call(
            &host,
            "GET",
            "/t/acme/m/people-probe/public",
            Cred::Nobody,
            None
        )
        .status,
        200
    );
    // Another tenant's session on a public route is nobody.
    let globex = host.tenant_with("globex", "people-probe");
    let (_, theirs, _) = person(&host, "globex", &globex, "gus@example.org", "member");
    advance(&host, 60);
    let r = call(
        &host,
        "GET",
        "/t/acme/m/people-probe/public",
        Cred::Bearer(&theirs),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body["context"]["caller"]
            .to_string()
            .contains("anonymous"),
        "{r:?}"
    );
}

#[test]
fn api_keys_need_the_declared_feature_in_the_plan() {
    let (host, admin) = probe_host(&[]);
    let r = call(
        &host,
        "POST",
        "/v1/tenants/acme/api-keys",
        Cred::Bearer(&admin),
        Some(json!({"module": "people-probe", "name": "crm", "read_only": true})),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let key = r.body["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("souk_ak_"));
    // The free plan lacks `api_access`: the host's 402.
    let r = call(
        &host,
        "GET",
        "/t/acme/m/people-probe/admin",
        Cred::Bearer(&key),
        None,
    );
    assert_eq!(r.status, 402, "{r:?}");
    assert_eq!(r.body["feature"], "api_access", "{r:?}");
    // With a plan that grants it: the module is told it is the key.
    let r = host.post(
        "/v1/tenants/acme/subscriptions/people-probe/grant",
        &host.operator,
        json!({"plan": "business"}),
    );
    assert!(r.status < 300, "{r:?}");
    let r = call(
        &host,
        "GET",
        "/t/acme/m/people-probe/admin",
        Cred::Bearer(&key),
        None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body["context"]["caller"].to_string().contains("crm"),
        "{r:?}"
    );
    let r = call(
        &host,
        "POST",
        "/t/acme/m/people-probe/admin",
        Cred::Bearer(&key),
        None,
    );
    assert_eq!(r.status, 403, "read-only: {r:?}");
    host.install_ok("acme", &admin, "notes");
    let r = call(
        &host,
        "GET",
        "/t/acme/m/notes/notes",
        Cred::Bearer(&key),
        None,
    );
    assert_eq!(r.status, 401, "another module: {r:?}");
}
