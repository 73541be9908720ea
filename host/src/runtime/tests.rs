//! Runtime tests against real components of both supported API versions:
//! `legacy` (API 0.1.0, built with wit-bindgen alone) and `cards` (API
//! 0.2.0, built with the SDK). Both are built by `scripts/build-modules`,
//! which `scripts/test` runs before the tests.

use std::path::PathBuf;

use souk_module_registry::{ApiVersion, Package, PackageLimits};

use super::*;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate sits in the workspace")
        .to_path_buf()
}

/// The package of the test module in `tests/modules/<dir>`, with its
/// manifest text passed through `edit`.
fn package(dir: &str, crate_file: &str, edit: impl Fn(String) -> String) -> Package {
    let root = workspace_root();
    let manifest = std::fs::read_to_string(root.join(format!("tests/modules/{dir}/module.yaml")))
        .expect("module.yaml");
    let wasm = root.join(format!("target/wasm32-wasip2/release/{crate_file}.wasm"));
    let component = std::fs::read(&wasm).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}); run scripts/build-modules first",
            wasm.display()
        )
    });
    let bytes = Package::build(&edit(manifest), &component).expect("package builds");
    Package::read(&bytes, PackageLimits::default()).expect("package reads")
}

fn legacy() -> Package {
    package("legacy-v0_1", "souk_test_legacy_v0_1", |m| m)
}

fn cards() -> Package {
    package("cards", "souk_test_cards", |m| m)
}

fn runtime(cache: &tempfile::TempDir) -> Runtime {
    let limits = RuntimeLimits {
        max_instances: 4,
        ..RuntimeLimits::default()
    };
    Runtime::new(limits, ComponentCache::open(cache.path()).unwrap()).unwrap()
}

/// A call without a database or a subscription (as when a package loads).
async fn call(runtime: &Runtime, module: &LoadedModule, package: &Package) -> Call {
    let state = CallState::detached(
        CallContext::system(&package.manifest),
        runtime.limits().memory_bytes,
    );
    module.instantiate(state).await.unwrap()
}

fn get(path: &str) -> ModuleRequest {
    request("GET", path, b"")
}

fn request(method: &str, path: &str, body: &[u8]) -> ModuleRequest {
    ModuleRequest {
        method: method.into(),
        path: path.into(),
        query: String::new(),
        headers: Vec::new(),
        body: body.to_vec(),
    }
}

fn json(response: &ModuleResponse) -> serde_json::Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&response.body)
        )
    })
}

#[tokio::test]
async fn a_component_built_against_api_0_1_0_loads_and_runs() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(&cache);
    let package = legacy();
    let module = runtime.load(&package).await.unwrap();
    assert_eq!(module.api(), ApiVersion::V0_1_0);

    let mut call = call(&runtime, &module, &package).await;
    let migrations = call.migrations().await.unwrap();
    assert_eq!(migrations.len(), 1);
    assert_eq!(migrations[0].id, "0001_entries");
    assert_eq!(call.install().await.unwrap(), Ok(()));
    // The 0.1.0 db import reaches the host: without a database the
    // module reports the host's refusal.
    let response = call.handle(get("/entries")).await.unwrap();
    assert_eq!(response.status, 500);
    let body = json(&response);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no database is available"),
        "{body}"
    );
}

#[tokio::test]
async fn a_component_built_against_api_0_2_0_loads_and_runs() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(&cache);
    let package = cards();
    let module = runtime.load(&package).await.unwrap();
    assert_eq!(module.api(), ApiVersion::V0_2_0);

    let mut call = call(&runtime, &module, &package).await;
    let (features, limits) = call.gates().await.unwrap();
    assert_eq!(features.len(), 13);
    assert!(
        limits
            .iter()
            .any(|l| l.key == "qr_scans_per_month" && l.kind == LimitKind::Meter)
    );
    let migrations = call.migrations().await.unwrap();
    assert_eq!(migrations[0].id, "0001_cards");
}

