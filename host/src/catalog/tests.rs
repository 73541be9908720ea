//! The catalog's per-version caches: what they keep is keyed by package
//! digest, so a new version (another digest) is computed afresh, and the
//! check that refuses a version changing a released migration still
//! compares against what the earlier versions declare.
//!
//! Uses the `hostile-lifecycle` test component (built by
//! `scripts/build-modules`), whose migrations depend on its slug and
//! version (see tests/modules/README.md).

use std::path::PathBuf;
use std::sync::Arc;

use souk_module_registry::Package;

use super::*;
use crate::clock::SystemClock;
use crate::runtime::{ComponentCache, RuntimeLimits};

/// The package bytes of `hostile-lifecycle` as module `slug` at `version`.
fn package(slug: &str, version: &str) -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate sits in the workspace")
        .to_path_buf();
    let manifest =
        std::fs::read_to_string(root.join("tests/modules/hostile-lifecycle/module.yaml"))
            .expect("module.yaml")
            .replace("slug: hostile-lifecycle", &format!("slug: {slug}"))
            .replace("version: 1.0.0", &format!("version: {version}"));
    let wasm = root.join("target/wasm32-wasip2/release/souk_test_hostile_lifecycle.wasm");
    let component = std::fs::read(&wasm).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}); run scripts/build-modules first",
            wasm.display()
        )
    });
    Package::build(&manifest, &component).expect("package builds")
}

struct Fixture {
    catalog: Catalog,
    runtime: Runtime,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let control = ControlPlane::in_memory().await.unwrap();
    let limits = RuntimeLimits {
        max_instances: 4,
        ..RuntimeLimits::default()
    };
    let cache = ComponentCache::open(&dir.path().join("compiled")).unwrap();
    let runtime = Runtime::new(limits, cache).unwrap();
    let catalog = Catalog::new(control, dir.path().join("packages"), Arc::new(SystemClock));
    Fixture {
        catalog,
        runtime,
        _dir: dir,
    }
}

impl Fixture {
    async fn add(&self, slug: &str, version: &str) -> Result<ModuleVersion, SoukError> {
        self.catalog
            .add_package(&self.runtime, &package(slug, version))
            .await
    }

    /// The migration ids `slug` `version` declares, through the cache.
    async fn migrations(&self, slug: &str, version: &str) -> Arc<[Migration]> {
        let resolved = self.catalog.resolve(slug, Some(version)).await.unwrap();
        let loaded = self.catalog.load(&self.runtime, &resolved).await.unwrap();
        self.catalog
            .migrations(&resolved.digest, &resolved.manifest, &loaded)
            .await
            .unwrap()
    }
}

fn ids(migrations: &[Migration]) -> Vec<&str> {
    migrations.iter().map(|m| m.id.as_str()).collect()
}

#[tokio::test]
async fn migrations_are_listed_once_per_version_and_afresh_for_a_new_one() {
    let f = fixture().await;
    // `late-foreign-down` 1.1.0 adds a migration to 1.0.0's.
    f.add("late-foreign-down", "1.0.0").await.unwrap();
    let first = f.migrations("late-foreign-down", "1.0.0").await;
    assert_eq!(ids(&first), ["0001_items"]);
    let again = f.migrations("late-foreign-down", "1.0.0").await;
    assert!(Arc::ptr_eq(&first, &again), "listed twice");

    let added = f.add("late-foreign-down", "1.1.0").await.unwrap();
    assert!(added.newly_added);
    let newer = f.migrations("late-foreign-down", "1.1.0").await;
    assert_eq!(ids(&newer), ["0001_items", "0002_notes"]);
    assert_eq!(
        ids(&f.migrations("late-foreign-down", "1.0.0").await),
        ["0001_items"],
        "the older version keeps its own list"
    );
}

#[tokio::test]
async fn a_version_changing_a_released_migration_is_refused_with_the_cache_warm() {
    let f = fixture().await;
    f.add("drift", "1.0.0").await.unwrap();
    // Listed (and kept) before the new version arrives, as an install does.
    let released = f.migrations("drift", "1.0.0").await;
    assert_eq!(ids(&released), ["0001_items"]);

    // 1.1.0 changes 0001_items's SQL: refused, naming it and 1.0.0, however
    // often it is offered.
    for _ in 0..2 {
        let refused = f.add("drift", "1.1.0").await.unwrap_err();
        assert!(
            matches!(&refused, SoukError::PackageRefused(m)
                if m.contains("0001_items") && m.contains("1.0.0")),
            "{refused:?}"
        );
    }
    assert!(f.catalog.resolve("drift", Some("1.1.0")).await.is_err());
    assert_eq!(
        f.catalog
            .registry_index()
            .await
            .unwrap()
            .versions(&souk_module_registry::Slug::parse("drift").unwrap())
            .count(),
        1
    );
}
