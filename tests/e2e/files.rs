//! The `files` capability through the real binary: the `files-probe` test
//! module stores what the test sends, and clients download through signed
//! URLs (`/f/{token}`).

use serde_json::{Value, json};

use crate::support::{Host, package};

const MODULE: &str = "files-probe";
const START: &str = "2026-03-01T00:00:00Z";

/// `n` bytes that sniff as PNG, varied by `seed` (distinct content).
fn png(n: usize, seed: u8) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..n.saturating_sub(8)).map(|i| (i as u8).wrapping_mul(31) ^ seed));
    bytes
}

fn pdf(n: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.4\n".to_vec();
    bytes.resize(n.max(9), b'x');
    bytes
}

const SVG: &[u8] =
    br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"><rect width="1" height="1"/></svg>"#;

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    bytes: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

fn send(
    host: &Host,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = host
        .client
        .request(method, format!("{}{}", host.base, path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req
            .header("content-type", "application/octet-stream")
            .body(body);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = req.send().expect("request sent");
    Answer {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        bytes: res.bytes().expect("body").to_vec(),
    }
}

fn put_in(
    host: &Host,
    tenant: &str,
    token: &str,
    module: &str,
    name: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> Answer {
    let path = format!(
        "/t/{tenant}/m/{module}/files?name={}&type={}",
        name.replace(' ', "+"),
        content_type.replace('/', "%2F").replace('+', "%2B")
    );
    send(host, "POST", &path, Some(token), Some(bytes), &[])
}

fn put(
    host: &Host,
    tenant: &str,
    token: &str,
    name: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> Answer {
    put_in(host, tenant, token, MODULE, name, content_type, bytes)
}

fn stored(
    host: &Host,
    tenant: &str,
    token: &str,
    name: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> Value {
    let a = put(host, tenant, token, name, content_type, bytes);
    assert_eq!(
        a.status,
        201,
        "put {name}: {}",
        String::from_utf8_lossy(&a.bytes)
    );
    a.json()
}

fn list(host: &Host, tenant: &str, token: &str) -> Vec<Value> {
    let a = send(
        host,
        "GET",
        &format!("/t/{tenant}/m/{MODULE}/files"),
        Some(token),
        None,
        &[],
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.bytes));
    a.json()["files"].as_array().expect("files").clone()
}

fn signed_url(host: &Host, tenant: &str, token: &str, id: &str, ttl: u32) -> String {
    let a = send(
        host,
        "GET",
        &format!("/t/{tenant}/m/{MODULE}/files/{id}/url?ttl={ttl}"),
        Some(token),
        None,
        &[],
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.bytes));
    a.json()["url"].as_str().expect("url").to_owned()
}

/// Blob files under the tenant's blob directory (temporary files left out).
fn blobs(host: &Host, tenant: &str) -> Vec<String> {
    let dir = host
        .data_dir()
        .join("tenants")
        .join(format!("{}.files", host.tenant_id(tenant)));
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if entry.file_name() == "tmp" {
            continue;
        }
        for blob in std::fs::read_dir(entry.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            found.push(blob.file_name().to_string_lossy().into_owned());
        }
    }
    found.sort();
    found
}

fn file_rows(host: &Host, tenant: &str) -> i64 {
    host.tenant_db(tenant)
        .query_row("SELECT COUNT(*) FROM _souk_files", [], |r| r.get(0))
        .expect("count file rows")
}

#[test]
fn puts_are_refused_when_the_bytes_contradict_the_type_or_the_manifest() {
    let host = Host::start_with(&[MODULE], &["--max-file-bytes", "2000"]);
    let token = host.tenant_with("acme", MODULE);
    // PNG bytes declared as PDF.
    let a = put(
        &host,
        "acme",
        &token,
        "x.pdf",
        "application/pdf",
        png(100, 1),
    );
    assert_eq!(a.status, 415, "{:?}", a.json());
    let message = a.json()["detail"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.contains("image/png") && message.contains("application/pdf"),
        "{message}"
    );
    // HTML, declared as SVG and as HTML.
    let html = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>".to_vec();
    assert_eq!(
        put(
            &host,
            "acme",
            &token,
            "x.svg",
            "image/svg+xml",
            html.clone()
        )
        .status,
        415
    );
    assert_eq!(
        put(&host, "acme", &token, "x.html", "text/html", html).status,
        415
    );
    // An SVG that carries script.
    let hostile = br#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>"#.to_vec();
    assert_eq!(
        put(&host, "acme", &token, "x.svg", "image/svg+xml", hostile).status,
        415
    );
    // A type the host knows but the manifest does not allow.
    let gif = b"GIF89a\x01\x00\x01\x00".to_vec();
    let a = put(&host, "acme", &token, "x.gif", "image/gif", gif);
    assert_eq!(a.status, 415, "{:?}", a.json());
    assert!(
        a.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("files.types")
    );
    // Larger than --max-file-bytes.
    let a = put(&host, "acme", &token, "big.png", "image/png", png(2001, 1));
    assert_eq!(a.status, 413, "{:?}", a.json());
    assert_eq!(a.json()["limit"], 2000);
    // A name that is only a path.
    assert_eq!(
        put(&host, "acme", &token, "../", "image/png", png(100, 1)).status,
        400
    );
    assert!(list(&host, "acme", &token).is_empty());
    assert_eq!(file_rows(&host, "acme"), 0);
    assert!(blobs(&host, "acme").is_empty(), "refused puts left blobs");
    // What is allowed is stored, its name cleaned.
    let file = stored(
        &host,
        "acme",
        &token,
        "../../etc/logo.png",
        "image/png",
        png(2000, 1),
    );
    assert_eq!(file["name"], "logo.png");
    assert_eq!(file["content_type"], "image/png");
    assert_eq!(file["size"], 2000);
    let svg = stored(
        &host,
        "acme",
        &token,
        "icon.svg",
        "image/svg+xml",
        SVG.to_vec(),
    );
    assert_eq!(svg["content_type"], "image/svg+xml");
}

#[test]
fn the_storage_limit_is_a_402_and_a_delete_frees_room() {
    let host = Host::start_on_plans(&[MODULE], START, &[]);
    let token = host.tenant_with("acme", MODULE);
    let first = stored(&host, "acme", &token, "a.png", "image/png", png(3000, 1));
    let a = put(&host, "acme", &token, "b.png", "image/png", png(1500, 2));
    assert_eq!(a.status, 402, "{:?}", a.json());
    assert_eq!(a.json()["reason"], "limit_reached");
    assert_eq!(a.json()["feature"], "attachment_bytes");
    assert_eq!(a.json()["used"], 3000);
    assert_eq!(a.json()["limit"], 4000);
    assert_eq!(a.json()["upgrade_plan"], "pro");
    // The refused put left neither a row nor its blob.
    assert_eq!(list(&host, "acme", &token).len(), 1);
    assert_eq!(blobs(&host, "acme").len(), 1);
    let id = first["id"].as_str().expect("id");
    let a = send(
        &host,
        "DELETE",
        &format!("/t/acme/m/{MODULE}/files/{id}"),
        Some(&token),
        None,
        &[],
    );
    assert_eq!(a.status, 204);
    assert!(
        blobs(&host, "acme").is_empty(),
        "a deleted file's blob stayed"
    );
    stored(&host, "acme", &token, "b.png", "image/png", png(1500, 2));
    stored(&host, "acme", &token, "c.png", "image/png", png(2500, 3));
    // The same bytes twice are stored once on disk, and counted twice.
    let a = put(
        &host,
        "acme",
        &token,
        "c-again.png",
        "image/png",
        png(2500, 3),
    );
    assert_eq!(a.status, 402, "{:?}", a.json());
    assert_eq!(blobs(&host, "acme").len(), 2);
}

#[test]
fn a_rolled_back_put_leaves_no_row_no_usage_and_no_blob() {
    let host = Host::start_on_plans(&[MODULE], START, &[]);
    let token = host.tenant_with("acme", MODULE);
    let path = format!("/t/acme/m/{MODULE}/files/fail?name=a.png&type=image%2Fpng");
    let a = send(&host, "POST", &path, Some(&token), Some(png(3000, 9)), &[]);
    assert_eq!(a.status, 500, "{}", String::from_utf8_lossy(&a.bytes));
    assert_eq!(file_rows(&host, "acme"), 0);
    assert!(list(&host, "acme", &token).is_empty());
    assert!(
        blobs(&host, "acme").is_empty(),
        "a rolled-back put left its blob"
    );
    // Its 3000 bytes were not counted: 3900 more fit under 4000.
    stored(&host, "acme", &token, "b.png", "image/png", png(3900, 1));
}

#[test]
fn signed_urls_serve_files_with_safe_headers_and_ranges_until_they_expire() {
    let host = Host::start_on_plans(&[MODULE], START, &[]);
    let token = host.tenant_with("acme", MODULE);
    let bytes = png(1000, 4);
    let file = stored(
        &host,
        "acme",
        &token,
        "logo é.png",
        "image/png",
        bytes.clone(),
    );
    let id = file["id"].as_str().expect("id").to_owned();
    let url = signed_url(&host, "acme", &token, &id, 60);
    assert!(url.starts_with("/f/"), "{url}");

    // Anyone holding the URL downloads it: no credential.
    let a = send(&host, "GET", &url, None, None, &[]);
    assert_eq!(a.status, 200);
    assert_eq!(a.bytes, bytes);
    assert_eq!(a.header("content-type"), "image/png");
    assert_eq!(a.header("x-content-type-options"), "nosniff");
    assert_eq!(a.header("cache-control"), "private");
    assert_eq!(
        a.header("etag"),
        format!("\"{}\"", file["sha256"].as_str().unwrap())
    );
    assert_eq!(a.header("content-length"), "1000");
    let disposition = a.header("content-disposition");
    assert!(disposition.starts_with("inline;"), "{disposition}");
    assert!(
        disposition.contains("filename*=UTF-8''logo%20%C3%A9.png"),
        "{disposition}"
    );
    assert!(a.header("content-security-policy").contains("sandbox"));

    // HEAD: the headers, no body.
    let a = send(&host, "HEAD", &url, None, None, &[]);
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-length"), "1000");
    assert!(a.bytes.is_empty());

    // One range, a suffix range, an unsatisfiable one.
    let a = send(&host, "GET", &url, None, None, &[("range", "bytes=2-9")]);
    assert_eq!(a.status, 206);
    assert_eq!(a.bytes, bytes[2..10]);
    assert_eq!(a.header("content-range"), "bytes 2-9/1000");
    let a = send(&host, "GET", &url, None, None, &[("range", "bytes=-4")]);
    assert_eq!(a.status, 206);
    assert_eq!(a.bytes, bytes[996..]);
    let a = send(&host, "GET", &url, None, None, &[("range", "bytes=1000-")]);
    assert_eq!(a.status, 416);
    assert_eq!(a.header("content-range"), "bytes */1000");

    // SVG is never inline; PDF is.
    let svg = stored(
        &host,
        "acme",
        &token,
        "icon.svg",
        "image/svg+xml",
        SVG.to_vec(),
    );
    let a = send(
        &host,
        "GET",
        &signed_url(&host, "acme", &token, svg["id"].as_str().unwrap(), 60),
        None,
        None,
        &[],
    );
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), "image/svg+xml");
    assert!(
        a.header("content-disposition").starts_with("attachment;"),
        "{}",
        a.header("content-disposition")
    );
    assert!(a.header("content-security-policy").contains("sandbox"));
    assert_eq!(a.header("x-content-type-options"), "nosniff");
    let doc = stored(
        &host,
        "acme",
        &token,
        "doc.pdf",
        "application/pdf",
        pdf(300),
    );
    let a = send(
        &host,
        "GET",
        &signed_url(&host, "acme", &token, doc["id"].as_str().unwrap(), 60),
        None,
        None,
        &[],
    );
    assert_eq!(a.status, 200);
    assert!(a.header("content-disposition").starts_with("inline;"));
    assert_eq!(a.header("x-content-type-options"), "nosniff");

    // Tampered: every character position changed in turn gives a 404.
    let token_text = url.trim_start_matches("/f/");
    for position in [0, token_text.len() / 2, token_text.len() - 1] {
        let mut forged: Vec<char> = token_text.chars().collect();
        forged[position] = if forged[position] == 'A' { 'B' } else { 'A' };
        let forged: String = forged.into_iter().collect();
        let a = send(&host, "GET", &format!("/f/{forged}"), None, None, &[]);
        assert_eq!(a.status, 404, "forged at {position}");
    }
    assert_eq!(
        send(&host, "GET", "/f/nothing", None, None, &[]).status,
        404
    );

    // Expired: the manual clock moves past the minute.
    let a = host.post("/v1/clock", &host.operator, json!({"advance_seconds": 61}));
    assert_eq!(a.status, 200, "{a:?}");
    let a = send(&host, "GET", &url, None, None, &[]);
    assert_eq!(a.status, 404);
    let detail = serde_json::from_slice::<Value>(&a.bytes).unwrap()["detail"].clone();
    assert_eq!(detail, "no such file, or the link has expired");

    // Deleted: a fresh URL stops working once the file is gone.
    let fresh = signed_url(&host, "acme", &token, &id, 60);
    assert_eq!(send(&host, "GET", &fresh, None, None, &[]).status, 200);
    let a = send(
        &host,
        "DELETE",
        &format!("/t/acme/m/{MODULE}/files/{id}"),
        Some(&token),
        None,
        &[],
    );
    assert_eq!(a.status, 204);
    assert_eq!(send(&host, "GET", &fresh, None, None, &[]).status, 404);
}

