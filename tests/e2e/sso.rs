//! Single sign-on through the real binary against the loopback OpenID
//! Connect provider (`oidc_provider.rs`): the round trip, users matched
//! and provisioned, forged ID tokens, replayed and foreign states, open
//! redirects and the plan's feature gate.

use std::collections::HashMap;

use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::oidc_provider::{CLIENT_ID, CLIENT_SECRET, Misbehaviour, Person, Provider};
use crate::support::{Answer, Host};

pub(crate) const START: &str = "2026-03-01T00:00:00Z";
const ME: &str = "/t/acme/m/ssoprobe/me";

pub(crate) fn start_unix() -> i64 {
    time::OffsetDateTime::parse(START, &time::format_description::well_known::Rfc3339)
        .expect("instant")
        .unix_timestamp()
}

pub(crate) fn person(email: &str, verified: bool) -> Person {
    Person {
        sub: format!("sub-{email}"),
        email: email.to_owned(),
        email_verified: verified,
        name: "Alice Example".to_owned(),
    }
}

/// A browser: follows no redirect, so each hop can be looked at.
fn browser() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// One hop's answer.
#[derive(Debug)]
pub(crate) struct Hop {
    pub(crate) status: u16,
    pub(crate) location: Option<String>,
    pub(crate) cookies: HashMap<String, String>,
    pub(crate) body: Value,
}

fn hop(client: &Client, url: &str, cookie: Option<&str>) -> Hop {
    let mut req = client.get(url);
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    let res = req.send().expect("request");
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let cookies = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let body = serde_json::from_slice(&res.bytes().expect("body")).unwrap_or(Value::Null);
    Hop {
        status,
        location,
        cookies,
        body,
    }
}

/// A sign-in up to the provider's redirect back: the callback URL and the
/// `souk_sso` cookie the host set.
pub(crate) struct Begun {
    callback: String,
    binding: String,
}

pub(crate) fn begin(host: &Host, tenant: &str, return_to: &str) -> Begun {
    let client = browser();
    let start = format!(
        "{}/v1/tenants/{tenant}/sso/start?return_to={}",
        host.base,
        url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>()
    );
    let started = hop(&client, &start, None);
    assert_eq!(started.status, 302, "start: {started:?}");
    let binding = started
        .cookies
        .get("souk_sso")
        .expect("souk_sso cookie")
        .clone();
    let authorize = started.location.expect("location");
    let query: HashMap<String, String> = url::Url::parse(&authorize)
        .expect("authorize url")
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["client_id"], CLIENT_ID);
    let back = hop(&client, &authorize, None);
    assert_eq!(back.status, 303, "provider: {back:?}");
    Begun {
        callback: back.location.expect("callback"),
        binding,
    }
}

pub(crate) fn finish(begun: &Begun) -> Hop {
    hop(
        &browser(),
        &begun.callback,
        Some(&format!("souk_sso={}", begun.binding)),
    )
}

fn round_trip(host: &Host, tenant: &str) -> Hop {
    finish(&begin(host, tenant, ME))
}

pub(crate) fn configure(host: &Host, tenant: &str, token: &str, body: Value) -> Answer {
    host.request(
        "PUT",
        &format!("/v1/tenants/{tenant}/sso"),
        Some(token),
        Some(body.to_string().into_bytes()),
    )
}

pub(crate) fn settings(provider: &Provider) -> Value {
    json!({
        "issuer": provider.issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    })
}

fn grant(host: &Host, tenant: &str, plan: &str) {
    let a = host.post(
        &format!("/v1/tenants/{tenant}/subscriptions/ssoprobe/grant"),
        &host.operator,
        json!({"plan": plan}),
    );
    assert_eq!(a.status, 200, "grant {plan}: {a:?}");
}

/// A host on the test plans that allows the loopback provider, and the
/// provider.
fn start(email: &str) -> (Host, Provider) {
    start_with(email, &[])
}

fn start_with(email: &str, args: &[&str]) -> (Host, Provider) {
    // The manual clock never refills the per-address bucket of anonymous
    // requests that sign-ins draw from: make it deep enough for a test.
    let mut all = vec!["--sso-allow-insecure", "--public-burst", "1000"];
    all.extend_from_slice(args);
    let host = Host::start_on_plans(&["sso-probe"], START, &all);
    let provider = Provider::start(start_unix(), person(email, true));
    (host, provider)
}

