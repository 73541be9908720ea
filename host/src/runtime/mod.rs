//! The WebAssembly runtime: one wasmtime [`Engine`] with the pooling
//! allocator and epoch interruption, a [`ComponentCache`] of compiled
//! components on disk, and [`LoadedModule`]s (one `InstancePre` per module
//! version) that run each call in a fresh, limited [`Store`].
//!
//! The runtime knows nothing of what a module may import: its one
//! [`Linker`] is filled by [`capabilities::add_to_linker`], and each call
//! runs in a store whose data is the [`CallState`] its caller built (for a
//! request, a lifecycle hook, or detached for the host's own calls such as
//! the gates check). A new host interface is a new capability, not a change
//! here.
//!
//! Every call is bounded in time by one mechanism (`CallDeadline`): the
//! epoch callback lets a running guest keep its tokio worker for at most one
//! epoch tick before yielding, and traps it at the call's wall-clock
//! deadline; an outer `tokio::time::timeout` at the same deadline (plus a
//! short grace) stops a guest blocked in a host or WASI call (a sleep, a
//! slow statement), which epochs cannot interrupt. Stopping drops the call's
//! future; the store, and with it the call's database transaction, is then
//! dropped or rolled back by the caller, which releases the tenant's write
//! lock. A background call's write phase ([`WritePhase`]) ends it earlier,
//! by the same two means, once it has written for its write budget.
//!
//! Every supported module API version ([`ApiVersion::SUPPORTED`]) is linked
//! into the one [`Linker`]; a component is matched to its version by the
//! `souk:module/guest@<version>` interface it exports, and a [`Call`] speaks
//! to it through that version's bindings ([`crate::wit`]).

mod admission;
pub mod answer;
mod cache;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use souk_module_registry::{ApiVersion, FeatureDecl, FeatureKind, LimitDecl, LimitKind, Package};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};

pub use crate::error::CallError;
pub use admission::{CallPermit, reserved_instances};
pub use cache::ComponentCache;

use crate::capabilities::context::CallContext;
use crate::capabilities::db::WritePhase;
use crate::capabilities::log::printable;
use crate::capabilities::{self, CallState};
use crate::wit;

/// How often the epoch ticker advances the engine's epoch: also the longest
/// a running guest keeps its tokio worker before it yields, and how late
/// past its deadline a running guest is trapped.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How long past its deadline the outer timeout waits before it drops a
/// call: long enough for the epoch trap (which fires within one tick) to
/// stop a running guest first, short enough to stop a blocked one promptly.
const DEADLINE_GRACE: Duration = Duration::from_millis(50);

/// Longest hook or module error message passed on to callers (and so into
/// answers and logs); longer ones are cut at a character boundary and
/// marked. 4 KiB.
pub const MAX_ERROR_BYTES: usize = 4096;

/// Resource limits applied to every module call.
#[derive(Debug, Clone)]
pub struct RuntimeLimits {
    /// Wall-clock budget of one call into a module (instantiation and the
    /// exports called), enforced by epoch interruption for a running guest
    /// and by an outer timeout for one blocked in a host or WASI call.
    /// Default 1 s: long enough for real work, short enough that a runaway
    /// call cannot hold an instance or the tenant's write lock for long.
    pub call_timeout: Duration,
    /// Linear memory cap per instance. Default 64 MiB.
    pub memory_bytes: usize,
    /// Largest response body a module may return. Default 8 MiB.
    pub max_response_bytes: usize,
    /// How many instances may be live at once (sizes the pooling allocator).
    /// Request calls together may hold all but [`reserved_instances`] of
    /// them. Default 128.
    pub max_instances: u32,
    /// How many request calls one tenant may have running at once; more are
    /// refused with [`CallError::TenantBusy`] before the module runs. Never
    /// more than half of the request places (`max_instances` less the
    /// reserve), so one tenant cannot take them all. Default 8: enough for a
    /// busy tenant's parallel requests, few enough that one tenant cannot
    /// occupy the host's workers and instances.
    pub tenant_concurrency: u32,
    /// The most linear memory per instance a plan may buy
    /// (`runtime.memory_mib`); sizes the pooling allocator's memory slots
    /// (never below `memory_bytes`). Default 64 MiB: plans cannot raise
    /// memory unless the operator allows it.
    pub max_memory_bytes: usize,
    /// The longest request deadline a plan may buy
    /// (`runtime.call_timeout_ms`). Default 30 s.
    pub max_call_timeout: Duration,
    /// Largest payload of one event a module emits (`events.emit`).
    /// Default 64 KiB: room for a record's worth of JSON, small enough that
    /// a webhook receiver and the outbox are not flooded.
    pub max_event_payload_bytes: usize,
    /// The most headers one module answer may have; more is refused
    /// (502). Default [`answer::DEFAULT_MAX_HEADERS`].
    pub max_response_headers: usize,
    /// The most bytes of header names and values one module answer may
    /// have; more is refused (502). Default
    /// [`answer::DEFAULT_MAX_HEADER_BYTES`].
    pub max_response_header_bytes: usize,
    /// How long a background call (a job, an `on-event` delivery) may run
    /// once it has written: its tenant's write lock is held from its first
    /// write to its commit, and the tenant's writing requests wait for it
    /// meanwhile ([`WritePhase`]). Default 2 s: twice a request's deadline,
    /// well inside SQLite's 5 s busy wait, so a waiting request gets the
    /// lock before it gives up.
    pub background_write_budget: Duration,
}

