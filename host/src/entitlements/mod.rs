//! The entitlements engine: what a tenant may do with a module, answered from
//! process memory.
//!
//! This module owns the in-process view of each (tenant, module) grant —
//! access state, features, count limits, metered allowances — and the usage
//! counted against it. It does not own the catalog or the subscription state
//! machine: whoever changes a subscription or a plan hands the engine the
//! resulting [`Grant`] through [`EntitlementEngine::replace_grant`], and every
//! check made after that call returns sees the new grant. A refusal is a
//! [`Denial`], defined once for host and SDK in the `souk-denial` crate.
//!
//! The parts, along their seams:
//! - `grant`: what a subscription grants ([`Grant`], [`AccessState`],
//!   [`MeterAllowance`]);
//! - `engine`: the sharded (tenant, module) map and how a grant is installed
//!   ([`EntitlementEngine`]);
//! - `decision`: the checks and how a refusal is worded ([`Decision`]);
//! - `counting`: consuming, releasing, recording and undoing usage, and the
//!   usage dashboard ([`Usage`], [`MeterReading`], [`UsageLine`]);
//! - `period`: billing periods and how a meter's period rolls over;
//! - `store`: usage as a caller seeds the engine with it ([`StoredUsage`]);
//! - [`usage_db`]: that usage in each tenant's database;
//! - `crate::capabilities::entitlements::call`: one module call's view of
//!   the engine (with the capabilities, since it writes through the call's
//!   database handle).
//!
//! # Cost
//! A check takes two uncontended `RwLock` read locks (the shard, then the
//! (tenant, module) slot) and two or three hash lookups; nothing allocates
//! unless the answer is a denial. Usage is seeded once, when a (tenant,
//! module) first gets a grant ([`EntitlementEngine::replace_grant_with_usage`]);
//! the engine itself never reads or writes a database.
//!
//! # Concurrency
//! Count limits are `AtomicU64`s updated with compare-and-swap, so parallel
//! consumers racing for the last units never push usage past the limit.
//! Consumes carrying an idempotency key also take that counter's key mutex, so
//! a retried consume applies once. Each meter has its own mutex (a usage event
//! updates a sum, its period and its idempotency keys together).

mod counting;
mod decision;
mod engine;
mod grant;
mod period;
mod store;
#[cfg(test)]
mod tests;
pub mod usage_db;

pub use counting::{
    MAX_QUANTITY, MAX_USAGE, MeterReading, MeterRefusal, Usage, UsageError, UsageKind, UsageLine,
};
pub use decision::Decision;
pub use engine::{EntitlementEngine, HOST_MAX_SEEN_KEYS};
pub use grant::{AccessState, Grant, MeterAllowance};
pub use period::{Period, ResetInterval};
pub use souk_denial::{Denial, DenialReason};
pub use store::{StoredCounter, StoredMeter, StoredUsage};
