//! The entitlements engine: what a tenant may do with a module, answered from
//! process memory.
//!
//! This module owns the in-process view of each (tenant, module) grant —
//! access state, features, count limits, metered allowances — and the usage
//! counted against it. It does not own the catalog or the subscription state
//! machine: whoever changes a subscription or a plan hands the engine the
//! resulting [`Grant`] through [`EntitlementEngine::replace_grant`], and every
//! check made after that call returns sees the new grant.
//!
//! # Cost
//! A check takes two uncontended `RwLock` read locks (the shard, then the
//! (tenant, module) slot) and two or three hash lookups; nothing allocates
//! unless the answer is a denial. The store ([`UsageStore`]) is read once when
//! a (tenant, module) first gets a grant and written only by
//! [`EntitlementEngine::flush`] and [`EntitlementEngine::invalidate`].
//!
//! # Concurrency
//! Count limits are `AtomicU64`s updated with compare-and-swap, so parallel
//! consumers racing for the last units never push usage past the limit.
//! Consumes carrying an idempotency key also take that counter's key mutex, so
//! a retried consume applies once. Each meter has its own mutex (a usage event
//! updates a sum, its period and its idempotency keys together).

mod period;
mod store;
#[cfg(test)]
mod tests;
pub mod usage_db;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use time::OffsetDateTime;

use period::PeriodClock;
pub use period::{Period, ResetInterval};
use store::SeenKeys;
pub use store::{
    DEFAULT_MAX_SEEN_KEYS, InMemoryUsageStore, StoredCounter, StoredMeter, StoredUsage, UsageStore,
    UsageStoreError,
};

/// Largest quantity one consume, release or usage event may carry (10^12).
/// Modules and API clients are outside the host: a bound per event keeps one
/// event from filling a counter, and keeps every sum of events far below
/// [`MAX_USAGE`].
pub const MAX_QUANTITY: u64 = 1_000_000_000_000;

/// The most a count limit or a meter's period sum can hold: `i64::MAX`, the
/// largest integer the tenant database stores exactly. Sums are checked
/// against it; a change that would pass it is refused, never wrapped or
/// saturated into a different value.
pub const MAX_USAGE: u64 = i64::MAX as u64;

/// Idempotency keys the host's engine remembers per counter and per meter
/// period. The host's engine is a cache in front of the tenant database,
/// which keeps every key and has the last word (see
/// [`EntitlementEngine::without_store`]), so this only bounds memory.
pub const HOST_MAX_SEEN_KEYS: usize = 10_000;

/// Number of independently locked shards of the grant map. A power of two
/// well above the core count keeps writers (grant changes) from blocking
/// readers of unrelated tenants.
const SHARDS: usize = 64;

/// Where a (tenant, module) subscription stands, as far as access goes. The
/// subscription state machine (and the time-driven maintenance step) decides
/// the state; the engine only reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessState {
    /// In a trial: full access to the plan.
    Trialing,
    /// Paid up: full access.
    Active,
    /// A renewal failed but the grace period has not ended: access continues.
    PastDueInGrace,
    /// Canceled, but the paid period has not ended: access continues.
    CanceledUntilPeriodEnd,
    /// The trial ended without payment: no access.
    TrialEnded,
    /// A renewal failed and the grace period is over: no access.
    PastDue,
    /// The subscription ended: no access.
    Expired,
    /// No subscription at all.
    None,
}

impl AccessState {
    /// The reason access is refused in this state, if it is.
    pub fn denial_reason(self) -> Option<DenialReason> {
        match self {
            Self::Trialing | Self::Active | Self::PastDueInGrace | Self::CanceledUntilPeriodEnd => {
                None
            }
            Self::TrialEnded => Some(DenialReason::TrialEnded),
            Self::PastDue => Some(DenialReason::PastDue),
            Self::Expired => Some(DenialReason::Expired),
            Self::None => Some(DenialReason::NoSubscription),
        }
    }
}

/// A metered allowance: how much of a meter one period includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterAllowance {
    /// Amount included per period; `None` means unmetered (recorded, never
    /// refused).
    pub per_period: Option<u64>,
    /// The current period, as the subscription sees it.
    pub period: Period,
    /// How the period rolls over once `period.end` is reached.
    pub interval: ResetInterval,
}

/// Everything the engine needs to know about one (tenant, module)
/// subscription. Built by the subscription side from the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Whether the subscription currently gives access.
    pub state: AccessState,
    /// Slug of the subscribed plan, if any.
    pub plan: Option<String>,
    /// Boolean features the plan grants (`qr_code_generation`).
    pub features: HashSet<String>,
    /// Count limits (`max_cards`); `None` means unlimited.
    pub limits: HashMap<String, Option<u64>>,
    /// Metered allowances (`qr_scans_per_month`).
    pub meters: HashMap<String, MeterAllowance>,
    /// For each feature, limit or meter key: the cheapest plan that grants it
    /// (or a higher limit), named in denials as the upgrade option.
    pub upgrades: HashMap<String, String>,
}

impl Grant {
    /// A grant in `state` on `plan` that grants nothing yet.
    pub fn new(state: AccessState, plan: Option<&str>) -> Self {
        Self {
            state,
            plan: plan.map(str::to_owned),
            features: HashSet::new(),
            limits: HashMap::new(),
            meters: HashMap::new(),
            upgrades: HashMap::new(),
        }
    }