impl RuntimeLimits {
    /// The memory cap and the deadline of one request call for a plan
    /// that asks for `memory_bytes` and `call_timeout` (`None`: the
    /// default), each capped at its operator maximum.
    pub fn for_plan(
        &self,
        memory_bytes: Option<usize>,
        call_timeout: Option<Duration>,
    ) -> (usize, Duration) {
        let memory = memory_bytes.map_or(self.memory_bytes, |m| {
            m.min(self.max_memory_bytes.max(self.memory_bytes))
        });
        let timeout = call_timeout.map_or(self.call_timeout, |t| {
            t.min(self.max_call_timeout.max(self.call_timeout))
        });
        (memory, timeout)
    }
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        RuntimeLimits {
            call_timeout: Duration::from_secs(1),
            memory_bytes: 64 * 1024 * 1024,
            max_response_bytes: 8 * 1024 * 1024,
            max_instances: 128,
            tenant_concurrency: 8,
            max_memory_bytes: 64 * 1024 * 1024,
            max_call_timeout: Duration::from_secs(30),
            max_event_payload_bytes: crate::capabilities::events::DEFAULT_MAX_PAYLOAD_BYTES,
            max_response_headers: answer::DEFAULT_MAX_HEADERS,
            max_response_header_bytes: answer::DEFAULT_MAX_HEADER_BYTES,
            background_write_budget: Duration::from_secs(2),
        }
    }
}

/// Errors creating the runtime or loading a component.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The engine could not be configured.
    #[error("the WebAssembly engine could not start: {0}")]
    Engine(String),
    /// The bytes are not a valid WebAssembly component (a core module, or garbage).
    #[error("module.wasm is not a valid WebAssembly component: {0}")]
    NotAComponent(String),
    /// The component does not target a world this host supports.
    #[error(
        "the component does not implement a Souk module world this host supports \
         (supported: souk:module@0.1.0, souk:module@0.2.0); {0}"
    )]
    WrongWorld(String),
    /// The manifest disagrees with the component.
    #[error("module.yaml disagrees with the component: {0}")]
    ManifestMismatch(String),
    /// The component imports something the host does not provide.
    #[error("the component cannot be linked: {0}")]
    Link(String),
    /// The compile cache failed.
    #[error("compile cache: {0}")]
    Cache(String),
}

/// The engine, the linker and the compile cache shared by all modules.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    cache: ComponentCache,
    limits: RuntimeLimits,
    admission: admission::Admission,
    calls: CallThreads,
    ticker: Option<EpochTicker>,
}

/// The threads request calls run on ([`Runtime::run_call`]), apart from the
/// threads that serve the HTTP API: however many guests run, the host's own
/// endpoints (and `/healthz`) are served by threads no guest occupies, and
/// the operating system shares the cores between the two sets.
struct CallThreads {
    handle: tokio::runtime::Handle,
    runtime: Option<tokio::runtime::Runtime>,
}

