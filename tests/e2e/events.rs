//! Events and webhooks through the real binary: the outbox follows the
//! call's transaction, deliveries are signed and verifiable, a failing
//! receiver is retried, non-public addresses are refused unless allowed,
//! endpoints stay within their tenant and behind the plan's feature,
//! redelivery on request, and a subscriber module gets its dependency's
//! events in order, at least once, with a failing handler retried.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::Host;

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: Vec<u8>,
}

impl Received {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A tiny HTTP receiver on loopback: answers the statuses of `script` in
/// turn (then 200) and records every request.
pub(crate) struct Receiver {
    pub(crate) url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub(crate) fn start(script: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let statuses = Arc::new(Mutex::new(script.to_vec()));
        let record = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut headers = HashMap::new();
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let trimmed = line.trim_end();
                    if trimmed.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = trimmed.split_once(':') {
                        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
                    }
                }
                let length: usize = headers
                    .get("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                record.lock().unwrap().push(Received { headers, body });
                let status = {
                    let mut s = statuses.lock().unwrap();
                    if s.is_empty() { 200 } else { s.remove(0) }
                };
                let answer = format!("receiver says {status}");
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        Receiver { url, got }
    }

    pub(crate) fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived.
    pub(crate) fn wait_for(&self, n: usize) -> Vec<Received> {
        wait_until(&format!("{n} webhook requests"), || {
            let got = self.got();
            (got.len() >= n).then_some(got)
        })
    }
}

/// Polls `check` for up to 30 s.
pub(crate) fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Flags of a host that delivers to the loopback receiver, retrying fast.
pub(crate) const LOOPBACK: [&str; 5] = [
    "--webhook-allow-private",
    "--webhook-allow-http",
    "--webhook-retry-base-ms",
    "200",
    "--webhook-retry-max-delay-secs=1",
];

fn webhooks(tenant: &str) -> String {
    format!("/v1/tenants/{tenant}/modules/events-probe/webhooks")
}

fn create_endpoint(host: &Host, tenant: &str, token: &str, body: Value) -> (String, String) {
    let a = host.post(&webhooks(tenant), token, body);
    assert_eq!(a.status, 201, "{a:?}");
    let secret = a.body["secret"]
        .as_str()
        .expect("secret shown once")
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (a.body["id"].as_str().expect("id").to_owned(), secret)
}

fn create_item(host: &Host, tenant: &str, token: &str, path: &str, name: &str) -> Value {
    let a = host.post(
        &format!("/t/{tenant}/m/events-probe/{path}"),
        token,
        json!({"name": name}),
    );
    a.body
}

fn deliveries(host: &Host, tenant: &str, token: &str, endpoint: &str) -> Vec<Value> {
    let a = host.get(
        &format!("{}/{endpoint}/deliveries", webhooks(tenant)),
        token,
    );
    assert_eq!(a.status, 200, "{a:?}");
    a.body["deliveries"].as_array().expect("deliveries").clone()
}

pub(crate) fn verify(secret: &str, got: &Received) -> bool {
    let timestamp = &got.headers["souk-webhook-timestamp"];
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&got.body);
    let expected = hex::encode(mac.finalize().into_bytes());
    got.headers["souk-signature"]
        .split(',')
        .filter_map(|v| v.strip_prefix("v1="))
        .any(|v| v == expected)
}

#[test]
fn events_of_a_rolled_back_call_are_never_sent() {
    let receiver = Receiver::start(&[]);
    let host = Host::start_with(&["events-probe"], &LOOPBACK);
    let token = host.tenant_with("acme", "events-probe");
    create_endpoint(&host, "acme", &token, json!({"url": receiver.url}));

    let failed = host.post(
        "/t/acme/m/events-probe/items-then-fail",
        &token,
        json!({"name": "dropped"}),
    );
    assert_eq!(failed.status, 500, "{failed:?}");
    let kept = create_item(&host, "acme", &token, "items", "kept");
    assert!(kept["event_id"].is_string(), "{kept}");

    let got = receiver.wait_for(1);
    // Long enough for the worker to have sent a second one, were there one.
    std::thread::sleep(Duration::from_millis(1500));
    let got = receiver.got().into_iter().chain(got).collect::<Vec<_>>();
    let names: Vec<Value> = got
        .iter()
        .map(|g| g.json()["data"]["name"].clone())
        .collect();
    assert!(names.iter().all(|n| n == "kept"), "{names:?}");
    assert_eq!(receiver.got().len(), 1);
    let items = host.get("/t/acme/m/events-probe/items", &token);
    assert_eq!(
        items.body["items"].as_array().unwrap().len(),
        1,
        "{items:?}"
    );
}

