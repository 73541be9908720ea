//! The host capabilities: what a module may import, one folder each.
//!
//! A capability is a host interface of the `souk:module` WIT world with
//! three parts: its per-call state (a field of [`CallState`]), its view (a
//! struct borrowing only that state and what else it needs, e.g. the call's
//! context), and an `add_to_linker` that links the interface of every API
//! version through the view, with one implementation over the host's types
//! and thin conversions per version. No interface reaches the whole store
//! state.
//!
//! - [`context`]: who is calling, for which tenant and module version;
//! - [`db`]: the module's scoped SQL on its tenant's database;
//! - [`log`]: bounded, escaped module log lines;
//! - [`entitlements`]: what the tenant's subscription allows (API 0.2.0);
//! - [`jobs`]: work queued for after the call, and a job's progress (API 0.3.0).
//! - [`files`]: bytes stored by the host, served through signed URLs (API
//!   0.3.0).
//! - [`events`]: events into the tenant's outbox (API 0.3.0).
//! - [`notify`]: email to the tenant's users, queued in the call's
//!   transaction (API 0.3.0).
//!
//! To add one (files, events, ...): a new folder with its state, view and
//! `add_to_linker`, a field of [`CallState`] set by its constructors, and
//! one line in [`add_to_linker`]. WASI is linked here too, with a context
//! that grants no filesystem, socket, network-lookup or environment access.
//!
//! Capabilities import the WIT bindings ([`crate::wit`]) and the domain
//! below them, never the runtime: the runtime builds its linker with
//! [`add_to_linker`] and runs each call's [`CallState`] in a store.

pub mod context;
pub mod db;
pub mod entitlements;
pub mod events;
pub mod files;
pub mod jobs;
pub mod log;
pub mod notify;
pub mod wall_clock;

use wasmtime::StoreLimits;
use wasmtime::StoreLimitsBuilder;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use context::{CallContext, ContextView};
use db::{DbView, ModuleDb};
use entitlements::EntitlementsView;
use entitlements::call::CallEntitlements;
use events::{EventsState, EventsView};
use files::{FilesAccess, FilesView};
use jobs::{JobsState, JobsView};
use log::{LogState, LogView};
use notify::{NotifyState, NotifyView};

use crate::work::WorkMarks;

/// The `instances` limit of every call's store: how many instances
/// wasmtime lets one call create (a component instantiates several).
const MAX_INSTANCES_PER_CALL: usize = 32;

/// The data of one call's store: the sandbox's WASI context, the store's
/// limits, and one field per capability. Built only by
/// [`CallState::for_request`], [`CallState::for_hook`] and
/// [`CallState::detached`].
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// Who is calling, for which tenant and module (the `context`
    /// capability; `log` and `db` tag what they write with it).
    pub context: CallContext,
    /// The module's scoped view of the tenant database (the `db`
    /// capability); the caller takes its transaction back after the call to
    /// commit or roll back.
    pub db: ModuleDb,
    /// The `log` capability's line counter.
    log: LogState,
    /// What the tenant's subscription allows during this call (the
    /// `entitlements` capability); `None` when the call runs without a
    /// subscription context, in which case the module's entitlement checks
    /// are refused with `no_subscription`. The caller takes it after the
    /// call to keep or roll back its usage changes.
    pub entitlements: Option<CallEntitlements>,
    /// The module's stored files (the `files` capability); `None` answers
    /// every file operation `unavailable` (detached calls, and calls whose
    /// builder gave none). The caller takes it after the call is settled to
    /// collect the blobs the call left unnamed ([`FilesAccess::settle`]).
    pub files: Option<FilesAccess>,
    /// The kinds of deferred work (events, mail, jobs) the call queued in
    /// its transaction; whoever commits it marks the work hints first (see
    /// [`crate::work`]).
    pub work: WorkMarks,
    /// The `jobs` capability's state: whether the call may queue jobs, how
    /// many it did, and a job's progress sink.
    pub jobs: JobsState,
    /// What the call may emit and emitted (the `events` capability, API
    /// 0.3.0); emits nothing until the caller sets it with the module's
    /// declared types.
    pub events: EventsState,
    /// What the `notify` capability needs to queue email (API 0.3.0);
    /// empty (every message refused as unavailable) unless the caller sets
    /// it, as the request path and background calls do.
    pub notify: NotifyState,
}

