//! Background jobs through the real binary: queued only when the request
//! commits, run with their result readable, progress streamed as
//! Server-Sent Events, stopped at the job deadline and retried, failed
//! after the last attempt, scheduled on the manual clock once per slot,
//! invisible to other tenants, and run after a restart.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::Host;

const MODULE: &str = "jobs-probe";

/// Queues job `name` with `args` through the probe's `/enqueue` route;
/// answers its id.
fn enqueue(host: &Host, tenant: &str, token: &str, name: &str, args: Value) -> String {
    let a = host.post(
        &format!("/t/{tenant}/m/{MODULE}/enqueue?name={name}"),
        token,
        args,
    );
    assert_eq!(a.status, 201, "enqueue {name}: {a:?}");
    a.body["id"].as_str().expect("job id").to_owned()
}

fn job(host: &Host, tenant: &str, token: &str, id: &str) -> Value {
    let a = host.get(&format!("/v1/tenants/{tenant}/jobs/{id}"), token);
    assert_eq!(a.status, 200, "show job: {a:?}");
    a.body
}

/// Waits (up to `within`) until the job's status is `status`.
pub(crate) fn wait_for(
    host: &Host,
    tenant: &str,
    token: &str,
    id: &str,
    status: &str,
    within: Duration,
) -> Value {
    let start = Instant::now();
    loop {
        let job = job(host, tenant, token, id);
        if job["status"] == status {
            return job;
        }
        assert!(
            start.elapsed() < within,
            "job {id} is not {status} after {within:?}: {job}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rows(host: &Host, tenant: &str, token: &str) -> Vec<Value> {
    let a = host.get(&format!("/t/{tenant}/m/{MODULE}/rows"), token);
    assert_eq!(a.status, 200, "rows: {a:?}");
    a.body["rows"].as_array().expect("rows").clone()
}

fn jobs_of(host: &Host, tenant: &str, token: &str, query: &str) -> Vec<Value> {
    let a = host.get(&format!("/v1/tenants/{tenant}/jobs{query}"), token);
    assert_eq!(a.status, 200, "list jobs: {a:?}");
    a.body["jobs"].as_array().expect("jobs").clone()
}

/// One Server-Sent Event: its `event:` name and its `data:` parsed.
#[derive(Debug)]
pub(crate) struct Sse {
    pub(crate) event: String,
    pub(crate) data: Value,
}

/// Reads the job's event stream to its end (or panics after `within`).
pub(crate) fn read_events(host: &Host, tenant: &str, token: &str, id: &str) -> Vec<Sse> {
    let res = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
        .get(format!(
            "{}/v1/tenants/{tenant}/jobs/{id}/events",
            host.base
        ))
        .bearer_auth(token)
        .send()
        .expect("events request");
    assert_eq!(res.status().as_u16(), 200);
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let mut events = Vec::new();
    let (mut event, mut data) = (String::new(), String::new());
    for line in BufReader::new(res).lines() {
        let line = line.expect("stream line");
        if let Some(name) = line.strip_prefix("event:") {
            event = name.trim().to_owned();
        } else if let Some(text) = line.strip_prefix("data:") {
            data.push_str(text.trim_start());
        } else if line.is_empty() && !event.is_empty() {
            let parsed = serde_json::from_str(&data).expect("event data is JSON");
            events.push(Sse {
                event: std::mem::take(&mut event),
                data: parsed,
            });
            data.clear();
        }
    }
    events
}

#[test]
fn a_job_queued_by_a_request_that_rolls_back_never_runs() {
    let host = Host::start(&[MODULE]);
    let token = host.tenant_with("acme", MODULE);
    let a = host.post(
        &format!("/t/acme/m/{MODULE}/enqueue-then-fail?name=steps"),
        &token,
        json!({"steps": 1}),
    );
    assert_eq!(a.status, 500, "{a:?}");
    let rolled_back = a.body["ids"][0]
        .as_str()
        .expect("the id it was given")
        .to_owned();
    // A job queued afterwards runs: the runner had its chance at both.
    let id = enqueue(&host, "acme", &token, "steps", json!({"steps": 1}));
    wait_for(
        &host,
        "acme",
        &token,
        &id,
        "succeeded",
        Duration::from_secs(20),
    );
    let all = jobs_of(&host, "acme", &token, "");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["id"], id.as_str());
    let a = host.get(&format!("/v1/tenants/acme/jobs/{rolled_back}"), &token);
    assert_eq!(a.status, 404, "{a:?}");
    assert_eq!(rows(&host, "acme", &token).len(), 1);
}

#[test]
fn a_job_that_computes_before_it_writes_leaves_the_tenants_writes_alone() {
    let host = Host::start(&[MODULE]);
    let token = host.tenant_with("acme", MODULE);
    // Sleeps 7 s — past SQLite's 5 s busy timeout — before its one write.
    let slow = enqueue(&host, "acme", &token, "sleep", json!({"ms": 7000}));
    wait_for(
        &host,
        "acme",
        &token,
        &slow,
        "running",
        Duration::from_secs(20),
    );
    // Meanwhile the tenant's writing requests go through: were the job's
    // transaction holding the write lock from its start, this write would
    // wait out the busy timeout and fail with a 500 (`enqueue` asserts
    // the 201).
    let quick = enqueue(&host, "acme", &token, "steps", json!({"steps": 1}));
    assert_eq!(job(&host, "acme", &token, &slow)["status"], "running");
    for id in [&slow, &quick] {
        wait_for(
            &host,
            "acme",
            &token,
            id,
            "succeeded",
            Duration::from_secs(40),
        );
    }
}

#[test]
fn a_job_that_writes_then_sleeps_is_stopped_at_its_write_budget_and_the_tenants_writes_go_on() {
    let host = Host::start_with(
        &[MODULE],
        &[
            "--background-write-budget-ms",
            "1000",
            "--job-max-attempts",
            "2",
            "--job-backoff-ms",
            "200",
        ],
    );
    let token = host.tenant_with("acme", MODULE);
    // `slow` writes a row first, then sleeps an hour (on every attempt
    // here): within its 30 s job deadline it would hold acme's write lock
    // for all of it.
    let slow = enqueue(&host, "acme", &token, "slow", json!({"slow_attempts": 9}));
    wait_for(
        &host,
        "acme",
        &token,
        &slow,
        "running",
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(200));
    // A writing request of the tenant waits at most for the rest of the
    // job's write budget: without the budget it would wait out SQLite's
    // 5 s busy timeout and fail with a 500 (`enqueue` asserts the 201).
    let started = Instant::now();
    let quick = enqueue(&host, "acme", &token, "steps", json!({"steps": 1}));
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(3_500),
        "the write waited {waited:?}"
    );
    // Each attempt is stopped at its budget, rolled back and counted.
    let failed = wait_for(
        &host,
        "acme",
        &token,
        &slow,
        "failed",
        Duration::from_secs(30),
    );
    assert_eq!(failed["attempts"], 2, "{failed}");
    let error = failed["error"].as_str().expect("error");
    assert!(error.contains("write budget"), "{error}");
    wait_for(
        &host,
        "acme",
        &token,
        &quick,
        "succeeded",
        Duration::from_secs(20),
    );
    assert_eq!(
        rows(&host, "acme", &token),
        vec![json!({"job": "steps", "note": "1 steps", "attempt": 1})],
        "the stopped attempts' rows rolled back"
    );
}