#[test]
fn a_delivery_is_signed_and_retried_after_the_receiver_fails_twice() {
    let receiver = Receiver::start(&[500, 503]);
    let host = Host::start_with(&["events-probe"], &LOOPBACK);
    let token = host.tenant_with("acme", "events-probe");
    let (endpoint, secret) = create_endpoint(&host, "acme", &token, json!({"url": receiver.url}));
    // The secret is never shown again.
    let shown = host.get(&format!("{}/{endpoint}", webhooks("acme")), &token);
    assert_eq!(shown.status, 200, "{shown:?}");
    assert!(shown.body.get("secret").is_none(), "{shown:?}");
    assert!(!shown.bytes.windows(6).any(|w| w == b"whsec_"));

    let item = create_item(&host, "acme", &token, "items", "signed");
    let got = receiver.wait_for(3);
    let event_id = item["event_id"].as_str().unwrap();
    for g in &got {
        assert_eq!(g.headers["souk-webhook-id"], event_id);
        assert!(
            verify(&secret, g),
            "the signature does not verify: {:?}",
            g.headers
        );
        assert!(!verify("whsec_wrong", g));
        let body = g.json();
        assert_eq!(body["id"], event_id);
        assert_eq!(body["type"], "item.created");
        assert_eq!(body["module"], "events-probe");
        assert_eq!(body["tenant"], "acme");
        assert_eq!(body["data"]["name"], "signed");
        assert!(body["created_at"].is_string());
    }
    // A tampered body does not verify.
    let mut tampered = got[0].clone();
    tampered.body = tampered
        .body
        .iter()
        .map(|b| if *b == b's' { b'S' } else { *b })
        .collect();
    assert!(!verify(&secret, &tampered));

    let log = wait_until("the delivery recorded as delivered", || {
        let log = deliveries(&host, "acme", &token, &endpoint);
        (log.first()?["status"] == "delivered").then_some(log)
    });
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["attempts"], 3, "{log:?}");
    assert_eq!(log[0]["last_status_code"], 200);
    assert_eq!(log[0]["event_id"], event_id);
    assert_eq!(log[0]["response_excerpt"], "receiver says 200");
}

#[test]
fn loopback_is_refused_without_the_allowance() {
    let receiver = Receiver::start(&[]);
    let host = Host::start_with(
        &["events-probe"],
        &["--webhook-allow-http", "--webhook-retry-base-ms", "200"],
    );
    let token = host.tenant_with("acme", "events-probe");
    let (endpoint, _) = create_endpoint(&host, "acme", &token, json!({"url": receiver.url}));
    create_item(&host, "acme", &token, "items", "x");
    let log = wait_until("a refused attempt in the log", || {
        let log = deliveries(&host, "acme", &token, &endpoint);
        let first = log.first()?.clone();
        (first["attempts"].as_i64()? >= 1).then_some(first)
    });
    let error = log["last_error"].as_str().unwrap();
    assert!(error.contains("refused"), "{log}");
    assert!(!error.contains("127.0.0.1"), "{error}");
    assert_eq!(
        log["status"], "pending",
        "retried until the window ends: {log}"
    );
    assert!(log["last_status_code"].is_null());
    assert!(receiver.got().is_empty());

    // And https is required unless the operator allows http.
    let strict = Host::start(&["events-probe"]);
    let token = strict.tenant_with("acme", "events-probe");
    let a = strict.post(&webhooks("acme"), &token, json!({"url": receiver.url}));
    assert_eq!(a.status, 422, "{a:?}");
    assert!(a.detail().contains("https"), "{a:?}");
}

