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

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use souk_host::capabilities::entitlements::call::{MeterEvent, MeterHold};
use souk_host::entitlements::{
    AccessState, EntitlementEngine, Grant, InMemoryUsageStore, MeterAllowance, Period,
    ResetInterval, usage_db,
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
    let engine = EntitlementEngine::new(Box::new(InMemoryUsageStore::new()));
    let tenants: Vec<String> = (0..TENANTS).map(|i| format!("tenant-{i}")).collect();
    for tenant in &tenants {
        if let Err(error) = engine.replace_grant(tenant, MODULE, grant(period)) {
            eprintln!("cannot install a grant: {error}");
            std::process::exit(1);
        }
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
        let pool =
            sqlx::SqlitePool::connect_with(souk_host::control_plane::sqlite_options(&path)).await?;
        usage_db::ensure_schema(&pool).await?;
        Ok::<_, sqlx::Error>(pool)
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