/// Tenant `slug` with the sso probe installed, on the plan granting
/// `sso`, with the provider configured; answers its token.
fn tenant_with_sso(host: &Host, provider: &Provider, slug: &str) -> String {
    let token = host.tenant_with(slug, "ssoprobe");
    grant(host, slug, "team");
    let a = configure(host, slug, &token, settings(provider));
    assert_eq!(a.status, 200, "configure: {a:?}");
    token
}

pub(crate) fn with_session(
    host: &Host,
    method: &str,
    path: &str,
    session: &Hop,
    csrf: bool,
) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = host
        .client
        .request(method, format!("{}{path}", host.base))
        .header(
            "cookie",
            format!(
                "souk_session={}; souk_csrf={}",
                session.cookies["souk_session"], session.cookies["souk_csrf"]
            ),
        );
    if csrf {
        req = req.header("x-csrf-token", &session.cookies["souk_csrf"]);
    }
    let res = req.send().expect("request");
    let status = res.status().as_u16();
    let bytes = res.bytes().expect("body").to_vec();
    Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        content_type: String::new(),
        bytes,
    }
}

fn audit_actions(host: &Host, tenant: &str, token: &str) -> Vec<String> {
    let a = host.get(&format!("/v1/tenants/{tenant}/audit"), token);
    assert_eq!(a.status, 200, "{a:?}");
    let events = a
        .body
        .as_array()
        .cloned()
        .unwrap_or_else(|| a.body["events"].as_array().cloned().unwrap_or_default());
    events
        .iter()
        .filter_map(|e| e["action"].as_str().map(str::to_owned))
        .collect()
}

fn users(host: &Host, tenant: &str, token: &str) -> Vec<Value> {
    let a = host.get(&format!("/v1/tenants/{tenant}/users"), token);
    assert_eq!(a.status, 200, "{a:?}");
    a.body["users"].as_array().cloned().unwrap_or_default()
}

#[test]
fn sso_round_trip_signs_in_a_new_member_who_reaches_a_member_route() {
    let (host, provider) = start("alice@example.com");
    let token = tenant_with_sso(&host, &provider, "acme");

    // The settings never show the secret.
    let shown = host.get("/v1/tenants/acme/sso", &token);
    assert_eq!(shown.status, 200, "{shown:?}");
    assert_eq!(shown.body["client_secret_set"], true);
    assert_eq!(
        shown.body["issuer"].as_str(),
        Some(provider.issuer.as_str())
    );
    assert!(
        !String::from_utf8_lossy(&shown.bytes).contains(CLIENT_SECRET),
        "the secret was shown: {shown:?}"
    );

    // Nobody is signed in: the member route answers 401.
    let a = host.request("GET", ME, None, None);
    assert_eq!(a.status, 401, "{a:?}");

    let begun = begin(&host, "acme", ME);
    let done = finish(&begun);
    assert_eq!(done.status, 303, "{done:?}");
    assert_eq!(done.location.as_deref(), Some(ME));
    assert!(done.cookies.contains_key("souk_session"), "{done:?}");
    assert!(done.cookies.contains_key("souk_csrf"), "{done:?}");
    assert_eq!(done.cookies.get("souk_sso").map(String::as_str), Some(""));

    // The provider got the PKCE verifier, the secret only in the header.
    let requests = provider.token_requests();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].contains_key("code_verifier"));
    assert!(!requests[0].contains_key("client_secret"));

    // The session reaches the member route as the new member.
    let me = with_session(&host, "GET", ME, &done, false);
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.body["caller"]["kind"], "user");
    assert_eq!(me.body["caller"]["role"], "member");
    assert_eq!(me.body["caller"]["name"], "Alice Example");
    let listed = users(&host, "acme", &token);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["email"], "alice@example.com");
    assert_eq!(listed[0]["status"], "active");
    assert_eq!(listed[0]["role"], "member");
    assert_eq!(me.body["caller"]["id"], listed[0]["id"]);

    // A request that changes state needs the CSRF token, as after a
    // password sign-in.
    let a = with_session(&host, "POST", "/t/acme/m/ssoprobe/notes", &done, false);
    assert_eq!(a.status, 403, "{a:?}");
    let a = with_session(&host, "POST", "/t/acme/m/ssoprobe/notes", &done, true);
    assert_eq!(a.status, 201, "{a:?}");
    // A member is no administrator.
    let a = with_session(&host, "GET", "/v1/tenants/acme/sso", &done, false);
    assert_eq!(a.status, 403, "{a:?}");

    // The same state again: refused, no session.
    let replay = finish(&begun);
    assert_eq!(replay.status, 401, "{replay:?}");
    assert!(!replay.cookies.contains_key("souk_session"));

    // A second sign-in finds the same user.
    let again = round_trip(&host, "acme");
    assert_eq!(again.status, 303, "{again:?}");
    assert_eq!(users(&host, "acme", &token).len(), 1);

    let actions = audit_actions(&host, "acme", &token);
    for action in ["sso_configure", "user_create", "login", "sso_login"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} not in {actions:?}"
        );
    }
    assert_eq!(actions.iter().filter(|a| *a == "sso_login").count(), 2);

    // Removed: sign-ins stop at once, the user stays.
    let a = host.delete("/v1/tenants/acme/sso", &token);
    assert_eq!(a.status, 204, "{a:?}");
    let started = hop(
        &browser(),
        &format!("{}/v1/tenants/acme/sso/start", host.base),
        None,
    );
    assert_eq!(started.status, 404, "{started:?}");
    assert_eq!(users(&host, "acme", &token).len(), 1);
}