#[test]
fn another_tenants_endpoint_is_not_found() {
    let host = Host::start_with(&["events-probe"], &LOOPBACK);
    let acme = host.tenant_with("acme", "events-probe");
    let other = host.tenant_with("other", "events-probe");
    let (endpoint, _) = create_endpoint(
        &host,
        "acme",
        &acme,
        json!({"url": "https://example.com/h"}),
    );

    for (method, path) in [
        ("GET", format!("{}/{endpoint}", webhooks("acme"))),
        ("DELETE", format!("{}/{endpoint}", webhooks("acme"))),
        ("GET", format!("{}/{endpoint}/deliveries", webhooks("acme"))),
        (
            "POST",
            format!("{}/{endpoint}/rotate-secret", webhooks("acme")),
        ),
        ("GET", format!("{}/{endpoint}", webhooks("other"))),
        ("PATCH", format!("{}/{endpoint}", webhooks("other"))),
        ("DELETE", format!("{}/{endpoint}", webhooks("other"))),
        (
            "GET",
            format!("{}/{endpoint}/deliveries", webhooks("other")),
        ),
        (
            "POST",
            format!("{}/{endpoint}/rotate-secret", webhooks("other")),
        ),
        (
            "POST",
            format!("{}/{endpoint}/deliveries/1/redeliver", webhooks("other")),
        ),
    ] {
        let body = (method == "PATCH").then(|| b"{\"enabled\": false}".to_vec());
        let a = host.request(method, &path, Some(&other), body);
        assert_eq!(a.status, 404, "{method} {path}: {a:?}");
    }
    let listed = host.get(&webhooks("other"), &other);
    assert_eq!(listed.body["endpoints"], json!([]), "{listed:?}");
    // Still there for its owner.
    let a = host.get(&format!("{}/{endpoint}", webhooks("acme")), &acme);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["url"], "https://example.com/h");
}

