//! Renewal invoices for wallet payers through the real binary, on the
//! manual clock, with the SMTP sink and the fake eSewa and Khalti: the
//! renewal invoice is emailed once with a payment link; the link's page
//! shows the invoice and pays that very invoice; the payment renews the
//! period exactly once; a paid invoice's link offers nothing more; a
//! tampered or expired link is a plain 404; and an unpaid renewal goes
//! past due at the period end. The host runs with the default fiscal year
//! (`bs`), so invoices are numbered in BS fiscal year 2082/83.

use std::time::Duration;

/// The invoice PDF's test reader, shared with the host's unit tests.
#[path = "../../host/src/payments/pdf_extract.rs"]
pub(crate) mod pdf_extract;

use serde_json::{Value, json};

use crate::fake_providers::{FakeEsewa, FakeKhalti};
use crate::smtp_sink::{Received, SmtpSink};
use crate::support::{Answer, Host, workspace_root};

/// 1 January 2026: Poush 17, 2082, fiscal year 2082/83.
const START: &str = "2026-01-01T00:00:00Z";
const ESEWA_KEY: &str = "8gBm/:&EnhH.1/q";
const KHALTI_KEY: &str = "test_secret_key_0123456789abcdef";
const WAIT: Duration = Duration::from_secs(20);
const DAY: i64 = 86_400;

struct World {
    host: Host,
    sink: SmtpSink,
    esewa: FakeEsewa,
    browser: reqwest::blocking::Client,
    _khalti: FakeKhalti,
}

fn world() -> World {
    let sink = SmtpSink::start();
    let esewa = FakeEsewa::start(ESEWA_KEY);
    let khalti = FakeKhalti::start(KHALTI_KEY);
    let plans = workspace_root().join("tests/e2e/plans-payments");
    let plans = plans.to_str().expect("utf-8").to_owned();
    let smtp = sink.url();
    let host = Host::start_with(
        &[],
        &[
            "--plans",
            &plans,
            "--manual-clock",
            START,
            "--esewa-base-url",
            &esewa.base,
            "--esewa-secret-key",
            ESEWA_KEY,
            "--khalti-base-url",
            &khalti.base,
            "--khalti-secret-key",
            KHALTI_KEY,
            "--payments-http-timeout-secs",
            "2",
            "--smtp-url",
            &smtp,
            "--mail-from",
            "Souk Billing <billing@souk.test>",
            "--seller-name",
            "Souk Nepal Pvt. Ltd.",
            "--seller-pan",
            "609876543",
        ],
    );
    let browser = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("browser");
    World {
        host,
        sink,
        esewa,
        browser,
        _khalti: khalti,
    }
}

/// An active admin of `tenant`, written into the control plane's `users`
/// table (as tests/e2e/email.rs does).
fn add_admin(host: &Host, tenant: &str, email: &str) {
    let tenant_id = host.tenant_id(tenant);
    let control = rusqlite::Connection::open(host.data_dir().join("control.sqlite"))
        .expect("open the control plane");
    control
        .busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    control
        .execute(
            "INSERT INTO users (id, tenant_id, email, email_key, display_name, role, status, \
             member_number, created_at, updated_at) \
             VALUES (?1, ?2, ?3, lower(?3), 'Admin', 'admin', 'active', NULL, ?4, ?4)",
            rusqlite::params![format!("usr_{tenant}"), tenant_id, email, START],
        )
        .expect("insert user");
}

fn checkout_ok(w: &World, tenant: &str, token: &str, body: Value) -> Value {
    let a = w
        .host
        .post(&format!("/v1/tenants/{tenant}/checkout"), token, body);
    assert_eq!(a.status, 201, "{a:?}");
    a.body
}

/// The path and query of a URL on the host.
fn on_host(url: &str) -> String {
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("{url} is not on the host"));
    rest[rest.find('/').expect("a path")..].to_owned()
}

fn visit(w: &World, path: &str) -> Answer {
    w.host.request("GET", path, None, None)
}

fn text(a: &Answer) -> String {
    String::from_utf8_lossy(&a.bytes).into_owned()
}

/// The browser posts `fields` to eSewa's form; answers where eSewa sends
/// it back.
fn pay_esewa_form(w: &World, action: &str, fields: &[(String, String)]) -> String {
    assert_eq!(action, format!("{}/api/epay/main/v2/form", w.esewa.base));
    let res = w.browser.post(action).form(fields).send().unwrap();
    assert_eq!(res.status().as_u16(), 302, "the fake refused the form");
    res.headers()["location"].to_str().unwrap().to_owned()
}

