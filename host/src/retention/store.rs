//! The pruning statements over the host's tables in a tenant database, and
//! the batches they run in.

use sqlx::SqlitePool;
use time::OffsetDateTime;

use super::{Pruned, RetentionConfig};
use crate::event_store::millis;

/// One kind of pruning, run in batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneStep {
    /// Webhook delivery log rows finished before the cutoff (unix ms).
    WebhookDeliveries,
    /// Subscriber delivery log rows finished before the cutoff (unix ms).
    ModuleDeliveries,
    /// Fanned-out events created before the cutoff (unix ms) that no
    /// delivery row names. After the two log steps, so an event whose log
    /// rows were just deleted goes in the same run.
    Events,
    /// Mail finished before the cutoff (unix seconds).
    Mail,
    /// Bodies of mail finished before the cutoff (unix seconds).
    MailBodies,
}

impl PruneStep {
    /// Every step, in the order a pruning runs them.
    pub const ALL: [PruneStep; 5] = [
        PruneStep::WebhookDeliveries,
        PruneStep::ModuleDeliveries,
        PruneStep::Events,
        PruneStep::Mail,
        PruneStep::MailBodies,
    ];

    /// One batch: binds the cutoff, then the batch size. Each statement
    /// keeps its table's newest row (rowid keys must only grow) and never
    /// touches pending work.
    fn statement(self) -> &'static str {
        match self {
            PruneStep::WebhookDeliveries => {
                "DELETE FROM _souk_webhook_deliveries WHERE id IN (
                    SELECT id FROM _souk_webhook_deliveries
                    WHERE status <> 'pending'
                      AND COALESCE(delivered_at, last_attempt_at, created_at) < ?1
                      AND id < (SELECT MAX(id) FROM _souk_webhook_deliveries)
                    ORDER BY id LIMIT ?2)"
            }
            PruneStep::ModuleDeliveries => {
                "DELETE FROM _souk_event_deliveries WHERE rowid IN (
                    SELECT rowid FROM _souk_event_deliveries
                    WHERE status <> 'pending' AND COALESCE(finished_at, created_at) < ?1
                    LIMIT ?2)"
            }
            PruneStep::Events => {
                "DELETE FROM _souk_events WHERE seq IN (
                    SELECT e.seq FROM _souk_events e
                    WHERE e.fanned_out = 1 AND e.created_at < ?1
                      AND e.seq < (SELECT MAX(seq) FROM _souk_events)
                      AND NOT EXISTS (SELECT 1 FROM _souk_webhook_deliveries w
                                      WHERE w.event_seq = e.seq)
                      AND NOT EXISTS (SELECT 1 FROM _souk_event_deliveries d
                                      WHERE d.event_seq = e.seq)
                    ORDER BY e.seq LIMIT ?2)"
            }
            PruneStep::Mail => {
                "DELETE FROM _souk_mail WHERE seq IN (
                    SELECT seq FROM _souk_mail
                    WHERE status <> 'queued' AND finished_at < ?1
                      AND seq < (SELECT MAX(seq) FROM _souk_mail)
                    ORDER BY seq LIMIT ?2)"
            }
            PruneStep::MailBodies => {
                "UPDATE _souk_mail SET text_body = '', html_body = NULL WHERE seq IN (
                    SELECT seq FROM _souk_mail
                    WHERE status <> 'queued' AND finished_at < ?1
                      AND (text_body <> '' OR html_body IS NOT NULL)
                    ORDER BY seq LIMIT ?2)"
            }
        }
    }

    /// The cutoff at `now`: rows older than it go.
    fn cutoff(self, now: OffsetDateTime, config: &RetentionConfig) -> i64 {
        let keep = match self {
            PruneStep::WebhookDeliveries | PruneStep::ModuleDeliveries => config.delivery_logs,
            PruneStep::Events => config.events,
            PruneStep::Mail => config.mail,
            PruneStep::MailBodies => config.mail_bodies,
        };
        let keep = time::Duration::try_from(keep).unwrap_or(time::Duration::MAX);
        let cutoff = now.checked_sub(keep).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        match self {
            PruneStep::Mail | PruneStep::MailBodies => cutoff.unix_timestamp(),
            _ => millis(cutoff),
        }
    }

    fn count(self, pruned: &mut Pruned) -> &mut u64 {
        match self {
            PruneStep::WebhookDeliveries => &mut pruned.webhook_deliveries,
            PruneStep::ModuleDeliveries => &mut pruned.module_deliveries,
            PruneStep::Events => &mut pruned.events,
            PruneStep::Mail => &mut pruned.mail,
            PruneStep::MailBodies => &mut pruned.mail_bodies,
        }
    }
}

/// Prunes the tenant database behind `pool` at `now` after `config`: every
/// [`PruneStep`], each in batches of at most [`RetentionConfig::batch_rows`]
/// rows, one write transaction per batch, at most
/// [`RetentionConfig::max_batches`] per step.
///
/// # Errors
/// Database errors; batches already committed stay pruned.
pub async fn prune_tenant(
    pool: &SqlitePool,
    now: OffsetDateTime,
    config: &RetentionConfig,
) -> Result<Pruned, sqlx::Error> {
    let mut pruned = Pruned::default();
    let batch = config.batch_rows.max(1);
    for step in PruneStep::ALL {
        let cutoff = step.cutoff(now, config);
        for _ in 0..config.max_batches.max(1) {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let changed = sqlx::query(step.statement())
                .bind(cutoff)
                .bind(i64::from(batch))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            *step.count(&mut pruned) += changed;
            if changed < u64::from(batch) {
                break;
            }
            // Between batches the lock is free: let waiting writers in.
            tokio::task::yield_now().await;
        }
    }
    Ok(pruned)
}
