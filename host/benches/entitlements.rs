//! Benchmarks of the in-process entitlements engine, run with
//! `cargo bench -p souk-host --bench entitlements`.
//!
//! - `entitlements/check_feature_cached`: `check_feature` of a granted
//!   feature for one of 1,000 cached (tenant, module) grants — the cost of
//!   the check every gated request and module call pays.
//! - `entitlements/check_limit_cached`: `check_limit` of a count limit.
//! - `entitlements/consume_release`: a consume and a release of one unit.
//! - `entitlements/record_usage`: one metering event with a fresh
//!   idempotency key (throughput reported as events per second). Keys are
//!   bounded per period, so the run also covers evicting the oldest key.
//! - `entitlements/record_usage_durable`: the same event as the usage-events
//!   API records it — engine plus an idempotent insert into the tenant's
//!   SQLite database (WAL, `synchronous = NORMAL`), one `BEGIN IMMEDIATE`
//!   transaction per event — through the same `MeterHold` the API uses,
//!   without HTTP.
//! - `entitlements/record_usage_durable_batch100`: 100 such events in one
//!   transaction, as a `{"events": [...]}` request records them.
//! - `entitlements/usage_service_32_concurrent`: 32 tasks on a two-worker
//!   runtime each recording one event with a fresh key through
//!   `Usage::record_one` — the service function behind
//!   `POST /v1/tenants/{t}/usage-events` and `souk usage record`, without
//!   HTTP — for a tenant with the `cards` test module installed (unpriced:
//!   an unlimited meter). Concurrent events share transactions (group
//!   commit); throughput is events per second.
//! - `entitlements/usage_service_one`: one such event at a time (a group of
//!   one: the latency of a lone event).
//!
//! The service benchmarks need the `cards` test component built for
//! wasm32-wasip2 (`scripts/build-modules`); without it they are skipped with
//! a message saying so.

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use souk_host::capabilities::entitlements::call::{MeterEvent, MeterHold};
use souk_host::entitlements::{
    AccessState, EntitlementEngine, Grant, MeterAllowance, Period, ResetInterval,
};
use time::OffsetDateTime;

const TENANTS: usize = 1_000;
const MODULE: &str = "digital-card";

fn grant(period: Period) -> Grant {
    let mut grant = Grant::new(AccessState::Active, Some("pro"));
    grant.features = HashSet::from([
        "create_cards".to_owned(),
        "qr_codes".to_owned(),
        "custom_branding".to_owned(),
    ]);
    grant.limits = HashMap::from([("max_cards".to_owned(), Some(u64::MAX))]);
    grant.meters = HashMap::from([(
        "qr_scans_per_month".to_owned(),
        MeterAllowance {
            per_period: Some(10_000),
            period,
            interval: ResetInterval::Month,
        },
    )]);
    grant
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let now = OffsetDateTime::now_utc();
    let period = Period {
        start: now - Duration::from_secs(86_400),
        end: now + Duration::from_secs(30 * 86_400),
    };
    let engine = EntitlementEngine::new();
    let tenants: Vec<String> = (0..TENANTS).map(|i| format!("tenant-{i}")).collect();
    for tenant in &tenants {
        engine.replace_grant(tenant, MODULE, grant(period));
    }
    let tenant = &tenants[TENANTS / 2];

    let mut group = criterion.benchmark_group("entitlements");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("check_feature_cached", |b| {
        b.iter(|| engine.check_feature(black_box(tenant), MODULE, black_box("custom_branding")))
    });
    group.bench_function("check_limit_cached", |b| {
        b.iter(|| engine.check_limit(black_box(tenant), MODULE, black_box("max_cards"), 50))
    });
    group.bench_function("consume_release", |b| {
        b.iter(|| {
            let taken = engine.consume(tenant, MODULE, "max_cards", 1, None);
            let given = engine.release(tenant, MODULE, "max_cards", 1, None);
            black_box((taken.is_ok(), given.is_ok()))
        })
    });
    group.throughput(Throughput::Elements(1));
    let mut next_key: u64 = 0;
    group.bench_function("record_usage", |b| {
        b.iter(|| {
            next_key += 1;
            let key = next_key.to_string();
            black_box(engine.record_usage(tenant, MODULE, "qr_scans_per_month", 1, &key, now))
        })
    });
    record_usage_durable(&mut group, &engine, tenant, now);
    usage_service(&mut group);
    group.finish();
    criterion.final_summary();
}

