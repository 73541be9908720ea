//! Events after the commit: the tenant's webhook endpoints, the delivery
//! worker's passes, and the logs a tenant reads (docs/webhooks.md).
//!
//! Modules emit into their tenant's outbox through the `events`
//! capability, in their call's transaction; the call's committer hints the
//! event worker ([`crate::work`], [`WorkKind::Events`]). A pass over one
//! tenant ([`Events::pass`], `worker.rs`):
//!
//! 1. **fans out** each new event, in order, into one delivery per enabled
//!    webhook endpoint of its module that takes its type, and one per
//!    installed module that subscribes to it (`events.subscribe`);
//! 2. **delivers to subscribers**: each subscriber's oldest pending event
//!    is handed to its `on-event` export in a call of its own
//!    ([`crate::dispatch::Dispatcher::run_background`]); a failure blocks
//!    that subscriber's later events and is retried with backoff until the
//!    retry window ends, then recorded as `failed` and passed over;
//! 3. **delivers to webhooks**: due deliveries in event order, POSTed
//!    signed (`signing.rs`) through the SSRF guard (`guard.rs`,
//!    `sender.rs`); a non-2xx answer or a failure is retried with
//!    exponential backoff and jitter until the retry window ends.
//!
//! Endpoints live in the control plane
//! ([`crate::control_plane::webhooks`]); the outbox and both delivery logs
//! in the tenant's database ([`crate::event_store`]).

mod endpoints;
pub mod guard;
pub mod sender;
pub mod signing;
mod worker;

use std::time::Duration;

use crate::billing::service::Billing;
use crate::catalog::Catalog;
use crate::control_plane::ControlPlane;
use crate::dispatch::Dispatcher;
use crate::installer::Installer;
use crate::tenancy::Tenancy;
use crate::usage::Usage;
use crate::work::{WorkHints, WorkKind};

pub use endpoints::{
    DeliveryPage, DeliveryView, EndpointChange, EndpointView, ModuleDeliveryPage,
    ModuleDeliveryView, NewEndpoint, WithSecret,
};
pub use guard::{Cidr, NetworkPolicy};
pub use worker::PassReport;

/// How events are delivered (the `souk serve` webhook flags).
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Connect timeout, and again the whole exchange's, of one webhook
    /// POST. Default 10 s.
    pub webhook_timeout: Duration,
    /// How long a delivery (to a webhook or a subscriber) is retried after
    /// it was queued before it is recorded as failed. Default 3 days.
    pub retry_window: Duration,
    /// The first retry's delay; each next one doubles it, up to
    /// [`EventsConfig::retry_max_delay`], with jitter. Default 30 s.
    pub retry_base: Duration,
    /// The longest delay between two attempts. Default 1 h.
    pub retry_max_delay: Duration,
    /// How long the previous secret keeps signing after a rotation.
    /// Default 24 h.
    pub secret_grace: Duration,
    /// Which addresses and schemes deliveries may use.
    pub network: NetworkPolicy,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            webhook_timeout: Duration::from_secs(10),
            retry_window: Duration::from_secs(3 * 24 * 3600),
            retry_base: Duration::from_secs(30),
            retry_max_delay: Duration::from_secs(3600),
            secret_grace: Duration::from_secs(24 * 3600),
            network: NetworkPolicy::default(),
        }
    }
}

impl EventsConfig {
    /// The delay before attempt `attempt + 1` after `attempt` failed ones
    /// (1 for the first retry): `retry_base * 2^(attempt-1)`, at most
    /// `retry_max_delay`, then scaled by a random factor in [0.5, 1] so
    /// receivers that failed together are not retried together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let full = self
            .retry_base
            .saturating_mul(1u32 << exponent)
            .min(self.retry_max_delay);
        let jitter: f64 = rand::random_range(0.5..=1.0);
        full.mul_f64(jitter)
    }
}

/// The event delivery service: endpoints, the delivery logs and the
/// worker's passes, borrowing the parts they use (`Souk::events`).
pub struct Events<'a> {
    /// Webhook endpoints.
    pub control: &'a ControlPlane,
    /// Tenants and their databases.
    pub tenancy: &'a Tenancy,
    /// Manifests of installed versions.
    pub catalog: &'a Catalog,
    /// Installations.
    pub installer: Installer<'a>,
    /// The engine's grant for an installation (the webhook feature check).
    pub usage: Usage<'a>,
    /// The entitlement engine and the clock.
    pub billing: &'a Billing,
    /// Runs a subscriber's `on-event`.
    pub dispatcher: Dispatcher<'a>,
    /// Wakes the worker when a redelivery is queued.
    pub work: &'a WorkHints,
    /// The delivery settings.
    pub config: &'a EventsConfig,
    /// The deadline of one `on-event` call (the call deadline).
    pub call_timeout: Duration,
}

/// The kind of work the event worker does.
pub const WORK: WorkKind = WorkKind::Events;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let config = EventsConfig {
            retry_base: Duration::from_secs(10),
            retry_max_delay: Duration::from_secs(60),
            ..EventsConfig::default()
        };
        for _ in 0..50 {
            let first = config.backoff(1);
            assert!(first >= Duration::from_secs(5) && first <= Duration::from_secs(10));
            let third = config.backoff(3);
            assert!(third >= Duration::from_secs(20) && third <= Duration::from_secs(40));
            let late = config.backoff(40);
            assert!(late >= Duration::from_secs(30) && late <= Duration::from_secs(60));
        }
    }
}