    fn grants_key(&self, key: &str) -> bool {
        self.features.contains(key)
            || self.limits.contains_key(key)
            || self.meters.contains_key(key)
    }
}

/// Why a check was refused. [`DenialReason::code`] is the stable string an
/// API or a module sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenialReason {
    /// The tenant has no subscription to the module.
    NoSubscription,
    /// The plan does not include the feature, limit or meter.
    FeatureNotInPlan,
    /// The request would take usage past the plan's limit or allowance.
    LimitReached,
    /// The trial ended without payment.
    TrialEnded,
    /// A renewal failed and the grace period is over.
    PastDue,
    /// The subscription expired.
    Expired,
}

impl DenialReason {
    /// Stable snake_case code, e.g. `limit_reached`.
    pub fn code(self) -> &'static str {
        match self {
            Self::NoSubscription => "no_subscription",
            Self::FeatureNotInPlan => "feature_not_in_plan",
            Self::LimitReached => "limit_reached",
            Self::TrialEnded => "trial_ended",
            Self::PastDue => "past_due",
            Self::Expired => "expired",
        }
    }
}

/// A refused check: why, and what would allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Why the check was refused.
    pub reason: DenialReason,
    /// The feature, limit or meter key asked about.
    pub key: String,
    /// The tenant's current plan, if any.
    pub plan: Option<String>,
    /// The plan that would allow the request: for an access-state denial
    /// (no subscription, trial ended, past due, expired) the grant's plan
    /// when it grants the key (pay to restore it), otherwise the upgrade the
    /// caller named for this key.
    pub upgrade_plan: Option<String>,
    /// For limits and meters: usage at the time of the check.
    pub used: Option<u64>,
    /// For limits and meters: the limit or per-period allowance.
    pub limit: Option<u64>,
}

