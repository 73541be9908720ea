//! Fair sharing of the runtime: every module call ends at its deadline — a
//! looping guest and one blocked in a WASI sleep alike, in a request, a
//! hook, `migrations()` or `gates()` — with its writes rolled back and the
//! tenant's write lock released; a tenant's concurrent calls are capped
//! (429 with `Retry-After`); floods and sleepers of one tenant leave other
//! tenants and `/healthz` served. Also: module log lines cannot forge host
//! lines, a huge hook error is bounded, and the router's own errors are
//! problem documents.
//!
//! Latencies are printed (run with `--nocapture` to see them), never
//! asserted.

use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Host, package};

/// The `sleeper` module packaged under `slug` (which decides where it
/// sleeps; see tests/modules/README.md).
fn sleeper_as(slug: &str) -> Vec<u8> {
    package("sleeper", |m| {
        m.replacen("slug: sleeper", &format!("slug: {slug}"), 1)
    })
}

fn add(host: &Host, slug: &str) {
    let a = host.add_package(sleeper_as(slug));
    assert_eq!(a.status, 201, "add {slug}: {a:?}");
}

fn member(host: &Host, token: &str, number: &str) -> u16 {
    let a = host.post(
        "/t/acme/m/membership/members",
        token,
        json!({"number": number, "name": "Nima", "email": "nima@example.org"}),
    );
    assert_eq!(a.status, 201, "membership write {number}: {a:?}");
    a.status
}

fn count(host: &Host, tenant: &str, table: &str) -> i64 {
    host.tenant_db(tenant)
        .query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
            r.get(0)
        })
        .unwrap_or_else(|e| panic!("count {table}: {e}"))
}

fn is_timeout(a: &crate::support::Answer, what: &str) {
    assert_eq!(a.status, 504, "{what}: {a:?}");
    assert_eq!(a.content_type, "application/problem+json", "{what}");
    assert_eq!(
        a.body["type"], "https://souk.dev/problems/module-timeout",
        "{what}: {a:?}"
    );
}

/// A GET with the answer's status, `Retry-After` header and JSON body.
fn get_with_headers(host: &Host, path: &str, token: &str) -> (u16, Option<String>, Value) {
    let res = host
        .client
        .get(format!("{}{path}", host.base))
        .bearer_auth(token)
        .send()
        .expect("request sent");
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = serde_json::from_slice(&res.bytes().expect("body")).unwrap_or(Value::Null);
    (status, retry, body)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

#[test]
fn a_sleeping_handler_is_stopped_at_its_deadline() {
    let host = Host::start_with(&["sleeper"], &["--call-timeout-ms", "300"]);
    let token = host.tenant_with("acme", "sleeper");
    for query in ["", "?ms=1000", "?ms=60000", "?ms=18446744073709551615"] {
        let started = Instant::now();
        let a = host.get(&format!("/t/acme/m/sleeper/sleep{query}"), &token);
        println!(
            "sleep{query}: answered {} after {:?} (budget 300 ms)",
            a.status,
            started.elapsed()
        );
        is_timeout(&a, query);
        assert!(a.detail().contains("300ms"), "{a:?}");
    }
    // The module itself works: a sleep within the budget is answered.
    let a = host.get("/t/acme/m/sleeper/sleep?ms=5", &token);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["slept_ms"], 5);
}

