//! Benchmarks of the module runtime, run with `scripts/bench` (or
//! `cargo bench -p souk-host --bench runtime`); BENCHMARKS.md records the
//! method and the numbers.
//!
//! - `compile/cold`: `Runtime::load` of the Membership package with an
//!   empty compile cache, so Cranelift compiles the component.
//! - `compile/cold_digital_card`, `compile/cold_forum`: the same for the
//!   Digital Card and Forum packages, the two largest business modules.
//! - `compile/cached`: `Runtime::load` of the Membership package in a new
//!   `Runtime` whose cache directory already holds the compiled component,
//!   as after a host restart.
//! - `request/membership_get_members` and
//!   `request/membership_get_member`: `dispatch::dispatch` of
//!   `GET /members` and `GET /members/M-0042` for a tenant with 100
//!   members, the whole per-request path except HTTP and authentication.
//! - `request_parts/*`: pieces of that path alone (control-plane lookups,
//!   instantiating the module), to show where a request's time goes.
//!
//! Every load gets a fresh `Runtime`, created and dropped outside the timed
//! section: creating one reserves the pooling allocator's address space and
//! starts the epoch thread, which would otherwise dominate the numbers.
//!
//! The benchmarks need the Membership, Digital Card and Forum components
//! built for wasm32-wasip2 (`scripts/build-modules`); without them they stop
//! with a message saying so.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use criterion::{Criterion, SamplingMode};
use souk_host::auth::{Principal, Visitor};
use souk_host::capabilities::CallState;
use souk_host::capabilities::context::CallContext;
use souk_host::error::SoukError;
use souk_host::installer::InstallRequest;
use souk_host::runtime::{ComponentCache, ModuleRequest, ModuleResponse, Runtime, RuntimeLimits};
use souk_host::{Souk, SoukConfig};
use souk_module_registry::{Package, PackageLimits};

/// Members seeded into the benchmark tenant.
const SEEDED_MEMBERS: u32 = 100;
/// The member `request/membership_get_member` reads.
const READ_MEMBER: &str = "M-0042";

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    if let Err(error) = run(&mut criterion) {
        eprintln!("bench runtime: {error:#}");
        std::process::exit(1);
    }
    criterion.final_summary();
}

fn run(criterion: &mut Criterion) -> anyhow::Result<()> {
    let package_bytes = business_package("membership")?;
    let package = Package::read(&package_bytes, PackageLimits::default())
        .context("the Membership package does not read back")?;
    let mut larger = Vec::new();
    for (name, module) in [
        ("cold_digital_card", "digital-card"),
        ("cold_forum", "forum"),
    ] {
        let bytes = business_package(module)?;
        let package = Package::read(&bytes, PackageLimits::default())
            .with_context(|| format!("the {module} package does not read back"))?;
        larger.push((name, package));
    }
    let tokio = tokio::runtime::Runtime::new().context("cannot start a tokio runtime")?;
    bench_compile(criterion, &tokio, &package, &larger)?;
    bench_requests(criterion, &tokio, &package_bytes)?;
    Ok(())
}

/// Where cargo puts build output: `CARGO_TARGET_DIR` when it is absolute,
/// else `target/` at the top of the workspace.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

/// Packs the component of `plugins/<module>` with its manifest, as `souk
/// module pack` does.
fn business_package(module: &str) -> anyhow::Result<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let component_path = target_dir().join(format!(
        "wasm32-wasip2/release/souk_{}.wasm",
        module.replace('-', "_")
    ));
    let component = match std::fs::read(&component_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} does not exist; build the modules first with scripts/build-modules \
             (or run scripts/bench, which does)",
            component_path.display()
        ),
        Err(e) => bail!("{}: {e}", component_path.display()),
    };
    let manifest_path = root.join(format!("plugins/{module}/module.yaml"));
    let manifest = std::fs::read_to_string(&manifest_path)
        .with_context(|| manifest_path.display().to_string())?;
    Package::build(&manifest, &component)
        .with_context(|| format!("cannot pack the {module} component"))
}

/// A new runtime with default limits over the cache in `cache_dir`.
fn fresh_runtime(cache_dir: &Path) -> anyhow::Result<Runtime> {
    let cache = ComponentCache::open(cache_dir)?;
    Ok(Runtime::new(RuntimeLimits::default(), cache)?)
}

