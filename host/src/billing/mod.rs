//! Billing: what the operator sells and the life of what a tenant bought.
//!
//! - [`bounds`]: how far the manual clock may move and how many periods
//!   may be prepaid (the numbers billing takes from outside);
//! - [`plans`]: plans and bundles parsed from the operator's YAML and
//!   checked against what each module declares it can gate;
//! - [`subscription`]: one subscription per tenant per module, its state
//!   machine, billing periods, grace, and the cost of plan changes (pure: no
//!   I/O; time comes from a [`crate::clock::Clock`]);
//! - [`money`] and [`invoice`]: amounts in minor units, tax rates, and
//!   an invoice's lines and totals (pure);
//! - [`store`]: subscriptions, their history and the notification outbox in
//!   the control-plane database;
//! - [`service`]: [`service::Billing`], which ties them together with the
//!   entitlements engine and runs the time-driven maintenance step.

pub mod bounds;
#[cfg(test)]
mod fixtures;
pub mod invoice;
pub mod listing;
pub mod money;
pub mod plans;
pub mod service;
pub mod store;
pub mod subscription;