#[test]
fn a_job_that_computes_past_its_write_budget_before_it_writes_succeeds() {
    let host = Host::start_with(&[MODULE], &["--background-write-budget-ms", "300"]);
    let token = host.tenant_with("acme", MODULE);
    // 2 s of "work" with no write, then one write: the budget counts from
    // the write, so the job's 30 s deadline is what bounds the work.
    let id = enqueue(&host, "acme", &token, "sleep", json!({"ms": 2000}));
    let done = wait_for(
        &host,
        "acme",
        &token,
        &id,
        "succeeded",
        Duration::from_secs(30),
    );
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(
        rows(&host, "acme", &token),
        vec![json!({"job": "sleep", "note": "slept", "attempt": 1})]
    );
}

#[test]
fn a_job_runs_and_its_result_is_readable() {
    let host = Host::start(&[MODULE]);
    let token = host.tenant_with("acme", MODULE);
    let id = enqueue(&host, "acme", &token, "steps", json!({"steps": 2}));
    let done = wait_for(
        &host,
        "acme",
        &token,
        &id,
        "succeeded",
        Duration::from_secs(20),
    );
    assert_eq!(done["result"], json!({"steps": 2}), "{done}");
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(done["module"], MODULE);
    assert_eq!(done["name"], "steps");
    assert_eq!(
        done["progress"],
        json!({"done": 2, "total": 2, "message": "step 2 of 2"}),
        "{done}"
    );
    assert!(
        done["finished_at"].is_string() && done["error"].is_null(),
        "{done}"
    );
    let rows = rows(&host, "acme", &token);
    assert_eq!(
        rows,
        vec![json!({"job": "steps", "note": "2 steps", "attempt": 1})]
    );

    // A job queues another; both run, and the list filters.
    let chain = enqueue(&host, "acme", &token, "chain", json!({}));
    wait_for(
        &host,
        "acme",
        &token,
        &chain,
        "succeeded",
        Duration::from_secs(20),
    );
    let start = Instant::now();
    while jobs_of(&host, "acme", &token, "?status=succeeded").len() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the chained job never ran"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let page = host.get("/v1/tenants/acme/jobs?limit=2", &token);
    assert_eq!(
        page.body["jobs"].as_array().map(Vec::len),
        Some(2),
        "{page:?}"
    );
    let cursor = page.body["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let rest = jobs_of(&host, "acme", &token, &format!("?limit=2&cursor={cursor}"));
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["id"], id.as_str(), "oldest last");
    assert_eq!(jobs_of(&host, "acme", &token, "?status=failed").len(), 0);
    assert_eq!(jobs_of(&host, "acme", &token, "?module=other").len(), 0);
    for bad in [
        "?status=done",
        "?limit=0",
        "?limit=101",
        "?cursor=x",
        "?colour=red",
    ] {
        let a = host.get(&format!("/v1/tenants/acme/jobs{bad}"), &token);
        assert!(matches!(a.status, 400 | 422), "{bad}: {a:?}");
    }

    // The host refuses a bad name and arguments over its size limit.
    let a = host.post(
        &format!("/t/acme/m/{MODULE}/enqueue-refused"),
        &token,
        json!({}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let bad_name = a.body["bad_name"].as_str().unwrap_or_default();
    let too_large = a.body["too_large"].as_str().unwrap_or_default();
    assert!(
        bad_name.starts_with("job refused:") && bad_name.contains("lowercase"),
        "{a:?}"
    );
    assert!(
        too_large.starts_with("job refused:") && too_large.contains("65536"),
        "{a:?}"
    );
}

#[test]
fn progress_is_streamed_over_sse_until_the_job_is_done() {
    let host = Host::start(&[MODULE]);
    let token = host.tenant_with("acme", MODULE);
    let id = enqueue(
        &host,
        "acme",
        &token,
        "steps",
        json!({"steps": 5, "ms": 300}),
    );
    let events = read_events(&host, "acme", &token, &id);
    let last = events.last().expect("events");
    assert_eq!(last.event, "done", "{events:?}");
    assert_eq!(last.data["result"], json!({"steps": 5}));
    let done: Vec<u64> = events
        .iter()
        .filter(|e| e.event == "progress")
        .map(|e| e.data["done"].as_u64().expect("done"))
        .collect();
    assert!(done.len() >= 2, "few progress events: {events:?}");
    assert!(done.windows(2).all(|w| w[0] < w[1]), "{done:?}");
    for event in events.iter().filter(|e| e.event == "progress") {
        assert_eq!(event.data["total"], 5);
        assert!(
            event.data["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("step ")
        );
    }
    assert!(
        events
            .iter()
            .all(|e| matches!(e.event.as_str(), "status" | "progress" | "done"))
    );
    // A finished job's stream is its final event alone.
    let again = read_events(&host, "acme", &token, &id);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].event, "done");
}

#[test]
fn a_job_past_its_deadline_is_stopped_and_retried_then_succeeds() {
    let host = Host::start_with(
        &[MODULE],
        &["--job-timeout-secs", "1", "--job-backoff-ms", "200"],
    );
    let token = host.tenant_with("acme", MODULE);
    let started = Instant::now();
    let id = enqueue(&host, "acme", &token, "slow", json!({"slow_attempts": 1}));
    let done = wait_for(
        &host,
        "acme",
        &token,
        &id,
        "succeeded",
        Duration::from_secs(30),
    );
    assert_eq!(done["attempts"], 2, "{done}");
    assert_eq!(done["result"], json!({"attempt": 2}));
    // The first attempt was stopped at its 1 s deadline, not after its
    // hour of sleep, and its row rolled back with it.
    assert!(started.elapsed() < Duration::from_secs(25));
    let rows = rows(&host, "acme", &token);
    assert_eq!(
        rows,
        vec![
            json!({"job": "slow", "note": "started", "attempt": 2}),
            json!({"job": "slow", "note": "finished", "attempt": 2}),
        ]
    );
}

#[test]
fn a_failing_job_ends_failed_after_the_max_attempts() {
    let host = Host::start_with(
        &[MODULE],
        &["--job-max-attempts", "3", "--job-backoff-ms", "100"],
    );
    let token = host.tenant_with("acme", MODULE);
    let id = enqueue(&host, "acme", &token, "fail", json!({}));
    let events = read_events(&host, "acme", &token, &id);
    let last = events.last().expect("events");
    assert_eq!(last.event, "failed", "{events:?}");
    let failed = job(&host, "acme", &token, &id);
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["attempts"], 3, "{failed}");
    assert_eq!(failed["error"], "always fails (attempt 3)", "{failed}");
    assert!(failed["result"].is_null());
    // Every attempt's writes were rolled back.
    assert!(rows(&host, "acme", &token).is_empty());
    // Retries were visible on the stream as status changes.
    assert!(
        events.iter().any(|e| e.event == "status"
            && e.data["status"] == "queued"
            && e.data["attempts"] == 1),
        "{events:?}"
    );
}