#[test]
fn a_sleeping_writer_is_rolled_back_and_the_tenant_lock_released() {
    let host = Arc::new(Host::start_with(
        &["membership", "sleeper"],
        &["--call-timeout-ms", "300"],
    ));
    let token = host.tenant_with("acme", "membership");
    host.install_ok("acme", &token, "sleeper");
    for round in 0..3 {
        let sleeper = {
            let host = host.clone();
            let token = token.clone();
            std::thread::spawn(move || {
                host.request(
                    "POST",
                    "/t/acme/m/sleeper/write-then-sleep",
                    Some(&token),
                    Some(b"{}".to_vec()),
                )
            })
        };
        // Sent while the sleeper holds the tenant's write lock: it waits for
        // the lock, which the stopped call gives back.
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        member(&host, &token, &format!("D-{round}"));
        println!(
            "round {round}: a write queued behind the sleeper succeeded after {:?}",
            started.elapsed()
        );
        is_timeout(&sleeper.join().unwrap(), "write-then-sleep");
        // And right after the stopped call.
        member(&host, &token, &format!("A-{round}"));
    }
    assert_eq!(count(&host, "acme", "sleeper__naps"), 0, "rolled back");
    assert_eq!(count(&host, "acme", "membership__members"), 6);
    // The module's own writes work when it does not overstay.
    let a = host.request(
        "POST",
        "/t/acme/m/sleeper/write-then-sleep?ms=1",
        Some(&token),
        Some(b"{}".to_vec()),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(count(&host, "acme", "sleeper__naps"), 1);
}

#[test]
fn sleeping_hooks_and_lifecycle_calls_fail_cleanly_and_release_the_lock() {
    let host = Arc::new(Host::start_with(
        &["membership"],
        &["--call-timeout-ms", "300"],
    ));
    let token = host.tenant_with("acme", "membership");
    for slug in ["sleeper-install", "sleeper-migrations", "sleeper-uninstall"] {
        add(&host, slug);
    }

    for (slug, step) in [
        ("sleeper-install", "install hook"),
        ("sleeper-migrations", "migrations()"),
    ] {
        let installer = {
            let host = host.clone();
            let token = token.clone();
            let slug = slug.to_owned();
            std::thread::spawn(move || host.install("acme", &token, &slug))
        };
        std::thread::sleep(Duration::from_millis(100));
        member(&host, &token, &format!("during-{slug}"));
        let a = installer.join().unwrap();
        assert_eq!(a.status, 422, "{slug}: {a:?}");
        assert_eq!(a.content_type, "application/problem+json");
        assert_eq!(a.body["type"], "https://souk.dev/problems/lifecycle-failed");
        assert!(
            a.detail().contains(step) && a.detail().contains("budget"),
            "{slug}: {a:?}"
        );
        member(&host, &token, &format!("after-{slug}"));
        let prefix = format!("{}__", slug.replace('-', "_"));
        let tables = host.tenant_tables("acme");
        assert!(
            !tables.iter().any(|t| t.starts_with(&prefix)),
            "{slug} left tables: {tables:?}"
        );
        let installed = host.get("/v1/tenants/acme/modules", &token);
        assert!(
            !installed
                .bytes
                .windows(slug.len())
                .any(|w| w == slug.as_bytes()),
            "{slug} is listed as installed: {installed:?}"
        );
    }

    // A sleeping uninstall hook: the uninstall does not go through, the
    // module stays, and the lock is free right after.
    host.install_ok("acme", &token, "sleeper-uninstall");
    let a = host.delete("/v1/tenants/acme/modules/sleeper-uninstall", &token);
    assert!(a.status >= 400, "{a:?}");
    assert_eq!(a.content_type, "application/problem+json", "{a:?}");
    assert!(a.detail().contains("budget"), "{a:?}");
    member(&host, &token, "after-uninstall");
    assert!(
        host.tenant_tables("acme")
            .iter()
            .any(|t| t == "sleeper_uninstall__naps")
    );

    // A sleeping gates() cannot even be added.
    let a = host.add_package(sleeper_as("sleeper-gates"));
    assert_eq!(a.status, 422, "{a:?}");
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("gates()"),
        "{a:?}"
    );
    assert_eq!(count(&host, "acme", "membership__members"), 5);
}

#[test]
fn sleepers_beyond_the_instance_pool_leave_other_tenants_served() {
    // Four instances: requests may use all four, one tenant at most two.
    let host = Arc::new(Host::start_with(
        &["membership", "sleeper"],
        &["--max-instances", "4", "--call-timeout-ms", "1000"],
    ));
    let good = host.tenant_with("acme", "membership");
    member(&host, &good, "G-1");
    let evil = host.tenant_with("evil", "sleeper");

    for wave in 0..2 {
        let start = Arc::new(Barrier::new(13));
        let sleepers: Vec<_> = (0..12)
            .map(|_| {
                let host = host.clone();
                let evil = evil.clone();
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    host.get("/t/evil/m/sleeper/sleep", &evil).status
                })
            })
            .collect();
        start.wait();
        std::thread::sleep(Duration::from_millis(100));
        for i in 0..20 {
            let a = host.get("/t/acme/m/membership/members/G-1", &good);
            assert_eq!(a.status, 200, "wave {wave}, read {i}: {a:?}");
            let a = host.request("GET", "/healthz", None, None);
            assert_eq!(a.status, 200, "wave {wave}: /healthz {a:?}");
        }
        let statuses: Vec<u16> = sleepers.into_iter().map(|s| s.join().unwrap()).collect();
        println!("wave {wave}: the sleepers got {statuses:?}");
        assert!(
            statuses.iter().all(|s| *s == 504 || *s == 429),
            "{statuses:?}"
        );
        assert!(statuses.contains(&429), "{statuses:?}");
    }
}

