//! Usage as it is handed to the engine and read back from it: counters,
//! meter sums and the idempotency keys already seen. The host loads a pair's
//! usage from the tenant database ([`usage_db::load`](super::usage_db::load))
//! once, when the engine first learns of its grant, and seeds the engine with
//! it ([`EntitlementEngine::replace_grant_with_usage`](super::EntitlementEngine::replace_grant_with_usage));
//! checks never reach the database.

use std::collections::{BTreeMap, HashSet, VecDeque};

use super::period::Period;

/// Usage of one (tenant, module), as a caller seeds the engine with it.
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

/// Idempotency keys already applied, bounded.
///
/// Holds at most `capacity` keys; when full, the oldest key is forgotten to
/// make room. The consequence: a retry of an event whose key is older than the
/// most recent `capacity` keys of the same counter (or the same meter period)
/// is counted again by the engine — the host's tenant database, which keeps
/// every key, still refuses it, so the bound only limits memory
/// ([`HOST_MAX_SEEN_KEYS`](super::HOST_MAX_SEEN_KEYS) keys, about 10k × key
/// length bytes plus hash overhead). Meter keys are dropped wholesale when
/// the period rolls over, since an event's key only matters within its
/// period.
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
