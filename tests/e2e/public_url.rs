//! Modules learn their public URL through the real binary: the host sets
//! `souk-public-url` (the mount's absolute URL on the module origin) on
//! every module request and drops any copy a client sends; Digital Card
//! links its QR codes there without its tenant setting `verify_base_url`,
//! and an explicit setting still wins.

use serde_json::{Value, json};

use crate::support::Host;

const CARDS: &str = "/t/acme/m/digital-card";
const FORGED: &str = "https://evil.example/t/acme/m/digital-card";

/// `method path` with the tenant's token and a forged `souk-public-url`.
fn forging(
    host: &Host,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = host
        .client
        .request(method, format!("{}{path}", host.base))
        .bearer_auth(token)
        .header("souk-public-url", FORGED)
        .header("Souk-Public-URL", FORGED);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().expect("request sent");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn a_module_is_told_its_public_url_and_a_client_cannot_forge_it() {
    let host = Host::start(&["people-probe"]);
    let token = host.tenant_with("acme", "people-probe");
    assert!(
        host.module_base.starts_with("http://"),
        "{}",
        host.module_base
    );
    let (status, body) = forging(&host, "GET", "/t/acme/m/people-probe/admin", &token, None);
    assert_eq!(status, 200, "{body}");
    let told: Vec<&str> = body["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|pair| {
            pair[0]
                .as_str()
                .is_some_and(|name| name.eq_ignore_ascii_case("souk-public-url"))
        })
        .map(|pair| pair[1].as_str().expect("value"))
        .collect();
    assert_eq!(
        told,
        [format!("{}/t/acme/m/people-probe", host.module_base)],
        "{body}"
    );
}

#[test]
fn a_fresh_tenant_issues_a_verifiable_card_without_setting_a_url() {
    let host = crate::membership::start(&["membership", "digital-card"]);
    let token = host.tenant("acme");
    let a = host.install("acme", &token, "digital-card");
    assert_eq!(a.status, 201, "{a:?}");
    let a = host.post(
        "/t/acme/m/membership/members",
        &token,
        json!({"number": "M-1", "name": "Asha Gurung"}),
    );
    assert_eq!(a.status, 201, "{a:?}");

    // No PUT /settings. The first request forges the header: the module
    // never sees the forged value.
    let (status, card) = forging(
        &host,
        "POST",
        &format!("{CARDS}/cards"),
        &token,
        Some(json!({"member": "M-1"})),
    );
    assert_eq!(status, 201, "{card}");
    let url = card["verification_url"].as_str().expect("verification_url");
    let prefix = format!("{}{CARDS}/v/", host.module_base);
    assert!(url.starts_with(&prefix), "{url}");
    let settings = host.get(&format!("{CARDS}/settings"), &token);
    assert_eq!(
        settings.body["verify_base_url"],
        Value::Null,
        "{settings:?}"
    );
    assert_eq!(
        settings.body["public_url"],
        format!("{}{CARDS}", host.module_base),
        "{settings:?}"
    );

    // Following it, as a stranger's phone would, answers the page.
    let page = host
        .client
        .get(url)
        .header("accept", "application/json")
        .send()
        .expect("verify");
    assert_eq!(page.status().as_u16(), 200);
    let page: Value = page.json().expect("json");
    assert_eq!(page["status"], "valid", "{page}");
    assert_eq!(page["holder"]["name"], "Asha Gurung", "{page}");
    let html = host
        .client
        .get(url)
        .header("accept", "text/html")
        .send()
        .expect("verify");
    assert_eq!(html.status().as_u16(), 200);
    assert!(html.text().expect("html").contains("Valid card"));

    // An explicit setting wins.
    let a = host.request(
        "PUT",
        &format!("{CARDS}/settings"),
        Some(&token),
        Some(
            json!({
                "organisation_name": "Kathmandu Runners",
                "verify_base_url": "https://cards.example.org/t/acme/m/digital-card",
                "allow_multiple_active": false,
                "valid_days": 365
            })
            .to_string()
            .into_bytes(),
        ),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let number = card["number"].as_str().expect("number");
    let a = host.get(&format!("{CARDS}/cards/{number}"), &token);
    assert_eq!(a.status, 200, "{a:?}");
    let url = a.body["verification_url"].as_str().expect("url");
    assert!(
        url.starts_with("https://cards.example.org/t/acme/m/digital-card/v/"),
        "{url}"
    );
}