impl CallThreads {
    /// One thread per core.
    ///
    /// # Errors
    /// [`LoadError::Engine`] when the threads cannot be started.
    fn start() -> Result<Self, LoadError> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("souk-call")
            .enable_all()
            .build()
            .map_err(|e| LoadError::Engine(format!("cannot start the module call threads: {e}")))?;
        Ok(CallThreads {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }
}

impl Drop for CallThreads {
    fn drop(&mut self) {
        // Not a blocking shutdown: the runtime may be dropped from async code.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Aborts a spawned call when the caller stops waiting for it, so a call
/// whose client went away is dropped (and its transaction rolled back) as
/// if it had run on the caller's task.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Advances the engine epoch on a dedicated thread, one per engine.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the ticker thread.
    ///
    /// # Errors
    /// [`LoadError::Engine`] when the thread cannot be spawned: without a
    /// ticker no deadline would ever fire, so the runtime must not start.
    fn start(engine: Engine) -> Result<Self, LoadError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("souk-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| {
                LoadError::Engine(format!(
                    "cannot start the epoch ticker thread, without which call deadlines \
                     never fire: {e}"
                ))
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Bytes of each pooled linear memory and table reset in place (the dirty
/// pages only, with PAGEMAP_SCAN) instead of handed back to the kernel
/// when an instance ends: the size a typical module call touches.
const KEEP_RESIDENT_BYTES: usize = 4 * 1024 * 1024;

impl Runtime {
    /// Creates the engine and links the host interfaces.
    ///
    /// # Errors
    /// [`LoadError::Engine`] when wasmtime rejects the configuration (for
    /// example when the pooling allocator cannot reserve its address space)
    /// or the epoch ticker thread cannot start, [`LoadError::Cache`] when the cache directory cannot be created.
    pub fn new(limits: RuntimeLimits, cache: ComponentCache) -> Result<Self, LoadError> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(limits.max_instances);
        pool.total_core_instances(limits.max_instances.saturating_mul(8));
        pool.total_memories(limits.max_instances.saturating_mul(2));
        pool.total_tables(limits.max_instances.saturating_mul(4));
        pool.total_stacks(limits.max_instances);
        pool.max_memory_size(limits.max_memory_bytes.max(limits.memory_bytes));
        // A fresh instance per request means a memory reset per request.
        // By default wasmtime resets a memory with `madvise`, which on a
        // multi-threaded host costs a TLB shoot-down on every core (the
        // largest kernel cost in the request profile, BENCHMARKS.md).
        // Instead, where Linux offers PAGEMAP_SCAN (6.7+), only the pages
        // the call dirtied are found and rewritten with `memset`, up to
        // this many bytes per memory and table; past it, or without the
        // ioctl, wasmtime falls back to `madvise`.
        pool.linear_memory_keep_resident(KEEP_RESIDENT_BYTES);
        pool.table_keep_resident(KEEP_RESIDENT_BYTES);
        pool.pagemap_scan(wasmtime::Enabled::Auto);

        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(format!("{e:#}")))?;

        let mut linker = Linker::new(&engine);
        capabilities::add_to_linker(&mut linker)
            .map_err(|e| LoadError::Engine(format!("{e:#}")))?;

        let ticker = Some(EpochTicker::start(engine.clone())?);
        let admission = admission::Admission::new(
            limits.tenant_concurrency,
            limits.max_instances - reserved_instances(limits.max_instances),
            limits.call_timeout,
        );
        let calls = CallThreads::start()?;
        Ok(Runtime {
            engine,
            linker,
            cache,
            limits,
            admission,
            calls,
            ticker,
        })
    }

    /// The limits applied to calls.
    pub fn limits(&self) -> &RuntimeLimits {
        &self.limits
    }

    /// Takes a place for one request call of `tenant_id`, to hold until the
    /// call is over. Never waits: at the cap the answer is a refusal.
    ///
    /// # Errors
    /// [`CallError::TenantBusy`] when the tenant already runs
    /// [`RuntimeLimits::tenant_concurrency`] calls; [`CallError::Capacity`]
    /// when request calls hold every instance slot outside the lifecycle
    /// reserve.
    pub fn admit(&self, tenant_id: &str) -> Result<CallPermit, CallError> {
        self.admission.admit(tenant_id)
    }

    /// Runs `call` (instantiating a module and calling it) on the module
    /// call threads and waits for it; dropping the returned future drops
    /// the call. Request calls run here, so guests never occupy the threads
    /// that serve the host's own endpoints.
    ///
    /// # Errors
    /// [`CallError::Trap`] when the call's task failed in the host (a
    /// panic) or was stopped because the threads are shutting down.
    pub async fn run_call<T: Send + 'static>(
        &self,
        call: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, CallError> {
        let task = self.calls.handle.spawn(call);
        let _abort = AbortOnDrop(task.abort_handle());
        task.await.map_err(|e| {
            if e.is_panic() {
                tracing::error!("a module call's task panicked");
                CallError::Trap("the host failed while running the module".into())
            } else {
                CallError::Trap("the host is shutting down".into())
            }
        })
    }

    /// Compiles (or loads from the cache) a package's component, checks that
    /// it implements a supported world and that its gates match the
    /// manifest, and prepares it for instantiation.
    ///
    /// Cost (measured on 2 cores, see BENCHMARKS.md): a cold compile of the
    /// Membership component (~255 KB of code) takes about 185 ms; a load
    /// from the compile cache about 1.5–2 ms, most of it the instantiation
    /// and `gates()` call that check the component against its manifest.
    ///
    /// # Errors
    /// See [`LoadError`]; each variant says what is wrong with the package.
    pub async fn load(&self, package: &Package) -> Result<LoadedModule, LoadError> {
        let component = self.compile(package)?;
        let api = detect_api(&self.engine, &component)?;
        if api != package.manifest.api {
            return Err(LoadError::ManifestMismatch(format!(
                "the manifest says api {}, but the component implements souk:module@{api}",
                package.manifest.api
            )));
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld(format!("{e:#}"));
        let pre = if api == ApiVersion::V0_1_0 {
            GuestPre::V0_1_0(wit::v0_1_0::ModulePre::new(pre).map_err(wrong_world)?)
        } else if api == ApiVersion::V0_2_0 {
            GuestPre::V0_2_0(wit::v0_2_0::ModulePre::new(pre).map_err(wrong_world)?)
        } else {
            GuestPre::V0_3_0(wit::v0_3_0::ModulePre::new(pre).map_err(wrong_world)?)
        };
        let module = LoadedModule {
            inner: Arc::new(LoadedInner {
                engine: self.engine.clone(),
                pre,
                limits: self.limits.clone(),
                api,
                emits: package.manifest.events.emits.clone().into(),
            }),
        };
        module.check_gates(package).await?;
        Ok(module)
    }

    fn compile(&self, package: &Package) -> Result<Component, LoadError> {
        if let Some(component) = self.cache.get(&self.engine, &package.digest)? {
            return Ok(component);
        }
        // Refuse core modules and garbage with a message that says so,
        // before Cranelift sees them.
        if !has_component_header(&package.component) {
            return Err(LoadError::NotAComponent(
                "it is a core WebAssembly module or malformed; build it for \
                 wasm32-wasip2 so it is a component"
                    .into(),
            ));
        }
        let component = Component::new(&self.engine, &package.component)
            .map_err(|e| LoadError::NotAComponent(format!("{e:#}")))?;
        self.cache.put(&self.engine, &package.digest, &component)?;
        Ok(component)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.take();
    }
}

/// Whether `bytes` start with the header of a WebAssembly component: `\0asm`
/// followed by a version whose layer field is 1 (components), not 0 (core
/// modules). Only the 8-byte header is read; the body is left to the
/// compiler.
fn has_component_header(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

/// Finds which supported `souk:module` API the component exports.
fn detect_api(engine: &Engine, component: &Component) -> Result<ApiVersion, LoadError> {
    let ty = component.component_type();
    let mut found = Vec::new();
    for (name, _) in ty.exports(engine) {
        found.push(name.to_owned());
        if let Some(version) = name.strip_prefix("souk:module/guest@") {
            return ApiVersion::parse(version)
                .map_err(LoadError::WrongWorld)
                .and_then(|v| {
                    if v.is_supported() {
                        Ok(v)
                    } else {
                        Err(LoadError::WrongWorld(format!(
                            "it exports souk:module/guest@{v}, which this host does not know"
                        )))
                    }
                });
        }
    }
    Err(LoadError::WrongWorld(format!(
        "it does not export souk:module/guest (it exports: {})",
        if found.is_empty() {
            "nothing".to_owned()
        } else {
            found.join(", ")
        }
    )))
}

/// A module version ready to run: one `InstancePre`, shared by all calls.
#[derive(Clone)]
pub struct LoadedModule {
    inner: Arc<LoadedInner>,
}

struct LoadedInner {
    engine: Engine,
    pre: GuestPre,
    limits: RuntimeLimits,
    api: ApiVersion,
    /// The event types the manifest declares (`events.emits`).
    emits: Arc<[String]>,
}

/// A component prepared for instantiation, through the bindings of the API
/// version it implements.
enum GuestPre {
    V0_1_0(wit::v0_1_0::ModulePre<CallState>),
    V0_2_0(wit::v0_2_0::ModulePre<CallState>),
    V0_3_0(wit::v0_3_0::ModulePre<CallState>),
}

/// A live instance, through the bindings of the API version it implements.
enum GuestInstance {
    V0_1_0(wit::v0_1_0::Module),
    V0_2_0(wit::v0_2_0::Module),
    V0_3_0(wit::v0_3_0::Module),
}

/// Runs `$body` once per API version: `$guest` is the instance's `guest`
/// export and `$api` that version's bindings module, so one body converts
/// either version's types (they have the same shape and names).
macro_rules! with_guest {
    ($call:ident, |$guest:ident, $api:ident| $body:expr) => {
        match &$call.instance {
            GuestInstance::V0_1_0(instance) => {
                #[allow(unused_imports)]
                use wit::v0_1_0 as $api;
                let $guest = instance.souk_module_guest().clone();
                $body
            }
            GuestInstance::V0_2_0(instance) => {
                #[allow(unused_imports)]
                use wit::v0_2_0 as $api;
                let $guest = instance.souk_module_guest().clone();
                $body
            }
            GuestInstance::V0_3_0(instance) => {
                #[allow(unused_imports)]
                use wit::v0_3_0 as $api;
                let $guest = instance.souk_module_guest().clone();
                $body
            }
        }
    };
}

/// One migration as a module declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Unique within the module; kept in the tenant's migration ledger once
    /// applied, and never applied again.
    pub id: String,
    /// SQL run on install or upgrade, in list order.
    pub up: String,
    /// SQL run on uninstall (newest migration first), undoing `up`.
    pub down: String,
}

/// An HTTP request for a module.
#[derive(Debug, Clone)]
pub struct ModuleRequest {
    /// Upper-case HTTP method (`GET`).
    pub method: String,
    /// Path relative to the module mount, starting with `/`.
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    /// Headers safe to forward (never `Authorization`).
    pub headers: Vec<(String, String)>,
    /// The request body as the client sent it.
    pub body: Vec<u8>,
}

/// A module's HTTP response, as the module returned it.
#[derive(Debug, Clone)]
pub struct ModuleResponse {
    /// Any `u16` the module chose, unchecked here ([`answer::vet`] refuses
    /// one outside 200 to 599 before the call settles); 500 and above roll
    /// the call's transaction back.
    pub status: u16,
    /// Name and value pairs in the module's order, unchecked here:
    /// [`answer::vet`] refuses invalid ones and drops those the host owns.
    pub headers: Vec<(String, String)>,
    /// At most [`RuntimeLimits::max_response_bytes`] ([`Call::handle`]
    /// refuses a longer one).
    pub body: Vec<u8>,
}

/// A running call: the store and the instance's exports.
pub struct Call {
    store: Store<CallState>,
    instance: GuestInstance,
    deadline: CallDeadline,
    max_response_bytes: usize,
}

/// The wall-clock deadline of one [`Call`], fixed when it is instantiated
/// and shared by everything run in it (instantiation and every export
/// called), like the epoch deadline it mirrors; and, for a background call,
/// its write phase ([`WritePhase`]), which ends it earlier once it has
/// written.
#[derive(Debug, Clone)]
struct CallDeadline {
    budget: Duration,
    at: tokio::time::Instant,
    write_phase: Option<WritePhase>,
}

impl CallDeadline {
    fn starting_now(budget: Duration, write_phase: Option<WritePhase>) -> Self {
        CallDeadline {
            budget,
            at: tokio::time::Instant::now() + budget,
            write_phase,
        }
    }

    /// Runs one step of the guest under the outer timeout: a guest blocked
    /// in a host or WASI call (which no epoch interrupts) is dropped at the
    /// deadline, or at the end of its write phase, plus [`DEADLINE_GRACE`];
    /// a running one has been trapped by the epoch callback by then.
    async fn bound<T>(
        &self,
        step: impl Future<Output = wasmtime::Result<T>>,
    ) -> Result<T, CallError> {
        let write_phase_over = async {
            match &self.write_phase {
                Some(phase) => phase.over(DEADLINE_GRACE).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = step => result.map_err(|e| self.classify(e)),
            () = tokio::time::sleep_until(self.at + DEADLINE_GRACE) => {
                Err(CallError::Timeout(self.budget))
            }
            () = write_phase_over => Err(self.write_budget_spent()),
        }
    }

    /// Maps a wasmtime error ([`classify`]); an interrupt after the write
    /// phase ended is told as that.
    fn classify(&self, error: wasmtime::Error) -> CallError {
        match classify(error, self.budget) {
            CallError::Timeout(_)
                if self
                    .write_phase
                    .as_ref()
                    .is_some_and(|phase| phase.is_over(Instant::now())) =>
            {
                self.write_budget_spent()
            }
            other => other,
        }
    }

    fn write_budget_spent(&self) -> CallError {
        CallError::WriteBudget(
            self.write_phase
                .as_ref()
                .map_or(self.budget, WritePhase::budget),
        )
    }
}

impl LoadedModule {
    /// The API version this component implements.
    pub fn api(&self) -> ApiVersion {
        self.inner.api
    }

    /// The event types the module's manifest declares (`events.emits`):
    /// what its calls may emit.
    pub fn emits(&self) -> &[String] {
        &self.inner.emits
    }

    /// Instantiates the module in a fresh store for one call.
    ///
    /// # Errors
    /// [`CallError::Capacity`] when the pool has no free slot, or
    /// [`CallError::Trap`] when instantiation traps.
    ///
    /// The call's deadline starts now and covers the instantiation and
    /// every export called on the returned [`Call`].
    pub async fn instantiate(&self, state: CallState) -> Result<Call, CallError> {
        self.instantiate_for(state, self.inner.limits.call_timeout)
            .await
    }

    /// As [`LoadedModule::instantiate`], with a deadline of `budget` instead
    /// of the request deadline (a job's).
    ///
    /// # Errors
    /// As [`LoadedModule::instantiate`].
    pub async fn instantiate_for(
        &self,
        state: CallState,
        budget: Duration,
    ) -> Result<Call, CallError> {
        let inner = &self.inner;
        let write_phase = state.db.write_phase();
        let deadline = CallDeadline::starting_now(budget, write_phase.clone());
        let mut store = Store::new(&inner.engine, state);
        store.limiter(|s| s.store_limits());
        // Each epoch tick the guest yields its worker, so a busy guest
        // holds a tokio worker for at most one tick at a time; at the
        // deadline it traps. The wall clock decides, not a tick count, so a
        // guest that was not polled for a while is not given extra time.
        let trap_at = Instant::now() + deadline.budget;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            let now = Instant::now();
            if now >= trap_at || write_phase.as_ref().is_some_and(|p| p.is_over(now)) {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        let instance = match &inner.pre {
            GuestPre::V0_1_0(pre) => deadline
                .bound(pre.instantiate_async(&mut store))
                .await
                .map(GuestInstance::V0_1_0),
            GuestPre::V0_2_0(pre) => deadline
                .bound(pre.instantiate_async(&mut store))
                .await
                .map(GuestInstance::V0_2_0),
            GuestPre::V0_3_0(pre) => deadline
                .bound(pre.instantiate_async(&mut store))
                .await
                .map(GuestInstance::V0_3_0),
        }?;
        Ok(Call {
            store,
            instance,
            deadline,
            max_response_bytes: inner.limits.max_response_bytes,
        })
    }

    /// The migrations the module declares (its `migrations()` export), in a
    /// fresh instance with no database, under `context`.
    ///
    /// # Errors
    /// Any [`CallError`].
    pub async fn declared_migrations(
        &self,
        context: CallContext,
    ) -> Result<Vec<Migration>, CallError> {
        let state = CallState::detached(context, self.inner.limits.memory_bytes);
        let mut call = self.instantiate(state).await?;
        call.migrations().await
    }

    async fn check_gates(&self, package: &Package) -> Result<(), LoadError> {
        let state = CallState::detached(
            CallContext::system(&package.manifest),
            self.inner.limits.memory_bytes,
        );
        let mut call = self
            .instantiate(state)
            .await
            .map_err(|e| LoadError::ManifestMismatch(format!("gates() could not run: {e}")))?;
        let (features, limits) = call
            .gates()
            .await
            .map_err(|e| LoadError::ManifestMismatch(format!("gates() failed: {e}")))?;
        let manifest = &package.manifest;
        compare_keys("features", &manifest.features, &features, |f| &f.key)?;
        compare_keys("limits", &manifest.limits, &limits, |l| &l.key)?;
        for limit in &manifest.limits {
            if let Some(other) = limits.iter().find(|l| l.key == limit.key)
                && other.kind != limit.kind
            {
                return Err(LoadError::ManifestMismatch(format!(
                    "limit {:?} is of kind {} in module.yaml but {} in the component",
                    limit.key,
                    limit.kind.as_str(),
                    other.kind.as_str()
                )));
            }
        }
        for feature in &manifest.features {
            if let Some(other) = features.iter().find(|f| f.key == feature.key)
                && other.kind != feature.kind
            {
                return Err(LoadError::ManifestMismatch(format!(
                    "feature {:?} is of kind {} in module.yaml but {} in the component",
                    feature.key,
                    feature.kind.as_str(),
                    other.kind.as_str()
                )));
            }
        }
        Ok(())
    }
}

fn feature(key: String, description: String, kind: FeatureKind) -> FeatureDecl {
    FeatureDecl {
        key,
        description,
        kind,
    }
}

fn limit(key: String, description: String, kind: LimitKind) -> LimitDecl {
    LimitDecl {
        key,
        description,
        kind,
    }
}

fn compare_keys<T>(
    what: &str,
    manifest: &[T],
    component: &[T],
    key: impl Fn(&T) -> &String,
) -> Result<(), LoadError> {
    let declared: std::collections::BTreeSet<&String> = manifest.iter().map(&key).collect();
    let actual: std::collections::BTreeSet<&String> = component.iter().map(&key).collect();
    let missing: Vec<&&String> = actual.difference(&declared).collect();
    let extra: Vec<&&String> = declared.difference(&actual).collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    let mut parts = Vec::new();
    if !extra.is_empty() {
        parts.push(format!(
            "module.yaml declares {what} {extra:?} that the component does not"
        ));
    }
    if !missing.is_empty() {
        parts.push(format!(
            "the component declares {what} {missing:?} that module.yaml does not"
        ));
    }
    Err(LoadError::ManifestMismatch(parts.join("; ")))
}

/// Maps a wasmtime error to what the caller is told. Traps get fixed
/// texts; any other error is told by its root cause (a host message), never
/// with the wasm backtrace, whose function names the module chose.
fn classify(error: wasmtime::Error, timeout: Duration) -> CallError {
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::Interrupt => CallError::Timeout(timeout),
            wasmtime::Trap::StackOverflow => {
                CallError::Trap("stack overflow (unbounded recursion?)".into())
            }
            wasmtime::Trap::UnreachableCodeReached => CallError::Trap(
                "the module aborted (a panic, or memory allocation beyond its limit)".into(),
            ),
            other => CallError::Trap(other.to_string()),
        };
    }
    if error.is::<wasmtime::PoolConcurrencyLimitError>() {
        return CallError::Capacity {
            retry_after: timeout,
        };
    }
    CallError::Trap(printable(&error.root_cause().to_string(), MAX_ERROR_BYTES))
}

impl Call {
    /// Consumes the call and returns its state (to commit or roll back the
    /// database work it did).
    pub fn into_state(self) -> CallState {
        self.store.into_data()
    }

    /// The call's state between exports: a background call sets what its
    /// capabilities need before it calls the export (a job's progress
    /// sink) and writes the host's own rows in the call's transaction after
    /// it (a job's outcome).
    pub fn state_mut(&mut self) -> &mut CallState {
        self.store.data_mut()
    }

    /// The module's migrations.
    ///
    /// # Errors
    /// Any [`CallError`].
    pub async fn migrations(&mut self) -> Result<Vec<Migration>, CallError> {
        let deadline = self.deadline.clone();
        let list = with_guest!(self, |guest, api| deadline
            .bound(guest.call_migrations(&mut self.store))
            .await
            .map(|list| {
                list.into_iter()
                    .map(|m| (m.id, m.up, m.down))
                    .collect::<Vec<_>>()
            }))?;
        Ok(list
            .into_iter()
            .map(|(id, up, down)| Migration { id, up, down })
            .collect())
    }

    /// The module's features and limits.
    ///
    /// # Errors
    /// Any [`CallError`].
    pub async fn gates(&mut self) -> Result<(Vec<FeatureDecl>, Vec<LimitDecl>), CallError> {
        let deadline = self.deadline.clone();
        // Before 0.3.0 every feature is plain and every limit a count or a
        // meter; the two older versions share one shape.
        macro_rules! before_v0_3 {
            ($api:ident, $instance:expr) => {{
                use wit::$api::exports::souk::module::guest::LimitKind as K;
                let guest = $instance.souk_module_guest().clone();
                let gates = deadline.bound(guest.call_gates(&mut self.store)).await?;
                let features = gates
                    .features
                    .into_iter()
                    .map(|f| feature(f.key, f.description, FeatureKind::Plain))
                    .collect();
                let limits = gates
                    .limits
                    .into_iter()
                    .map(|l| {
                        let kind = match l.kind {
                            K::Count => LimitKind::Count,
                            K::Meter => LimitKind::Meter,
                        };
                        limit(l.key, l.description, kind)
                    })
                    .collect();
                Ok((features, limits))
            }};
        }
        match &self.instance {
            GuestInstance::V0_1_0(instance) => before_v0_3!(v0_1_0, instance),
            GuestInstance::V0_2_0(instance) => before_v0_3!(v0_2_0, instance),
            GuestInstance::V0_3_0(instance) => {
                use wit::v0_3_0::exports::souk::module::guest::{FeatureKind as F, LimitKind as K};
                let guest = instance.souk_module_guest().clone();
                let gates = deadline.bound(guest.call_gates(&mut self.store)).await?;
                let features = gates
                    .features
                    .into_iter()
                    .map(|f| {
                        let kind = match f.kind {
                            F::Plain => FeatureKind::Plain,
                            F::Sso => FeatureKind::Sso,
                        };
                        feature(f.key, f.description, kind)
                    })
                    .collect();
                let limits = gates
                    .limits
                    .into_iter()
                    .map(|l| {
                        let kind = match l.kind {
                            K::Count => LimitKind::Count,
                            K::Meter => LimitKind::Meter,
                            K::Storage => LimitKind::Storage,
                            K::Email => LimitKind::Email,
                        };
                        limit(l.key, l.description, kind)
                    })
                    .collect();
                Ok((features, limits))
            }
        }
    }

    /// Runs the install hook. `Ok(Err(message))` is the module refusing;
    /// the message is [`printable`], at most [`MAX_ERROR_BYTES`].
    ///
    /// # Errors
    /// Any [`CallError`].
    pub async fn install(&mut self) -> Result<Result<(), String>, CallError> {
        let deadline = self.deadline.clone();
        let outcome = with_guest!(self, |guest, api| deadline
            .bound(guest.call_install(&mut self.store))
            .await)?;
        Ok(outcome.map_err(|message| printable(&message, MAX_ERROR_BYTES)))
    }

    /// Runs the uninstall hook. `Ok(Err(message))` is the module refusing;
    /// the message is [`printable`], at most [`MAX_ERROR_BYTES`].
    ///
    /// # Errors
    /// Any [`CallError`].
    pub async fn uninstall(&mut self) -> Result<Result<(), String>, CallError> {
        let deadline = self.deadline.clone();
        let outcome = with_guest!(self, |guest, api| deadline
            .bound(guest.call_uninstall(&mut self.store))
            .await)?;
        Ok(outcome.map_err(|message| printable(&message, MAX_ERROR_BYTES)))
    }

    /// Runs the upgrade hook. `Ok(Err(message))` is the module refusing;
    /// the message is [`printable`], at most [`MAX_ERROR_BYTES`].
    ///
    /// # Errors
    /// Any [`CallError`].
    pub async fn upgrade(&mut self, from: &str) -> Result<Result<(), String>, CallError> {
        let deadline = self.deadline.clone();
        let outcome = with_guest!(self, |guest, api| deadline
            .bound(guest.call_upgrade(&mut self.store, from))
            .await)?;
        Ok(outcome.map_err(|message| printable(&message, MAX_ERROR_BYTES)))
    }

    /// Serves a request.
    ///
    /// # Errors
    /// Any [`CallError`], including a response over the size limit.
    pub async fn handle(&mut self, request: ModuleRequest) -> Result<ModuleResponse, CallError> {
        let deadline = self.deadline.clone();
        let response = with_guest!(self, |guest, api| {
            let request = api::exports::souk::module::guest::Request {
                method: request.method,
                path: request.path,
                query: request.query,
                headers: request.headers,
                body: request.body,
            };
            deadline
                .bound(guest.call_handle(&mut self.store, &request))
                .await
                .map(|r| ModuleResponse {
                    status: r.status,
                    headers: r.headers,
                    body: r.body,
                })
        })?;
        if response.body.len() > self.max_response_bytes {
            return Err(CallError::ResponseTooLarge {
                size: response.body.len(),
                limit: self.max_response_bytes,
            });
        }
        Ok(response)
    }

    /// The API 0.3.0 instance, or the refusal for an older one (which has
    /// no `run-job` or `on-event` export).
    fn v0_3(&self, export: &str) -> Result<&wit::v0_3_0::Module, CallError> {
        match &self.instance {
            GuestInstance::V0_3_0(instance) => Ok(instance),
            _ => Err(CallError::Trap(format!(
                "the module implements API {}, which has no `{export}` export (API 0.3.0 has)",
                self.api()
            ))),
        }
    }

    fn api(&self) -> ApiVersion {
        match &self.instance {
            GuestInstance::V0_1_0(_) => ApiVersion::V0_1_0,
            GuestInstance::V0_2_0(_) => ApiVersion::V0_2_0,
            GuestInstance::V0_3_0(_) => ApiVersion::V0_3_0,
        }
    }

    /// Runs a job (API 0.3.0). `Ok(Err(message))` is the job failing; the
    /// message is [`printable`], at most [`MAX_ERROR_BYTES`].
    ///
    /// # Errors
    /// Any [`CallError`]; a module of an older API is refused as a trap.
    pub async fn run_job(&mut self, job: JobToRun) -> Result<Result<JobOutput, String>, CallError> {
        use wit::v0_3_0::exports::souk::module::guest::Job;
        let guest = self.v0_3("run-job")?.souk_module_guest().clone();
        let job = Job {
            id: job.id,
            name: job.name,
            args: job.args,
            attempt: job.attempt,
        };
        let outcome = self
            .deadline
            .bound(guest.call_run_job(&mut self.store, &job))
            .await?;
        Ok(outcome
            .map(|output| JobOutput {
                result: output.result,
                file_id: output.file_id,
            })
            .map_err(|message| printable(&message, MAX_ERROR_BYTES)))
    }

    /// Hands an event of a dependency to the module (API 0.3.0).
    /// `Ok(Err(message))` is the module's handler failing; the message is
    /// [`printable`], at most [`MAX_ERROR_BYTES`].
    ///
    /// # Errors
    /// Any [`CallError`]; a module of an older API is refused as a trap.
    pub async fn on_event(
        &mut self,
        event: EventToDeliver,
    ) -> Result<Result<(), String>, CallError> {
        use wit::v0_3_0::exports::souk::module::guest::Event;
        let guest = self.v0_3("on-event")?.souk_module_guest().clone();
        let event = Event {
            id: event.id,
            source_module: event.source_module,
            event_type: event.event_type,
            payload: event.payload,
            emitted_at: event.emitted_at,
        };
        let outcome = self
            .deadline
            .bound(guest.call_on_event(&mut self.store, &event))
            .await?;
        Ok(outcome.map_err(|message| printable(&message, MAX_ERROR_BYTES)))
    }
}

/// A job as the host hands it to `run-job`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobToRun {
    /// The job's id.
    pub id: String,
    /// Its name (given to `jobs.enqueue`, or a schedule's name).
    pub name: String,
    /// Its JSON arguments.
    pub args: String,
    /// 1 on the first run, 2 on the first retry, ...
    pub attempt: u32,
}

/// What a finished job leaves for the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutput {
    /// A JSON document, if any (unchecked: the module's text).
    pub result: Option<String>,
    /// A file id, if any (unchecked: the module's text).
    pub file_id: Option<String>,
}

/// An event as the host hands it to `on-event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventToDeliver {
    /// The event's id (the same on a redelivery).
    pub id: String,
    /// The module that emitted it.
    pub source_module: String,
    /// Its type.
    pub event_type: String,
    /// Its JSON payload.
    pub payload: String,
    /// When it was emitted (RFC 3339, UTC).
    pub emitted_at: String,
}