#[test]
fn users_are_matched_by_verified_address_and_the_refused_are_refused() {
    let (host, provider) = start("Bob@Example.com");
    let token = tenant_with_sso(&host, &provider, "acme");
    let a = host.post(
        "/v1/tenants/acme/users",
        &token,
        json!({"email": "bob@example.com", "display_name": "Bob", "role": "admin"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let bob = a.body["user"]["id"].as_str().expect("id").to_owned();
    assert_eq!(a.body["user"]["status"], "invited");

    // The invited admin is matched without regard to case, and active now.
    let done = round_trip(&host, "acme");
    assert_eq!(done.status, 303, "{done:?}");
    let me = with_session(&host, "GET", ME, &done, false);
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.body["caller"]["id"], bob.as_str());
    assert_eq!(me.body["caller"]["role"], "admin");
    let listed = users(&host, "acme", &token);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["status"], "active");

    // Disabled: refused, and written down.
    let a = host.request(
        "PATCH",
        &format!("/v1/tenants/acme/users/{bob}"),
        Some(&token),
        Some(json!({"status": "disabled"}).to_string().into_bytes()),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let refused = round_trip(&host, "acme");
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(!refused.cookies.contains_key("souk_session"));
    assert!(
        audit_actions(&host, "acme", &token)
            .iter()
            .any(|a| a == "login_failed")
    );

    // An address the provider has not verified: refused, nobody created.
    provider.set_person(person("carol@example.com", false));
    let refused = round_trip(&host, "acme");
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("verified"),
        "{refused:?}"
    );
    assert_eq!(users(&host, "acme", &token).len(), 1);

    // Allowed domains and no provisioning: a verified stranger is refused.
    let mut body = settings(&provider);
    body["allowed_domains"] = json!(["example.org"]);
    assert_eq!(configure(&host, "acme", &token, body).status, 200);
    provider.set_person(person("dave@example.com", true));
    let refused = round_trip(&host, "acme");
    assert_eq!(refused.status, 403, "{refused:?}");
    let mut body = settings(&provider);
    body["provision_members"] = json!(false);
    body.as_object_mut()
        .expect("object")
        .remove("client_secret");
    let a = configure(&host, "acme", &token, body);
    assert_eq!(a.status, 200, "the stored secret is kept: {a:?}");
    assert_eq!(a.body["provision_members"], false);
    let refused = round_trip(&host, "acme");
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(users(&host, "acme", &token).len(), 1);
}

#[test]
fn forged_id_tokens_are_refused() {
    // Keys are fetched again as soon as a token names an unknown one (the
    // rotation at the end), however recently they were fetched.
    let (host, provider) = start_with("alice@example.com", &["--sso-jwks-refresh-secs", "0"]);
    let token = tenant_with_sso(&host, &provider, "acme");
    for (how, says) in [
        (Misbehaviour::WrongKey, "signature"),
        (Misbehaviour::AlgNone, "\"none\""),
        (Misbehaviour::Hmac, "\"HS256\""),
        (Misbehaviour::WrongAudience, "`aud`"),
        (Misbehaviour::WrongIssuer, "`iss`"),
        (Misbehaviour::Expired, "expired"),
        (Misbehaviour::WrongNonce, "`nonce`"),
    ] {
        provider.misbehave(how);
        let refused = round_trip(&host, "acme");
        assert_eq!(refused.status, 401, "{how:?}: {refused:?}");
        assert!(
            !refused.cookies.contains_key("souk_session"),
            "{how:?}: {refused:?}"
        );
        let detail = refused.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{how:?}: {detail}");
    }
    assert!(users(&host, "acme", &token).is_empty());

    // A key the provider has just started publishing is fetched.
    provider.misbehave(Misbehaviour::Rotated);
    let done = round_trip(&host, "acme");
    assert_eq!(done.status, 303, "{done:?}");
    provider.misbehave(Misbehaviour::None);
    let done = round_trip(&host, "acme");
    assert_eq!(done.status, 303, "{done:?}");
    assert_eq!(users(&host, "acme", &token).len(), 1);
}

#[test]
fn states_are_single_use_bound_to_their_tenant_and_browser_and_return_to_stays_here() {
    let (host, provider) = start("alice@example.com");
    tenant_with_sso(&host, &provider, "acme");
    tenant_with_sso(&host, &provider, "globex");

    // Acme's state at globex's callback: refused there, and still good at
    // acme (it was not spent).
    let begun = begin(&host, "acme", ME);
    let foreign = Begun {
        callback: begun.callback.replace("/tenants/acme/", "/tenants/globex/"),
        binding: begun.binding.clone(),
    };
    assert_ne!(foreign.callback, begun.callback);
    let refused = finish(&foreign);
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(!refused.cookies.contains_key("souk_session"));

    // Without the browser's binding cookie: refused (and spent).
    let other_browser = hop(&browser(), &begun.callback, None);
    assert_eq!(other_browser.status, 401, "{other_browser:?}");
    let late = finish(&begun);
    assert_eq!(late.status, 401, "{late:?}");

    // A fresh one works once.
    let begun = begin(&host, "acme", "/t/acme/m/ssoprobe/me?x=1");
    let done = finish(&begun);
    assert_eq!(done.status, 303, "{done:?}");
    assert_eq!(done.location.as_deref(), Some("/t/acme/m/ssoprobe/me?x=1"));
    assert_eq!(finish(&begun).status, 401);

    // An unknown state.
    let forged = hop(
        &browser(),
        &format!(
            "{}/v1/tenants/acme/sso/callback?code=x&state=guess",
            host.base
        ),
        Some("souk_sso=guess"),
    );
    assert_eq!(forged.status, 401, "{forged:?}");

    // Open redirects are refused before anything starts.
    for evil in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "http:evil.example",
        "evil",
    ] {
        let started = hop(
            &browser(),
            &format!(
                "{}/v1/tenants/acme/sso/start?return_to={}",
                host.base,
                url::form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>()
            ),
            None,
        );
        assert_eq!(started.status, 422, "{evil}: {started:?}");
        assert!(started.location.is_none(), "{evil}: {started:?}");
    }

    // A tenant that does not exist and one without single sign-on answer
    // alike.
    let nobody = hop(
        &browser(),
        &format!("{}/v1/tenants/nobody/sso/start", host.base),
        None,
    );
    host.tenant("plain");
    let plain = hop(
        &browser(),
        &format!("{}/v1/tenants/plain/sso/start", host.base),
        None,
    );
    assert_eq!((nobody.status, plain.status), (404, 404));
    assert_eq!(
        nobody.body["detail"]
            .as_str()
            .map(|d| d.replace("nobody", "_")),
        plain.body["detail"]
            .as_str()
            .map(|d| d.replace("plain", "_"))
    );
}