#[tokio::test]
async fn without_a_subscription_entitlement_calls_are_refused() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(&cache);
    let package = cards();
    let module = runtime.load(&package).await.unwrap();

    // usage() is none and has_feature() false.
    let mut c = call(&runtime, &module, &package).await;
    let response = c.handle(get("/limits/max_cards")).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        json(&response),
        serde_json::json!({"key": "max_cards", "usage": null, "feature": false})
    );

    // check-feature answers a no_subscription denial, which the SDK turns
    // into the host's entitlement problem.
    let mut c = call(&runtime, &module, &package).await;
    let response = c.handle(get("/templates/premium")).await.unwrap();
    assert_eq!(response.status, 402);
    let body = json(&response);
    assert_eq!(body["type"], "https://souk.dev/problems/entitlement-denied");
    assert_eq!(body["reason"], "no_subscription");
    assert_eq!(body["feature"], "premium_templates");

    // record-usage is refused the same way.
    let mut c = call(&runtime, &module, &package).await;
    let response = c
        .handle(request("POST", "/scans", br#"{"key": "scan-1"}"#))
        .await
        .unwrap();
    assert_eq!(response.status, 402);
    assert_eq!(json(&response)["feature"], "qr_scans_per_month");
}

#[tokio::test]
async fn the_manifest_must_name_the_api_the_component_implements() {
    let cache = tempfile::tempdir().unwrap();
    let runtime = runtime(&cache);
    let cards = package("cards", "souk_test_cards", |m| {
        m.replace("api: 0.2.0", "api: 0.1.0")
    });
    let error = runtime.load(&cards).await.err().expect("refused");
    assert!(
        matches!(&error, LoadError::ManifestMismatch(m) if m.contains("souk:module@0.2.0")),
        "{error}"
    );
    let legacy = package("legacy-v0_1", "souk_test_legacy_v0_1", |m| {
        m.replace("api: 0.1.0", "api: 0.2.0")
    });
    let error = runtime.load(&legacy).await.err().expect("refused");
    assert!(
        matches!(&error, LoadError::ManifestMismatch(m) if m.contains("souk:module@0.1.0")),
        "{error}"
    );
}

// ---- Deadlines, yielding and bounded messages ----

/// A runtime whose calls have a short budget.
fn runtime_with_budget(cache: &tempfile::TempDir, budget: Duration) -> Runtime {
    let limits = RuntimeLimits {
        max_instances: 4,
        call_timeout: budget,
        ..RuntimeLimits::default()
    };
    Runtime::new(limits, ComponentCache::open(cache.path()).unwrap()).unwrap()
}

/// The `sleeper` test module packaged under `slug` (which decides where
/// it sleeps).
fn sleeper(slug: &str) -> Package {
    package("sleeper", "souk_test_sleeper", |m| {
        m.replacen("slug: sleeper", &format!("slug: {slug}"), 1)
    })
}

/// Fails the test instead of hanging when a call is never stopped (the
/// sleeper sleeps for an hour).
async fn stopped<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .unwrap_or_else(|_| panic!("{what} was not stopped at its deadline"))
}