/// Times one `Runtime::load` in `runtime`, which the caller built untimed.
fn time_one_load(
    tokio: &tokio::runtime::Runtime,
    package: &Package,
    runtime: Runtime,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let loaded = tokio.block_on(runtime.load(package))?;
    let elapsed = start.elapsed();
    // Dropping the module and the runtime (unmapping the pool, joining the
    // epoch thread) stays outside the measurement.
    drop(black_box(loaded));
    drop(runtime);
    Ok(elapsed)
}

/// The `.cwasm` files in a cache directory.
fn compiled_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "cwasm") {
            files.push(path);
        }
    }
    Ok(files)
}

/// Stops the benchmark run from inside a Criterion closure, which cannot
/// return an error.
fn or_exit<T>(result: anyhow::Result<T>) -> T {
    result.unwrap_or_else(|error| {
        eprintln!("bench runtime: {error:#}");
        std::process::exit(1);
    })
}

fn bench_compile(
    criterion: &mut Criterion,
    tokio: &tokio::runtime::Runtime,
    package: &Package,
    larger: &[(&str, Package)],
) -> anyhow::Result<()> {
    // One populated cache shared by every `compile/cached` iteration; check
    // once that a load in a new runtime really is a cache hit (a miss would
    // rewrite the file).
    let cached_dir = tempfile::tempdir()?;
    time_one_load(tokio, package, fresh_runtime(cached_dir.path())?)?;
    let files = compiled_files(cached_dir.path())?;
    ensure!(
        files.len() == 1,
        "expected one compiled component in the cache, found {}",
        files.len()
    );
    let written = std::fs::metadata(&files[0])?.modified()?;
    time_one_load(tokio, package, fresh_runtime(cached_dir.path())?)?;
    ensure!(
        std::fs::metadata(&files[0])?.modified()? == written,
        "a load with a populated cache recompiled the component; \
         compile/cached would measure a compile"
    );

    let mut group = criterion.benchmark_group("compile");
    // Each iteration also builds and drops a runtime outside the timing, so
    // keep the iteration count low; flat sampling gives every sample the
    // same number of loads.
    group.sampling_mode(SamplingMode::Flat);

    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(10));
    let cold = |b: &mut criterion::Bencher<'_>, package: &Package| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let empty = or_exit(tempfile::tempdir().map_err(Into::into));
                let runtime = or_exit(fresh_runtime(empty.path()));
                total += or_exit(time_one_load(tokio, package, runtime));
            }
            total
        });
    };
    group.bench_function("cold", |b| cold(b, package));
    for (name, package) in larger {
        group.bench_function(*name, |b| cold(b, package));
    }

    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("cached", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let runtime = or_exit(fresh_runtime(cached_dir.path()));
                total += or_exit(time_one_load(tokio, package, runtime));
            }
            total
        });
    });
    group.finish();
    Ok(())
}

/// A request with the headers a typical API client sends.
fn request(method: &str, path: &str, body: Vec<u8>) -> ModuleRequest {
    ModuleRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        query: String::new(),
        headers: vec![
            ("accept".to_owned(), "application/json".to_owned()),
            ("content-type".to_owned(), "application/json".to_owned()),
        ],
        body,
    }
}

