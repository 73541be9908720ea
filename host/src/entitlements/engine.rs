//! The engine's state: a sharded map from (tenant, module) to a slot holding
//! the pair's grant and the usage counted against it, and how a grant is
//! installed into it. Checks are in `decision.rs`, changes of usage in
//! `counting.rs`.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use super::UsageKind;
use super::grant::{AccessState, Grant, MeterAllowance};
use super::period::{Period, PeriodClock, ResetInterval};
use super::store::{SeenKeys, StoredCounter, StoredMeter, StoredUsage};

/// Idempotency keys the host's engine remembers per counter and per meter
/// period. The host's engine is a cache in front of the tenant database,
/// which keeps every key and has the last word (see
/// [`EntitlementEngine::new`]), so this only bounds memory.
pub const HOST_MAX_SEEN_KEYS: usize = 10_000;

/// Number of independently locked shards of the grant map. A power of two
/// well above the core count keeps writers (grant changes) from blocking
/// readers of unrelated tenants.
const SHARDS: usize = 64;

pub(super) struct Counter {
    pub(super) used: AtomicU64,
    pub(super) keys: Mutex<CounterKeys>,
}

pub(super) struct CounterKeys {
    pub(super) consumed: SeenKeys,
    pub(super) released: SeenKeys,
}

pub(super) struct MeterState {
    pub(super) period: Period,
    pub(super) clock: PeriodClock,
    pub(super) used: u64,
    pub(super) seen: SeenKeys,
}

/// One (tenant, module): its grant and the usage counted against it. Usage
/// outlives grant changes: counters and meters for keys a new grant drops are
/// kept, so a downgrade deletes nothing.
pub(super) struct Slot {
    pub(super) grant: Grant,
    pub(super) counters: HashMap<String, Counter>,
    pub(super) meters: HashMap<String, Mutex<MeterState>>,
}

pub(super) type Shard = RwLock<HashMap<String, HashMap<String, RwLock<Slot>>>>;

/// The in-process entitlements engine. Share it behind an `Arc`; every method
/// takes `&self`.
///
/// It keeps no usage of its own beyond process memory: the host persists
/// every change in the tenant database, in the transaction of the module call
/// that made it (see [`usage_db`](super::usage_db)), and seeds a pair's usage
/// from there with [`EntitlementEngine::replace_grant_with_usage`].
pub struct EntitlementEngine {
    pub(super) shards: Box<[Shard]>,
    pub(super) hasher: RandomState,
    /// At least 1: see [`SeenKeys`].
    pub(super) max_seen_keys: usize,
}

impl fmt::Debug for EntitlementEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntitlementEngine")
            .field("shards", &self.shards.len())
            .field("max_seen_keys", &self.max_seen_keys)
            .finish_non_exhaustive()
    }
}

pub(super) fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for EntitlementEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl EntitlementEngine {
    /// An engine holding no grants, remembering at most
    /// [`HOST_MAX_SEEN_KEYS`] idempotency keys per counter and meter period.
    ///
    /// The tenant database is the authority on idempotency keys (it keeps
    /// them all and refuses a key twice), so a pair starts with no keys —
    /// nothing is loaded at start, however many keys the database holds —
    /// and the keys remembered here are a fast path.
    pub fn new() -> Self {
        Self::with_max_seen_keys(HOST_MAX_SEEN_KEYS)
    }

    /// Like [`EntitlementEngine::new`] with a different idempotency-key
    /// bound (at least 1). Beyond the bound the oldest key is forgotten, so a
    /// retry older than the last `max_seen_keys` events counts again.
    pub(super) fn with_max_seen_keys(max_seen_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
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

    /// Installs or replaces the grant for (tenant, module). Call it whenever
    /// a subscription changes state or plan, or the plan itself changes;
    /// checks made after it returns see the new grant. Usage is kept: a
    /// downgrade below current usage blocks new increments only.
    ///
    /// A pair not cached yet starts from no usage; a caller holding the
    /// pair's saved usage hands it over with
    /// [`EntitlementEngine::replace_grant_with_usage`] instead. Meter periods
    /// already under way are kept unless the grant's period starts at or
    /// after their end, in which case the meter restarts at the grant's
    /// period.
    pub fn replace_grant(&self, tenant: &str, module: &str, grant: Grant) {
        {
            let shard = read(self.shard(tenant));
            if let Some(slot) = shard.get(tenant).and_then(|m| m.get(module)) {
                self.apply_grant(&mut write(slot), grant);
                return;
            }
        }
        self.replace_grant_with_usage(tenant, module, grant, StoredUsage::default());
    }

    /// Like [`EntitlementEngine::replace_grant`], for callers that load usage
    /// themselves (the host reads them from the tenant database): when the
    /// pair is not cached yet, `usage` seeds it; when it is cached, `usage`
    /// is ignored and the cached usage kept.
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

    pub(super) fn shard(&self, tenant: &str) -> &Shard {
        let index = (self.hasher.hash_one(tenant) as usize) % self.shards.len();
        &self.shards[index]
    }

    /// Runs `f` on the pair's slot under read locks; `None` if there is none.
    pub(super) fn with_slot<R>(
        &self,
        tenant: &str,
        module: &str,
        f: impl FnOnce(&Slot) -> R,
    ) -> Option<R> {
        let shard = read(self.shard(tenant));
        let slot = shard.get(tenant)?.get(module)?;
        let slot = read(slot);
        Some(f(&slot))
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

    /// A count limit's counter at zero, remembering no keys yet.
    pub(super) fn fresh_counter(&self) -> Counter {
        Counter {
            used: AtomicU64::new(0),
            keys: Mutex::new(CounterKeys {
                consumed: SeenKeys::new(self.max_seen_keys),
                released: SeenKeys::new(self.max_seen_keys),
            }),
        }
    }

    fn apply_grant(&self, slot: &mut Slot, grant: Grant) {
        for key in grant.limits.keys() {
            slot.counters
                .entry(key.clone())
                .or_insert_with(|| self.fresh_counter());
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

    /// The pair's usage as the engine holds it, in the shape a caller seeds
    /// it with ([`EntitlementEngine::replace_grant_with_usage`]); `None`
    /// without a grant.
    pub fn snapshot(&self, tenant: &str, module: &str) -> Option<StoredUsage> {
        self.with_slot(tenant, module, snapshot_of)
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
