//! Usage events under load and a `kill -9`: 32 clients each send single
//! events (unique keys, and keys all of them repeat), the server is killed
//! mid-run, restarted, and every event it acknowledged must be in the
//! tenant database exactly once, each repeated key once, and the usage it
//! reports must equal the events stored. Concurrent requests share
//! transactions (group commit), so this is what proves that nothing is
//! answered before its group commits.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::Host;

const START: &str = "2026-01-01T00:00:00Z";
const CLIENTS: usize = 32;
const PER_CLIENT: usize = 120;
/// Keys every client sends (each client sends every `REPEAT_EVERY`th event
/// with one of them).
const SHARED_KEYS: usize = 12;
const REPEAT_EVERY: usize = 4;
const METER: &str = "qr_scans_per_month";

fn key_of(client: usize, i: usize) -> String {
    if i % REPEAT_EVERY == REPEAT_EVERY - 1 {
        format!("shared-{}", (i / REPEAT_EVERY) % SHARED_KEYS)
    } else {
        format!("c{client}-{i}")
    }
}

/// An answer the server gave: the key, its status, and its body's
/// `counted` and `used`.
#[derive(Debug, Clone)]
struct Ack {
    key: String,
    status: u16,
    counted: bool,
    used: u64,
}

/// Sends `keys[client]` from `CLIENTS` threads at once, one event per
/// request; a client stops at its first request without an answer (the
/// server is gone). After `kill_after` answers, the server is killed.
fn send_all(host: &Host, token: &str, keys: &[Vec<String>], kill_after: Option<usize>) -> Vec<Ack> {
    let answered = AtomicUsize::new(0);
    let acks = Mutex::new(Vec::new());
    let pid = host.pid().to_string();
    let url = format!("{}/v1/tenants/acme/usage-events", host.base);
    std::thread::scope(|scope| {
        for client_keys in keys {
            let (answered, acks, pid, url) = (&answered, &acks, &pid, &url);
            scope.spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .expect("client");
                for key in client_keys {
                    let sent = client
                        .post(url)
                        .bearer_auth(token)
                        .json(&json!({"module": "cards", "meter": METER, "idempotency_key": key}))
                        .send()
                        .and_then(|res| {
                            let status = res.status().as_u16();
                            res.json::<Value>().map(|body| (status, body))
                        });
                    let Ok((status, body)) = sent else {
                        break;
                    };
                    assert!(status == 200 || status == 201, "{key}: {status} {body}");
                    acks.lock().expect("acks").push(Ack {
                        key: key.clone(),
                        status,
                        counted: body["counted"].as_bool().expect("counted"),
                        used: body["used"].as_u64().expect("used"),
                    });
                    let n = answered.fetch_add(1, Ordering::SeqCst) + 1;
                    if Some(n) == kill_after {
                        let killed = Command::new("kill")
                            .args(["-9", pid])
                            .status()
                            .expect("run kill");
                        assert!(killed.success(), "kill -9 {pid}");
                    }
                }
            });
        }
    });
    acks.into_inner().expect("acks")
}

/// The events stored in the tenant database: key -> (rows, amount).
fn stored(host: &Host) -> BTreeMap<String, (i64, i64)> {
    let db = host.tenant_db("acme");
    let mut stmt = db
        .prepare(
            "SELECT idempotency_key, COUNT(*), SUM(amount) FROM _souk_usage_events \
             WHERE module = 'cards' AND meter = ?1 GROUP BY idempotency_key",
        )
        .expect("prepare");
    stmt.query_map([METER], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

fn reported_use(host: &Host, token: &str) -> u64 {
    let a = host.get("/v1/tenants/acme/usage?module=cards", token);
    assert_eq!(a.status, 200, "{a:?}");
    a.body["modules"][0]["usage"]
        .as_array()
        .expect("usage lines")
        .iter()
        .find(|line| line["key"] == METER)
        .and_then(|line| line["used"].as_u64())
        .unwrap_or_else(|| panic!("no {METER}: {a:?}"))
}

/// Every key's answers: a unique key answered at most once (counted), a
/// repeated key counted by at most one answer; every answered key stored
/// exactly once; no answer saw more use than was stored.
fn check_answers(acks: &[Ack], stored: &BTreeMap<String, (i64, i64)>) {
    let mut counted_by: BTreeMap<&str, usize> = BTreeMap::new();
    for ack in acks {
        assert_eq!(ack.counted, ack.status == 201, "{ack:?}");
        if ack.counted {
            *counted_by.entry(&ack.key).or_default() += 1;
        }
        assert_eq!(
            stored.get(&ack.key),
            Some(&(1, 1)),
            "acknowledged but not stored exactly once: {ack:?}"
        );
        assert!(
            ack.used <= stored.len() as u64,
            "an answer saw more use than was ever stored: {ack:?}"
        );
    }
    for (key, times) in counted_by {
        assert_eq!(times, 1, "{key} counted {times} times");
    }
}

#[test]
fn acknowledged_usage_events_survive_kill_9_counted_exactly_once() {
    let mut host = Host::start_on_plans(
        &["cards"],
        START,
        &["--max-instances", "64", "--tenant-concurrency", "32"],
    );
    let token = host.tenant_with("acme", "cards");
    let keys: Vec<Vec<String>> = (0..CLIENTS)
        .map(|client| (0..PER_CLIENT).map(|i| key_of(client, i)).collect())
        .collect();
    let acks = send_all(&host, &token, &keys, Some(CLIENTS * PER_CLIENT / 2));
    assert!(
        acks.len() >= CLIENTS * PER_CLIENT / 2,
        "the server went away before it was killed: {} answers",
        acks.len()
    );
    assert!(
        acks.len() < CLIENTS * PER_CLIENT,
        "every request was answered: the kill came too late to test anything"
    );
    host.restart();
    let before = stored(&host);
    check_answers(&acks, &before);
    for (key, rows) in &before {
        assert_eq!(rows, &(1, 1), "{key}");
    }
    assert_eq!(reported_use(&host, &token), before.len() as u64);

    // Every key again, unique ones once and the repeated ones from every
    // client, on a restarted engine that remembers no key: the stored
    // ones must answer 200, the others be counted once.
    let all: BTreeSet<&String> = keys.iter().flatten().collect();
    let mut again: Vec<Vec<String>> = vec![Vec::new(); CLIENTS];
    for (i, key) in all.iter().filter(|k| !k.starts_with("shared-")).enumerate() {
        again[i % CLIENTS].push((*key).clone());
    }
    for client_keys in &mut again {
        client_keys.extend((0..SHARED_KEYS).map(|k| format!("shared-{k}")));
    }
    let acks = send_all(&host, &token, &again, None);
    assert_eq!(acks.len(), again.iter().map(Vec::len).sum::<usize>());
    let after = stored(&host);
    check_answers(&acks, &after);
    for ack in &acks {
        if before.contains_key(&ack.key) {
            assert_eq!(ack.status, 200, "stored before the restart: {ack:?}");
        }
    }
    assert_eq!(after.len(), all.len(), "every key stored");
    assert_eq!(reported_use(&host, &token), all.len() as u64);
}