#[test]
fn a_tenant_whose_plan_lacks_the_sso_feature_gets_402() {
    let (host, provider) = start("alice@example.com");

    // No module offering single sign-on at all.
    let token = host.tenant("bare");
    let a = configure(&host, "bare", &token, settings(&provider));
    assert_eq!(a.status, 402, "{a:?}");

    // The module's free plan lacks the feature: the route gate's problem.
    let token = host.tenant_with("acme", "ssoprobe");
    let a = configure(&host, "acme", &token, settings(&provider));
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(a.body["feature"], "sso", "{a:?}");
    assert_eq!(a.body["reason"], "feature_not_in_plan", "{a:?}");
    assert_eq!(a.body["upgrade_plan"], "team", "{a:?}");

    // Granted: configured and usable; back on the free plan: starting a
    // sign-in is refused the same way.
    grant(&host, "acme", "team");
    let a = configure(&host, "acme", &token, settings(&provider));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(round_trip(&host, "acme").status, 303);
    grant(&host, "acme", "free");
    let started = hop(
        &browser(),
        &format!("{}/v1/tenants/acme/sso/start", host.base),
        None,
    );
    assert_eq!(started.status, 402, "{started:?}");
    assert_eq!(started.body["feature"], "sso", "{started:?}");
}

#[test]
fn a_provider_the_host_cannot_use_is_refused_when_configured() {
    let (host, provider) = start("alice@example.com");
    let token = host.tenant_with("acme", "ssoprobe");
    grant(&host, "acme", "team");
    // The issuer must be written as the provider writes it.
    let mut body = settings(&provider);
    body["issuer"] = json!(format!("{}/", provider.issuer));
    let a = configure(&host, "acme", &token, body);
    assert_eq!(a.status, 422, "{a:?}");
    assert!(a.detail().contains("another issuer"), "{a:?}");
    // Nothing listens there.
    let mut body = settings(&provider);
    body["issuer"] = json!("http://127.0.0.1:9");
    let a = configure(&host, "acme", &token, body);
    assert_eq!(a.status, 422, "{a:?}");
    // The first configuration needs a secret.
    let mut body = settings(&provider);
    body.as_object_mut()
        .expect("object")
        .remove("client_secret");
    let a = configure(&host, "acme", &token, body);
    assert_eq!(a.status, 422, "{a:?}");
    assert_eq!(host.get("/v1/tenants/acme/sso", &token).status, 404);
}