#[test]
fn a_tenant_over_its_cap_gets_429_with_retry_after_and_its_module_never_runs() {
    let host = Arc::new(Host::start_with(
        &["membership", "sleeper"],
        &["--tenant-concurrency", "3", "--call-timeout-ms", "2000"],
    ));
    let good = host.tenant_with("acme", "membership");
    member(&host, &good, "G-1");
    let evil = host.tenant_with("evil", "sleeper");

    // N + 1 parallel calls from one tenant.
    let start = Arc::new(Barrier::new(5));
    let sleepers: Vec<_> = (0..4)
        .map(|_| {
            let host = host.clone();
            let evil = evil.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                get_with_headers(&host, "/t/evil/m/sleeper/sleep", &evil)
            })
        })
        .collect();
    start.wait();
    std::thread::sleep(Duration::from_millis(300));

    // While the cap is taken, more calls are refused before the module
    // runs: a refused `/mark` writes nothing.
    let mut marked = 0;
    let mut refused = Vec::new();
    for _ in 0..5 {
        let res = host
            .client
            .post(format!("{}/t/evil/m/sleeper/mark", host.base))
            .bearer_auth(&evil)
            .body("{}")
            .send()
            .expect("sent");
        match res.status().as_u16() {
            201 => marked += 1,
            429 => refused.push(
                res.headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            ),
            other => panic!("mark answered {other}"),
        }
    }
    // Another tenant is served meanwhile, in parallel (up to its own cap).
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let host = host.clone();
            let good = good.clone();
            std::thread::spawn(move || host.get("/t/acme/m/membership/members/G-1", &good).status)
        })
        .collect();
    for r in readers {
        assert_eq!(r.join().unwrap(), 200, "the other tenant was refused");
    }

    let mut answers: Vec<(u16, Option<String>, Value)> =
        sleepers.into_iter().map(|s| s.join().unwrap()).collect();
    answers.sort_by_key(|a| a.0);
    println!(
        "sleepers: {:?}; marks: {marked} ran, {} refused",
        answers.iter().map(|a| a.0).collect::<Vec<_>>(),
        refused.len()
    );
    let busy: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
    assert!(
        !busy.is_empty(),
        "4 parallel calls under a cap of 3: {answers:?}"
    );
    assert!(
        answers.iter().all(|a| a.0 == 429 || a.0 == 504),
        "{answers:?}"
    );
    for (_, retry, body) in busy {
        assert_eq!(retry.as_deref(), Some("2"), "{body}");
        assert_eq!(
            body["type"], "https://souk.dev/problems/tenant-busy",
            "{body}"
        );
        assert_eq!(body["status"], 429);
        assert_eq!(body["limit"], 3);
    }
    assert!(!refused.is_empty(), "marks while the cap was taken");
    assert!(
        refused.iter().all(|r| r.as_deref() == Some("2")),
        "{refused:?}"
    );
    assert_eq!(
        count(&host, "evil", "sleeper__naps"),
        marked,
        "refused marks never ran"
    );

    // The places are free again once the calls are over.
    let a = host.request(
        "POST",
        "/t/evil/m/sleeper/mark",
        Some(&evil),
        Some(b"{}".to_vec()),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(count(&host, "evil", "sleeper__naps"), marked + 1);
}