#[test]
fn a_schedule_fires_on_the_manual_clock_once_per_slot() {
    let mut host = Host::start_with(&[MODULE], &["--manual-clock", "2026-03-01T00:10:00Z"]);
    let token = host.tenant_with("acme", MODULE);
    let ticks = |host: &Host| jobs_of(host, "acme", &token, "?module=jobs-probe").len();
    // Installed in the 00:00 slot: nothing fires until 01:00.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(ticks(&host), 0);
    let a = host.post(
        "/v1/clock",
        &host.operator,
        json!({"set": "2026-03-01T01:00:05Z"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let start = Instant::now();
    while ticks(&host) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the schedule never fired"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let tick = jobs_of(&host, "acme", &token, "")[0].clone();
    assert_eq!(tick["name"], "tick");
    assert_eq!(tick["schedule"], "tick");
    let id = tick["id"].as_str().expect("id").to_owned();
    wait_for(
        &host,
        "acme",
        &token,
        &id,
        "succeeded",
        Duration::from_secs(20),
    );
    // Later in the same slot, and after a restart: no second fire.
    let a = host.post(
        "/v1/clock",
        &host.operator,
        json!({"set": "2026-03-01T01:40:00Z"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(ticks(&host), 1);
    host.restart();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(ticks(&host), 1);
    // Three slots later: one fire, not three.
    let a = host.post(
        "/v1/clock",
        &host.operator,
        json!({"set": "2026-03-01T04:30:00Z"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let start = Instant::now();
    while ticks(&host) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the schedule did not fire again"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(ticks(&host), 2);
    let rows = rows(&host, "acme", &token);
    assert!(rows.iter().all(|r| r["job"] == "tick"), "{rows:?}");
}

#[test]
fn another_tenants_job_is_a_404() {
    let host = Host::start(&[MODULE]);
    let acme = host.tenant_with("acme", MODULE);
    let other = host.tenant_with("other", MODULE);
    let id = enqueue(&host, "acme", &acme, "steps", json!({"steps": 1}));
    wait_for(
        &host,
        "acme",
        &acme,
        &id,
        "succeeded",
        Duration::from_secs(20),
    );
    for path in [
        format!("/v1/tenants/other/jobs/{id}"),
        format!("/v1/tenants/other/jobs/{id}/events"),
        format!("/v1/tenants/acme/jobs/{id}"),
        format!("/v1/tenants/acme/jobs/{id}/events"),
        "/v1/tenants/acme/jobs".to_owned(),
    ] {
        let a = host.get(&path, &other);
        assert_eq!(a.status, 404, "{path}: {a:?}");
        assert!(
            !a.detail().contains(&id) || path.starts_with("/v1/tenants/other"),
            "{a:?}"
        );
    }
    let a = host.request(
        "POST",
        &format!("/v1/tenants/other/jobs/{id}/cancel"),
        Some(&other),
        None,
    );
    assert_eq!(a.status, 404, "{a:?}");
    assert!(jobs_of(&host, "other", &other, "").is_empty());
    // Without a credential: 401.
    let a = host.request("GET", &format!("/v1/tenants/acme/jobs/{id}"), None, None);
    assert_eq!(a.status, 401, "{a:?}");
}

#[test]
fn a_job_queued_before_a_restart_runs_after_it_and_a_queued_one_can_be_cancelled() {
    // A write budget longer than the test: `slow` writes first, then holds
    // the host's only job place until the restart.
    let mut host = Host::start_with(
        &[MODULE],
        &[
            "--jobs-global",
            "1",
            "--background-write-budget-ms",
            "120000",
        ],
    );
    let acme = host.tenant_with("acme", MODULE);
    let beta = host.tenant_with("beta", MODULE);
    // acme's `slow` takes the host's only job place (sleeping an hour,
    // within the default 30 s deadline); beta's jobs wait queued behind it.
    let slow = enqueue(&host, "acme", &acme, "slow", json!({"slow_attempts": 1}));
    wait_for(
        &host,
        "acme",
        &acme,
        &slow,
        "running",
        Duration::from_secs(20),
    );
    let waiting = enqueue(&host, "beta", &beta, "steps", json!({"steps": 1}));
    let cancelled = enqueue(&host, "beta", &beta, "steps", json!({"steps": 1}));
    let cancel = |id: &str| {
        host.request(
            "POST",
            &format!("/v1/tenants/beta/jobs/{id}/cancel"),
            Some(&beta),
            None,
        )
    };
    let a = cancel(&cancelled);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["status"], "cancelled");
    let a = cancel(&cancelled);
    assert_eq!(a.status, 409, "{a:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(job(&host, "beta", &beta, &waiting)["status"], "queued");
    assert_eq!(job(&host, "acme", &acme, &slow)["status"], "running");

    // The host dies with `slow` running and `waiting` queued.
    host.restart();
    let done = wait_for(
        &host,
        "acme",
        &acme,
        &slow,
        "succeeded",
        Duration::from_secs(30),
    );
    assert_eq!(
        done["attempts"], 2,
        "the interrupted attempt counts: {done}"
    );
    wait_for(
        &host,
        "beta",
        &beta,
        &waiting,
        "succeeded",
        Duration::from_secs(30),
    );
    assert_eq!(job(&host, "beta", &beta, &cancelled)["status"], "cancelled");
    let rows = rows(&host, "beta", &beta);
    assert_eq!(rows.len(), 1, "the cancelled job never ran: {rows:?}");
}

#[test]
fn a_plan_with_a_longer_job_deadline_lets_a_job_finish_that_the_default_stops() {
    let plans = crate::support::workspace_root().join("tests/e2e/plans-jobs/jobs-probe.yaml");
    let plans = plans.to_str().expect("utf-8 path");
    let host = Host::start_with(
        &[MODULE],
        &[
            "--plans",
            plans,
            "--job-timeout-secs",
            "1",
            "--job-max-attempts",
            "1",
            "--max-call-timeout-ms",
            "3000",
        ],
    );
    let token = host.tenant_with("acme", MODULE);
    // On the free plan: the host's 1 s job deadline stops a 2 s job, and
    // its 1 s call deadline a 1.5 s request.
    let id = enqueue(&host, "acme", &token, "sleep", json!({"ms": 2000}));
    let failed = wait_for(
        &host,
        "acme",
        &token,
        &id,
        "failed",
        Duration::from_secs(30),
    );
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("ran longer than"),
        "{failed}"
    );
    let a = host.request(
        "POST",
        &format!("/t/acme/m/{MODULE}/sleep?ms=1500"),
        Some(&token),
        None,
    );
    assert_eq!(a.status, 504, "{a:?}");

    let a = host.post(
        &format!("/v1/tenants/acme/subscriptions/{MODULE}/grant"),
        &host.operator,
        json!({"plan": "business"}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    // On business: the job's 5 s deadline lets it finish; requests get
    // the plan's 10 s, capped at the operator's 3 s.
    let id = enqueue(&host, "acme", &token, "sleep", json!({"ms": 2000}));
    let done = wait_for(
        &host,
        "acme",
        &token,
        &id,
        "succeeded",
        Duration::from_secs(30),
    );
    assert_eq!(done["attempts"], 1, "{done}");
    let a = host.request(
        "POST",
        &format!("/t/acme/m/{MODULE}/sleep?ms=1500"),
        Some(&token),
        None,
    );
    assert_eq!(a.status, 200, "{a:?}");
    let a = host.request(
        "POST",
        &format!("/t/acme/m/{MODULE}/sleep?ms=4000"),
        Some(&token),
        None,
    );
    assert_eq!(a.status, 504, "capped at --max-call-timeout-ms: {a:?}");
    let rows = rows(&host, "acme", &token);
    assert_eq!(rows.len(), 1, "only the business job wrote: {rows:?}");
}

#[test]
fn a_queued_job_of_an_uninstalled_module_is_cancelled() {
    let host = Host::start_with(
        &[MODULE],
        &["--jobs-global", "1", "--job-timeout-secs", "2"],
    );
    let acme = host.tenant_with("acme", MODULE);
    let beta = host.tenant_with("beta", MODULE);
    // acme's job holds the only place until its 2 s deadline.
    let slow = enqueue(&host, "acme", &acme, "slow", json!({"slow_attempts": 5}));
    wait_for(
        &host,
        "acme",
        &acme,
        &slow,
        "running",
        Duration::from_secs(20),
    );
    let orphan = enqueue(&host, "beta", &beta, "steps", json!({"steps": 1}));
    let a = host.delete(&format!("/v1/tenants/beta/modules/{MODULE}"), &beta);
    assert_eq!(a.status, 200, "uninstall: {a:?}");
    let cancelled = wait_for(
        &host,
        "beta",
        &beta,
        &orphan,
        "cancelled",
        Duration::from_secs(30),
    );
    assert_eq!(
        cancelled["error"], "the module is no longer installed",
        "{cancelled}"
    );
}

#[test]
fn a_module_cannot_queue_past_its_backlog() {
    let host = Host::start_with(&[MODULE], &["--jobs-max-backlog", "3"]);
    let token = host.tenant_with("acme", MODULE);
    let a = host.post(
        &format!("/t/acme/m/{MODULE}/enqueue?name=steps&count=5"),
        &token,
        json!({"steps": 1}),
    );
    assert_eq!(a.status, 422, "{a:?}");
    let error = a.body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("3 jobs of this module are already waiting"),
        "{a:?}"
    );
    assert_eq!(a.body["ids"].as_array().map(Vec::len), Some(3), "{a:?}");
    // Once they ran, there is room again.
    for id in a.body["ids"].as_array().expect("ids") {
        let id = id.as_str().expect("id");
        wait_for(
            &host,
            "acme",
            &token,
            id,
            "succeeded",
            Duration::from_secs(20),
        );
    }
    enqueue(&host, "acme", &token, "steps", json!({"steps": 1}));
}

#[test]
fn a_job_does_not_run_once_the_subscription_gives_no_access() {
    let plans = crate::support::workspace_root().join("tests/e2e/plans-jobs/jobs-probe.yaml");
    let plans = plans.to_str().expect("utf-8 path");
    let host = Host::start_with(
        &[MODULE],
        &[
            "--plans",
            plans,
            "--manual-clock",
            "2026-03-01T00:10:00Z",
            "--job-backoff-ms",
            "60000",
            "--job-max-attempts",
            "3",
        ],
    );
    let token = host.tenant_with("acme", MODULE);
    let id = enqueue(&host, "acme", &token, "fail", json!({}));
    let start = Instant::now();
    loop {
        let job = job(&host, "acme", &token, &id);
        if job["attempts"] == 1 && job["status"] == "queued" {
            assert_eq!(job["error"], "always fails (attempt 1)", "{job}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{job}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let a = host.post(
        &format!("/v1/tenants/acme/subscriptions/{MODULE}/cancel"),
        &token,
        json!({"at_period_end": false}),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let a = host.request(
        "POST",
        &format!("/t/acme/m/{MODULE}/sleep?ms=1"),
        Some(&token),
        None,
    );
    assert_eq!(a.status, 402, "requests are refused too: {a:?}");
    // The retry is due a minute later on the manual clock; it is refused.
    let a = host.post("/v1/clock", &host.operator, json!({"advance_seconds": 120}));
    assert_eq!(a.status, 200, "{a:?}");
    let start = Instant::now();
    loop {
        let job = job(&host, "acme", &token, &id);
        if job["attempts"] == 2 && job["status"] == "queued" {
            let error = job["error"].as_str().unwrap_or_default();
            assert!(error.contains("does not allow this module"), "{job}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{job}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_job_that_leaves_a_file_has_a_signed_result_url() {
    let host = Host::start(&[MODULE]);
    let token = host.tenant_with("acme", MODULE);
    let id = enqueue(&host, "acme", &token, "report", json!({}));
    let done = wait_for(
        &host,
        "acme",
        &token,
        &id,
        "succeeded",
        Duration::from_secs(20),
    );
    let file_id = done["result_file_id"]
        .as_str()
        .expect("a file id")
        .to_owned();
    let url = done["result_url"]
        .as_str()
        .expect("a result url")
        .to_owned();
    assert!(url.starts_with("/f/"), "{done}");
    // Anyone holding the URL downloads the file, without a credential.
    let res = host
        .client
        .get(format!("{}{url}", host.base))
        .send()
        .expect("download");
    assert_eq!(res.status().as_u16(), 200);
    let bytes = res.bytes().expect("bytes");
    assert!(bytes.starts_with(b"%PDF-"), "{bytes:?}");
    let listed = jobs_of(&host, "acme", &token, "");
    assert_eq!(listed[0]["result_file_id"], file_id.as_str());
    assert!(listed[0]["result_url"].is_string());
    // An id the module has no file for gets no URL.
    let id = enqueue(&host, "acme", &token, "no_such_file", json!({}));
    let done = wait_for(
        &host,
        "acme",
        &token,
        &id,
        "succeeded",
        Duration::from_secs(20),
    );
    assert_eq!(done["result_file_id"], "file_that_does_not_exist");
    assert!(done["result_url"].is_null(), "{done}");
}