fn record_usage_durable(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    engine: &EntitlementEngine,
    tenant: &str,
    now: OffsetDateTime,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start a runtime: {error}");
            std::process::exit(1);
        }
    };
    let path = std::env::temp_dir().join(format!("souk-bench-usage-{}.sqlite", std::process::id()));
    let pool = runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect_with(souk_host::control_plane::sqlite_options(&path))
            .await
            .map_err(|e| e.to_string())?;
        souk_host::tenant_migrations::migrate(&pool)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(pool)
    });
    let pool = match pool {
        Ok(pool) => pool,
        Err(error) => {
            eprintln!("cannot open {}: {error}", path.display());
            std::process::exit(1);
        }
    };
    let mut next_key: u64 = 0;
    group.bench_function("record_usage_durable", |b| {
        b.iter(|| {
            next_key += 1;
            let key = format!("durable-{next_key}");
            runtime.block_on(async {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.ok()?;
                let event = MeterEvent {
                    tenant_id: tenant,
                    module: MODULE,
                    meter: "qr_scans_per_month",
                    amount: 1,
                    idempotency_key: &key,
                    at: now,
                };
                let mut hold = MeterHold::take(engine, event, false).ok()?;
                hold.write(&mut tx).await.ok()?;
                tx.commit().await.ok()?;
                let reading = hold.reading();
                hold.commit();
                Some(black_box(reading.used))
            })
        })
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("record_usage_durable_batch100", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.ok()?;
                let keys: Vec<String> = (0..100)
                    .map(|_| {
                        next_key += 1;
                        format!("durable-{next_key}")
                    })
                    .collect();
                let mut holds = Vec::with_capacity(keys.len());
                for key in &keys {
                    let event = MeterEvent {
                        tenant_id: tenant,
                        module: MODULE,
                        meter: "qr_scans_per_month",
                        amount: 1,
                        idempotency_key: key,
                        at: now,
                    };
                    let mut hold = MeterHold::take(engine, event, false).ok()?;
                    hold.write(&mut tx).await.ok()?;
                    holds.push(hold);
                }
                tx.commit().await.ok()?;
                let mut used = 0;
                for hold in holds {
                    used = hold.reading().used;
                    hold.commit();
                }
                Some(black_box(used))
            })
        })
    });
    runtime.block_on(pool.close());
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Where cargo puts build output: `CARGO_TARGET_DIR` when it is absolute,
/// else `target/` at the top of the workspace.
fn target_dir() -> std::path::PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

/// The `cards` test module packed as `souk module pack` does, or why not.
fn cards_package() -> Result<Vec<u8>, String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let component_path = target_dir().join("wasm32-wasip2/release/souk_test_cards.wasm");
    let component = std::fs::read(&component_path).map_err(|e| {
        format!(
            "{}: {e}; build the modules first with scripts/build-modules",
            component_path.display()
        )
    })?;
    let manifest_path = root.join("tests/modules/cards/module.yaml");
    let manifest = std::fs::read_to_string(&manifest_path)
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    souk_module_registry::Package::build(&manifest, &component).map_err(|e| e.to_string())
}

/// A host in `dir` with tenant `bench` and the `cards` module installed.
async fn cards_host(
    dir: &std::path::Path,
) -> Result<(std::sync::Arc<souk_host::Souk>, souk_host::tenancy::Tenant), String> {
    let package = cards_package()?;
    let souk = souk_host::Souk::open(souk_host::SoukConfig::new(dir))
        .await
        .map_err(|e| format!("{e:#}"))?;
    souk.add_package(&package)
        .await
        .map_err(|e| e.to_string())?;
    let tenant = souk
        .tenancy
        .create("bench", "Benchmark")
        .await
        .map_err(|e| e.to_string())?;
    let install = souk_host::installer::InstallRequest {
        module: "cards".to_owned(),
        ..souk_host::installer::InstallRequest::default()
    };
    souk.installer()
        .install(&souk_host::auth::Principal::Operator, &tenant, &install)
        .await
        .map_err(|e| e.to_string())?;
    Ok((souk, tenant))
}

fn usage_service(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    const CONCURRENT: u64 = 32;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start a runtime: {error}");
            std::process::exit(1);
        }
    };
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("cannot make a data directory: {error}");
            std::process::exit(1);
        }
    };
    let (souk, tenant) = match runtime.block_on(cards_host(dir.path())) {
        Ok(host) => host,
        Err(error) => {
            eprintln!("skipping the usage_service benchmarks: {error}");
            return;
        }
    };
    let event = |key: String| souk_host::usage::UsageEvent {
        module: "cards".to_owned(),
        meter: "qr_scans_per_month".to_owned(),
        amount: 1,
        idempotency_key: key,
    };
    let mut next_key: u64 = 0;
    group.throughput(Throughput::Elements(CONCURRENT));
    group.bench_function("usage_service_32_concurrent", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let tasks: Vec<_> = (0..CONCURRENT)
                    .map(|_| {
                        next_key += 1;
                        let (souk, tenant) = (souk.clone(), tenant.clone());
                        let event = event(format!("service-{next_key}"));
                        tokio::spawn(async move {
                            souk.usage()
                                .record_one(&tenant, event)
                                .await
                                .map(|r| r.used)
                        })
                    })
                    .collect();
                for task in tasks {
                    match task.await {
                        Ok(Ok(used)) => {
                            black_box(used);
                        }
                        Ok(Err(error)) => {
                            eprintln!("usage_service_32_concurrent: {error}");
                            std::process::exit(1);
                        }
                        Err(error) => {
                            eprintln!("usage_service_32_concurrent: {error}");
                            std::process::exit(1);
                        }
                    }
                }
            })
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("usage_service_one", |b| {
        b.iter(|| {
            next_key += 1;
            let recorded = runtime.block_on(
                souk.usage()
                    .record_one(&tenant, event(format!("service-{next_key}"))),
            );
            match recorded {
                Ok(recorded) => black_box(recorded.used),
                Err(error) => {
                    eprintln!("usage_service_one: {error}");
                    std::process::exit(1);
                }
            }
        })
    });
    drop(souk);
    runtime.shutdown_timeout(Duration::from_secs(5));
}