#[test]
fn another_tenants_or_modules_file_is_not_found() {
    let host = Host::start_with(&[MODULE], &[]);
    let other_module = package(MODULE, |m| {
        m.replace("slug: files-probe", "slug: files-other")
    });
    assert_eq!(host.add_package(other_module).status, 201);
    let a_token = host.tenant_with("acme", MODULE);
    host.install_ok("acme", &a_token, "files-other");
    let b_token = host.tenant_with("bravo", MODULE);
    let a_file = stored(&host, "acme", &a_token, "a.png", "image/png", png(500, 1));
    let b_file = stored(&host, "bravo", &b_token, "b.png", "image/png", png(500, 2));
    let a_id = a_file["id"].as_str().unwrap();
    let b_id = b_file["id"].as_str().unwrap();
    for path in [
        format!("/files/{b_id}"),
        format!("/files/{b_id}/bytes"),
        format!("/files/{b_id}/url"),
    ] {
        let a = send(
            &host,
            "GET",
            &format!("/t/acme/m/{MODULE}{path}"),
            Some(&a_token),
            None,
            &[],
        );
        assert_eq!(a.status, 404, "{path}");
    }
    let a = send(
        &host,
        "DELETE",
        &format!("/t/acme/m/{MODULE}/files/{b_id}"),
        Some(&a_token),
        None,
        &[],
    );
    assert_eq!(a.status, 404);
    // Another module of the same tenant does not see the file either.
    let a = send(
        &host,
        "GET",
        &format!("/t/acme/m/files-other/files/{a_id}"),
        Some(&a_token),
        None,
        &[],
    );
    assert_eq!(a.status, 404);
    let a = send(
        &host,
        "GET",
        "/t/acme/m/files-other/files",
        Some(&a_token),
        None,
        &[],
    );
    assert_eq!(a.json()["files"], json!([]));
    // Each tenant's URL opens its own file only.
    let a_url = signed_url(&host, "acme", &a_token, a_id, 60);
    let b_url = signed_url(&host, "bravo", &b_token, b_id, 60);
    assert_eq!(
        send(&host, "GET", &a_url, None, None, &[]).bytes,
        png(500, 1)
    );
    assert_eq!(
        send(&host, "GET", &b_url, None, None, &[]).bytes,
        png(500, 2)
    );
    // A's payload with B's signature is no token.
    let (a_payload, _) = a_url.trim_start_matches("/f/").split_once('.').unwrap();
    let (_, b_mac) = b_url.trim_start_matches("/f/").split_once('.').unwrap();
    assert_eq!(
        send(
            &host,
            "GET",
            &format!("/f/{a_payload}.{b_mac}"),
            None,
            None,
            &[]
        )
        .status,
        404
    );
    // The bytes read back through the module are the module's own.
    let a = send(
        &host,
        "GET",
        &format!("/t/acme/m/{MODULE}/files/{a_id}/bytes"),
        Some(&a_token),
        None,
        &[],
    );
    assert_eq!(a.bytes, png(500, 1));
}

