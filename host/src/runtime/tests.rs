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
    let state = CallState::new(
        CallContext::system(&package.manifest),
        ModuleDb::detached(),
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
