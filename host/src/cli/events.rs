//! The event worker of `souk serve` and its flags (docs/webhooks.md).
//!
//! The worker waits for work hints of kind events ([`crate::work`]), and
//! runs a pass ([`crate::events::Events::pass`]) over each tenant that has
//! some due — several tenants at once, never one tenant twice at once —
//! then tells the hints when that tenant has more due. It looks at least
//! once a second, so retries fall due on a manual clock too, and stops
//! when the server does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use tokio::task::JoinSet;

use crate::events::{Cidr, EventsConfig, NetworkPolicy, WORK};
use crate::souk::Souk;

/// Tenants whose passes run at once.
const CONCURRENT_TENANTS: usize = 8;
/// The longest the worker sleeps without looking at the hints.
const POLL: Duration = Duration::from_secs(1);
/// The least time between two passes over one tenant when no new work
/// was hinted for it meanwhile (a retry due within the second).
const MIN_REPASS: Duration = Duration::from_millis(100);

/// The webhook and event delivery flags (global, so `souk serve` and the
/// commands that register endpoints read the same settings).
#[derive(Debug, Args)]
pub(super) struct EventArgs {
    /// Connect timeout, and again the whole exchange's, of one webhook
    /// delivery, in seconds.
    #[arg(
        long,
        global = true,
        env = "SOUK_WEBHOOK_TIMEOUT_SECS",
        default_value_t = 10
    )]
    webhook_timeout_secs: u64,
    /// How long a delivery (to a webhook or a subscribing module) is
    /// retried before it is recorded as failed, in seconds (default 3 days).
    #[arg(long, global = true, env = "SOUK_WEBHOOK_RETRY_WINDOW_SECS", default_value_t = 3 * 24 * 3600)]
    webhook_retry_window_secs: u64,
    /// The first retry's delay in milliseconds; each next one doubles it
    /// (with jitter), up to --webhook-retry-max-delay-secs.
    #[arg(
        long,
        global = true,
        env = "SOUK_WEBHOOK_RETRY_BASE_MS",
        default_value_t = 30_000
    )]
    webhook_retry_base_ms: u64,
    /// The longest delay between two attempts of a delivery, in seconds.
    #[arg(
        long,
        global = true,
        env = "SOUK_WEBHOOK_RETRY_MAX_DELAY_SECS",
        default_value_t = 3600
    )]
    webhook_retry_max_delay_secs: u64,
    /// How long the previous signing secret keeps signing after a
    /// rotation, in seconds.
    #[arg(long, global = true, env = "SOUK_WEBHOOK_SECRET_GRACE_SECS", default_value_t = 24 * 3600)]
    webhook_secret_grace_secs: u64,
    /// Deliver to private, loopback, link-local and other non-public
    /// addresses too (a host on a private network; tests).
    #[arg(long, global = true, env = "SOUK_WEBHOOK_ALLOW_PRIVATE")]
    webhook_allow_private: bool,
    /// Non-public address ranges deliveries may reach (CIDR, e.g.
    /// `10.1.0.0/16`; repeat the flag or separate with commas).
    #[arg(
        long,
        global = true,
        env = "SOUK_WEBHOOK_ALLOW_CIDRS",
        value_delimiter = ','
    )]
    webhook_allow_cidr: Vec<Cidr>,
    /// Accept `http://` endpoint URLs (otherwise only `https://`).
    #[arg(long, global = true, env = "SOUK_WEBHOOK_ALLOW_HTTP")]
    webhook_allow_http: bool,
}

impl EventArgs {
    /// The settings the flags give.
    pub(super) fn config(&self) -> EventsConfig {
        EventsConfig {
            webhook_timeout: Duration::from_secs(self.webhook_timeout_secs.max(1)),
            retry_window: Duration::from_secs(self.webhook_retry_window_secs),
            retry_base: Duration::from_millis(self.webhook_retry_base_ms.max(1)),
            retry_max_delay: Duration::from_secs(self.webhook_retry_max_delay_secs.max(1)),
            secret_grace: Duration::from_secs(self.webhook_secret_grace_secs),
            network: NetworkPolicy {
                allow_private: self.webhook_allow_private,
                allow_cidrs: self.webhook_allow_cidr.clone(),
                allow_http: self.webhook_allow_http,
            },
        }
    }
}

/// When a tenant was last passed over: the hint sequence the pass began
/// at, and the earliest instant of the next pass unless new work arrives.
type LastPass = HashMap<String, (u64, tokio::time::Instant)>;

/// Runs the event worker until `stop` changes; passes in flight are
/// stopped then (what they recorded stays; the next start goes on).
pub(super) async fn run_worker(souk: Arc<Souk>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let hints = souk.work().clone();
    let last: Arc<Mutex<LastPass>> = Arc::default();
    let mut running: JoinSet<()> = JoinSet::new();
    let mut in_flight: HashMap<String, tokio::task::Id> = HashMap::new();
    loop {
        if let Err(e) = hints.refresh().await {
            tracing::warn!(error = %e, "event worker: the work hints could not be read");
        }
        let now = souk.billing.clock().now();
        for due in hints.due(WORK, now) {
            if running.len() >= CONCURRENT_TENANTS {
                break;
            }
            if in_flight.contains_key(&due.tenant_id) {
                continue;
            }
            let waiting = last
                .lock()
                .ok()
                .and_then(|l| l.get(&due.tenant_id).copied())
                .is_some_and(|(seq, not_before)| {
                    seq == due.seq && tokio::time::Instant::now() < not_before
                });
            if waiting {
                continue;
            }
            let souk = souk.clone();
            let last = last.clone();
            let tenant = due.tenant_id.clone();
            let handle = running.spawn(async move {
                let report = souk.events().pass(&due.tenant_id).await;
                let next = match report {
                    Ok(report) => {
                        if report.fanned_out + report.handled + report.delivered + report.failed_attempts > 0 {
                            tracing::debug!(tenant = %due.tenant_id, ?report, "event pass");
                        }
                        report.next_due
                    }
                    Err(e) => {
                        tracing::warn!(tenant = %due.tenant_id, error = %e, "event pass failed; retrying");
                        Some(souk.billing.clock().now() + time::Duration::seconds(30))
                    }
                };
                if let Ok(mut last) = last.lock() {
                    if next.is_some() {
                        last.insert(
                            due.tenant_id.clone(),
                            (due.seq, tokio::time::Instant::now() + MIN_REPASS),
                        );
                    } else {
                        last.remove(&due.tenant_id);
                    }
                }
                if let Err(e) = souk
                    .work()
                    .settle(&due.tenant_id, WORK, due.seq, next)
                    .await
                {
                    tracing::warn!(tenant = %due.tenant_id, error = %e, "event worker: the work hint could not be settled");
                }
            });
            in_flight.insert(tenant, handle.id());
        }
        tokio::select! {
            () = hints.woken(WORK) => {}
            () = tokio::time::sleep(POLL) => {}
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                let id = match &done {
                    Ok((id, ())) => *id,
                    Err(e) => e.id(),
                };
                in_flight.retain(|_, task| *task != id);
                // Let a pass that just ended settle before the next look.
                tokio::time::sleep(MIN_REPASS).await;
            }
            _ = stop.changed() => break,
        }
    }
    running.shutdown().await;
}