fn is_timeout<T: std::fmt::Debug>(what: &str, result: Result<T, CallError>, budget: Duration) {
    match result {
        Err(CallError::Timeout(b)) => assert_eq!(b, budget, "{what}"),
        other => panic!("{what}: expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn a_guest_blocked_in_a_wasi_sleep_is_stopped_in_every_export() {
    let cache = tempfile::tempdir().unwrap();
    let budget = Duration::from_millis(200);
    let runtime = runtime_with_budget(&cache, budget);

    // A short sleep finishes: the module works, and only overlong calls stop.
    let package = sleeper("sleeper");
    let module = runtime.load(&package).await.unwrap();
    let mut c = call(&runtime, &module, &package).await;
    let response = c.handle(get_query("/sleep", "ms=5")).await.unwrap();
    assert_eq!(response.status, 200);
    for query in ["", "ms=1000", "ms=60000"] {
        let mut c = call(&runtime, &module, &package).await;
        let result = stopped("handle", c.handle(get_query("/sleep", query))).await;
        is_timeout(&format!("handle ?{query}"), result, budget);
    }

    // (`sleeper-install` writes before it sleeps, so it needs a database:
    // the e2e tests cover it.)
    for slug in ["sleeper-uninstall", "sleeper-upgrade"] {
        let package = sleeper(slug);
        let module = runtime.load(&package).await.unwrap();
        let mut c = call(&runtime, &module, &package).await;
        let result = stopped(slug, async {
            match slug {
                "sleeper-uninstall" => c.uninstall().await,
                _ => c.upgrade("0.0.1").await,
            }
        })
        .await;
        is_timeout(slug, result, budget);
    }

    let package = sleeper("sleeper-migrations");
    let module = runtime.load(&package).await.unwrap();
    let mut c = call(&runtime, &module, &package).await;
    let result = stopped("migrations()", c.migrations()).await;
    is_timeout("migrations()", result, budget);

    // gates() runs while a package loads: the load fails and says why.
    let error = stopped("gates()", runtime.load(&sleeper("sleeper-gates")))
        .await
        .err()
        .expect("a sleeping gates() refuses the package");
    assert!(
        matches!(&error, LoadError::ManifestMismatch(m) if m.contains("gates() failed") && m.contains("budget")),
        "{error}"
    );
}

#[tokio::test]
async fn one_deadline_covers_every_export_called_on_a_call() {
    let cache = tempfile::tempdir().unwrap();
    let budget = Duration::from_millis(300);
    let runtime = runtime_with_budget(&cache, budget);
    let package = sleeper("sleeper");
    let module = runtime.load(&package).await.unwrap();
    let mut c = call(&runtime, &module, &package).await;
    // Each sleep fits the budget, the two together do not.
    let first = c.handle(get_query("/sleep", "ms=200")).await.unwrap();
    assert_eq!(first.status, 200);
    let second = stopped("second export", c.handle(get_query("/sleep", "ms=200"))).await;
    is_timeout("second export", second, budget);
}

#[tokio::test(flavor = "current_thread")]
async fn a_looping_guest_yields_its_thread_while_it_runs() {
    let cache = tempfile::tempdir().unwrap();
    let budget = Duration::from_millis(300);
    let runtime = runtime_with_budget(&cache, budget);
    let package = package("spin-loop", "souk_test_spin_loop", |m| m);
    let module = runtime.load(&package).await.unwrap();
    // On this one-thread runtime the task below runs only while the
    // guest's call future is pending: if the guest never yielded, it would
    // not run before the call ends.
    let turns = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = turns.clone();
    let ticker = tokio::spawn(async move {
        loop {
            counter.fetch_add(1, Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
    });
    let mut c = call(&runtime, &module, &package).await;
    let result = stopped("spin-loop", c.handle(get("/spin"))).await;
    let seen = turns.load(Ordering::Relaxed);
    ticker.abort();
    is_timeout("spin-loop", result, budget);
    println!("the other task ran {seen} times during a {budget:?} spin");
    assert!(
        seen > 1,
        "another task ran {seen} times while the guest spun"
    );
}

#[tokio::test]
async fn a_huge_hook_refusal_reaches_the_caller_bounded() {
    let cache = tempfile::tempdir().unwrap();
    // Room for the SDK's copy of the 30 MiB message as well.
    let limits = RuntimeLimits {
        max_instances: 2,
        memory_bytes: 256 * 1024 * 1024,
        ..RuntimeLimits::default()
    };
    let runtime = Runtime::new(limits, ComponentCache::open(cache.path()).unwrap()).unwrap();
    let package = sleeper("sleeper-refusal");
    let module = runtime.load(&package).await.unwrap();
    let mut c = call(&runtime, &module, &package).await;
    let message = c.install().await.unwrap().expect_err("the hook refuses");
    assert!(message.len() <= MAX_ERROR_BYTES, "{} bytes", message.len());
    assert!(message.starts_with("refused: xxx"), "{}", &message[..40]);
    assert!(
        message.ends_with("more bytes cut]"),
        "{}",
        &message[message.len() - 60..]
    );
}

fn get_query(path: &str, query: &str) -> ModuleRequest {
    ModuleRequest {
        query: query.into(),
        ..get(path)
    }
}

#[test]
fn printable_text_never_breaks_a_line() {
    let forgeries = [
        "ok\n2026-12-01T00:00:00Z  INFO souk: operator token rotated",
        "ok\r2026-12-01T00:00:00Z  INFO souk: operator token rotated",
        "ok\r\nINFO fake",
        "ok\u{0b}vertical tab\u{0c}form feed",
        "ok\u{1b}[2K\u{1b}[1Gerased the line",
        "ok\u{85}next line (C1)",
        "ok\u{2028}line separator",
        "ok\u{2029}paragraph separator",
        "ok\u{202e}reversed\u{202c}",
        "ok\u{2066}isolate\u{2069}",
        "ok\u{0}nul\u{7f}del\u{9b}csi",
        "\n\n\n",
        "tab\there",
    ];
    for text in forgeries {
        let shown = printable(text, MAX_ERROR_BYTES);
        assert!(
            !shown.chars().any(|c| c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')),
            "{text:?} shown as {shown:?}"
        );
    }
    assert_eq!(printable("a\nb", 100), "a\\nb");
    assert_eq!(printable("a\r\nb", 100), "a\\r\\nb");
    assert_eq!(printable("\u{1b}[0m", 100), "\\u{1b}[0m");
    assert_eq!(printable("x\u{2028}y", 100), "x\\u{2028}y");
    assert_eq!(printable("x\u{85}y", 100), "x\\u{85}y");
    // Ordinary text, backslashes and non-ASCII letters pass unchanged.
    for text in ["plain", "C:\\dir\\file", "नमस्ते", "émoji 😀", ""] {
        assert_eq!(printable(text, 100), text);
    }
}

#[test]
fn printable_text_is_cut_at_a_character_boundary_with_a_marker() {
    let max = 4096;
    let cases = [
        "x".repeat(30 * 1024 * 1024),
        "é".repeat(5000),
        "😀".repeat(3000),
        "\n".repeat(5000),
        "\u{2028}".repeat(1000),
        format!("{}é", "x".repeat(4095)),
        "x".repeat(4097),
    ];
    for text in &cases {
        let shown = printable(text, max);
        assert!(shown.len() <= max, "{} bytes", shown.len());
        assert!(
            shown.ends_with("more bytes cut]"),
            "{:?}",
            &shown[shown.len() - 40..]
        );
        let kept = shown.len() - shown.rfind("… [").unwrap();
        assert!(kept < 48, "the marker is short");
    }
    // Exactly at the limit: nothing cut.
    let fits = "x".repeat(max);
    assert_eq!(printable(&fits, max), fits);
    // An escape that would cross the limit is not split.
    let shown = printable(&format!("{}\n{}", "x".repeat(4040), "y".repeat(100)), max);
    assert!(!shown.contains("\\…") && shown.len() <= max, "{shown}");
}

#[test]
fn admission_caps_each_tenant_and_all_tenants() {
    let retry = Duration::from_millis(1500);
    let admission = admission::Admission::new(2, 5, retry);
    let a1 = admission.admit("a").unwrap();
    let a2 = admission.admit("a").unwrap();
    match admission.admit("a") {
        Err(e @ CallError::TenantBusy { limit: 2, .. }) => {
            assert_eq!(e.retry_after_secs(), Some(2));
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(admission.running("a"), (2, 2));
    // Other tenants are not affected by a's cap...
    let b1 = admission.admit("b").unwrap();
    let b2 = admission.admit("b").unwrap();
    let c1 = admission.admit("c").unwrap();
    // ...until all places are taken: then the host is full for everyone.
    assert!(matches!(
        admission.admit("d"),
        Err(CallError::Capacity { .. })
    ));
    assert!(matches!(
        admission.admit("a"),
        Err(CallError::Capacity { .. })
    ));
    drop(a1);
    assert_eq!(admission.running("a"), (1, 4));
    let a3 = admission.admit("a").unwrap();
    drop((a2, a3, b1, b2, c1));
    assert_eq!(admission.running("a"), (0, 0));
    assert_eq!(admission.running("b"), (0, 0));
}

#[test]
fn one_tenant_never_takes_more_than_half_of_the_places() {
    for (configured, total, expected) in
        [(8, 4, 2), (8, 1, 1), (8, 3, 1), (2, 112, 2), (100, 20, 10)]
    {
        let admission = admission::Admission::new(configured, total, Duration::from_secs(1));
        let permits: Vec<_> = (0..expected)
            .map(|_| admission.admit("greedy").unwrap())
            .collect();
        let refused = admission.admit("greedy");
        assert!(
            matches!(
                refused,
                Err(CallError::TenantBusy { .. }) | Err(CallError::Capacity { .. })
            ),
            "{configured}/{total}: admitted more than {expected}"
        );
        if total > 1 {
            let _other = admission
                .admit("other")
                .expect("another tenant still finds a place");
        }
        drop(permits);
    }
    assert_eq!(reserved_instances(128), 16);
    assert_eq!(reserved_instances(4), 0);
}

#[test]
fn a_plans_budget_is_capped_at_the_operator_maxima() {
    let limits = RuntimeLimits {
        memory_bytes: 64 << 20,
        max_memory_bytes: 256 << 20,
        call_timeout: Duration::from_secs(1),
        max_call_timeout: Duration::from_secs(5),
        ..RuntimeLimits::default()
    };
    assert_eq!(
        limits.for_plan(None, None),
        (64 << 20, Duration::from_secs(1))
    );
    assert_eq!(
        limits.for_plan(Some(128 << 20), Some(Duration::from_secs(3))),
        (128 << 20, Duration::from_secs(3))
    );
    assert_eq!(
        limits.for_plan(Some(1 << 30), Some(Duration::from_secs(60))),
        (256 << 20, Duration::from_secs(5))
    );
    // A smaller sandbox is allowed too.
    assert_eq!(
        limits.for_plan(Some(16 << 20), Some(Duration::from_millis(200))),
        (16 << 20, Duration::from_millis(200))
    );
}
