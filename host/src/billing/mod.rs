//! Billing: what the operator sells and the life of what a tenant bought.
//!
//! - [`catalog`]: plans and bundles parsed from the operator's YAML and
//!   checked against what each module declares it can gate;
//! - [`subscription`]: one subscription per tenant per module, its state
//!   machine, billing periods, grace, and the cost of plan changes.
//!
//! Both are pure: no I/O, no database, time comes from a [`subscription::Clock`].

pub mod catalog;
pub mod subscription;
