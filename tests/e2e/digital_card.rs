//! Digital Card (plugins/digital-card) through the real binary, on the
//! test plans of tests/e2e/plans-card (free: 3 cards, 5 verifications a
//! month) and a manual clock: issuing, a stranger's verification from the
//! QR code (decoded from the SVG the module draws), revocation, expiry by
//! the daily schedule, the verification quota, Membership's `member_left`,
//! share links, and the plan's gates.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::membership::start;
use crate::support::Host;

pub const CARDS: &str = "/t/acme/m/digital-card";

/// An answer with its raw bytes and content type.
pub struct Page {
    pub status: u16,
    pub content_type: String,
    pub text: String,
}

impl Page {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

/// GET `url` (absolute) with no credential, as a stranger's phone would.
pub fn stranger_get(host: &Host, url: &str, accept: &str) -> Page {
    let res = host
        .client
        .get(url)
        .header("accept", accept)
        .send()
        .expect("request sent");
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Page {
        status,
        content_type,
        text: res.text().expect("body"),
    }
}

/// A tenant `acme` with Digital Card (and so Membership) installed, the
/// verification base URL set, and members `M-1` and `M-2`.
pub fn setup(host: &Host) -> String {
    let token = host.tenant("acme");
    let a = host.install("acme", &token, "digital-card");
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["also_installed"][0]["module"], "membership", "{a:?}");
    let a = host.request(
        "PUT",
        &format!("{CARDS}/settings"),
        Some(&token),
        Some(
            json!({
                "organisation_name": "Kathmandu Runners",
                "verify_base_url": format!("{}{CARDS}", host.base),
                "allow_multiple_active": false,
                "valid_days": 365
            })
            .to_string()
            .into_bytes(),
        ),
    );
    assert_eq!(a.status, 200, "{a:?}");
    for (number, name) in [("M-1", "Asha Gurung"), ("M-2", "Bikash Rai")] {
        let a = host.post(
            "/t/acme/m/membership/members",
            &token,
            json!({"number": number, "name": name}),
        );
        assert_eq!(a.status, 201, "{a:?}");
    }
    token
}

pub fn issue(host: &Host, token: &str, body: Value) -> crate::support::Answer {
    host.post(&format!("{CARDS}/cards"), token, body)
}