#[test]
fn files_go_into_the_uninstall_archive_and_come_back_on_reinstall() {
    let host = Host::start_on_plans(&[MODULE], START, &[]);
    let token = host.tenant_with("acme", MODULE);
    let one = stored(&host, "acme", &token, "one.png", "image/png", png(1000, 1));
    let two = stored(
        &host,
        "acme",
        &token,
        "two.pdf",
        "application/pdf",
        pdf(1200),
    );
    let dup = stored(
        &host,
        "acme",
        &token,
        "one-again.png",
        "image/png",
        png(1000, 1),
    );
    let before = list(&host, "acme", &token);
    assert_eq!(before.len(), 3);
    assert_eq!(blobs(&host, "acme").len(), 2);

    let a = host.delete(&format!("/v1/tenants/acme/modules/{MODULE}"), &token);
    assert_eq!(a.status, 200, "{a:?}");
    let archive = a.body["archive"]["id"]
        .as_str()
        .expect("archive id")
        .to_owned();
    assert_eq!(file_rows(&host, "acme"), 0);
    assert!(
        blobs(&host, "acme").is_empty(),
        "uninstalled files' blobs stayed"
    );

    let a = host.post(
        "/v1/tenants/acme/modules",
        &token,
        json!({"module": MODULE, "restore_archive": archive}),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let after = list(&host, "acme", &token);
    assert_eq!(after, before);
    for (file, bytes) in [
        (&one, png(1000, 1)),
        (&two, pdf(1200)),
        (&dup, png(1000, 1)),
    ] {
        let id = file["id"].as_str().unwrap();
        let a = send(
            &host,
            "GET",
            &format!("/t/acme/m/{MODULE}/files/{id}/bytes"),
            Some(&token),
            None,
            &[],
        );
        assert_eq!(a.status, 200);
        assert_eq!(a.bytes, bytes);
        let url = signed_url(&host, "acme", &token, id, 60);
        assert_eq!(send(&host, "GET", &url, None, None, &[]).bytes, bytes);
    }
    // The usage came back with the files: 3200 of 4000 bytes are held.
    let a = put(&host, "acme", &token, "big.png", "image/png", png(900, 7));
    assert_eq!(a.status, 402, "{:?}", a.json());
    assert_eq!(a.json()["used"], 3200);
    stored(&host, "acme", &token, "small.png", "image/png", png(800, 7));
}

#[test]
fn a_damaged_archive_blob_refuses_the_restore() {
    let host = Host::start_on_plans(&[MODULE], START, &[]);
    let token = host.tenant_with("acme", MODULE);
    let file = stored(&host, "acme", &token, "one.png", "image/png", png(1000, 1));
    let a = host.delete(&format!("/v1/tenants/acme/modules/{MODULE}"), &token);
    assert_eq!(a.status, 200, "{a:?}");
    let archive = a.body["archive"]["id"]
        .as_str()
        .expect("archive id")
        .to_owned();
    let blob = host
        .data_dir()
        .join("archives")
        .join(host.tenant_id("acme"))
        .join(format!("{archive}.files"))
        .join(file["sha256"].as_str().unwrap());
    let mut bytes = std::fs::read(&blob).expect("archived blob");
    bytes[100] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let a = host.post(
        "/v1/tenants/acme/modules",
        &token,
        json!({"module": MODULE, "restore_archive": archive}),
    );
    assert_eq!(a.status, 422, "{a:?}");
    assert!(a.detail().contains("changed"), "{}", a.detail());
    assert_eq!(file_rows(&host, "acme"), 0);
}

#[test]
fn blobs_no_row_names_are_swept_when_the_host_starts() {
    let mut host = Host::start_with(&[MODULE], &[]);
    let token = host.tenant_with("acme", MODULE);
    let kept = stored(&host, "acme", &token, "kept.png", "image/png", png(700, 1));
    // What a process that stopped between writing a blob and settling its
    // call leaves: a blob no row names, and a temporary file.
    let dir = host
        .data_dir()
        .join("tenants")
        .join(format!("{}.files", host.tenant_id("acme")));
    let orphan = "ab".repeat(32);
    std::fs::create_dir_all(dir.join("ab")).unwrap();
    std::fs::write(dir.join("ab").join(&orphan), b"orphan").unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(
        dir.join("tmp").join(format!("{orphan}.0011223344556677")),
        b"half",
    )
    .unwrap();
    assert_eq!(blobs(&host, "acme").len(), 2);
    host.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while blobs(&host, "acme").len() > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        blobs(&host, "acme"),
        vec![kept["sha256"].as_str().unwrap().to_owned()]
    );
    assert!(
        std::fs::read_dir(dir.join("tmp")).unwrap().next().is_none(),
        "a temporary file stayed"
    );
    let id = kept["id"].as_str().unwrap();
    let a = send(
        &host,
        "GET",
        &format!("/t/acme/m/{MODULE}/files/{id}/bytes"),
        Some(&token),
        None,
        &[],
    );
    assert_eq!(a.bytes, png(700, 1));
}

