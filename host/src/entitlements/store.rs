//! The persistence seam for usage: counters, meter sums and the idempotency
//! keys already seen. The engine reads a tenant's usage once, when it first
//! learns of a (tenant, module) grant, and writes it back only when asked
//! ([`EntitlementEngine::flush`](super::EntitlementEngine::flush)); checks
//! never reach the store.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

use super::period::Period;

/// Default bound on remembered idempotency keys per counter and per meter
/// period. See [`SeenKeys`].
pub const DEFAULT_MAX_SEEN_KEYS: usize = 100_000;

/// Usage of one (tenant, module) as the store keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredUsage {
    /// Count limits (`max_cards`), by key.
    pub counters: BTreeMap<String, StoredCounter>,
    /// Meters (`qr_scans_per_month`), by key; only the current period.
    pub meters: BTreeMap<String, StoredMeter>,
}

/// One count limit's usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredCounter {
    /// Units currently held.
    pub used: u64,
    /// Idempotency keys of consumes already applied, oldest first.
    pub consumed_keys: Vec<String>,
    /// Idempotency keys of releases already applied, oldest first.
    pub released_keys: Vec<String>,
}

/// One meter's usage in its current period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMeter {
    /// The period `used` belongs to.
    pub period: Period,
    /// Sum of the events recorded in `period`.
    pub used: u64,
    /// Idempotency keys of the events counted in `period`, oldest first.
    pub seen_keys: Vec<String>,
}

/// Errors from a [`UsageStore`].
#[derive(Debug, thiserror::Error)]
pub enum UsageStoreError {
    /// The backing store could not be read or written.
    #[error("usage store unavailable: {0}; retry, usage stays cached in memory until flushed")]
    Unavailable(String),
}

/// Where usage survives a restart. A later session backs this with the
/// control-plane database.
pub trait UsageStore: Send + Sync {
    /// Called once per (tenant, module) when the engine first receives its
    /// grant, before any check. Returns empty usage for a pair never saved.
    ///
    /// # Errors
    /// [`UsageStoreError::Unavailable`] if the store cannot be read; the
    /// engine then refuses to install the grant, so usage is never silently
    /// reset to zero.
    fn load(&self, tenant: &str, module: &str) -> Result<StoredUsage, UsageStoreError>;

    /// Called by [`EntitlementEngine::flush`](super::EntitlementEngine::flush)
    /// with a consistent snapshot; replaces whatever was saved before.
    ///
    /// # Errors
    /// [`UsageStoreError::Unavailable`] if the store cannot be written; the
    /// in-memory usage is unaffected and a later flush writes it again.
    fn save(&self, tenant: &str, module: &str, usage: &StoredUsage) -> Result<(), UsageStoreError>;
}

/// A [`UsageStore`] in process memory, for tests and single-process use.
#[derive(Debug, Default)]
pub struct InMemoryUsageStore {
    saved: Mutex<HashMap<(String, String), StoredUsage>>,
}

impl InMemoryUsageStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl UsageStore for InMemoryUsageStore {
    fn load(&self, tenant: &str, module: &str) -> Result<StoredUsage, UsageStoreError> {
        let saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(saved
            .get(&(tenant.to_owned(), module.to_owned()))
            .cloned()
            .unwrap_or_default())
    }

    fn save(&self, tenant: &str, module: &str, usage: &StoredUsage) -> Result<(), UsageStoreError> {
        let mut saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        saved.insert((tenant.to_owned(), module.to_owned()), usage.clone());
        Ok(())
    }
}

/// Idempotency keys already applied, bounded.
///
/// Holds at most `capacity` keys; when full, the oldest key is forgotten to
/// make room. The consequence: a retry of an event whose key is older than the
/// most recent `capacity` keys of the same counter (or the same meter period)
/// is counted again. With the default of [`DEFAULT_MAX_SEEN_KEYS`] keys
/// (about 100k × key length bytes, plus hash overhead) a retry must arrive
/// after 100,000 newer events of the same meter in the same period to be
/// double counted. Meter keys are dropped wholesale when the period rolls
/// over, since an event's key only matters within its period.
#[derive(Debug, Clone)]
pub(crate) struct SeenKeys {
    set: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

impl SeenKeys {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn from_keys(keys: Vec<String>, capacity: usize) -> Self {
        let mut seen = Self::new(capacity);
        for key in keys {
            seen.insert(&key);
        }
        seen
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.set.contains(key)
    }

    /// Remembers `key`; returns false if it was already remembered.
    pub(crate) fn insert(&mut self, key: &str) -> bool {
        if self.set.contains(key) {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        self.set.insert(key.to_owned());
        self.order.push_back(key.to_owned());
        true
    }

    /// Forgets `key`; returns whether it was remembered.
    pub(crate) fn remove(&mut self, key: &str) -> bool {
        if !self.set.remove(key) {
            return false;
        }
        if let Some(at) = self.order.iter().position(|k| k == key) {
            self.order.remove(at);
        }
        true
    }

    pub(crate) fn clear(&mut self) {
        self.set.clear();
        self.order.clear();
    }

    pub(crate) fn to_vec(&self) -> Vec<String> {
        self.order.iter().cloned().collect()
    }
}