#[test]
fn a_noisy_neighbour_does_not_fail_another_tenant_or_healthz() {
    let host = Arc::new(Host::start(&["membership", "spin-loop", "huge-response"]));
    let good = host.tenant_with("acme", "membership");
    member(&host, &good, "G-1");
    let evil = host.tenant_with("evil", "spin-loop");
    host.install_ok("evil", &evil, "huge-response");

    let flood_for = Duration::from_secs(5);
    let evil_statuses = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, u32>::new()));
    let flooders: Vec<_> = (0..16)
        .map(|i| {
            let host = host.clone();
            let evil = evil.clone();
            let statuses = evil_statuses.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let paths = [
                    "/t/evil/m/spin-loop/spin",
                    "/t/evil/m/huge-response/big?bytes=9000000",
                    "/t/evil/m/huge-response/big?bytes=7000000",
                ];
                let mut n = i;
                while started.elapsed() < flood_for {
                    let a = host.get(paths[n % paths.len()], &evil);
                    *statuses.lock().unwrap().entry(a.status).or_insert(0) += 1;
                    n += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));

    let health = {
        let host = host.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut latencies = Vec::new();
            while started.elapsed() < flood_for {
                let t = Instant::now();
                let a = host.request("GET", "/healthz", None, None);
                latencies.push(t.elapsed());
                assert_eq!(a.status, 200, "/healthz during the flood: {a:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
            latencies
        })
    };
    let started = Instant::now();
    let mut victim = Vec::new();
    while started.elapsed() < flood_for - Duration::from_millis(400) {
        let t = Instant::now();
        let a = host.get("/t/acme/m/membership/members/G-1", &good);
        victim.push(t.elapsed());
        assert_eq!(a.status, 200, "the victim failed during the flood: {a:?}");
        assert_eq!(a.body["name"], "Nima");
    }
    let mut health = health.join().unwrap();
    for f in flooders {
        f.join().unwrap();
    }
    victim.sort();
    health.sort();
    println!(
        "noisy neighbour: victim reads n={} p50={:?} p99={:?} max={:?}; \
         /healthz n={} p50={:?} p99={:?} max={:?}; flood answers {:?}",
        victim.len(),
        percentile(&victim, 0.5),
        percentile(&victim, 0.99),
        victim.last().copied().unwrap_or_default(),
        health.len(),
        percentile(&health, 0.5),
        percentile(&health, 0.99),
        health.last().copied().unwrap_or_default(),
        evil_statuses.lock().unwrap()
    );
    assert!(!victim.is_empty() && !health.is_empty());
}

#[test]
fn a_huge_hook_refusal_is_a_bounded_problem() {
    // Memory for the module's 30 MiB message and the SDK's copy of it.
    // Time to build and copy it, too, on a slow debug build.
    let host = Host::start_with(&[], &["--memory-mib", "256", "--call-timeout-ms", "10000"]);
    let token = host.tenant("acme");
    add(&host, "sleeper-refusal");
    let a = host.install("acme", &token, "sleeper-refusal");
    println!("a 30 MiB refusal became a {} byte answer", a.bytes.len());
    assert_eq!(
        a.status,
        422,
        "{}",
        String::from_utf8_lossy(&a.bytes[..200.min(a.bytes.len())])
    );
    assert_eq!(a.body["type"], "https://souk.dev/problems/lifecycle-failed");
    assert!(a.bytes.len() < 8 * 1024, "{} bytes", a.bytes.len());
    let detail = a.detail();
    assert!(detail.contains("refused: xxxx"), "{detail}");
    assert!(detail.ends_with("more bytes cut]"), "{detail}");
    assert!(host.tenant_tables("acme").is_empty());
}