pub fn card(host: &Host, token: &str, number: &str) -> Value {
    let a = host.get(&format!("{CARDS}/cards/{number}"), token);
    assert_eq!(a.status, 200, "{a:?}");
    a.body
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: timed out"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for a job to succeed (90 s: jobs queue behind the machine's load)
/// and returns it; fails at once when it fails or errs.
pub fn wait_for_job(host: &Host, token: &str, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let job = host.get(&format!("/v1/tenants/acme/jobs/{id}"), token).body;
        assert_ne!(job["status"], "failed", "{job}");
        assert!(job["error"].is_null(), "{job}");
        if job["status"] == "succeeded" {
            return job;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "job timed out: {job}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Decodes the QR code of an SVG the module drew: reads its module grid
/// (`viewBox="0 0 n n"` and unit squares `M{x} {y}h1v1h-1z`), paints it
/// 4 px per module, and hands the picture to a QR decoder.
pub fn decode_qr(svg: &str) -> String {
    let extent: usize = svg
        .split("viewBox=\"0 0 ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("viewBox");
    let d = svg
        .split(" d=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("path");
    let mut dark = vec![false; extent * extent];
    for square in d.split('M').filter(|s| !s.is_empty()) {
        let square = square.strip_suffix("h1v1h-1z").expect("unit square");
        let (x, y) = square.split_once(' ').expect("x y");
        let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
        dark[y * extent + x] = true;
    }
    const SCALE: usize = 4;
    let size = extent * SCALE;
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(size, size, |x, y| {
        if dark[(y / SCALE) * extent + x / SCALE] {
            0
        } else {
            255
        }
    });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the picture");
    grids[0].decode().expect("decodes").1
}

#[test]
fn a_card_is_issued_verified_by_a_stranger_from_its_qr_code_and_revoked() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);

    let templates = host.get(&format!("{CARDS}/templates"), &token);
    assert_eq!(templates.status, 200, "{templates:?}");
    let slugs: Vec<&str> = templates.body["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    // The basic templates come first (advanced and premium ones follow:
    // tests/e2e/digital_card_templates.rs).
    assert_eq!(slugs[..3], ["classic", "stripe", "minimal"]);

    // Validation: a member that does not exist, a bad date, a bad template.
    let a = issue(&host, &token, json!({"member": "M-9"}));
    assert_eq!(a.status, 422, "{a:?}");
    let a = issue(
        &host,
        &token,
        json!({"member": "M-1", "expires_on": "2026-02-30"}),
    );
    assert_eq!(a.status, 422, "{a:?}");
    let a = issue(&host, &token, json!({"member": "M-1", "template": "gold"}));
    assert_eq!(a.status, 422, "{a:?}");
    let a = issue(&host, &token, json!({"member": "M-1", "colour": "red"}));
    assert_eq!(a.status, 422, "{a:?}");

    let a = issue(
        &host,
        &token,
        json!({"member": "M-1", "template": "stripe"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let number = a.body["number"].as_str().unwrap().to_owned();
    assert_eq!(number, "C-000001");
    assert_eq!(a.body["status"], "active");
    assert_eq!(a.body["issued_on"], "2026-03-01", "the host's manual clock");
    assert_eq!(a.body["expires_on"], "2027-03-01");
    let url = a.body["verification_url"].as_str().unwrap().to_owned();
    let verify_prefix = format!("{}{CARDS}/v/", host.base);
    assert!(url.starts_with(&verify_prefix), "{url}");
    let verify_token = &url[verify_prefix.len()..];
    assert_eq!(verify_token.len(), 32);
    assert!(
        !url.contains(&number),
        "the URL does not carry the card number"
    );

    // One active card per member.
    let a = issue(&host, &token, json!({"member": "M-1"}));
    assert_eq!(a.status, 409, "{a:?}");
    // A number given by hand must be free.
    let a = issue(
        &host,
        &token,
        json!({"member": "M-2", "number": "C-000001"}),
    );
    assert_eq!(a.status, 409, "{a:?}");

    // The QR code decodes to the verification URL.
    let qr = host.get(&format!("{CARDS}/cards/{number}/qr.svg"), &token);
    assert_eq!(qr.status, 200, "{qr:?}");
    assert_eq!(qr.content_type, "image/svg+xml");
    let svg = String::from_utf8(qr.bytes).unwrap();
    assert_eq!(decode_qr(&svg), url);

    // The card face carries the holder, the organisation and the same code.
    let face = host.get(&format!("{CARDS}/cards/{number}/card.svg"), &token);
    assert_eq!(face.status, 200, "{face:?}");
    let face = String::from_utf8(face.bytes).unwrap();
    assert!(face.contains("Asha Gurung") && face.contains("Kathmandu Runners"));
    assert!(face.contains("width=\"856\" height=\"540\""));

    // A stranger (no credential) verifies: JSON and HTML.
    let page = stranger_get(&host, &url, "application/json");
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(
        page.json(),
        json!({
            "status": "valid",
            "organisation": "Kathmandu Runners",
            "holder": {"name": "Asha Gurung", "photo_url": null}
        })
    );
    let page = stranger_get(&host, &url, "text/html");
    assert_eq!(page.status, 200);
    assert!(
        page.content_type.starts_with("text/html"),
        "{}",
        page.content_type
    );
    assert!(page.text.contains("Valid card") && page.text.contains("Asha Gurung"));
    assert!(!page.text.contains(&number) && !page.text.contains("M-1"));
    // The admin routes are not the stranger's.
    let a = host.request("GET", &format!("{CARDS}/cards"), None, None);
    assert_eq!(a.status, 401, "{a:?}");

    // Revoked: the same answer as a token no card has, without data.
    let a = host.post(
        &format!("{CARDS}/cards/{number}/revoke"),
        &token,
        json!({"reason": "lost"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        (a.body["status"].as_str(), a.body["status_reason"].as_str()),
        (Some("revoked"), Some("lost"))
    );
    let a = host.post(
        &format!("{CARDS}/cards/{number}/revoke"),
        &token,
        json!({"reason": "again"}),
    );
    assert_eq!(a.status, 409, "{a:?}");
    let revoked = stranger_get(&host, &url, "application/json");
    assert_eq!(revoked.json()["status"], "not_valid", "{}", revoked.text);
    assert!(!revoked.text.contains("Asha"));
    let unknown_url = format!("{verify_prefix}{}", "0123456789abcdef0123456789abcdef");
    let unknown = stranger_get(&host, &unknown_url, "application/json");
    assert_eq!(
        (unknown.status, &unknown.text),
        (revoked.status, &revoked.text)
    );
    let junk = stranger_get(
        &host,
        &format!("{verify_prefix}C-000001"),
        "application/json",
    );
    assert_eq!((junk.status, &junk.text), (revoked.status, &revoked.text));
    let revoked_html = stranger_get(&host, &url, "text/html");
    let unknown_html = stranger_get(&host, &unknown_url, "text/html");
    assert_eq!(revoked_html.text, unknown_html.text);
    // A revoked card is not renewed; the member may get a new card now.
    let a = host.post(&format!("{CARDS}/cards/{number}/renew"), &token, json!({}));
    assert_eq!(a.status, 409, "{a:?}");
    let a = issue(&host, &token, json!({"member": "M-1"}));
    assert_eq!(a.status, 201, "{a:?}");

    // The list pages and filters.
    let a = issue(&host, &token, json!({"member": "M-2", "number": "X-7"}));
    assert_eq!(a.status, 201, "{a:?}");
    let a = host.get(&format!("{CARDS}/cards?limit=2"), &token);
    assert_eq!(a.body["cards"].as_array().unwrap().len(), 2, "{a:?}");
    let next = a.body["next"].as_i64().expect("a next page");
    let a = host.get(&format!("{CARDS}/cards?limit=2&after={next}"), &token);
    assert_eq!(a.body["cards"][0]["number"], "X-7", "{a:?}");
    assert_eq!(a.body["next"], Value::Null);
    let a = host.get(&format!("{CARDS}/cards?status=revoked"), &token);
    assert_eq!(a.body["cards"].as_array().unwrap().len(), 1, "{a:?}");
    let a = host.get(&format!("{CARDS}/cards?member=M-2"), &token);
    assert_eq!(a.body["cards"][0]["number"], "X-7", "{a:?}");
    let a = host.get(&format!("{CARDS}/cards?status=gone"), &token);
    assert_eq!(a.status, 400, "{a:?}");

    // Three cards is the free plan's limit: the route gate refuses a 4th;
    // deleting one gives its unit back.
    let a = host.post(
        "/t/acme/m/membership/members",
        &token,
        json!({"number": "M-3", "name": "Chandra"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let a = issue(&host, &token, json!({"member": "M-3"}));
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(
        (a.body["feature"].as_str(), a.body["reason"].as_str()),
        (Some("max_cards"), Some("limit_reached"))
    );
    assert_eq!(
        host.delete(&format!("{CARDS}/cards/{number}"), &token)
            .status,
        204
    );
    assert_eq!(
        host.get(&format!("{CARDS}/cards/{number}"), &token).status,
        404
    );
    let a = issue(&host, &token, json!({"member": "M-3"}));
    assert_eq!(a.status, 201, "{a:?}");
}

#[test]
fn share_links_show_the_card_until_revoked_or_expired() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    let a = issue(&host, &token, json!({"member": "M-1"}));
    assert_eq!(a.status, 201, "{a:?}");
    let link = host.post(
        &format!("{CARDS}/cards/C-000001/share-links"),
        &token,
        json!({}),
    );
    assert_eq!(link.status, 201, "{link:?}");
    let url = link.body["url"].as_str().unwrap().to_owned();
    let page = stranger_get(&host, &url, "application/json");
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.json()["holder"], "Asha Gurung");
    let page = stranger_get(&host, &url, "text/html");
    assert!(page.text.contains("<svg") && page.text.contains("Asha Gurung"));
    // Revoked: a plain 404.
    let id = link.body["id"].as_i64().unwrap();
    let a = host.delete(&format!("{CARDS}/cards/C-000001/share-links/{id}"), &token);
    assert_eq!(a.status, 204, "{a:?}");
    assert_eq!(stranger_get(&host, &url, "application/json").status, 404);
    // Expiring: valid for a day on the host's clock.
    let link = host.post(
        &format!("{CARDS}/cards/C-000001/share-links"),
        &token,
        json!({"expires_in_days": 1}),
    );
    assert_eq!(link.status, 201, "{link:?}");
    let url = link.body["url"].as_str().unwrap().to_owned();
    assert_eq!(stranger_get(&host, &url, "application/json").status, 200);
    let a = host.post(
        "/v1/clock",
        &host.operator,
        json!({"set": "2026-03-02T09:00:01Z"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(stranger_get(&host, &url, "application/json").status, 404);
    let links = host.get(&format!("{CARDS}/cards/C-000001/share-links"), &token);
    assert_eq!(
        links.body["share_links"].as_array().unwrap().len(),
        2,
        "{links:?}"
    );
    let a = host.post(
        &format!("{CARDS}/cards/C-000001/share-links"),
        &token,
        json!({"expires_in_days": 0}),
    );
    assert_eq!(a.status, 422, "{a:?}");
}

#[test]
fn the_daily_schedule_expires_cards_on_the_manual_clock() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    let a = issue(
        &host,
        &token,
        json!({"member": "M-1", "expires_on": "2026-03-02"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let url = a.body["verification_url"].as_str().unwrap().to_owned();
    let a = issue(&host, &token, json!({"member": "M-2"}));
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(
        stranger_get(&host, &url, "application/json").json()["status"],
        "valid"
    );
    // Two days on: the slot of 2026-03-03 00:00 runs the schedule once.
    let a = host.post(
        "/v1/clock",
        &host.operator,
        json!({"set": "2026-03-03T00:00:05Z"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    wait_until("the first card expires", || {
        card(&host, &token, "C-000001")["status"] == "expired"
    });
    let first = card(&host, &token, "C-000001");
    assert_eq!(first["status_reason"], "past its expiry day");
    assert_eq!(card(&host, &token, "C-000002")["status"], "active");
    let jobs = host.get("/v1/tenants/acme/jobs?module=digital-card", &token);
    let jobs = jobs.body["jobs"].as_array().unwrap().clone();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["name"], "expire_cards");
    // The stranger sees it expired, with the holder.
    let page = stranger_get(&host, &url, "application/json");
    assert_eq!(page.json()["status"], "expired", "{}", page.text);
    assert_eq!(page.json()["holder"]["name"], "Asha Gurung");
    // Renewed, it is valid again, for the tenant's validity from today.
    let a = host.post(&format!("{CARDS}/cards/C-000001/renew"), &token, json!({}));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        (a.body["status"].as_str(), a.body["expires_on"].as_str()),
        (Some("active"), Some("2027-03-03"))
    );
    assert_eq!(
        stranger_get(&host, &url, "application/json").json()["status"],
        "valid"
    );
}

#[test]
fn the_verification_quota_runs_out_without_showing_card_data() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    let a = issue(&host, &token, json!({"member": "M-1"}));
    let url = a.body["verification_url"].as_str().unwrap().to_owned();
    let unknown = format!("{}{CARDS}/v/{}", host.base, "f".repeat(32));
    // Five a month on free: unknown tokens count as verifications too.
    for n in 0..5 {
        let page = stranger_get(
            &host,
            if n == 2 { &unknown } else { &url },
            "application/json",
        );
        assert_eq!(page.status, 200, "{n}: {}", page.text);
        assert_ne!(page.json()["status"], "unavailable", "{n}: {}", page.text);
    }
    let page = stranger_get(&host, &url, "application/json");
    assert_eq!(page.status, 200);
    let body = page.json();
    assert_eq!(body["status"], "unavailable", "{}", page.text);
    assert_eq!(body["organisation"], "Kathmandu Runners");
    assert!(body.get("holder").is_none() && !page.text.contains("Asha"));
    let html = stranger_get(&host, &url, "text/html");
    assert!(html.text.contains("Verification unavailable") && !html.text.contains("Asha"));
    // The next period (the subscription's month, from 1 March 09:00)
    // brings a new allowance.
    let a = host.post(
        "/v1/clock",
        &host.operator,
        json!({"set": "2026-04-02T00:00:00Z"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let page = stranger_get(&host, &url, "application/json");
    assert_eq!(page.json()["status"], "valid", "{}", page.text);
}

#[test]
fn a_member_who_leaves_has_their_active_cards_revoked() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    let a = issue(&host, &token, json!({"member": "M-1"}));
    assert_eq!(a.status, 201, "{a:?}");
    let url = a.body["verification_url"].as_str().unwrap().to_owned();
    let a = issue(&host, &token, json!({"member": "M-2"}));
    assert_eq!(a.status, 201, "{a:?}");
    let a = host.request(
        "PATCH",
        "/t/acme/m/membership/members/M-1",
        Some(&token),
        Some(json!({"status": "left"}).to_string().into_bytes()),
    );
    assert_eq!(a.status, 200, "{a:?}");
    wait_until("M-1's card is revoked", || {
        card(&host, &token, "C-000001")["status"] == "revoked"
    });
    assert_eq!(
        card(&host, &token, "C-000001")["status_reason"],
        "member left"
    );
    assert_eq!(card(&host, &token, "C-000002")["status"], "active");
    assert_eq!(
        stranger_get(&host, &url, "application/json").json()["status"],
        "not_valid"
    );
    // A member deleted from Membership leaves too.
    assert_eq!(
        host.delete("/t/acme/m/membership/members/M-2", &token)
            .status,
        204
    );
    wait_until("M-2's card is revoked", || {
        card(&host, &token, "C-000002")["status"] == "revoked"
    });
    // No card for a member who has left.
    let a = issue(&host, &token, json!({"member": "M-1"}));
    assert_eq!(a.status, 422, "{a:?}");
}

#[test]
fn api_keys_need_api_access_and_free_lacks_the_paid_features() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    let a = host.post(
        "/v1/tenants/acme/api-keys",
        &token,
        json!({"module": "digital-card", "name": "crm"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let key = a.body["key"].as_str().unwrap().to_owned();
    let key_id = a.body["id"].as_str().map(str::to_owned);
    // Free has no api_access: the host refuses before the module runs.
    let a = host.get(&format!("{CARDS}/cards"), &key);
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(a.body["feature"], "api_access");
    assert_eq!(a.body["upgrade_plan"], "business");
    // Business (granted by the operator) lets the key issue and revoke.
    let a = host.post(
        "/v1/tenants/acme/subscriptions/digital-card/grant",
        &host.operator,
        json!({"plan": "business"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let a = issue(&host, &key, json!({"member": "M-1"}));
    assert_eq!(a.status, 201, "{a:?}");
    let a = host.post(
        &format!("{CARDS}/cards/C-000001/revoke"),
        &key,
        json!({"reason": "replaced"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    // White label: no Souk mark on business.
    let a = issue(&host, &key, json!({"member": "M-2"}));
    assert_eq!(a.status, 201, "{a:?}");
    let face = host.get(&format!("{CARDS}/cards/C-000002/card.svg"), &key);
    assert!(!String::from_utf8(face.bytes).unwrap().contains("Souk"));
    // Back on free: the cards stay readable and verifiable, the key is
    // refused again, and the Souk mark is back.
    let a = host.post(
        "/v1/tenants/acme/subscriptions/digital-card/grant",
        &host.operator,
        json!({"plan": "free"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(host.get(&format!("{CARDS}/cards"), &key).status, 402);
    let listed = host.get(&format!("{CARDS}/cards"), &token);
    assert_eq!(
        listed.body["cards"].as_array().unwrap().len(),
        2,
        "{listed:?}"
    );
    let url = listed.body["cards"][1]["verification_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        stranger_get(&host, &url, "application/json").json()["status"],
        "valid"
    );
    let face = host.get(&format!("{CARDS}/cards/C-000002/card.svg"), &token);
    assert!(
        String::from_utf8(face.bytes)
            .unwrap()
            .contains("Verified with Souk")
    );
    if let Some(id) = key_id {
        let a = host.delete(&format!("/v1/tenants/acme/api-keys/{id}"), &token);
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(host.get(&format!("{CARDS}/cards"), &key).status, 401);
    }
}

#[test]
fn a_pro_trial_opens_batches_and_a_batch_reports_who_was_skipped() {
    let host = start(&["membership", "digital-card"]);
    let token = host.tenant("acme");
    host.install_ok("acme", &token, "digital-card");
    // Membership plus, so the tenant may keep 50 members.
    let a = host.post(
        "/v1/tenants/acme/subscriptions/membership/grant",
        &host.operator,
        json!({"plan": "plus"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    for n in 1..=50 {
        let a = host.post(
            "/t/acme/m/membership/members",
            &token,
            json!({"number": format!("B-{n:02}"), "name": format!("Member {n}")}),
        );
        assert_eq!(a.status, 201, "{a:?}");
    }
    // Free has no batch generation: the host's 402 names pro.
    let a = host.post(&format!("{CARDS}/batches"), &token, json!({}));
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(
        (a.body["feature"].as_str(), a.body["upgrade_plan"].as_str()),
        (Some("batch_generation"), Some("pro"))
    );
    // The pro trial opens it at once (pro: 40 cards).
    let a = host.post(
        "/v1/tenants/acme/subscriptions",
        &token,
        json!({"module": "digital-card", "plan": "pro"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["state"], "trialing");
    let a = issue(&host, &token, json!({"member": "B-05"}));
    assert_eq!(a.status, 201, "{a:?}");
    let a = host.post(
        &format!("{CARDS}/batches"),
        &token,
        json!({"template": "gold"}),
    );
    assert_eq!(a.status, 422, "{a:?}");
    let a = host.post(
        &format!("{CARDS}/batches"),
        &token,
        json!({"template": "minimal"}),
    );
    assert_eq!(a.status, 202, "{a:?}");
    assert_eq!(
        (a.body["members"].as_u64(), a.body["fit"].as_u64()),
        (Some(50), Some(39))
    );
    let job_id = a.body["job"].as_str().unwrap().to_owned();
    let job = wait_for_job(&host, &token, &job_id);
    assert_eq!(job["progress"]["done"], 50, "{job}");
    assert_eq!(job["progress"]["total"], 50, "{job}");
    let issued: Vec<&str> = job["result"]["issued"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["member"].as_str().unwrap())
        .collect();
    let expected_issued: Vec<String> = (1..=40)
        .filter(|n| *n != 5)
        .map(|n| format!("B-{n:02}"))
        .collect();
    assert_eq!(issued, expected_issued);
    let skipped: Vec<(String, String)> = job["result"]["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["member"].as_str().unwrap().to_owned(),
                s["why"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut expected_skipped = vec![("B-05".to_owned(), "has an active card".to_owned())];
    expected_skipped
        .extend((41..=50).map(|n| (format!("B-{n:02}"), "no room under max_cards".to_owned())));
    assert_eq!(skipped, expected_skipped);
    let a = host.get(&format!("{CARDS}/cards?limit=200"), &token);
    let cards = a.body["cards"].as_array().unwrap();
    assert_eq!(cards.len(), 40);
    assert!(cards.iter().skip(1).all(|c| c["template"] == "minimal"));
    // Full now: a second batch fits nothing and is refused up front.
    let a = host.post(&format!("{CARDS}/batches"), &token, json!({}));
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(a.body["feature"], "max_cards");
}

#[test]
fn card_events_reach_the_tenants_webhooks_signed_on_business_only() {
    use crate::events::{LOOPBACK, Receiver, verify};
    let receiver = Receiver::start(&[]);
    let host = crate::membership::start_with(&["membership", "digital-card"], &LOOPBACK);
    let token = setup(&host);
    let endpoints = "/v1/tenants/acme/modules/digital-card/webhooks";
    // Free has no webhooks.
    let a = host.post(endpoints, &token, json!({"url": receiver.url}));
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(a.body["upgrade_plan"], "business", "{a:?}");
    let a = host.post(
        "/v1/tenants/acme/subscriptions/digital-card/grant",
        &host.operator,
        json!({"plan": "business"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let a = host.post(
        endpoints,
        &token,
        json!({"url": receiver.url, "event_types": ["card.issued", "card.revoked"]}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let secret = a.body["secret"].as_str().unwrap().to_owned();
    let a = issue(
        &host,
        &token,
        json!({"member": "M-1", "expires_on": "2026-12-31"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let a = host.post(
        &format!("{CARDS}/cards/C-000001/revoke"),
        &token,
        json!({"reason": "stolen"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let got = receiver.wait_for(2);
    for g in &got {
        assert!(verify(&secret, g), "a delivery does not verify");
        assert!(!verify("whsec_wrong", g));
    }
    let (issued, revoked) = (got[0].json(), got[1].json());
    assert_eq!(issued["type"], "card.issued");
    assert_eq!(issued["module"], "digital-card");
    assert_eq!(
        issued["data"],
        json!({"number": "C-000001", "member": "M-1", "expires_on": "2026-12-31"})
    );
    assert_eq!(revoked["type"], "card.revoked");
    assert_eq!(revoked["data"]["reason"], "stolen");
    // card.verified is not among the endpoint's types: nothing more comes.
    let url = format!("{}{CARDS}/v/{}", host.base, "a".repeat(32));
    stranger_get(&host, &url, "application/json");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.got().len(), 2);
}

/// Checks a PDF's structure: header, `startxref` pointing at an xref table
/// whose every in-use entry points at its `N 0 obj`, and a trailer; returns
/// the page objects (`/Type /Page`) and the page tree's `/Count`.
fn parse_pdf(bytes: &[u8]) -> (usize, usize) {
    assert!(bytes.starts_with(b"%PDF-1."), "no PDF header");
    // Bytes outside ASCII as `?`, so text offsets are byte offsets.
    let text: String = bytes
        .iter()
        .map(|&b| if b.is_ascii() { char::from(b) } else { '?' })
        .collect();
    assert!(text.trim_end().ends_with("%%EOF"), "no %%EOF");
    let startxref: usize = text
        .rsplit("startxref")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("startxref");
    let xref = &text[startxref..];
    assert!(xref.starts_with("xref"), "startxref does not point at xref");
    let mut lines = xref.lines().skip(1);
    let header = lines.next().expect("xref subsection");
    let (first, count) = header.split_once(' ').expect("first count");
    let (first, count): (usize, usize) = (first.parse().unwrap(), count.trim().parse().unwrap());
    for (n, entry) in lines.take(count).enumerate() {
        let parts: Vec<&str> = entry.split_whitespace().collect();
        if parts.get(2) == Some(&"n") {
            let offset: usize = parts[0].parse().expect("offset");
            let expected = format!("{} 0 obj", first + n);
            assert!(
                text[offset..].starts_with(&expected),
                "object {} not at {offset}",
                first + n
            );
        }
    }
    assert!(text.contains("trailer"), "no trailer");
    let pages = text.matches("/Type /Page").count() - text.matches("/Type /Pages").count();
    let tree_count = text
        .split("/Count ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .expect("/Count");
    (pages, tree_count)
}

#[test]
fn a_print_export_is_a_pdf_with_a_page_per_eight_cards_on_pro() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    let a = host.post(&format!("{CARDS}/exports"), &token, json!({}));
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(
        (a.body["feature"].as_str(), a.body["upgrade_plan"].as_str()),
        (Some("card_export"), Some("pro"))
    );
    let grant = |module: &str, plan: &str| {
        let a = host.post(
            &format!("/v1/tenants/acme/subscriptions/{module}/grant"),
            &host.operator,
            json!({"plan": plan}),
        );
        assert_eq!(a.status, 200, "{a:?}");
    };
    grant("membership", "plus");
    grant("digital-card", "pro");
    for n in 3..=10 {
        let a = host.post(
            "/t/acme/m/membership/members",
            &token,
            json!({"number": format!("M-{n}"), "name": format!("Member Nº {n}")}),
        );
        assert_eq!(a.status, 201, "{a:?}");
    }
    let a = host.post(&format!("{CARDS}/batches"), &token, json!({}));
    assert_eq!(a.status, 202, "{a:?}");
    let batch = a.body["job"].as_str().unwrap().to_owned();
    wait_for_job(&host, &token, &batch);
    let a = host.post(
        &format!("{CARDS}/exports"),
        &token,
        json!({"status": "lost"}),
    );
    assert_eq!(a.status, 422, "{a:?}");
    let a = host.post(&format!("{CARDS}/exports"), &token, json!({}));
    assert_eq!(a.status, 202, "{a:?}");
    assert_eq!(
        (a.body["cards"].as_u64(), a.body["pages"].as_u64()),
        (Some(10), Some(2))
    );
    let job_id = a.body["job"].as_str().unwrap().to_owned();
    let job = wait_for_job(&host, &token, &job_id);
    let url = job["result_url"]
        .as_str()
        .expect("a signed result URL")
        .to_owned();
    let res = host
        .client
        .get(format!("{}{url}", host.base))
        .send()
        .expect("download");
    assert_eq!(res.status().as_u16(), 200);
    let bytes = res.bytes().unwrap().to_vec();
    assert_eq!(parse_pdf(&bytes), (2, 2));
    // One card: one page.
    let a = host.post(
        &format!("{CARDS}/exports"),
        &token,
        json!({"cards": ["C-000003"]}),
    );
    assert_eq!(a.status, 202, "{a:?}");
    assert_eq!(a.body["pages"], 1);
    let a = host.post(
        &format!("{CARDS}/exports"),
        &token,
        json!({"cards": ["C-999"]}),
    );
    assert_eq!(a.status, 404, "{a:?}");
}

#[test]
fn analytics_count_issues_verifications_and_shares_by_plan() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    assert_eq!(host.get(&format!("{CARDS}/analytics"), &token).status, 402);
    let a = issue(&host, &token, json!({"member": "M-1"}));
    let url = a.body["verification_url"].as_str().unwrap().to_owned();
    let a = issue(
        &host,
        &token,
        json!({"member": "M-2", "template": "minimal"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    for _ in 0..3 {
        stranger_get(&host, &url, "application/json");
    }
    let unknown = format!("{}{CARDS}/v/{}", host.base, "0".repeat(32));
    stranger_get(&host, &unknown, "application/json");
    let a = host.post(
        &format!("{CARDS}/cards/C-000001/share-links"),
        &token,
        json!({}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let grant = |plan: &str| {
        let a = host.post(
            "/v1/tenants/acme/subscriptions/digital-card/grant",
            &host.operator,
            json!({"plan": plan}),
        );
        assert_eq!(a.status, 200, "{a:?}");
    };
    grant("pro");
    let a = host.get(&format!("{CARDS}/analytics"), &token);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.body["months"],
        json!([{"month": "2026-03", "cards_issued": 2, "verifications": 4, "shares": 1}])
    );
    let a = host.get(&format!("{CARDS}/analytics/advanced"), &token);
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(a.body["upgrade_plan"], "business");
    grant("business");
    let a = host.get(
        &format!("{CARDS}/analytics/advanced?from=2026-02-28&to=2026-03-01"),
        &token,
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.body["days"],
        json!([
            {"day": "2026-02-28", "cards_issued": 0, "verifications": 0},
            {"day": "2026-03-01", "cards_issued": 2, "verifications": 4}
        ])
    );
    assert_eq!(a.body["by_template"], json!({"classic": 1, "minimal": 1}));
    assert_eq!(a.body["by_status"], json!({"active": 2}));
    assert_eq!(
        a.body["verifications_by_card"],
        json!([{"number": "C-000001", "verifications": 3}])
    );
    let a = host.get(
        &format!("{CARDS}/analytics/advanced?from=2026-03-02&to=2026-03-01"),
        &token,
    );
    assert_eq!(a.status, 400, "{a:?}");
}

#[test]
fn an_upgrade_from_1_0_keeps_cards_verifiable_and_adds_custom_fields() {
    let host = start(&["membership", "digital-card-1.0", "digital-card-v1_1"]);
    let token = host.tenant("acme");
    let a = host.post(
        "/v1/tenants/acme/modules",
        &token,
        json!({"module": "digital-card", "version": "1.0.0"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let a = host.request(
        "PUT",
        &format!("{CARDS}/settings"),
        Some(&token),
        Some(
            json!({"organisation_name": "Club", "verify_base_url": format!("{}{CARDS}", host.base),
                   "allow_multiple_active": false, "valid_days": 365})
            .to_string()
            .into_bytes(),
        ),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let a = host.post(
        "/t/acme/m/membership/members",
        &token,
        json!({"number": "M-1", "name": "Asha Gurung"}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let a = issue(&host, &token, json!({"member": "M-1"}));
    assert_eq!(a.status, 201, "{a:?}");
    assert!(
        a.body.get("fields").is_none(),
        "1.0.0 has no custom fields: {a:?}"
    );
    let url = a.body["verification_url"].as_str().unwrap().to_owned();
    let link = host.post(
        &format!("{CARDS}/cards/C-000001/share-links"),
        &token,
        json!({}),
    );
    let link_url = link.body["url"].as_str().unwrap().to_owned();
    // 1.0.0 does not route /fields.
    assert_eq!(host.get(&format!("{CARDS}/fields"), &token).status, 404);

    let a = host.post(
        "/v1/tenants/acme/modules/digital-card/upgrade",
        &token,
        json!({"version": "1.1.0"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["installation"]["version"], "1.1.0");
    assert_eq!(
        a.body["applied_migrations"],
        json!(["0002_custom_fields", "0003_branding"])
    );
    let card = card(&host, &token, "C-000001");
    assert_eq!(
        (card["status"].as_str(), card["verification_url"].as_str()),
        (Some("active"), Some(url.as_str()))
    );
    assert_eq!(card["fields"], json!({}));
    let page = stranger_get(&host, &url, "application/json");
    assert_eq!(page.json()["status"], "valid", "{}", page.text);
    assert_eq!(
        stranger_get(&host, &link_url, "application/json").status,
        200
    );
    // The count carried over: one of free's 3 cards is used.
    let a = host.get("/v1/tenants/acme/usage?module=digital-card", &token);
    let line = a.body["modules"][0]["usage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["key"] == "max_cards")
        .cloned()
        .unwrap();
    assert_eq!(
        (line["used"].as_u64(), line["limit"].as_u64()),
        (Some(1), Some(3)),
        "{a:?}"
    );
    let a = issue(&host, &token, json!({"member": "M-1", "number": "dup"}));
    assert_eq!(a.status, 409, "one active card per member: {a:?}");
    // Custom fields are business.
    let a = host.get(&format!("{CARDS}/fields"), &token);
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(a.body["upgrade_plan"], "business");
}

#[test]
fn custom_fields_are_validated_on_issue_and_shown_on_cards() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    // Without the feature, values are refused too.
    let a = issue(
        &host,
        &token,
        json!({"member": "M-1", "fields": {"level": "gold"}}),
    );
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(a.body["feature"], "custom_fields");
    let a = host.post(
        "/v1/tenants/acme/subscriptions/digital-card/grant",
        &host.operator,
        json!({"plan": "business"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let fields = format!("{CARDS}/fields");
    for bad in [
        json!({"name": "Level", "type": "text"}),
        json!({"name": "level", "type": "colour"}),
        json!({"name": "level", "type": "choice"}),
        json!({"name": "level", "type": "text", "choices": ["a"]}),
        json!({"name": "level", "type": "choice", "choices": []}),
    ] {
        let a = host.post(&fields, &token, bad.clone());
        assert_eq!(a.status, 422, "{bad}: {a:?}");
    }
    for def in [
        json!({"name": "level", "label": "Level", "type": "choice", "choices": ["gold", "silver"], "required": true}),
        json!({"name": "bib", "type": "number"}),
        json!({"name": "since", "label": "Member since", "type": "date"}),
        json!({"name": "club", "type": "text"}),
    ] {
        let a = host.post(&fields, &token, def.clone());
        assert_eq!(a.status, 201, "{def}: {a:?}");
    }
    let a = host.post(&fields, &token, json!({"name": "bib", "type": "text"}));
    assert_eq!(a.status, 409, "{a:?}");
    let a = host.get(&fields, &token);
    assert_eq!(a.body["fields"].as_array().unwrap().len(), 4, "{a:?}");

    for (values, needle) in [
        (json!({}), "`level` is required"),
        (json!({"level": "bronze"}), "one of gold, silver"),
        (
            json!({"level": "gold", "bib": "7"}),
            "`bib` must be a number",
        ),
        (
            json!({"level": "gold", "since": "2026-02-30"}),
            "`since` must be a date",
        ),
        (json!({"level": "gold", "club": ""}), "`club` must be text"),
        (
            json!({"level": "gold", "shoe": 42}),
            "`shoe` is not a custom field",
        ),
    ] {
        let a = issue(&host, &token, json!({"member": "M-1", "fields": values}));
        assert_eq!(a.status, 422, "{values}: {a:?}");
        assert!(a.detail().contains(needle), "{values}: {}", a.detail());
    }
    // Refusals took no card.
    assert_eq!(
        host.get(&format!("{CARDS}/cards"), &token).body["cards"],
        json!([])
    );
    let a = issue(
        &host,
        &token,
        json!({"member": "M-1", "fields": {"level": "gold", "bib": 42, "since": "2020-01-15", "club": "Trail <runners>"}}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(
        a.body["fields"],
        json!({"level": "gold", "bib": "42", "since": "2020-01-15", "club": "Trail <runners>"})
    );
    let face = host.get(&format!("{CARDS}/cards/C-000001/card.svg"), &token);
    let face = String::from_utf8(face.bytes).unwrap();
    assert!(face.contains("Level: gold") && face.contains("Member since: 2020-01-15"));
    assert!(face.contains("club: Trail &lt;runners&gt;"));
    // A batch cannot fill a required field.
    let a = host.post(&format!("{CARDS}/batches"), &token, json!({}));
    assert_eq!(a.status, 422, "{a:?}");
    assert_eq!(host.delete(&format!("{fields}/level"), &token).status, 204);
    assert_eq!(host.delete(&format!("{fields}/level"), &token).status, 404);
    assert_eq!(
        card(&host, &token, "C-000001")["fields"]["level"],
        Value::Null
    );
}

#[test]
fn bulk_qr_sheets_are_business_and_a_pdf_of_twenty_codes_a_page() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    let grant = |module: &str, plan: &str| {
        let a = host.post(
            &format!("/v1/tenants/acme/subscriptions/{module}/grant"),
            &host.operator,
            json!({"plan": plan}),
        );
        assert_eq!(a.status, 200, "{a:?}");
    };
    let a = issue(&host, &token, json!({"member": "M-1"}));
    assert_eq!(a.status, 201, "{a:?}");
    let a = host.post(&format!("{CARDS}/qr-sheets"), &token, json!({}));
    assert_eq!(a.status, 402, "{a:?}");
    grant("digital-card", "pro");
    let a = host.post(&format!("{CARDS}/qr-sheets"), &token, json!({}));
    assert_eq!(
        (a.status, a.body["upgrade_plan"].as_str()),
        (402, Some("business")),
        "{a:?}"
    );
    grant("digital-card", "business");
    grant("membership", "plus");
    for n in 3..=22 {
        let a = host.post(
            "/t/acme/m/membership/members",
            &token,
            json!({"number": format!("M-{n}"), "name": format!("Member {n}")}),
        );
        assert_eq!(a.status, 201, "{a:?}");
        let a = issue(&host, &token, json!({"member": format!("M-{n}")}));
        assert_eq!(a.status, 201, "{a:?}");
    }
    let a = host.post(&format!("{CARDS}/qr-sheets"), &token, json!({}));
    assert_eq!(a.status, 202, "{a:?}");
    assert_eq!(
        (a.body["cards"].as_u64(), a.body["pages"].as_u64()),
        (Some(21), Some(2))
    );
    let job_id = a.body["job"].as_str().unwrap().to_owned();
    let job = wait_for_job(&host, &token, &job_id);
    let url = job["result_url"].as_str().expect("result_url").to_owned();
    let bytes = host
        .client
        .get(format!("{}{url}", host.base))
        .send()
        .unwrap()
        .bytes()
        .unwrap()
        .to_vec();
    assert_eq!(parse_pdf(&bytes), (2, 2));
}

#[test]
fn branding_on_pro_colours_cards_and_a_downgrade_keeps_it_unapplied() {
    let host = start(&["membership", "digital-card"]);
    let token = setup(&host);
    let a = issue(&host, &token, json!({"member": "M-1"}));
    assert_eq!(a.status, 201, "{a:?}");
    let branding = format!("{CARDS}/branding");
    let body =
        json!({"background": "#fef3c7", "text": "#111111", "accent": "#7c2d12", "font": "serif"});
    let put = |body: &Value| {
        host.request(
            "PUT",
            &branding,
            Some(&token),
            Some(body.to_string().into_bytes()),
        )
    };
    let a = put(&body);
    assert_eq!(
        (a.status, a.body["upgrade_plan"].as_str()),
        (402, Some("pro")),
        "{a:?}"
    );
    let grant = |plan: &str| {
        let a = host.post(
            "/v1/tenants/acme/subscriptions/digital-card/grant",
            &host.operator,
            json!({"plan": plan}),
        );
        assert_eq!(a.status, 200, "{a:?}");
    };
    grant("pro");
    for bad in [
        json!({"accent": "red", "font": "serif"}),
        json!({"font": "comic"}),
        json!({"accent": "#12345g", "font": "sans"}),
    ] {
        assert_eq!(put(&bad).status, 422, "{bad}");
    }
    let a = put(&body);
    assert_eq!(a.status, 200, "{a:?}");
    let png = b"\x89PNG\r\n\x1a\nlogo-bytes".to_vec();
    let a = host.request("PUT", &format!("{branding}/logo"), Some(&token), Some(png));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["has_logo"], true);
    let a = host.request(
        "PUT",
        &format!("{branding}/logo"),
        Some(&token),
        Some(b"GIF89a".to_vec()),
    );
    assert_eq!(a.status, 415, "{a:?}");
    let face = |host: &Host| {
        String::from_utf8(
            host.get(&format!("{CARDS}/cards/C-000001/card.svg"), &token)
                .bytes,
        )
        .unwrap()
    };
    let branded = face(&host);
    assert!(
        branded.contains("#fef3c7") && branded.contains("#7c2d12"),
        "{branded}"
    );
    assert!(branded.contains("Noto Serif") && branded.contains("data:image/png;base64,"));
    // The public share page shows the branded card too.
    let link = host.post(
        &format!("{CARDS}/cards/C-000001/share-links"),
        &token,
        json!({}),
    );
    let page = stranger_get(&host, link.body["url"].as_str().unwrap(), "text/html");
    assert!(page.text.contains("#7c2d12"), "{}", page.text);
    // Back on free: branding is kept but not applied; reading it is 402.
    grant("free");
    let plain = face(&host);
    assert!(!plain.contains("#7c2d12") && !plain.contains("Noto Serif"));
    assert!(plain.contains("#1d4ed8"), "the classic template's accent");
    assert_eq!(host.get(&branding, &token).status, 402);
    grant("pro");
    assert_eq!(host.get(&branding, &token).body["font"], "serif");
    assert!(face(&host).contains("#7c2d12"));
}