#[test]
fn without_the_insecure_flag_only_https_providers_are_accepted() {
    let host = Host::start_on_plans(&["sso-probe"], START, &[]);
    let provider = Provider::start(start_unix(), person("alice@example.com", true));
    let token = host.tenant_with("acme", "ssoprobe");
    grant(&host, "acme", "team");
    let a = configure(&host, "acme", &token, settings(&provider));
    assert_eq!(a.status, 422, "{a:?}");
    assert!(a.detail().contains("https"), "{a:?}");
}

#[test]
fn the_cli_shows_changes_and_removes_a_provider_without_showing_the_secret() {
    let (host, provider) = start("alice@example.com");
    let token = tenant_with_sso(&host, &provider, "acme");
    let plans = crate::support::plans_dir();
    let cli = |args: &[&str]| {
        let mut all = vec!["--plans", plans.as_str(), "--sso-allow-insecure"];
        all.extend_from_slice(args);
        host.cli(&all)
    };
    let (ok, out, err) = cli(&["sso", "show", "acme"]);
    assert!(ok, "{err}");
    assert!(out.contains(&provider.issuer), "{out}");
    assert!(!out.contains(CLIENT_SECRET), "{out}");
    // Changed without a secret: the stored one is kept and still works.
    let (ok, out, err) = cli(&[
        "--json",
        "sso",
        "set",
        "acme",
        "--issuer",
        &provider.issuer,
        "--client-id",
        CLIENT_ID,
        "--allowed-domain",
        "Example.com",
        "--no-provisioning",
    ]);
    assert!(ok, "{err}");
    assert!(!out.contains(CLIENT_SECRET), "{out}");
    let settings: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(settings["allowed_domains"], json!(["example.com"]));
    assert_eq!(settings["provision_members"], false);
    let a = host.post(
        "/v1/tenants/acme/users",
        &token,
        json!({"email": "alice@example.com"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(round_trip(&host, "acme").status, 303);
    let (ok, _, err) = cli(&["sso", "remove", "acme"]);
    assert!(ok, "{err}");
    assert_eq!(host.get("/v1/tenants/acme/sso", &token).status, 404);
    let (ok, _, err) = cli(&["sso", "show", "acme"]);
    assert!(!ok && err.contains("no single sign-on"), "{err}");
}

#[test]
fn a_rotated_key_is_fetched_at_most_once_per_refresh_interval_and_sign_ins_expire() {
    // The default interval, 60 s of the host's (manual) clock.
    let (host, provider) = start("alice@example.com");
    tenant_with_sso(&host, &provider, "acme");
    provider.misbehave(Misbehaviour::Rotated);
    // The keys were fetched when the provider was configured, just now: a
    // token naming a key not among them is refused without a new fetch.
    let refused = round_trip(&host, "acme");
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("does not publish"),
        "{refused:?}"
    );
    let a = host.post("/v1/clock", &host.operator, json!({"advance_seconds": 61}));
    assert_eq!(a.status, 200, "{a:?}");
    let done = round_trip(&host, "acme");
    assert_eq!(done.status, 303, "{done:?}");

    // A sign-in that takes longer than --sso-login-ttl-secs (600) is over.
    provider.misbehave(Misbehaviour::None);
    let begun = begin(&host, "acme", ME);
    let a = host.post("/v1/clock", &host.operator, json!({"advance_seconds": 601}));
    assert_eq!(a.status, 200, "{a:?}");
    let late = finish(&begun);
    assert_eq!(late.status, 401, "{late:?}");
    assert!(
        late.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{late:?}"
    );
}
