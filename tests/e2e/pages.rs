//! Module pages never act with the host's authority (issue 15), through
//! the real binary and the `hostile-pages` test module: every bad answer
//! is refused (502 naming the module) or neutralised, the host keeps
//! serving, module pages live on an origin of their own, and — in headless
//! Chromium — a signed-in member's browser opening the hostile page gives
//! its script neither the session cookie nor a 2xx with the member's
//! authority.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::support::Host;

const MODULE: &str = "hostile-pages";
const HOST_CSP: &str =
    "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
}

/// A client that follows no redirect.
fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

fn get(base: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = client().get(format!("{base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().expect("request sent");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().expect("body");
    Reply {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn page(tenant: &str, route: &str) -> String {
    format!("/t/{tenant}/m/{MODULE}/{route}")
}

/// A host with the hostile module installed for tenant `acme`; answers the
/// host and the tenant's token.
fn hostile_host(args: &[&str]) -> (Host, String) {
    let host = Host::start_with(&[MODULE], args);
    let token = host.tenant_with("acme", MODULE);
    assert!(
        host.module_base.starts_with("http://127.0.0.1:"),
        "no module origin: {:?}",
        host.module_base
    );
    (host, token)
}

fn assert_refused(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 502, "{what}: {:?}", reply.body);
    assert_eq!(
        reply.body["type"], "https://souk.dev/problems/module-answer-refused",
        "{what}: {:?}",
        reply.body
    );
    let detail = reply.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(MODULE), "{what}: {detail}");
    assert!(reply.all("set-cookie").is_empty(), "{what}");
}

fn assert_host_serves(host: &Host, token: &str) {
    assert_eq!(host.get("/healthz", token).status, 200);
    let pages = if host.module_base.starts_with("http") {
        &host.module_base
    } else {
        &host.base
    };
    let ok = get(pages, &page("acme", "untyped"), &[]);
    assert_eq!(ok.status, 200, "the module still answers");
    assert_eq!(host.get("/v1/tenants/acme", token).status, 200);
}

#[test]
fn host_owned_headers_never_leave_and_answers_are_typed_nosniff_and_sandboxed() {
    let (host, _token) = hostile_host(&[]);
    for base in [host.base.as_str(), host.module_base.as_str()] {
        let r = get(base, &page("acme", "bad-headers"), &[]);
        assert_eq!(r.status, 200, "{base}");
        for name in [
            "set-cookie",
            "access-control-allow-origin",
            "access-control-allow-credentials",
            "access-control-expose-headers",
            "strict-transport-security",
            "clear-site-data",
            "keep-alive",
            "transfer-encoding",
            "upgrade",
            "te",
            "trailer",
            "proxy-authenticate",
            "alt-svc",
            "nel",
            "report-to",
            "refresh",
            "www-authenticate",
            "service-worker-allowed",
            "accept-ch",
            "set-login",
        ] {
            assert!(r.all(name).is_empty(), "{base}: {name} reached the client");
        }
        assert!(!r.all("connection").contains(&"close".to_owned()), "{base}");
        assert_eq!(r.all("x-content-type-options"), ["nosniff"], "{base}");
        assert_eq!(
            r.all("content-length"),
            ["every header the host owns".len().to_string()]
        );
        let csp = r.all("content-security-policy");
        assert!(csp.iter().any(|p| p == HOST_CSP), "{base}: {csp:?}");
        assert_eq!(r.all("x-module-note"), ["kept"], "{base}");

        let untyped = get(base, &page("acme", "untyped"), &[]);
        assert_eq!(untyped.status, 200);
        assert_eq!(untyped.all("content-type"), ["application/octet-stream"]);
        assert_eq!(untyped.all("x-content-type-options"), ["nosniff"]);
        assert!(
            untyped
                .all("content-security-policy")
                .contains(&HOST_CSP.to_owned())
        );
    }
}

#[test]
fn bad_answers_are_refused_naming_the_module_and_the_host_keeps_serving() {
    let (host, token) = hostile_host(&[]);
    let base = host.module_base.clone();
    let crlf = get(&base, &page("acme", "crlf"), &[]);
    assert_refused(&crlf, "CRLF in a header value");
    assert!(crlf.all("x-note").is_empty());
    for code in [0, 100, 101, 103, 199, 600, 999, 65535] {
        let r = get(&base, &page("acme", &format!("status?code={code}")), &[]);
        assert_refused(&r, &format!("status {code}"));
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap()
                .contains(&code.to_string()),
            "{:?}",
            r.body
        );
    }
    for code in [200, 204, 404, 418, 599] {
        let r = get(&base, &page("acme", &format!("status?code={code}")), &[]);
        assert_eq!(r.status, code, "status {code} passes");
    }
    assert_refused(
        &get(&base, &page("acme", "many-headers"), &[]),
        "10,000 headers",
    );
    assert_eq!(
        get(&base, &page("acme", "many-headers?count=50"), &[]).status,
        200
    );
    assert_refused(
        &get(&base, &page("acme", "big-header"), &[]),
        "1 MiB header",
    );
    assert_refused(
        &get(&base, &page("acme", "big-header?bytes=20000"), &[]),
        "20 KB header",
    );
    // The API origin refuses the same way.
    assert_refused(&get(&host.base, &page("acme", "crlf"), &[]), "CRLF, API");
    assert_host_serves(&host, &token);
}

#[test]
fn a_refused_answer_takes_the_calls_writes_back() {
    let (host, _token) = hostile_host(&[]);
    let post = |query: &str| {
        let response = client()
            .post(format!(
                "{}{}",
                host.module_base,
                page("acme", &format!("write-then?{query}"))
            ))
            .send()
            .expect("request sent");
        response.status().as_u16()
    };
    let visits = || get(&host.module_base, &page("acme", "visits"), &[]).body["visits"].clone();
    assert_eq!(visits(), 0);
    assert_eq!(post("code=999"), 502);
    assert_eq!(post("code=101"), 502);
    assert_eq!(post("code=200&crlf=1"), 502);
    assert_eq!(visits(), 0, "a refused answer's write was kept");
    assert_eq!(post("code=201"), 201);
    assert_eq!(visits(), 1);
}

#[test]
fn header_limits_are_operator_knobs() {
    let (host, token) = hostile_host(&["--module-max-headers", "20"]);
    let base = host.module_base.clone();
    assert_refused(
        &get(&base, &page("acme", "many-headers?count=30"), &[]),
        "30 headers over a limit of 20",
    );
    assert_eq!(
        get(&base, &page("acme", "many-headers?count=10"), &[]).status,
        200
    );
    assert_host_serves(&host, &token);
}

#[test]
fn redirects_stay_in_the_module_unless_the_manifest_allows_the_origin() {
    let (host, token) = hostile_host(&[]);
    let redirect = |to: &str| {
        let query: String = url_encode(to);
        get(
            &host.module_base,
            &page("acme", &format!("redirect?to={query}")),
            &[],
        )
    };
    for kept in [
        "/t/acme/m/hostile-pages/whoami",
        "https://pay.example.com/checkout?id=1",
    ] {
        let r = redirect(kept);
        assert_eq!(r.status, 302);
        assert_eq!(r.all("location"), [kept]);
    }
    for dropped in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "/v1/tenants/acme/users",
        "/t/acme/m/hostile-pages/../../../../v1/tenants",
        "/t/acme/m/other/x",
        "javascript:alert(document.cookie)",
        "http://pay.example.com/",
    ] {
        let r = redirect(dropped);
        assert_eq!(r.status, 302, "{dropped}");
        assert!(r.all("location").is_empty(), "{dropped} was kept");
    }
    assert_host_serves(&host, &token);
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn the_module_origin_serves_module_pages_only_and_browsers_are_sent_there() {
    let (host, _token) = hostile_host(&[]);
    for path in [
        "/v1/tenants",
        "/healthz",
        "/f/anything",
        "/v1/tenants/acme/sessions",
    ] {
        let r = get(&host.module_base, path, &[]);
        assert_eq!(r.status, 404, "{path} on the module origin");
        assert_eq!(r.all("x-content-type-options"), ["nosniff"]);
        assert!(
            r.all("content-security-policy")
                .contains(&HOST_CSP.to_owned())
        );
    }
    // A member route without a session: the host's 401, sandboxed too.
    let r = get(&host.module_base, &page("acme", "whoami"), &[]);
    assert_eq!(r.status, 401);
    assert!(
        r.all("content-security-policy")
            .contains(&HOST_CSP.to_owned())
    );

    // A browser visiting a module page on the API origin goes to the
    // module origin; an API client is served where it asked.
    let path = page("acme", "bad-headers?x=1");
    let visit = get(&host.base, &path, &[("sec-fetch-mode", "navigate")]);
    assert_eq!(visit.status, 303);
    assert_eq!(
        visit.all("location"),
        [format!("{}{path}", host.module_base)]
    );
    let api = get(&host.base, &path, &[]);
    assert_eq!(api.status, 200);
    let fetch = get(&host.base, &path, &[("sec-fetch-mode", "cors")]);
    assert_eq!(fetch.status, 200);
    // Not a module path: no redirect.
    let other = get(&host.base, "/healthz", &[("sec-fetch-mode", "navigate")]);
    assert_eq!(other.status, 200);
}

#[test]
fn a_member_signed_in_by_cookie_is_served_member_pages_on_the_module_origin() {
    let (host, token) = hostile_host(&[]);
    let (user_id, session) = member(&host, &token, "cookie@acme.example");
    let cookie = format!("souk_session={session}");
    let r = get(
        &host.module_base,
        &page("acme", "whoami"),
        &[("cookie", cookie.as_str())],
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["context"]["caller"]["id"], user_id.as_str());
    assert!(
        r.all("content-security-policy")
            .contains(&HOST_CSP.to_owned())
    );
    // Without it the member route is closed.
    assert_eq!(
        get(&host.module_base, &page("acme", "whoami"), &[]).status,
        401
    );
}

/// Creates an active member and signs them in; answers (user id, session
/// token).
fn member(host: &Host, token: &str, email: &str) -> (String, String) {
    let created = host.post(
        "/v1/tenants/acme/users",
        token,
        json!({"email": email, "role": "member"}),
    );
    assert_eq!(created.status, 201, "{:?}", created.body);
    let user_id = created.body["user"]["id"].as_str().unwrap().to_owned();
    let invitation = created.body["invitation"]["token"].as_str().unwrap();
    let accepted = host.request(
        "POST",
        "/v1/invitations/accept",
        None,
        Some(
            json!({"token": invitation, "password": PASSWORD})
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(accepted.status, 200, "{:?}", accepted.body);
    let signed = host.request(
        "POST",
        "/v1/tenants/acme/sessions",
        None,
        Some(
            json!({"email": email, "password": PASSWORD})
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(signed.status, 201, "{:?}", signed.body);
    (user_id, signed.body["token"].as_str().unwrap().to_owned())
}

#[test]
fn with_one_origin_module_answers_are_still_sandboxed() {
    let host = Host::start_with(&[MODULE], &["--module-listen", "off"]);
    host.tenant_with("acme", MODULE);
    assert!(
        host.module_base.starts_with("the API origin"),
        "{}",
        host.module_base
    );
    let r = get(
        &host.base,
        &page("acme", "bad-headers"),
        &[("sec-fetch-mode", "navigate")],
    );
    assert_eq!(r.status, 200);
    assert!(
        r.all("content-security-policy")
            .contains(&HOST_CSP.to_owned())
    );
    assert!(r.all("set-cookie").is_empty());
}

// ---------------------------------------------------------------------------
// Headless Chromium: a member's browser opens the hostile page.

const CHROMIUM: &str = "/usr/bin/chromium";
const PASSWORD: &str = "correct horse battery staple";

/// What the loopback collector saw: each request's path and `Cookie`.
#[derive(Default)]
struct Seen {
    requests: Vec<(String, Option<String>)>,
}

/// A tiny HTTP server on loopback: `/signin` serves the page the test
/// puts in the answered `Mutex`; every request is recorded; everything
/// else gets an empty 204.
fn collector() -> (String, Arc<Mutex<Seen>>, Arc<Mutex<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("collector bind");
    let addr = listener.local_addr().expect("collector addr");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    let signin = Arc::new(Mutex::new(String::new()));
    let signin_page = signin.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
            let mut cookie = None;
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                    break;
                }
                let lower = header.to_ascii_lowercase();
                if lower.starts_with("cookie:") {
                    cookie = Some(header[7..].trim().to_owned());
                }
                if let Some(n) = lower.strip_prefix("content-length:") {
                    length = n.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length.min(65536)];
            let _ = reader.read_exact(&mut body);
            record
                .lock()
                .expect("seen")
                .requests
                .push((path.clone(), cookie));
            let answer = if path.starts_with("/signin") {
                let signin_page = signin_page.lock().expect("page").clone();
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    signin_page.len(),
                    signin_page
                )
            } else {
                "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n".to_owned()
            };
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (format!("http://{addr}"), seen, signin)
}

fn decode_query_value(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_members_browser_gives_the_hostile_page_no_cookie_and_no_authority() {
    let (host, token) = hostile_host(&[]);
    members_browser_opens_the_hostile_page(&host, &token);
}

/// With one origin the page is served beside `/v1` itself: only the
/// sandbox policy stands between its script and the member's authority.
#[test]
fn with_one_origin_the_sandbox_alone_keeps_the_members_authority_from_the_page() {
    let host = Host::start_with(&[MODULE], &["--module-listen", "off"]);
    let token = host.tenant_with("acme", MODULE);
    members_browser_opens_the_hostile_page(&host, &token);
}

/// A member signs in in headless Chromium and opens the hostile page; its
/// script must get neither the cookie nor a 2xx with their authority.
fn members_browser_opens_the_hostile_page(host: &Host, token: &str) {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's `chromium` package (scripts/test does)"
    );
    let email = "member@acme.example";
    // The member exists (and a session of theirs outside the browser shows
    // the password works); the browser signs in by itself below.
    let (user_id, _) = member(host, token, email);

    // The sign-in page (on the collector's origin, another port of the
    // same loopback address) signs the member in through the API — the
    // browser keeps the session cookie for 127.0.0.1 — reports the
    // cookies it can see itself, then opens the hostile page the way a
    // member would: through its address on the API origin.
    let (collector_base, seen, signin_page) = collector();
    let page_path = format!(
        "/t/acme/m/{MODULE}/page?tenant=acme&api={}&collector={}",
        url_encode(&host.base),
        url_encode(&collector_base)
    );
    let signin = format!(
        r#"<!doctype html><html><body><script>
(async () => {{
  await fetch({api_signin}, {{ method: 'POST', mode: 'no-cors', credentials: 'include',
    headers: {{ 'content-type': 'text/plain' }}, body: {body} }});
  await fetch({collector} + '/control?cookie=' + encodeURIComponent(document.cookie), {{ mode: 'no-cors' }});
  location.href = {visit};
}})();
</script></body></html>"#,
        api_signin = json!(format!("{}/v1/tenants/acme/sessions", host.base)),
        body = json!(json!({"email": email, "password": PASSWORD}).to_string()),
        collector = json!(collector_base),
        visit = json!(format!("{}{page_path}", host.base)),
    );
    *signin_page.lock().expect("page") = signin;
    let profile = tempfile::tempdir().expect("profile dir");
    let logs = tempfile::tempdir().expect("log dir");
    let chromium_log = logs.path().join("chromium.log");
    let started = Instant::now();
    let mut chromium = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=15000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("{collector_base}/signin"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&chromium_log).expect("chromium log"))
        .spawn()
        .expect("run chromium");
    // Chromium is stopped after 120 s whatever it is doing.
    while chromium.try_wait().expect("chromium status").is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = chromium.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = chromium.wait_with_output().expect("chromium output");
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    let ran_for = started.elapsed();
    let waited = Instant::now();
    let report = loop {
        let found = seen
            .lock()
            .expect("seen")
            .requests
            .iter()
            .find(|(path, _)| path.starts_with("/report?found="))
            .cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the hostile page never reported (was it served to the member?); \
             chromium ran {ran_for:?}; collector saw {:?}; chromium's log: {}; dom: {dom}",
            seen.lock().expect("seen").requests,
            std::fs::read_to_string(&chromium_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let requests = seen.lock().expect("seen").requests.clone();
    // The control: the sign-in worked and cookies are shared by every port
    // of 127.0.0.1 — a page that is not sandboxed sees the CSRF cookie.
    let control = requests
        .iter()
        .find(|(path, _)| path.starts_with("/control?cookie="))
        .map(|(path, _)| decode_query_value(&path["/control?cookie=".len()..]))
        .expect("the sign-in page reported its cookies");
    assert!(
        control.contains("souk_csrf="),
        "the member was not signed in, or cookies are not shared across ports: {control:?}"
    );
    assert!(
        !control.contains("souk_session="),
        "the session cookie is HttpOnly"
    );

    let found: Value =
        serde_json::from_str(&decode_query_value(&report.0["/report?found=".len()..]))
            .expect("the report is JSON");
    eprintln!("the hostile page found: {found}");
    eprintln!("the sign-in page (not sandboxed) saw cookies: {control}");
    assert_eq!(found["ran"], true, "{found}");
    assert_eq!(
        found["origin"], "null",
        "the page's origin is opaque: {found}"
    );
    let cookie = found["cookie"].as_str().unwrap_or_default();
    assert!(
        found["cookie_error"].is_string()
            || (!cookie.contains("souk_session") && !cookie.contains("souk_csrf")),
        "the page read cookies: {found}"
    );
    for probe in [
        "api_session",
        "api_users",
        "api_module",
        "module_whoami",
        "same_origin_whoami",
    ] {
        let answer = found[probe].as_str().unwrap_or_default();
        assert!(!answer.is_empty(), "{probe} missing: {found}");
        assert!(
            !answer.starts_with('2'),
            "{probe} got a 2xx with the member's authority: {found}"
        );
        assert!(
            !answer.contains(&user_id),
            "{probe} learned who the member is: {found}"
        );
    }
    // No request the page made carried the session cookie (the collector
    // shares the loopback address, so it would have got it).
    assert!(
        report
            .1
            .as_deref()
            .is_none_or(|c| !c.contains("souk_session")),
        "the page's request carried the session: {:?}",
        report.1
    );
    // The host still serves the member.
    assert_host_serves(host, token);
}