#[test]
fn endpoints_are_checked_and_managed() {
    let host = Host::start_with(&["events-probe"], &LOOPBACK);
    let token = host.tenant_with("acme", "events-probe");
    for (body, says) in [
        (
            json!({"url": "https://example.com", "event_types": ["item.deleted"]}),
            "does not emit",
        ),
        (
            json!({"url": "https://example.com", "event_types": []}),
            "empty",
        ),
        (json!({"url": "ftp://example.com"}), "scheme"),
        (json!({"url": "https://u:p@example.com"}), "password"),
    ] {
        let a = host.post(&webhooks("acme"), &token, body.clone());
        assert_eq!(a.status, 422, "{body}: {a:?}");
        assert!(a.detail().contains(says), "{body}: {a:?}");
    }
    let a = host.post(
        &webhooks("acme"),
        &token,
        json!({"url": "https://example.com", "surprise": 1}),
    );
    assert_eq!(a.status, 400, "{a:?}");

    let (id, first) = create_endpoint(
        &host,
        "acme",
        &token,
        json!({"url": "https://example.com/a", "event_types": ["item.created"], "description": "ours"}),
    );
    let a = host.request(
        "PATCH",
        &format!("{}/{id}", webhooks("acme")),
        Some(&token),
        Some(
            json!({"enabled": false, "all_event_types": true})
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        (a.body["enabled"].as_bool(), a.body["event_types"].is_null()),
        (Some(false), true)
    );
    let rotated = host.post(
        &format!("{}/{id}/rotate-secret", webhooks("acme")),
        &token,
        json!({}),
    );
    assert_eq!(rotated.status, 200, "{rotated:?}");
    let second = rotated.body["secret"].as_str().unwrap();
    assert!(second.starts_with("whsec_") && second != first);
    assert!(rotated.body["previous_secret_until"].is_string());
    let listed = host.get(&webhooks("acme"), &token);
    assert_eq!(
        listed.body["endpoints"].as_array().unwrap().len(),
        1,
        "{listed:?}"
    );
    let a = host.delete(&format!("{}/{id}", webhooks("acme")), &token);
    assert_eq!(a.status, 204, "{a:?}");
    let a = host.get(&format!("{}/{id}", webhooks("acme")), &token);
    assert_eq!(a.status, 404, "{a:?}");
}

#[test]
fn a_plan_without_the_webhook_feature_is_refused_with_402() {
    let receiver = Receiver::start(&[]);
    let mut args = vec![];
    args.extend_from_slice(&LOOPBACK);
    let host = Host::start_on_plans(&["events-probe"], "2027-01-01T00:00:00Z", &args);
    let token = host.tenant_with("acme", "events-probe");
    let a = host.post(&webhooks("acme"), &token, json!({"url": receiver.url}));
    assert_eq!(a.status, 402, "{a:?}");
    assert_eq!(
        a.body["type"], "https://souk.dev/problems/entitlement-denied",
        "{a:?}"
    );
    assert_eq!(a.body["reason"], "feature_not_in_plan", "{a:?}");

    let grant = |plan: &str| {
        let a = host.post(
            "/v1/tenants/acme/subscriptions/events-probe/grant",
            &host.operator,
            json!({"plan": plan}),
        );
        assert_eq!(a.status, 200, "grant {plan}: {a:?}");
    };
    grant("pro");
    let (endpoint, _) = create_endpoint(&host, "acme", &token, json!({"url": receiver.url}));
    create_item(&host, "acme", &token, "items", "while pro");
    receiver.wait_for(1);

    // Back on free: deliveries stop, and the log says why.
    grant("free");
    create_item(&host, "acme", &token, "items", "while free");
    let paused = wait_until("a paused delivery", || {
        let log = deliveries(&host, "acme", &token, &endpoint);
        let first = log.first()?.clone();
        (first["status"] == "pending" && first["last_error"].as_str()?.contains("paused"))
            .then_some(first)
    });
    assert_eq!(paused["attempts"], 0, "{paused}");
    assert_eq!(receiver.got().len(), 1);
}

#[test]
fn a_delivery_is_sent_again_on_request() {
    let receiver = Receiver::start(&[]);
    let host = Host::start_with(&["events-probe"], &LOOPBACK);
    let token = host.tenant_with("acme", "events-probe");
    let (endpoint, secret) = create_endpoint(&host, "acme", &token, json!({"url": receiver.url}));
    let item = create_item(&host, "acme", &token, "items", "again");
    receiver.wait_for(1);
    let first = wait_until("delivered", || {
        let log = deliveries(&host, "acme", &token, &endpoint);
        (log.first()?["status"] == "delivered").then(|| log[0].clone())
    });
    // A rotated secret: the redelivery is signed with the new one and,
    // during the grace period, the old one too.
    let rotated = host.post(
        &format!("{}/{endpoint}/rotate-secret", webhooks("acme")),
        &token,
        json!({}),
    );
    assert_eq!(rotated.status, 200, "{rotated:?}");
    let new_secret = rotated.body["secret"].as_str().unwrap().to_owned();
    let a = host.post(
        &format!(
            "{}/{endpoint}/deliveries/{}/redeliver",
            webhooks("acme"),
            first["id"]
        ),
        &token,
        json!({}),
    );
    assert_eq!(a.status, 202, "{a:?}");
    assert_eq!(a.body["event_id"], item["event_id"]);
    assert_ne!(a.body["id"], first["id"]);
    let got = receiver.wait_for(2);
    assert_eq!(
        got[1].headers["souk-webhook-id"],
        item["event_id"].as_str().unwrap()
    );
    assert!(
        verify(&secret, &got[1]),
        "the old secret still verifies in its grace period"
    );
    assert!(verify(&new_secret, &got[1]));
    assert_eq!(got[1].headers["souk-signature"].matches("v1=").count(), 2);
    assert_eq!(got[0].body, got[1].body, "the same event, the same body");
    let a = host.post(
        &format!(
            "{}/{endpoint}/deliveries/999999/redeliver",
            webhooks("acme")
        ),
        &token,
        json!({}),
    );
    assert_eq!(a.status, 404, "{a:?}");
}

#[test]
fn emitting_is_checked_against_the_manifest_and_bounded() {
    let host = Host::start_with(&["events-probe"], &["--event-max-payload-bytes", "1024"]);
    let token = host.tenant_with("acme", "events-probe");
    let emit = |body: Value| host.post("/t/acme/m/events-probe/emit", &token, body);
    let a = emit(json!({"type": "item.noted", "payload": "{\"ok\": true}"}));
    assert_eq!(a.status, 200, "{a:?}");
    for (body, says) in [
        (
            json!({"type": "item.deleted", "payload": "{}"}),
            "events.emits",
        ),
        (json!({"type": "Item", "payload": "{}"}), "lowercase"),
        (
            json!({"type": "item.noted", "payload": "{not json"}),
            "JSON",
        ),
        (json!({"type": "item.noted", "payload": "{} {}"}), "JSON"),
        (
            json!({"type": "item.noted", "payload": format!("\"{}\"", "x".repeat(1100))}),
            "1024",
        ),
        (
            json!({"type": "item.noted", "payload": "1", "times": 101}),
            "at most 100",
        ),
    ] {
        let a = emit(body.clone());
        assert_eq!(a.status, 422, "{body}: {a:?}");
        assert_eq!(a.body["error"], "invalid", "{a:?}");
        assert!(
            a.body["message"].as_str().unwrap().contains(says),
            "{body}: {a:?}"
        );
    }
    // Event ids are ordered.
    let a = emit(json!({"type": "item.noted", "payload": "2", "times": 3}));
    let ids: Vec<String> = a.body["event_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert_eq!(ids.len(), 3);
}

#[test]
fn a_subscriber_gets_its_dependencys_events_in_order_and_a_failing_handler_is_retried() {
    let host = Host::start_with(&["events-probe", "events-listener"], &LOOPBACK);
    let token = host.tenant("acme");
    host.install_ok("acme", &token, "events-probe");
    host.install_ok("acme", &token, "events-listener");
    let gate = |open: bool| {
        let a = host.post(
            "/t/acme/m/events-listener/gate",
            &token,
            json!({"open": open}),
        );
        assert_eq!(a.status, 200, "{a:?}");
    };
    let log = |status: Option<&str>| {
        let q = status.map(|s| format!("?status={s}")).unwrap_or_default();
        let a = host.get(
            &format!("/v1/tenants/acme/modules/events-listener/event-deliveries{q}"),
            &token,
        );
        assert_eq!(a.status, 200, "{a:?}");
        a.body["deliveries"].as_array().unwrap().clone()
    };
    let received = || {
        let a = host.get("/t/acme/m/events-listener/received", &token);
        a.body["events"].as_array().unwrap().clone()
    };

    // The listener's own events (emitted while handling) go to its webhook.
    let seen = Receiver::start(&[]);
    let a = host.post(
        "/v1/tenants/acme/modules/events-listener/webhooks",
        &token,
        json!({"url": seen.url}),
    );
    assert_eq!(a.status, 201, "{a:?}");

    gate(false);
    let ids: Vec<String> = ["one", "two", "three"]
        .iter()
        .map(|name| {
            create_item(&host, "acme", &token, "items", name)["event_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // An event the listener does not subscribe to is not delivered to it.
    let a = host.post(
        "/t/acme/m/events-probe/emit",
        &token,
        json!({"type": "item.noted", "payload": "{}"}),
    );
    assert_eq!(a.status, 200, "{a:?}");

    // The first event's handler fails and is retried; the later ones wait.
    let first = wait_until("the failing handler retried", || {
        let log = log(None);
        let first = log
            .iter()
            .find(|d| d["event_id"] == ids[0].as_str())?
            .clone();
        (first["attempts"].as_i64()? >= 2).then_some(first)
    });
    assert_eq!(first["status"], "pending", "{first}");
    assert_eq!(first["last_error"], "the gate is closed", "{first}");
    for later in log(None)
        .iter()
        .filter(|d| d["event_id"] != ids[0].as_str())
    {
        assert_eq!(
            later["attempts"], 0,
            "a later event ran before the first: {later}"
        );
    }
    assert!(received().is_empty());

    gate(true);
    let got = wait_until("three events handled", || {
        let got = received();
        (got.len() >= 3).then_some(got)
    });
    let order: Vec<&str> = got
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, ids.iter().map(String::as_str).collect::<Vec<_>>());
    for e in &got {
        assert_eq!(e["source"], "events-probe");
        assert_eq!(e["type"], "item.created");
        let payload: Value = serde_json::from_str(e["payload"].as_str().unwrap()).unwrap();
        assert!(payload["name"].is_string());
    }
    let handled = wait_until("all handled in the log", || {
        let handled = log(Some("handled"));
        (handled.len() == 3).then_some(handled)
    });
    assert!(
        handled.iter().any(|d| d["attempts"].as_i64() >= Some(3)),
        "{handled:?}"
    );
    assert!(log(Some("pending")).is_empty());
    // No delivery of the type it does not subscribe to.
    assert_eq!(log(None).len(), 3);
    let seen: Vec<Value> = seen.wait_for(3).iter().map(|r| r.json()).collect();
    let seen_ids: Vec<&str> = seen
        .iter()
        .map(|b| {
            assert_eq!(
                (b["module"].as_str(), b["type"].as_str()),
                (Some("events-listener"), Some("item.seen"))
            );
            b["data"]["event_id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(seen_ids, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let a = host.get(
        "/v1/tenants/acme/modules/events-listener/event-deliveries?status=bogus",
        &token,
    );
    assert_eq!(a.status, 422, "{a:?}");
}

#[test]
fn a_retry_due_before_a_restart_is_made_after_it() {
    let receiver = Receiver::start(&[500]);
    let mut host = Host::start_with(
        &["events-probe"],
        &[
            "--webhook-allow-private",
            "--webhook-allow-http",
            "--webhook-retry-base-ms",
            "3000",
        ],
    );
    let token = host.tenant_with("acme", "events-probe");
    let (endpoint, secret) = create_endpoint(&host, "acme", &token, json!({"url": receiver.url}));
    create_item(&host, "acme", &token, "items", "durable");
    receiver.wait_for(1);
    // The failed attempt is recorded before the host dies.
    wait_until("the first attempt recorded", || {
        let log = deliveries(&host, "acme", &token, &endpoint);
        (log.first()?["attempts"] == 1).then_some(())
    });
    host.restart();
    let got = receiver.wait_for(2);
    assert_eq!(
        got[0].headers["souk-webhook-id"],
        got[1].headers["souk-webhook-id"]
    );
    assert!(verify(&secret, &got[1]));
    let log = wait_until("delivered after the restart", || {
        let log = deliveries(&host, "acme", &token, &endpoint);
        (log.first()?["status"] == "delivered").then(|| log[0].clone())
    });
    assert_eq!(log["attempts"], 2, "{log}");
}

#[test]
fn the_cli_manages_the_same_endpoints_as_the_api() {
    let host = Host::start(&["events-probe"]);
    let token = host.tenant_with("acme", "events-probe");
    let (ok, out, err) = host.cli(&[
        "--json",
        "webhook",
        "create",
        "acme",
        "events-probe",
        "--url",
        "https://example.com/cli",
        "--event-type",
        "item.noted",
    ]);
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).expect("JSON");
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    let id = created["id"].as_str().unwrap();
    let listed = host.get(&webhooks("acme"), &token);
    assert_eq!(listed.body["endpoints"][0]["id"], id, "{listed:?}");
    assert_eq!(
        listed.body["endpoints"][0]["event_types"],
        json!(["item.noted"])
    );
    let (ok, out, _) = host.cli(&["webhook", "list", "acme", "events-probe"]);
    assert!(ok && out.contains(id) && !out.contains("whsec_"), "{out}");
    let (ok, _, err) = host.cli(&[
        "webhook",
        "create",
        "acme",
        "events-probe",
        "--url",
        "https://example.com/x",
        "--event-type",
        "nope",
    ]);
    assert!(!ok && err.contains("does not emit"), "{err}");
    let (ok, _, err) = host.cli(&["webhook", "delete", "acme", "events-probe", id]);
    assert!(ok, "{err}");
    let a = host.get(&format!("{}/{id}", webhooks("acme")), &token);
    assert_eq!(a.status, 404, "{a:?}");
}