#[test]
fn the_routers_own_errors_are_problem_documents() {
    let host = Host::start(&["membership"]);
    let token = host.tenant_with("acme", "membership");
    let cases: [(&str, &str, Option<&str>, u16); 9] = [
        ("PUT", "/healthz", None, 405),
        ("DELETE", "/v1/tenants", Some(&host.operator), 405),
        ("PATCH", "/v1/tenants/acme/modules", Some(&token), 405),
        ("PUT", "/v1/modules", Some(&host.operator), 405),
        ("GET", "/t/acme/m/%FF/members", Some(&token), 400),
        ("GET", "/t/acme/m/membership/%C3%28", Some(&token), 400),
        ("GET", "/t/acme/m/%FF", Some(&token), 400),
        (
            "DELETE",
            "/v1/tenants/acme/modules/%FF%FE",
            Some(&token),
            400,
        ),
        (
            "POST",
            "/v1/tenants/acme/modules/%E2%82/upgrade",
            Some(&token),
            400,
        ),
    ];
    for (method, path, token, status) in cases {
        let a = host.request(method, path, token, None);
        assert_eq!(a.status, status, "{method} {path}: {a:?}");
        assert_eq!(
            a.content_type, "application/problem+json",
            "{method} {path}: {a:?}"
        );
        assert_eq!(a.body["status"], status, "{method} {path}: {a:?}");
        assert!(
            a.body["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("https://souk.dev/problems/")),
            "{method} {path}: {a:?}"
        );
        assert!(!a.detail().is_empty(), "{method} {path}: {a:?}");
        if status == 405 {
            assert_eq!(
                a.body["type"],
                "https://souk.dev/problems/method-not-allowed"
            );
        }
    }
    // The 405 keeps its Allow header.
    let res = host
        .client
        .put(format!("{}/healthz", host.base))
        .send()
        .expect("sent");
    assert!(res.headers().get("allow").is_some(), "{:?}", res.headers());
    // A module's own answers are passed on as the module made them.
    let a = host.get("/t/acme/m/membership/members/NOPE", &token);
    assert_eq!(a.status, 404, "{a:?}");
    assert_ne!(
        a.body["type"], "https://souk.dev/problems/not-found",
        "{a:?}"
    );
}

#[test]
fn a_module_cannot_forge_a_host_log_line() {
    let host = Host::start_logged(&["sleeper"], &["--max-instances", "8"]);
    let token = host.tenant_with("acme", "sleeper");
    let post = |path: &str, token: &str, body: Vec<u8>| {
        host.request("POST", path, Some(token), Some(body)).status
    };

    let fake = "2026-12-01T00:00:00.000000Z  WARN souk::auth: FORGED operator token rotated";
    let separators = [
        "\n",
        "\r",
        "\r\n",
        "\n\r",
        "\u{0b}",
        "\u{0c}",
        "\u{85}",
        "\u{2028}",
        "\u{2029}",
        "\u{1b}[2K\r",
        "\u{1b}E",
        "\u{0}\n",
        "\n\n\n",
    ];
    for (i, sep) in separators.iter().enumerate() {
        let body = format!("case-{i} harmless{sep}{fake} case-{i}{sep}");
        let status = post("/t/acme/m/sleeper/log", &token, body.into_bytes());
        assert_eq!(status, 204, "case {i}");
    }
    // A long message is cut, and still one line.
    let long = format!("case-long {}\n{fake}", "y".repeat(20_000));
    let status = post("/t/acme/m/sleeper/log", &token, long.into_bytes());
    assert_eq!(status, 204);
    std::thread::sleep(Duration::from_millis(300));
    let lines = host.stop_for_log();

    for i in 0..separators.len() {
        let marker = format!("case-{i} harmless");
        let logged: Vec<&String> = lines.iter().filter(|l| l.contains(&marker)).collect();
        assert_eq!(logged.len(), 1, "case {i} was not logged once: {lines:#?}");
        assert!(logged[0].contains("FORGED"), "case {i}: {}", logged[0]);
    }
    let long: Vec<&String> = lines.iter().filter(|l| l.contains("case-long")).collect();
    assert_eq!(long.len(), 1, "{lines:#?}");
    assert!(long[0].len() < 6 * 1024, "{} bytes", long[0].len());
    assert!(long[0].contains("more bytes cut]"), "{}", long[0]);
    for line in &lines {
        if line.contains("FORGED") {
            // Every line that carries the forged text is the module's own
            // line, marked as such; none begins as a host line would.
            assert!(line.contains("souk::module"), "forged line: {line:?}");
            assert!(
                !line.starts_with("2026-12-01T00:00:00"),
                "forged line: {line:?}"
            );
            assert!(
                !line.chars().any(|c| c.is_control() && c != '\u{1b}'),
                "{line:?}"
            );
        }
    }
    println!("{} log lines, none forged", lines.len());
}