fn pay_esewa(w: &World, next: &Value) -> String {
    let fields: Vec<(String, String)> = next["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f[0].as_str().unwrap().to_owned(),
                f[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    pay_esewa_form(w, next["action"].as_str().unwrap(), &fields)
}

/// The browser presses a button of the payment page: POST
/// `/pay/{token}/{provider}` (a form with no fields).
fn press(w: &World, path: &str) -> reqwest::blocking::Response {
    w.browser
        .post(format!("{}{path}", w.host.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .unwrap()
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in `tag` (`name="..."`), unescaped.
fn attribute(tag: &str, name: &str) -> String {
    let start = tag
        .find(&format!("{name}=\""))
        .unwrap_or_else(|| panic!("no {name} in {tag}"))
        + name.len()
        + 2;
    let end = start + tag[start..].find('"').expect("closing quote");
    unescape(&tag[start..end])
}

/// The action and hidden fields of the one form of an HTML page.
fn form_of(page: &str) -> (String, Vec<(String, String)>) {
    let form = &page[page.find("<form").expect("a form")..];
    let action = attribute(&form[..form.find('>').unwrap()], "action");
    let fields = form
        .split("<input ")
        .skip(1)
        .map(|tag| {
            let tag = &tag[..tag.find('>').unwrap()];
            (attribute(tag, "name"), attribute(tag, "value"))
        })
        .collect();
    (action, fields)
}

fn subscription(w: &World, tenant: &str, token: &str) -> Value {
    let a = w
        .host
        .get(&format!("/v1/tenants/{tenant}/subscriptions/cards"), token);
    assert_eq!(a.status, 200, "{a:?}");
    a.body["subscription"].clone()
}

fn invoices(w: &World, tenant: &str, token: &str) -> Vec<Value> {
    w.host.invoices(tenant, token)
}

fn maintain(w: &World) -> Value {
    w.host.run_maintenance()
}

fn advance(w: &World, seconds: i64) {
    w.host.advance_clock(seconds);
}

/// `data`'s body with quoted-printable soft breaks and `=3D` undone.
fn unquoted(data: &str) -> String {
    data.replace("=\r\n", "").replace("=3D", "=")
}

/// The payment link in a renewal email.
fn link_in(message: &Received) -> String {
    let body = unquoted(&message.data);
    let start = body.find("http://127.0.0.1:").expect("a link in the email");
    let end = start
        + body[start..]
            .find(|c: char| c.is_whitespace())
            .unwrap_or(body.len() - start);
    body[start..end].to_owned()
}

/// A tenant `slug` with an admin, holding Digital Card pro paid with eSewa
/// for January; answers its token.
fn paying_tenant(w: &World, slug: &str) -> String {
    let token = w.host.tenant(slug);
    add_admin(&w.host, slug, &format!("admin@{slug}.example"));
    let answer = checkout_ok(
        w,
        slug,
        &token,
        json!({"provider": "esewa", "module": "cards", "plan": "pro"}),
    );
    // Numbers are per host: this invoice follows every other tenant's.
    let n = invoices_on_host(w);
    assert_eq!(
        answer["invoice"]["number"],
        format!("INV-2082/83-{n:06}"),
        "{answer}"
    );
    let back = pay_esewa(w, &answer["next"]);
    assert_eq!(visit(w, &on_host(&back)).body["outcome"], "granted");
    token
}

fn invoices_on_host(w: &World) -> usize {
    let a = w.host.get("/v1/invoices", &w.host.operator);
    a.body["invoices"].as_array().unwrap().len()
}

#[test]
fn a_renewal_invoice_is_emailed_once_and_its_link_pays_it_exactly_once() {
    let w = world();
    let token = paying_tenant(&w, "renew-org");
    let first_end = subscription(&w, "renew-org", &token)["period_end"].clone();
    assert_eq!(first_end, "2026-02-01T00:00:00Z");
    // Three days before the period ends the renewal invoice is issued and
    // emailed to the admin, once.
    advance(&w, 29 * DAY);
    let report = maintain(&w);
    assert!(
        report["changes"]
            .to_string()
            .contains("renewal invoice renew-org/cards: INV-2082/83-000002"),
        "{report}"
    );
    let messages = w.sink.wait_for(1, WAIT);
    assert_eq!(messages.len(), 1, "{messages:?}");
    let mail = &messages[0];
    assert_eq!(mail.rcpt_to, ["<admin@renew-org.example>"]);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("Invoice INV-2082/83-000002 to renew cards")
    );
    let body = unquoted(&mail.data);
    assert!(body.contains("NPR 563.87"), "{body}");
    let link = link_in(mail);
    assert!(link.contains("/pay/"), "{link}");
    // The notification lists the same link.
    let notes = w.host.get("/v1/tenants/renew-org/notifications", &token);
    assert!(notes.body.to_string().contains(&link), "{notes:?}");
    // Further runs email nothing more.
    maintain(&w);
    maintain(&w);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(w.sink.messages().len(), 1);

    // The link's page: the invoice and a button per wallet.
    let path = on_host(&link);
    let page = visit(&w, &path);
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.content_type.starts_with("text/html"), "{page:?}");
    let html = text(&page);
    for expected in [
        "Tax Invoice INV-2082/83-000002",
        "Souk Nepal Pvt. Ltd.",
        "NPR 499.00",
        "VAT 13%",
        "NPR 64.87",
        "NPR 563.87",
        "Pay with eSewa",
        "Pay with Khalti",
    ] {
        assert!(html.contains(expected), "{expected:?} not in {html}");
    }
    assert!(!html.contains("<script"), "{html}");

    // A tampered token, another invoice's token shape, junk: plain 404s
    // that say nothing about why.
    let token_part = path.trim_start_matches("/pay/").to_owned();
    let (payload, mac) = token_part.split_once('.').unwrap();
    let mut flipped = mac.to_owned().into_bytes();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let tampered = format!("/pay/{payload}.{}", String::from_utf8(flipped).unwrap());
    let forged = {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let longer = raw.rsplit_once('|').unwrap().0.to_owned() + "|9999999999";
        format!(
            "/pay/{}.{mac}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(longer)
        )
    };
    for bad in [
        tampered.as_str(),
        forged.as_str(),
        "/pay/nothing",
        "/pay/a.b",
    ] {
        let a = visit(&w, bad);
        assert_eq!(a.status, 404, "{bad}: {a:?}");
        assert_eq!(a.detail(), "no such payment link", "{bad}");
        let a = press(&w, &format!("{bad}/esewa"));
        assert_eq!(a.status().as_u16(), 404, "{bad}");
    }
    assert_eq!(press(&w, &format!("{path}/manual")).status().as_u16(), 400);

    // Paying with eSewa: the page hands the browser the signed form.
    let res = press(&w, &format!("{path}/esewa"));
    assert_eq!(res.status().as_u16(), 200);
    let html = res.text().unwrap();
    let (action, fields) = form_of(&html);
    let total = fields.iter().find(|(n, _)| n == "total_amount").unwrap();
    assert_eq!(total.1, "563.87");
    let back = pay_esewa_form(&w, &action, &fields);
    let answer = visit(&w, &on_host(&back));
    assert_eq!(answer.body["outcome"], "granted", "{answer:?}");
    assert_eq!(answer.body["invoice"], "INV-2082/83-000002");
    assert_eq!(answer.body["invoice_status"], "paid");
    // The browser coming back twice changes nothing (one prepaid period).
    let again = visit(&w, &on_host(&back));
    assert_eq!(again.body["invoice_status"], "paid", "{again:?}");
    let sub = subscription(&w, "renew-org", &token);
    assert_eq!(sub["prepaid_periods"], 1, "{sub}");
    assert_eq!(sub["period_end"], first_end);

    // The paid invoice's link says so and offers no payment.
    let page = visit(&w, &path);
    assert_eq!(page.status, 200);
    let html = text(&page);
    assert!(html.contains("This invoice is paid"), "{html}");
    assert!(!html.contains("Pay with"), "{html}");
    assert!(!html.contains("<form"), "{html}");
    let res = press(&w, &format!("{path}/khalti"));
    assert_eq!(res.status().as_u16(), 409);
    assert!(res.text().unwrap().contains("This invoice is paid"));

    // The period ends: renewed once with the prepaid period.
    advance(&w, 3 * DAY);
    maintain(&w);
    maintain(&w);
    let sub = subscription(&w, "renew-org", &token);
    assert_eq!(sub["state"], "active", "{sub}");
    assert_eq!(sub["prepaid_periods"], 0, "{sub}");
    assert_eq!(sub["period_end"], "2026-03-01T00:00:00Z", "{sub}");
    let listed = invoices(&w, "renew-org", &token);
    let statuses: Vec<(&str, &str)> = listed
        .iter()
        .map(|i| (i["number"].as_str().unwrap(), i["status"].as_str().unwrap()))
        .collect();
    // The next renewal's invoice (for March) is not due yet.
    assert_eq!(
        statuses,
        [
            ("INV-2082/83-000002", "paid"),
            ("INV-2082/83-000001", "paid")
        ]
    );

    // Thirty days after it was made, the link no longer works.
    advance(&w, 28 * DAY);
    assert_eq!(visit(&w, &path).status, 404);
}

#[test]
fn a_link_pays_with_khalti_and_an_unpaid_renewal_goes_past_due_at_the_period_end() {
    let w = world();
    let payer = paying_tenant(&w, "khalti-org");
    let late = paying_tenant(&w, "late-org");
    advance(&w, 29 * DAY);
    maintain(&w);
    let messages = w.sink.wait_for(2, WAIT);
    assert_eq!(messages.len(), 2, "{messages:?}");
    let to_payer = messages
        .iter()
        .find(|m| m.rcpt_to == ["<admin@khalti-org.example>"])
        .expect("the payer's email");
    let to_late = messages
        .iter()
        .find(|m| m.rcpt_to == ["<admin@late-org.example>"])
        .expect("the late tenant's email");
    let subject = to_payer.header("Subject").unwrap();
    let emailed_number = subject
        .strip_prefix("Invoice ")
        .and_then(|s| s.strip_suffix(" to renew cards"))
        .unwrap_or_else(|| panic!("{subject}"))
        .to_owned();
    let payer_link = on_host(&link_in(to_payer));
    let late_link = on_host(&link_in(to_late));
    assert_ne!(payer_link, late_link);

    // Khalti: the button redirects to Khalti's payment page; the payer
    // pays; the browser comes back.
    let res = press(&w, &format!("{payer_link}/khalti"));
    assert_eq!(res.status().as_u16(), 303);
    let payment_url = res.headers()["location"].to_str().unwrap().to_owned();
    let res = w.browser.get(&payment_url).send().unwrap();
    assert_eq!(res.status().as_u16(), 302);
    let back = res.headers()["location"].to_str().unwrap().to_owned();
    let answer = visit(&w, &on_host(&back));
    assert_eq!(answer.body["outcome"], "granted", "{answer:?}");
    // The very invoice the email named.
    let paid_number = answer.body["invoice"].as_str().unwrap().to_owned();
    assert_eq!(paid_number, emailed_number);
    assert!(text(&visit(&w, &payer_link)).contains("This invoice is paid"));
    // The late tenant's link still offers payment of its own invoice.
    let html = text(&visit(&w, &late_link));
    assert!(html.contains("Pay with Khalti"), "{html}");
    assert!(!html.contains(&paid_number), "{html}");

    advance(&w, 3 * DAY);
    maintain(&w);
    let sub = subscription(&w, "khalti-org", &payer);
    assert_eq!(sub["state"], "active", "{sub}");
    assert_eq!(sub["period_end"], "2026-03-01T00:00:00Z", "{sub}");
    let sub = subscription(&w, "late-org", &late);
    assert_eq!(sub["state"], "past_due", "{sub}");
    // Its renewal invoice stays open and its link still pays it.
    let open: Vec<Value> = invoices(&w, "late-org", &late)
        .into_iter()
        .filter(|i| i["status"] == "open")
        .collect();
    assert_eq!(open.len(), 1, "{open:?}");
    let res = press(&w, &format!("{late_link}/khalti"));
    assert_eq!(res.status().as_u16(), 303);
}

#[test]
fn a_tenant_named_in_devanagari_gets_an_invoice_pdf_whose_text_extracts() {
    let w = world();
    let name = "नेपाल युवा क्लब";
    let a = w.host.post(
        "/v1/tenants",
        &w.host.operator,
        json!({"slug": "yuva", "name": name}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let a = w.host.post(
        "/v1/tenants/yuva/tokens",
        &w.host.operator,
        json!({"name": "admin"}),
    );
    let token = a.body["token"].as_str().unwrap().to_owned();
    let answer = checkout_ok(
        &w,
        "yuva",
        &token,
        json!({"provider": "esewa", "module": "cards", "plan": "pro", "pan": "301234567"}),
    );
    let id = answer["invoice"]["id"].as_str().unwrap();
    let pdf = w
        .host
        .get(&format!("/v1/tenants/yuva/invoices/{id}/pdf"), &token);
    assert_eq!(pdf.status, 200);
    assert_eq!(pdf.content_type, "application/pdf");
    let raw = String::from_utf8_lossy(&pdf.bytes);
    // Subsetted TrueType fonts with ToUnicode maps, not the standard 14.
    assert!(raw.contains("/FontFile2") && raw.contains("/ToUnicode"));
    assert!(!raw.contains("/Helvetica"));
    let shown = pdf_extract::pdf_text(&pdf.bytes).expect("the PDF parses");
    for expected in [
        format!("Bill to: {name}"),
        "Tax Invoice INV-2082/83-000001".to_owned(),
        "NPR 499.00".to_owned(),
        "NPR 64.87".to_owned(),
        "NPR 563.87".to_owned(),
    ] {
        assert!(shown.contains(&expected), "{expected:?} not in {shown:?}");
    }
    // Truncated, it does not parse.
    assert!(pdf_extract::pdf_text(&pdf.bytes[..pdf.bytes.len() / 2]).is_err());
}
