//! A deferred call — a `GET`, a job — that reads, pauses, then writes
//! while other connections commit to the tenant database meanwhile: SQLite
//! refuses its lock upgrade (its snapshot went stale), and the host runs
//! the call again instead of letting the module see (or swallow) the
//! error. The `GET` answers 200 with its write kept every time; the job
//! succeeds at its first attempt, without waiting for a backoff the manual
//! clock would never bring.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::Host;

const MODULE: &str = "jobs-probe";

/// Commits a write to `tenant`'s database through the probe's `POST
/// /write` every few milliseconds until `stop`; answers how many it made.
fn keep_writing(host: &Host, tenant: &str, token: &str, stop: &AtomicBool) -> usize {
    let mut writes = 0;
    while !stop.load(Ordering::Relaxed) {
        let a = host.request(
            "POST",
            &format!("/t/{tenant}/m/{MODULE}/write?note=w{writes}"),
            Some(token),
            None,
        );
        assert_eq!(a.status, 201, "a concurrent write: {a:?}");
        writes += 1;
        std::thread::sleep(Duration::from_millis(15));
    }
    writes
}

/// Stops the writer when dropped, a failed assertion's unwinding
/// included (else the scope would wait for the writer for ever).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn rows(host: &Host, tenant: &str, token: &str) -> Vec<Value> {
    let a = host.get(&format!("/t/{tenant}/m/{MODULE}/rows"), token);
    assert_eq!(a.status, 200, "rows: {a:?}");
    a.body["rows"].as_array().expect("rows").clone()
}

#[test]
fn a_get_that_reads_then_writes_keeps_its_write_while_others_commit() {
    let host = Host::start(&[MODULE]);
    let token = host.tenant_with("acme", MODULE);
    const TRIES: usize = 6;
    let stop = AtomicBool::new(false);
    let writes = std::thread::scope(|scope| {
        let writer = scope.spawn(|| keep_writing(&host, "acme", &token, &stop));
        let stopper = StopOnDrop(&stop);
        for i in 0..TRIES {
            let a = host.get(
                &format!("/t/acme/m/{MODULE}/read-then-write?ms=200&note=g{i}"),
                &token,
            );
            assert_eq!(a.status, 200, "try {i}: {a:?}");
            assert_eq!(a.body["wrote"], true, "try {i}: {a:?}");
            assert_eq!(a.body["error"], Value::Null, "try {i}: {a:?}");
        }
        drop(stopper);
        writer.join().expect("the writer")
    });
    // The writes really overlapped the GETs (some 13 per 200 ms pause).
    assert!(writes >= TRIES * 3, "only {writes} concurrent writes");
    let all = rows(&host, "acme", &token);
    let gets: Vec<_> = all
        .iter()
        .filter(|r| r["job"] == "get")
        .map(|r| r["note"].as_str().expect("note").to_owned())
        .collect();
    let expected: Vec<_> = (0..TRIES).map(|i| format!("g{i}")).collect();
    assert_eq!(gets, expected, "each GET's write kept exactly once");
    assert_eq!(all.iter().filter(|r| r["job"] == "post").count(), writes);
}

#[test]
fn a_job_that_reads_then_writes_succeeds_at_its_first_attempt_while_others_commit() {
    let host = Host::start_with(
        &[MODULE],
        &[
            "--manual-clock",
            "2026-03-01T00:10:00Z",
            "--job-backoff-ms",
            "60000",
        ],
    );
    let token = host.tenant_with("acme", MODULE);
    let stop = AtomicBool::new(false);
    let job = std::thread::scope(|scope| {
        let writer = scope.spawn(|| keep_writing(&host, "acme", &token, &stop));
        let stopper = StopOnDrop(&stop);
        // Let the writer get going before the job's first read.
        std::thread::sleep(Duration::from_millis(100));
        let a = host.post(
            &format!("/t/acme/m/{MODULE}/enqueue?name=read_then_write"),
            &token,
            json!({"ms": 300}),
        );
        assert_eq!(a.status, 201, "enqueue: {a:?}");
        let id = a.body["id"].as_str().expect("job id").to_owned();
        // The manual clock never advances here: a failed first attempt
        // would wait for its backoff for ever.
        let start = Instant::now();
        let job = loop {
            let a = host.get(&format!("/v1/tenants/acme/jobs/{id}"), &token);
            assert_eq!(a.status, 200, "show job: {a:?}");
            let status = a.body["status"].as_str().unwrap_or_default().to_owned();
            if status == "succeeded" || (a.body["attempts"] != 0 && status != "running") {
                break a.body;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the job is not done: {}",
                a.body
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        drop(stopper);
        let writes = writer.join().expect("the writer");
        assert!(writes >= 10, "only {writes} concurrent writes");
        job
    });
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 1, "{job}");
    let all = rows(&host, "acme", &token);
    let written: Vec<_> = all
        .iter()
        .filter(|r| r["job"] == "read_then_write")
        .collect();
    assert_eq!(written.len(), 1, "its write kept exactly once: {all:?}");
    assert_eq!(written[0]["attempt"], 1);
}