impl Denial {
    /// The denial of `key` to a tenant without a subscription (or a call
    /// made outside one): no plan, nothing to upgrade from.
    pub fn no_subscription(key: &str) -> Self {
        Denial {
            reason: DenialReason::NoSubscription,
            key: key.to_owned(),
            plan: None,
            upgrade_plan: None,
            used: None,
            limit: None,
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` denied: {}", self.key, self.reason.code())?;
        if let (Some(used), Some(limit)) = (self.used, self.limit) {
            write!(f, " ({used} of {limit} used)")?;
        }
        if let Some(plan) = &self.upgrade_plan {
            write!(f, "; plan `{plan}` allows it")?;
        }
        Ok(())
    }
}

impl std::error::Error for Denial {}

/// The answer to a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allowed,
    /// Refused, with the reason and the upgrade option.
    Denied(Denial),
}

impl Decision {
    /// Whether the check allowed the request.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed)
    }
}

/// A count limit's usage after a consume or release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Units now held.
    pub used: u64,
    /// The limit; `None` is unlimited.
    pub limit: Option<u64>,
}

/// A meter's state after a usage event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterReading {
    /// Sum of the events in `period`.
    pub used: u64,
    /// Per-period allowance; `None` is unmetered.
    pub allowance: Option<u64>,
    /// The period the event was attributed to.
    pub period: Period,
    /// False if the idempotency key had already been counted.
    pub counted: bool,
}

/// Errors from usage bookkeeping that a check cannot express as a denial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// The engine holds no grant for the pair.
    #[error(
        "no entitlements loaded for tenant `{tenant}` and module `{module}`; install its grant first"
    )]
    NoGrant {
        /// Tenant asked about.
        tenant: String,
        /// Module asked about.
        module: String,
    },
    /// The key is neither a count limit nor a meter the engine has seen.
    #[error("`{key}` is not a count limit or meter of this module's plan")]
    UnknownKey {
        /// The key asked about.
        key: String,
    },
    /// The amount is 0 or more than [`MAX_QUANTITY`].
    #[error("an amount must be 1 to {max}, not {amount}")]
    AmountOutOfRange {
        /// The amount given.
        amount: u64,
        /// [`MAX_QUANTITY`].
        max: u64,
    },
    /// The meter's period sum would pass [`MAX_USAGE`].
    #[error(
        "meter `{meter}` holds {used} this period; {amount} more would pass the most a meter can hold ({max})"
    )]
    MeterFull {
        /// The meter.
        meter: String,
        /// Its sum this period.
        used: u64,
        /// The amount refused.
        amount: u64,
        /// [`MAX_USAGE`].
        max: u64,
    },
    /// The event is older than the meter's current period, whose sum is the
    /// only one kept.
    #[error(
        "usage event for `{meter}` at {at} is before the current period starting {period_start}; record events in order"
    )]
    BeforeCurrentPeriod {
        /// The meter.
        meter: String,
        /// When the event happened.
        at: OffsetDateTime,
        /// Start of the meter's current period.
        period_start: OffsetDateTime,
    },
}

/// What a line of the usage dashboard counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum UsageKind {
    /// A count limit (`max_cards`).
    Count,
    /// A meter summed per period (`qr_scans_per_month`).
    Meter,
}

/// One line of a tenant's usage dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageLine {
    /// Limit or meter key.
    pub key: String,
    /// Count limit or meter.
    pub kind: UsageKind,
    /// Units held (count) or summed this period (meter).
    pub used: u64,
    /// Limit or allowance; `None` is unlimited.
    pub limit: Option<u64>,
    /// `used / limit × 100`; above 100 after a downgrade; `None` if
    /// unlimited.
    pub percent: Option<f64>,
    /// Meters only: the period `used` covers.
    pub period: Option<Period>,
}

struct Counter {
    used: AtomicU64,
    keys: Mutex<CounterKeys>,
}

struct CounterKeys {
    consumed: SeenKeys,
    released: SeenKeys,
}

struct MeterState {
    period: Period,
    clock: PeriodClock,
    used: u64,
    seen: SeenKeys,
}

/// One (tenant, module): its grant and the usage counted against it. Usage
/// outlives grant changes: counters and meters for keys a new grant drops are
/// kept (and saved), so a downgrade deletes nothing.
struct Slot {
    grant: Grant,
    counters: HashMap<String, Counter>,
    meters: HashMap<String, Mutex<MeterState>>,
}

type Shard = RwLock<HashMap<String, HashMap<String, RwLock<Slot>>>>;

/// The in-process entitlements engine. Share it behind an `Arc`; every method
/// takes `&self`.
pub struct EntitlementEngine {
    shards: Box<[Shard]>,
    hasher: RandomState,
    /// `None` when the caller persists usage itself (see
    /// [`EntitlementEngine::without_store`]).
    store: Option<Box<dyn UsageStore>>,
    max_seen_keys: usize,
}

impl fmt::Debug for EntitlementEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntitlementEngine")
            .field("shards", &self.shards.len())
            .field("max_seen_keys", &self.max_seen_keys)
            .finish_non_exhaustive()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EntitlementEngine {
    /// An engine backed by `store`, remembering at most
    /// [`DEFAULT_MAX_SEEN_KEYS`] idempotency keys per counter and per meter
    /// period.
    pub fn new(store: Box<dyn UsageStore>) -> Self {
        Self::with_max_seen_keys(store, DEFAULT_MAX_SEEN_KEYS)
    }

    /// Like [`EntitlementEngine::new`] with a different idempotency-key
    /// bound (at least 1). Beyond the bound the oldest key is forgotten, so a
    /// retry older than the last `max_seen_keys` events counts again.
    pub fn with_max_seen_keys(store: Box<dyn UsageStore>, max_seen_keys: usize) -> Self {
        Self::build(Some(store), max_seen_keys)
    }

    /// An engine whose caller persists usage itself, as the host does: it
    /// loads a pair's usage asynchronously and hands it over with
    /// [`EntitlementEngine::replace_grant_with_usage`], and writes every
    /// change through to the tenant database in the same transaction as the
    /// module's own writes. [`EntitlementEngine::flush`] and
    /// [`EntitlementEngine::invalidate`] then save nothing.
    ///
    /// The caller's database is the authority on idempotency keys (it keeps
    /// them all and refuses a key twice), so the engine starts every pair
    /// with no keys — nothing is loaded at start, however many keys the
    /// database holds — and remembers at most [`HOST_MAX_SEEN_KEYS`] per
    /// counter and meter period as a fast path.
    pub fn without_store() -> Self {
        Self::build(None, HOST_MAX_SEEN_KEYS)
    }

    fn build(store: Option<Box<dyn UsageStore>>, max_seen_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            store,
            max_seen_keys: max_seen_keys.max(1),
        }
    }

    /// Whether the engine holds a grant (and usage) for the pair.
    pub fn has_grant(&self, tenant: &str, module: &str) -> bool {
        self.with_slot(tenant, module, |_| ()).is_some()
    }

    /// Whether `key` is a count limit or a meter of the pair's current grant.
    pub fn kind_of(&self, tenant: &str, module: &str, key: &str) -> Option<UsageKind> {
        self.with_slot(tenant, module, |slot| {
            if slot.grant.limits.contains_key(key) {
                Some(UsageKind::Count)
            } else if slot.grant.meters.contains_key(key) {
                Some(UsageKind::Meter)
            } else {
                None
            }
        })
        .flatten()
    }

    /// The plan of the grant the engine holds for the pair.
    pub fn plan(&self, tenant: &str, module: &str) -> Option<String> {
        self.with_slot(tenant, module, |slot| slot.grant.plan.clone())
            .flatten()
    }

    /// One line of [`EntitlementEngine::usage_view`]: the usage and limit
    /// of count limit or meter `key` as of `now`. `None` without a grant, or
    /// when the grant has no such limit or meter.
    pub fn usage_of(
        &self,
        tenant: &str,
        module: &str,
        key: &str,
        now: OffsetDateTime,
    ) -> Option<UsageLine> {
        self.with_slot(tenant, module, |slot| usage_line(slot, key, now))
            .flatten()
    }

    /// Like [`EntitlementEngine::replace_grant`], for callers that load usage
    /// themselves: when the pair is not cached yet, `usage` seeds it (and the
    /// store is not read); when it is cached, `usage` is ignored and the
    /// cached usage kept.
    pub fn replace_grant_with_usage(
        &self,
        tenant: &str,
        module: &str,
        grant: Grant,
        usage: StoredUsage,
    ) {
        let mut shard = write(self.shard(tenant));
        let modules = shard.entry(tenant.to_owned()).or_default();
        match modules.get(module) {
            Some(existing) => self.apply_grant(&mut write(existing), grant),
            None => {
                let mut slot = self.slot_from_store(usage);
                self.apply_grant(&mut slot, grant);
                modules.insert(module.to_owned(), RwLock::new(slot));
            }
        }
    }

    /// Drops the pair from memory without saving anything: the next grant
    /// starts from the usage its caller loads. Used after an uninstall has
    /// cleared the pair's counters.
    pub fn forget(&self, tenant: &str, module: &str) {
        let mut shard = write(self.shard(tenant));
        if let Some(modules) = shard.get_mut(tenant) {
            modules.remove(module);
            if modules.is_empty() {
                shard.remove(tenant);
            }
        }
    }

    /// Undoes a [`EntitlementEngine::consume`] (positive `delta` given back)
    /// or a [`EntitlementEngine::release`] (negative `delta` taken again)
    /// whose surrounding transaction rolled back. No limit check: the units
    /// were held before. Forgets `idempotency_key` so a retry applies again.
    pub fn undo_counter(
        &self,
        tenant: &str,
        module: &str,
        key: &str,
        delta: i64,
        idempotency_key: Option<&str>,
    ) {
        self.with_slot(tenant, module, |slot| {
            let Some(counter) = slot.counters.get(key) else {
                return;
            };
            let mut keys = lock(&counter.keys);
            let amount = delta.unsigned_abs();
            let _ = counter
                .used
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                    Some(if delta >= 0 {
                        used.saturating_sub(amount)
                    } else {
                        used.saturating_add(amount)
                    })
                });
            if let Some(idempotency_key) = idempotency_key {
                if delta >= 0 {
                    keys.consumed.remove(idempotency_key);
                } else {
                    keys.released.remove(idempotency_key);
                }
            }
        });
    }

    /// Undoes a [`EntitlementEngine::record_usage`] that was counted in
    /// `period` but whose surrounding transaction rolled back (or whose key
    /// the durable store had already seen). A no-op once the meter moved on
    /// to a later period.
    pub fn undo_usage(
        &self,
        tenant: &str,
        module: &str,
        meter: &str,
        amount: u64,
        period: Period,
        idempotency_key: &str,
    ) {
        self.with_slot(tenant, module, |slot| {
            if let Some(state) = slot.meters.get(meter) {
                let mut state = lock(state);
                if state.period == period && state.seen.remove(idempotency_key) {
                    state.used = state.used.saturating_sub(amount);
                }
            }
        });
    }

    fn shard(&self, tenant: &str) -> &Shard {
        let index = (self.hasher.hash_one(tenant) as usize) % self.shards.len();
        &self.shards[index]
    }

    /// Runs `f` on the pair's slot under read locks; `None` if there is none.
    fn with_slot<R>(&self, tenant: &str, module: &str, f: impl FnOnce(&Slot) -> R) -> Option<R> {
        let shard = read(self.shard(tenant));
        let slot = shard.get(tenant)?.get(module)?;
        let slot = read(slot);
        Some(f(&slot))
    }

    /// Installs or replaces the grant for (tenant, module). Call it whenever
    /// a subscription changes state or plan, or the plan itself changes;
    /// checks made after it returns see the new grant. Usage is kept: a
    /// downgrade below current usage blocks new increments only.
    ///
    /// The first grant for a pair loads its saved usage from the store (the
    /// only store read). Meter periods already under way are kept unless the
    /// grant's period starts at or after their end, in which case the meter
    /// restarts at the grant's period.
    ///
    /// # Errors
    /// [`UsageStoreError`] if saved usage cannot be loaded; the grant is then
    /// not installed, so usage is never silently reset.
    pub fn replace_grant(
        &self,
        tenant: &str,
        module: &str,
        grant: Grant,
    ) -> Result<(), UsageStoreError> {
        let shard_lock = self.shard(tenant);
        {
            let shard = read(shard_lock);
            if let Some(slot) = shard.get(tenant).and_then(|m| m.get(module)) {
                self.apply_grant(&mut write(slot), grant);
                return Ok(());
            }
        }
        let stored = match &self.store {
            Some(store) => store.load(tenant, module)?,
            None => StoredUsage::default(),
        };
        let mut slot = self.slot_from_store(stored);
        let mut shard = write(shard_lock);
        let modules = shard.entry(tenant.to_owned()).or_default();
        match modules.get(module) {
            // Installed by a concurrent first call while we loaded.
            Some(existing) => self.apply_grant(&mut write(existing), grant),
            None => {
                self.apply_grant(&mut slot, grant);
                modules.insert(module.to_owned(), RwLock::new(slot));
            }
        }
        Ok(())
    }

    fn slot_from_store(&self, stored: StoredUsage) -> Slot {
        let counters = stored
            .counters
            .into_iter()
            .map(|(key, counter)| {
                let keys = CounterKeys {
                    consumed: SeenKeys::from_keys(counter.consumed_keys, self.max_seen_keys),
                    released: SeenKeys::from_keys(counter.released_keys, self.max_seen_keys),
                };
                let counter = Counter {
                    used: AtomicU64::new(counter.used),
                    keys: Mutex::new(keys),
                };
                (key, counter)
            })
            .collect();
        let meters = stored
            .meters
            .into_iter()
            .map(|(key, meter)| {
                let state = MeterState {
                    period: meter.period,
                    // Replaced by the grant's interval when a grant names
                    // this meter; unused until then.
                    clock: PeriodClock {
                        anchor: meter.period.start,
                        interval: ResetInterval::Month,
                    },
                    used: meter.used,
                    seen: SeenKeys::from_keys(meter.seen_keys, self.max_seen_keys),
                };
                (key, Mutex::new(state))
            })
            .collect();
        Slot {
            grant: Grant::new(AccessState::None, None),
            counters,
            meters,
        }
    }

    fn apply_grant(&self, slot: &mut Slot, grant: Grant) {
        for key in grant.limits.keys() {
            slot.counters.entry(key.clone()).or_insert_with(|| Counter {
                used: AtomicU64::new(0),
                keys: Mutex::new(CounterKeys {
                    consumed: SeenKeys::new(self.max_seen_keys),
                    released: SeenKeys::new(self.max_seen_keys),
                }),
            });
        }
        for (key, allowance) in &grant.meters {
            let fresh = |allowance: &MeterAllowance| MeterState {
                period: allowance.period,
                clock: PeriodClock {
                    anchor: allowance.period.start,
                    interval: allowance.interval,
                },
                used: 0,
                seen: SeenKeys::new(self.max_seen_keys),
            };
            match slot.meters.get_mut(key) {
                None => {
                    slot.meters
                        .insert(key.clone(), Mutex::new(fresh(allowance)));
                }
                Some(meter) => {
                    let meter = meter.get_mut().unwrap_or_else(PoisonError::into_inner);
                    if allowance.period.start >= meter.period.end {
                        *meter = fresh(allowance);
                    } else if meter.clock.interval != allowance.interval
                        || meter.clock.anchor > allowance.period.start
                    {
                        meter.clock = PeriodClock {
                            anchor: allowance.period.start,
                            interval: allowance.interval,
                        };
                    }
                }
            }
        }
        slot.grant = grant;
    }

    /// Saves the pair's usage to the store, then forgets the pair: later
    /// checks answer [`DenialReason::NoSubscription`] until
    /// [`EntitlementEngine::replace_grant`] installs a grant again (which
    /// reloads the saved usage). Use it when a subscription is removed or a
    /// tenant leaves; for plan and state changes use `replace_grant`.
    ///
    /// # Errors
    /// [`UsageStoreError`] if the usage cannot be saved; the pair then stays
    /// cached, so no usage is lost.
    pub fn invalidate(&self, tenant: &str, module: &str) -> Result<(), UsageStoreError> {
        let mut shard = write(self.shard(tenant));
        let Some(modules) = shard.get_mut(tenant) else {
            return Ok(());
        };
        if let Some(slot) = modules.get(module) {
            if let Some(store) = &self.store {
                store.save(tenant, module, &snapshot_of(&read(slot)))?;
            }
            modules.remove(module);
        }
        if modules.is_empty() {
            shard.remove(tenant);
        }
        Ok(())
    }

    /// Saves the pair's current usage to the store. Not needed for
    /// correctness of checks; call it periodically and on shutdown so usage
    /// survives a restart. A no-op for a pair without a grant.
    ///
    /// # Errors
    /// [`UsageStoreError`] if the store cannot be written.
    pub fn flush(&self, tenant: &str, module: &str) -> Result<(), UsageStoreError> {
        match (&self.store, self.snapshot(tenant, module)) {
            (Some(store), Some(snapshot)) => store.save(tenant, module, &snapshot),
            _ => Ok(()),
        }
    }

    /// The pair's usage as it would be saved, or `None` without a grant.
    pub fn snapshot(&self, tenant: &str, module: &str) -> Option<StoredUsage> {
        self.with_slot(tenant, module, snapshot_of)
    }

    /// May the tenant use `module` at all? Refused when the subscription
    /// gives no access (none, trial ended, past due after grace, expired):
    /// the module stays installed with its data, but gated. The denial's key
    /// is the module's slug; its upgrade option is the plan to restore.
    pub fn check_access(&self, tenant: &str, module: &str) -> Decision {
        self.with_slot(tenant, module, |slot| {
            let grant = &slot.grant;
            match grant.state.denial_reason() {
                None => Decision::Allowed,
                Some(reason) => Decision::Denied(Denial {
                    reason,
                    key: module.to_owned(),
                    plan: grant.plan.clone(),
                    upgrade_plan: grant.plan.clone(),
                    used: None,
                    limit: None,
                }),
            }
        })
        .unwrap_or_else(|| Decision::Denied(Denial::no_subscription(module)))
    }

    /// May the tenant use boolean feature `key` of `module`?
    pub fn check_feature(&self, tenant: &str, module: &str, key: &str) -> Decision {
        self.with_slot(tenant, module, |slot| {
            let grant = &slot.grant;
            if let Some(reason) = grant.state.denial_reason() {
                return Decision::Denied(denial(grant, key, reason, None, None));
            }
            if grant.features.contains(key) {
                Decision::Allowed
            } else {
                Decision::Denied(denial(
                    grant,
                    key,
                    DenialReason::FeatureNotInPlan,
                    None,
                    None,
                ))
            }
        })
        .unwrap_or_else(|| Decision::Denied(Denial::no_subscription(key)))
    }

    /// May the tenant add `quantity` units of count limit `key` ("may I
    /// create 50 cards?")? Reserves nothing: use
    /// [`EntitlementEngine::consume`] to take the units.
    pub fn check_limit(&self, tenant: &str, module: &str, key: &str, quantity: u64) -> Decision {
        self.with_slot(tenant, module, |slot| match limit_and_counter(slot, key) {
            Err(denied) => Decision::Denied(denied),
            Ok((limit, counter)) => {
                let used = counter.used.load(Ordering::Acquire);
                match limit {
                    Some(limit) if used.saturating_add(quantity) > limit => {
                        Decision::Denied(denial(
                            &slot.grant,
                            key,
                            DenialReason::LimitReached,
                            Some(used),
                            Some(limit),
                        ))
                    }
                    _ => Decision::Allowed,
                }
            }
        })
        .unwrap_or_else(|| Decision::Denied(Denial::no_subscription(key)))
    }

    /// May the tenant record `amount` more of meter `key` in the period
    /// containing `at` without exceeding the allowance?
    pub fn check_meter(
        &self,
        tenant: &str,
        module: &str,
        key: &str,
        amount: u64,
        at: OffsetDateTime,
    ) -> Decision {
        self.with_slot(tenant, module, |slot| {
            let grant = &slot.grant;
            if let Some(reason) = grant.state.denial_reason() {
                return Decision::Denied(denial(grant, key, reason, None, None));
            }
            let (Some(allowance), Some(meter)) = (grant.meters.get(key), slot.meters.get(key))
            else {
                return Decision::Denied(denial(
                    grant,
                    key,
                    DenialReason::FeatureNotInPlan,
                    None,
                    None,
                ));
            };
            let Some(limit) = allowance.per_period else {
                return Decision::Allowed;
            };
            let meter = lock(meter);
            let used = match meter.clock.roll_to(meter.period, at) {
                Some(period) if period == meter.period => meter.used,
                _ => 0,
            };
            if used.saturating_add(amount) > limit {
                Decision::Denied(denial(
                    grant,
                    key,
                    DenialReason::LimitReached,
                    Some(used),
                    Some(limit),
                ))
            } else {
                Decision::Allowed
            }
        })
        .unwrap_or_else(|| Decision::Denied(Denial::no_subscription(key)))
    }

    /// Takes `quantity` units of count limit `key` (a created card consumes
    /// one of `max_cards`), atomically: concurrent consumers never take usage
    /// past the limit. With an `idempotency_key` already applied to this
    /// counter, nothing changes and the current usage is returned.
    ///
    /// # Errors
    /// A [`Denial`] if the subscription gives no access, the plan lacks the
    /// limit, or the units would exceed it (usage left unchanged). A
    /// `quantity` above [`MAX_QUANTITY`], or one that would take the counter
    /// past [`MAX_USAGE`] (even on an unlimited limit), is refused the same
    /// way (`limit_reached`).
    pub fn consume(
        &self,
        tenant: &str,
        module: &str,
        key: &str,
        quantity: u64,
        idempotency_key: Option<&str>,
    ) -> Result<Usage, Denial> {
        self.with_slot(tenant, module, |slot| {
            let (limit, counter) = limit_and_counter(slot, key)?;
            let take = || {
                counter
                    .used
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                        if quantity > MAX_QUANTITY {
                            return None;
                        }
                        let next = used.checked_add(quantity).filter(|n| *n <= MAX_USAGE)?;
                        match limit {
                            Some(limit) if next > limit => None,
                            _ => Some(next),
                        }
                    })
                    .map(|before| Usage {
                        used: before + quantity,
                        limit,
                    })
                    .map_err(|used| {
                        denial(
                            &slot.grant,
                            key,
                            DenialReason::LimitReached,
                            Some(used),
                            limit,
                        )
                    })
            };
            match idempotency_key {
                None => take(),
                Some(idempotency_key) => {
                    let mut keys = lock(&counter.keys);
                    if keys.consumed.contains(idempotency_key) {
                        return Ok(Usage {
                            used: counter.used.load(Ordering::Acquire),
                            limit,
                        });
                    }
                    let usage = take()?;
                    keys.consumed.insert(idempotency_key);
                    Ok(usage)
                }
            }
        })
        .unwrap_or_else(|| Err(Denial::no_subscription(key)))
    }

    /// Gives back `quantity` units of count limit `key` (a deleted card
    /// releases one). Allowed in any access state and after a downgrade that
    /// dropped the limit, so tenants can always clean up; usage never goes
    /// below zero. With an `idempotency_key` already applied, nothing changes.
    ///
    /// # Errors
    /// [`UsageError::NoGrant`] without a grant; [`UsageError::UnknownKey`] if
    /// the pair never had a count limit `key`.
    pub fn release(
        &self,
        tenant: &str,
        module: &str,
        key: &str,
        quantity: u64,
        idempotency_key: Option<&str>,
    ) -> Result<Usage, UsageError> {
        self.with_slot(tenant, module, |slot| {
            let counter = slot
                .counters
                .get(key)
                .ok_or_else(|| UsageError::UnknownKey {
                    key: key.to_owned(),
                })?;
            let limit = slot.grant.limits.get(key).copied().flatten();
            let give_back = || {
                let before = counter
                    .used
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                        Some(used.saturating_sub(quantity))
                    })
                    .unwrap_or_else(|used| used);
                Usage {
                    used: before.saturating_sub(quantity),
                    limit,
                }
            };
            match idempotency_key {
                None => Ok(give_back()),
                Some(idempotency_key) => {
                    let mut keys = lock(&counter.keys);
                    if !keys.released.insert(idempotency_key) {
                        return Ok(Usage {
                            used: counter.used.load(Ordering::Acquire),
                            limit,
                        });
                    }
                    Ok(give_back())
                }
            }
        })
        .unwrap_or_else(|| Err(no_grant(tenant, module)))
    }

    /// Records a usage event of `amount` on meter `meter` at `at`, counted
    /// once per `idempotency_key` within a period. An event at or after the
    /// current period's end rolls the meter into the period containing `at`
    /// (sum and remembered keys restart). Events are facts, so they are
    /// recorded in any access state and beyond the allowance; use
    /// [`EntitlementEngine::check_meter`] to refuse work before it happens.
    ///
    /// # Errors
    /// [`UsageError::NoGrant`] without a grant; [`UsageError::UnknownKey`] if
    /// the plan has no such meter; [`UsageError::AmountOutOfRange`] for an
    /// amount of 0 or above [`MAX_QUANTITY`]; [`UsageError::MeterFull`] when
    /// the period's sum would pass [`MAX_USAGE`];
    /// [`UsageError::BeforeCurrentPeriod`] for an event older than the
    /// current period (only its sum is kept).
    pub fn record_usage(
        &self,
        tenant: &str,
        module: &str,
        meter: &str,
        amount: u64,
        idempotency_key: &str,
        at: OffsetDateTime,
    ) -> Result<MeterReading, UsageError> {
        self.with_slot(tenant, module, |slot| {
            record_in(slot, meter, amount, idempotency_key, at, false).map_err(|e| match e {
                MeterRefusal::Usage(e) => e,
                // Unreachable without enforcement; stay total.
                MeterRefusal::Denied(d) => UsageError::UnknownKey { key: d.key },
            })
        })
        .unwrap_or_else(|| Err(no_grant(tenant, module)))
    }

    /// Like [`EntitlementEngine::record_usage`], but refused — atomically,
    /// under the meter's lock — when the subscription gives no access or
    /// the event would take the period past its allowance. Concurrent
    /// callers racing for the last units of a period never exceed it. An
    /// event whose key was already counted is answered as such (not
    /// refused), whatever the allowance.
    ///
    /// # Errors
    /// [`MeterRefusal::Denied`] (no access, meter not in the plan, allowance
    /// used up); [`MeterRefusal::Usage`] for an event before the current
    /// period or without a grant.
    pub fn record_usage_within_allowance(
        &self,
        tenant: &str,
        module: &str,
        meter: &str,
        amount: u64,
        idempotency_key: &str,
        at: OffsetDateTime,
    ) -> Result<MeterReading, MeterRefusal> {
        self.with_slot(tenant, module, |slot| {
            record_in(slot, meter, amount, idempotency_key, at, true)
        })
        .unwrap_or_else(|| Err(MeterRefusal::Denied(Denial::no_subscription(meter))))
    }

    /// The tenant's usage dashboard for `module` as of `now`: one line per
    /// count limit and per meter of the current grant, counts first, each
    /// sorted by key. Meters whose period ended before `now` show the new,
    /// empty period. `None` without a grant.
    pub fn usage_view(
        &self,
        tenant: &str,
        module: &str,
        now: OffsetDateTime,
    ) -> Option<Vec<UsageLine>> {
        self.with_slot(tenant, module, |slot| {
            let grant = &slot.grant;
            let mut lines: Vec<UsageLine> = grant
                .limits
                .keys()
                .chain(grant.meters.keys())
                .filter_map(|key| usage_line(slot, key, now))
                .collect();
            lines.sort_by(|a, b| (a.kind, &a.key).cmp(&(b.kind, &b.key)));
            lines
        })
    }
}

/// Why [`EntitlementEngine::record_usage_within_allowance`] refused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeterRefusal {
    /// The plan refuses it.
    Denied(Denial),
    /// The event cannot be recorded at all.
    Usage(UsageError),
}

/// Records an event on `meter` of `slot`; with `enforce`, refuses it when
/// access is lost or the allowance would be exceeded (checked under the
/// meter's lock, so the check and the record are one step).
fn record_in(
    slot: &Slot,
    meter: &str,
    amount: u64,
    idempotency_key: &str,
    at: OffsetDateTime,
    enforce: bool,
) -> Result<MeterReading, MeterRefusal> {
    let grant = &slot.grant;
    if enforce && let Some(reason) = grant.state.denial_reason() {
        return Err(MeterRefusal::Denied(denial(
            grant, meter, reason, None, None,
        )));
    }
    let unknown = || {
        if enforce {
            MeterRefusal::Denied(denial(
                grant,
                meter,
                DenialReason::FeatureNotInPlan,
                None,
                None,
            ))
        } else {
            MeterRefusal::Usage(UsageError::UnknownKey {
                key: meter.to_owned(),
            })
        }
    };
    if amount == 0 || amount > MAX_QUANTITY {
        return Err(MeterRefusal::Usage(UsageError::AmountOutOfRange {
            amount,
            max: MAX_QUANTITY,
        }));
    }
    let allowance = grant.meters.get(meter).ok_or_else(unknown)?;
    let mut state = lock(slot.meters.get(meter).ok_or_else(unknown)?);
    let period = state.clock.roll_to(state.period, at).ok_or_else(|| {
        MeterRefusal::Usage(UsageError::BeforeCurrentPeriod {
            meter: meter.to_owned(),
            at,
            period_start: state.period.start,
        })
    })?;
    if period != state.period {
        state.period = period;
        state.used = 0;
        state.seen.clear();
    }
    let reading = |state: &MeterState, counted| MeterReading {
        used: state.used,
        allowance: allowance.per_period,
        period: state.period,
        counted,
    };
    if state.seen.contains(idempotency_key) {
        return Ok(reading(&state, false));
    }
    if enforce
        && let Some(limit) = allowance.per_period
        && state.used.saturating_add(amount) > limit
    {
        return Err(MeterRefusal::Denied(denial(
            grant,
            meter,
            DenialReason::LimitReached,
            Some(state.used),
            Some(limit),
        )));
    }
    let Some(used) = state.used.checked_add(amount).filter(|n| *n <= MAX_USAGE) else {
        return Err(if enforce {
            MeterRefusal::Denied(denial(
                grant,
                meter,
                DenialReason::LimitReached,
                Some(state.used),
                allowance.per_period,
            ))
        } else {
            MeterRefusal::Usage(UsageError::MeterFull {
                meter: meter.to_owned(),
                used: state.used,
                amount,
                max: MAX_USAGE,
            })
        });
    };
    state.seen.insert(idempotency_key);
    state.used = used;
    Ok(reading(&state, true))
}

/// The usage line of `key` in `slot` as of `now`: a count limit's units
/// held, or a meter's sum in the period containing `now` (a period that
/// ended shows the new, empty one).
fn usage_line(slot: &Slot, key: &str, now: OffsetDateTime) -> Option<UsageLine> {
    if let Some(limit) = slot.grant.limits.get(key) {
        let used = slot
            .counters
            .get(key)
            .map_or(0, |counter| counter.used.load(Ordering::Acquire));
        return Some(UsageLine {
            key: key.to_owned(),
            kind: UsageKind::Count,
            used,
            limit: *limit,
            percent: percent(used, *limit),
            period: None,
        });
    }
    let allowance = slot.grant.meters.get(key)?;
    let (used, period) = match slot.meters.get(key) {
        None => (0, allowance.period),
        Some(meter) => {
            let meter = lock(meter);
            match meter.clock.roll_to(meter.period, now) {
                Some(period) if period != meter.period => (0, period),
                _ => (meter.used, meter.period),
            }
        }
    };
    Some(UsageLine {
        key: key.to_owned(),
        kind: UsageKind::Meter,
        used,
        limit: allowance.per_period,
        percent: percent(used, allowance.per_period),
        period: Some(period),
    })
}

fn percent(used: u64, limit: Option<u64>) -> Option<f64> {
    match limit {
        None => None,
        Some(0) => Some(if used == 0 { 0.0 } else { 100.0 }),
        Some(limit) => Some(used as f64 * 100.0 / limit as f64),
    }
}

fn limit_and_counter<'a>(slot: &'a Slot, key: &str) -> Result<(Option<u64>, &'a Counter), Denial> {
    let grant = &slot.grant;
    if let Some(reason) = grant.state.denial_reason() {
        return Err(denial(grant, key, reason, None, None));
    }
    match (grant.limits.get(key), slot.counters.get(key)) {
        (Some(limit), Some(counter)) => Ok((*limit, counter)),
        _ => Err(denial(
            grant,
            key,
            DenialReason::FeatureNotInPlan,
            None,
            None,
        )),
    }
}

fn denial(
    grant: &Grant,
    key: &str,
    reason: DenialReason,
    used: Option<u64>,
    limit: Option<u64>,
) -> Denial {
    let state_denial = matches!(
        reason,
        DenialReason::NoSubscription
            | DenialReason::TrialEnded
            | DenialReason::PastDue
            | DenialReason::Expired
    );
    let upgrade_plan = if state_denial && grant.grants_key(key) {
        grant.plan.clone()
    } else {
        grant.upgrades.get(key).cloned()
    };
    Denial {
        reason,
        key: key.to_owned(),
        plan: grant.plan.clone(),
        upgrade_plan,
        used,
        limit,
    }
}

fn no_grant(tenant: &str, module: &str) -> UsageError {
    UsageError::NoGrant {
        tenant: tenant.to_owned(),
        module: module.to_owned(),
    }
}

fn snapshot_of(slot: &Slot) -> StoredUsage {
    let counters = slot
        .counters
        .iter()
        .map(|(key, counter)| {
            let keys = lock(&counter.keys);
            let stored = StoredCounter {
                used: counter.used.load(Ordering::Acquire),
                consumed_keys: keys.consumed.to_vec(),
                released_keys: keys.released.to_vec(),
            };
            (key.clone(), stored)
        })
        .collect();
    let meters = slot
        .meters
        .iter()
        .map(|(key, meter)| {
            let meter = lock(meter);
            let stored = StoredMeter {
                period: meter.period,
                used: meter.used,
                seen_keys: meter.seen.to_vec(),
            };
            (key.clone(), stored)
        })
        .collect();
    StoredUsage { counters, meters }
}
