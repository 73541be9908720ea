//! Retention: how long the host keeps what its deferred work leaves behind
//! in each tenant database, and the pruning the maintenance step does
//! (docs/retention.md).
//!
//! Events, webhook and subscriber deliveries and mail are written into the
//! tenant's own database (`event_store`, `capabilities::notify::outbox`)
//! and, once handled, stay as logs the tenant reads. Without pruning they
//! grow for ever, and mail bodies keep what they carried (an invitation's
//! link) indefinitely. Each maintenance run ([`Retention::run`], called by
//! `Souk::run_maintenance`) visits a slice of the tenants in turn and, in
//! each, deletes:
//!
//! - **events** of the outbox fanned out longer ago than
//!   [`RetentionConfig::events`] that no delivery row names any more (a
//!   delivered event stays as long as its log rows, so it can be
//!   redelivered from the log);
//! - **delivery log rows** (webhooks and subscriber modules) finished longer
//!   ago than [`RetentionConfig::delivery_logs`];
//! - **mail** sent or failed longer ago than [`RetentionConfig::mail`], and
//!   the **bodies** of mail finished longer ago than
//!   [`RetentionConfig::mail_bodies`] (the log entry stays, its text and
//!   HTML emptied).
//!
//! Pending work is never touched. Each step deletes at most
//! [`RetentionConfig::batch_rows`] rows in a write transaction of its own,
//! so the tenant's write lock is held for one small batch at a time and
//! requests interleave between batches. The newest row of each table is
//! kept: keys are rowids, which SQLite reuses from the largest one down
//! only if the largest is deleted (see `event_store`).

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::error::SoukError;
use crate::tenancy::Tenancy;

mod store;
#[cfg(test)]
mod tests;

pub use store::{PruneStep, prune_tenant};

/// How long each kind of record is kept, and how pruning is paced.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Events fanned out longer ago than this, which no delivery names, are
    /// deleted. Default 1 hour.
    pub events: Duration,
    /// Webhook and subscriber delivery log rows finished longer ago than
    /// this are deleted. Default 30 days.
    pub delivery_logs: Duration,
    /// Mail sent or failed longer ago than this is deleted. Default 30
    /// days.
    pub mail: Duration,
    /// Bodies (text and HTML) of mail sent or failed longer ago than this
    /// are emptied. Default 1 day.
    pub mail_bodies: Duration,
    /// Most rows deleted (or emptied) in one write transaction. Default
    /// 500.
    pub batch_rows: u32,
    /// Most batches of one kind in one tenant per run: bounds a run's work
    /// on a tenant with a large backlog (the next run continues). Default
    /// 100.
    pub max_batches: u32,
    /// Tenants visited per maintenance run, in turn. Default 100.
    pub tenants_per_run: usize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            events: Duration::from_secs(3600),
            delivery_logs: Duration::from_secs(30 * 86_400),
            mail: Duration::from_secs(30 * 86_400),
            mail_bodies: Duration::from_secs(86_400),
            batch_rows: 500,
            max_batches: 100,
            tenants_per_run: 100,
        }
    }
}

/// What one pruning did, in rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Outbox events deleted.
    pub events: u64,
    /// Webhook delivery log rows deleted.
    pub webhook_deliveries: u64,
    /// Subscriber delivery log rows deleted.
    pub module_deliveries: u64,
    /// Mail rows deleted.
    pub mail: u64,
    /// Mail bodies emptied.
    pub mail_bodies: u64,
}

impl Pruned {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: Pruned) {
        self.events += other.events;
        self.webhook_deliveries += other.webhook_deliveries;
        self.module_deliveries += other.module_deliveries;
        self.mail += other.mail;
        self.mail_bodies += other.mail_bodies;
    }

    /// Whether nothing was pruned.
    pub fn is_empty(self) -> bool {
        self == Pruned::default()
    }
}

/// The pruning service: the configuration and where the last run stopped
/// in the list of tenants (in memory: a restarted host starts again from
/// the first tenant, which costs one extra look at some tenants).
pub struct Retention {
    config: RetentionConfig,
    /// The id of the last tenant visited.
    cursor: Mutex<Option<String>>,
}

impl Retention {
    /// A service pruning after `config`.
    pub fn new(config: RetentionConfig) -> Self {
        Retention {
            config,
            cursor: Mutex::new(None),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RetentionConfig {
        &self.config
    }

    /// Prunes the next [`RetentionConfig::tenants_per_run`] tenants after
    /// the last one visited (by id, wrapping round), at `now` (the host
    /// clock). A tenant that fails is logged and skipped; the others are
    /// pruned.
    ///
    /// # Errors
    /// When the tenants cannot be listed.
    pub async fn run(&self, tenancy: &Tenancy, now: OffsetDateTime) -> Result<Pruned, SoukError> {
        let mut tenants = tenancy.list().await?;
        tenants.sort_by(|a, b| a.id.cmp(&b.id));
        let after = self
            .cursor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let start = after.map_or(0, |after| tenants.partition_point(|t| t.id <= after));
        let take = self.config.tenants_per_run.min(tenants.len());
        let mut total = Pruned::default();
        let mut last = None;
        for tenant in tenants.iter().cycle().skip(start).take(take) {
            let pruned = async {
                let pool = tenancy.database(tenant).await?;
                Ok::<_, SoukError>(prune_tenant(&pool, now, &self.config).await?)
            };
            match pruned.await {
                Ok(pruned) => total.add(pruned),
                Err(e) => {
                    tracing::warn!(tenant = %tenant.slug, error = %e, "retention: tenant not pruned; the next round retries");
                }
            }
            last = Some(tenant.id.clone());
        }
        if let Some(last) = last {
            *self
                .cursor
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(last);
        }
        Ok(total)
    }
}