#[test]
fn list_pages_newest_first_with_a_cursor_and_refuses_bad_arguments() {
    let host = Host::start_with(&[MODULE], &[]);
    let token = host.tenant_with("acme", MODULE);
    let ids: Vec<String> = (0..3)
        .map(|i| {
            stored(
                &host,
                "acme",
                &token,
                &format!("{i}.png"),
                "image/png",
                png(100, i),
            )["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let page = |query: &str| {
        send(
            &host,
            "GET",
            &format!("/t/acme/m/{MODULE}/files?{query}"),
            Some(&token),
            None,
            &[],
        )
    };
    let first = page("limit=2");
    assert_eq!(first.status, 200);
    let first = first.json();
    let names: Vec<&str> = first["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, [ids[2].as_str(), ids[1].as_str()]);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = page(&format!("limit=2&cursor={cursor}")).json();
    assert_eq!(second["files"].as_array().unwrap().len(), 1);
    assert_eq!(second["files"][0]["id"], ids[0].as_str());
    assert_eq!(second["next_cursor"], Value::Null);
    for bad in [
        "limit=0",
        "limit=101",
        "limit=2&cursor=abc",
        "limit=2&cursor=-5",
    ] {
        assert_eq!(page(bad).status, 400, "{bad}");
    }
    // Signed URLs refuse lifetimes outside 1 s to a day.
    for ttl in [0, 86_401] {
        let a = send(
            &host,
            "GET",
            &format!("/t/acme/m/{MODULE}/files/{}/url?ttl={ttl}", ids[0]),
            Some(&token),
            None,
            &[],
        );
        assert_eq!(a.status, 400, "ttl {ttl}");
    }
}