impl CallState {
    /// The state of a request call: the module's database handle and the
    /// tenant's subscription context. `memory_bytes` caps each linear
    /// memory of the instance; the module's wall clock reads the host
    /// clock's `now` (the call's start), so `--manual-clock` reaches
    /// modules.
    pub fn for_request(
        context: CallContext,
        db: ModuleDb,
        entitlements: CallEntitlements,
        memory_bytes: usize,
        now: time::OffsetDateTime,
    ) -> Self {
        let mut state = Self::build(context, db, memory_bytes, Some(now));
        state.entitlements = Some(entitlements);
        state
    }

    /// The state of a lifecycle hook (install, upgrade, uninstall): the
    /// module's database handle and the subscription context the hook runs
    /// under (`None` refuses every check and count with `no_subscription`).
    /// `memory_bytes` caps each linear memory of the instance; the module's
    /// wall clock reads the host clock's `now`.
    pub fn for_hook(
        context: CallContext,
        db: ModuleDb,
        entitlements: Option<CallEntitlements>,
        memory_bytes: usize,
        now: time::OffsetDateTime,
    ) -> Self {
        let mut state = Self::build(context, db, memory_bytes, Some(now));
        state.entitlements = entitlements;
        state
    }

    /// The state of a system call that touches no tenant (reading a
    /// package's gates or migrations): no database (every statement fails
    /// as unavailable), no subscription context, the machine's wall clock.
    /// `memory_bytes` caps each linear memory of the instance.
    pub fn detached(context: CallContext, memory_bytes: usize) -> Self {
        Self::build(context, ModuleDb::detached(), memory_bytes, None)
    }

    /// The WASI context of a call: no network; the wall clock the host's
    /// clock at `now` when given ([`wall_clock`]), else the machine's.
    fn wasi(now: Option<time::OffsetDateTime>) -> WasiCtx {
        let mut wasi = WasiCtx::builder();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        if let Some(now) = now {
            wasi.wall_clock(wall_clock::CallWallClock::new(now));
        }
        wasi.build()
    }

    /// The one place a call's state (and its WASI context) is built.
    fn build(
        context: CallContext,
        db: ModuleDb,
        memory_bytes: usize,
        now: Option<time::OffsetDateTime>,
    ) -> Self {
        CallState {
            wasi: Self::wasi(now),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .instances(MAX_INSTANCES_PER_CALL)
                .trap_on_grow_failure(false)
                .build(),
            context,
            db,
            log: LogState::default(),
            entitlements: None,
            files: None,
            work: WorkMarks::default(),
            jobs: JobsState::default(),
            events: EventsState::default(),
            notify: NotifyState::default(),
        }
    }

    /// The same state with access to the module's files.
    #[must_use]
    pub fn with_files(mut self, files: FilesAccess) -> Self {
        self.files = Some(files);
        self
    }

    /// The store's resource limits, for `Store::limiter`.
    pub fn store_limits(&mut self) -> &mut StoreLimits {
        &mut self.limits
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Links WASI and every capability, all API versions, into `linker`: the
/// list of what a module may import.
///
/// # Errors
/// When an interface is defined twice.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    context::add_to_linker(linker, |s| ContextView {
        context: &s.context,
    })?;
    db::add_to_linker(linker, |s| DbView {
        db: &mut s.db,
        context: &s.context,
    })?;
    log::add_to_linker(linker, |s| LogView {
        state: &mut s.log,
        context: &s.context,
    })?;
    entitlements::add_to_linker(linker, |s| EntitlementsView {
        entitlements: &mut s.entitlements,
        db: &mut s.db,
    })?;
    jobs::add_to_linker(linker, |s| JobsView {
        jobs: &mut s.jobs,
        db: &mut s.db,
        context: &s.context,
        work: &mut s.work,
    })?;
    files::add_to_linker(linker, |s| FilesView {
        files: &mut s.files,
        entitlements: &mut s.entitlements,
        db: &mut s.db,
    })?;
    events::add_to_linker(linker, |s| EventsView {
        state: &mut s.events,
        db: &mut s.db,
        work: &mut s.work,
        context: &s.context,
    })?;
    notify::add_to_linker(linker, |s| NotifyView {
        state: &s.notify,
        context: &s.context,
        db: &mut s.db,
        entitlements: &mut s.entitlements,
        work: &mut s.work,
    })?;
    Ok(())
}