/// Serves `method path` with `body` for tenant `bench`'s Membership module
/// as `principal`: the benchmarked request, and the seeding and checks
/// around it.
async fn dispatch(
    souk: &Souk,
    principal: &Principal,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<ModuleResponse, SoukError> {
    let visitor = Visitor {
        principal: Some(principal.clone()),
        address: None,
    };
    souk.dispatcher()
        .dispatch(&visitor, "bench", "membership", request(method, path, body))
        .await
}

/// A host with the Membership package, tenant `bench` with it installed
/// and [`SEEDED_MEMBERS`] members, and a tenant token's principal.
async fn seeded_host(
    data_dir: &Path,
    package_bytes: &[u8],
) -> anyhow::Result<(std::sync::Arc<Souk>, Principal)> {
    let souk = Souk::open(SoukConfig::new(data_dir)).await?;
    souk.catalog
        .add_package(&souk.runtime, package_bytes)
        .await?;
    let tenant = souk.tenancy.create("bench", "Benchmark Club").await?;
    let install = InstallRequest {
        module: "membership".to_owned(),
        ..InstallRequest::default()
    };
    souk.installer()
        .install(&Principal::Operator, &tenant, &install)
        .await?;
    let (_, token) = souk.auth.create_token(&tenant, "bench").await?;
    let principal = souk.auth.authenticate(Some(&token)).await?;
    for n in 1..=SEEDED_MEMBERS {
        let body = serde_json::json!({
            "number": format!("M-{n:04}"),
            "name": format!("Member {n}"),
            "email": format!("member{n}@example.org"),
        });
        let response = dispatch(
            &souk,
            &principal,
            "POST",
            "/members",
            serde_json::to_vec(&body)?,
        )
        .await?;
        ensure!(
            response.status == 201,
            "seeding member {n}: status {} {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    Ok((souk, principal))
}

fn bench_requests(
    criterion: &mut Criterion,
    tokio: &tokio::runtime::Runtime,
    package_bytes: &[u8],
) -> anyhow::Result<()> {
    let data_dir = tempfile::tempdir()?;
    let (souk, principal) = tokio.block_on(seeded_host(data_dir.path(), package_bytes))?;

    // Check once that the benchmarked requests answer what they should, so
    // the numbers are not those of an error path.
    let list = tokio.block_on(dispatch(&souk, &principal, "GET", "/members", Vec::new()))?;
    ensure!(list.status == 200, "GET /members: status {}", list.status);
    let listed: serde_json::Value = serde_json::from_slice(&list.body)?;
    let count = listed["members"].as_array().map_or(0, Vec::len);
    ensure!(
        count == SEEDED_MEMBERS as usize,
        "GET /members listed {count} members, expected {SEEDED_MEMBERS}"
    );
    let member_path = format!("/members/{READ_MEMBER}");
    let one = tokio.block_on(dispatch(&souk, &principal, "GET", &member_path, Vec::new()))?;
    ensure!(
        one.status == 200,
        "GET {member_path}: status {}",
        one.status
    );

    let mut group = criterion.benchmark_group("request");
    // 100 samples of a ~1 ms request need more than Criterion's default 5 s.
    group.measurement_time(Duration::from_secs(10));
    for (name, path) in [
        ("membership_get_members", "/members"),
        ("membership_get_member", member_path.as_str()),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                tokio.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let response = dispatch(&souk, &principal, "GET", path, Vec::new()).await;
                        black_box(or_exit(response.map_err(Into::into)));
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();

    bench_request_parts(criterion, tokio, &souk)?;
    Ok(())
}

/// Pieces of the request path, timed alone to show where a request's time
/// goes: the control-plane lookups `dispatch` makes before calling the
/// module, and instantiating the module in a fresh store.
fn bench_request_parts(
    criterion: &mut Criterion,
    tokio: &tokio::runtime::Runtime,
    souk: &Souk,
) -> anyhow::Result<()> {
    let tenant = tokio.block_on(souk.tenancy.by_slug("bench"))?;
    let installation = tokio
        .block_on(souk.installer().find(&tenant, "membership"))?
        .context("membership is not installed for the benchmark tenant")?;
    let resolved = tokio.block_on(
        souk.catalog
            .resolve("membership", Some(&installation.version)),
    )?;
    let loaded = tokio.block_on(souk.catalog.load(&souk.runtime, &resolved))?;

    let mut group = criterion.benchmark_group("request_parts");
    group.bench_function("tenant_by_slug", |b| {
        b.iter_custom(|iters| {
            tokio.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(or_exit(
                        souk.tenancy.by_slug("bench").await.map_err(Into::into),
                    ));
                }
                start.elapsed()
            })
        });
    });
    group.bench_function("installation_find", |b| {
        b.iter_custom(|iters| {
            tokio.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let found = souk.installer().find(&tenant, "membership").await;
                    black_box(or_exit(found.map_err(Into::into)));
                }
                start.elapsed()
            })
        });
    });
    group.bench_function("instantiate", |b| {
        b.iter_custom(|iters| {
            tokio.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let state = CallState::detached(
                        CallContext::system(&resolved.manifest),
                        souk.runtime.limits().memory_bytes,
                    );
                    let call = loaded.instantiate(state).await;
                    drop(black_box(or_exit(call.map_err(Into::into))));
                }
                start.elapsed()
            })
        });
    });
    group.finish();
    Ok(())
}
