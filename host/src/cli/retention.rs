//! The retention knobs (docs/retention.md): global options, so `souk serve`
//! and `souk maintenance run` prune alike.

use std::time::Duration;

use clap::Args;

use crate::retention::RetentionConfig;

/// How long the host keeps delivered events, delivery logs and mail.
#[derive(Debug, Args)]
pub(super) struct RetentionOptions {
    /// Seconds an event is kept after it is fanned out when no delivery
    /// log row names it (one that does is kept as long as its log rows).
    #[arg(
        long,
        global = true,
        env = "SOUK_EVENT_RETENTION_SECS",
        default_value_t = 3_600
    )]
    event_retention_secs: u64,
    /// Days a finished webhook or subscriber delivery stays in the
    /// delivery logs.
    #[arg(
        long,
        global = true,
        env = "SOUK_DELIVERY_LOG_RETENTION_DAYS",
        default_value_t = 30
    )]
    delivery_log_retention_days: u64,
    /// Days sent or failed mail stays in the mail log.
    #[arg(
        long,
        global = true,
        env = "SOUK_MAIL_RETENTION_DAYS",
        default_value_t = 30
    )]
    mail_retention_days: u64,
    /// Hours after it is sent (or failed) that a message's text and HTML
    /// are emptied (an invitation's link is in them); its log entry stays.
    #[arg(
        long,
        global = true,
        env = "SOUK_MAIL_BODY_RETENTION_HOURS",
        default_value_t = 24
    )]
    mail_body_retention_hours: u64,
    /// Most rows pruned in one write transaction of a tenant database.
    #[arg(
        long,
        global = true,
        env = "SOUK_RETENTION_BATCH_ROWS",
        default_value_t = 500
    )]
    retention_batch_rows: u32,
    /// Tenants pruned per maintenance run, in turn.
    #[arg(
        long,
        global = true,
        env = "SOUK_RETENTION_TENANTS_PER_RUN",
        default_value_t = 100
    )]
    retention_tenants_per_run: usize,
}

impl RetentionOptions {
    /// The configuration these options give.
    pub(super) fn config(&self) -> RetentionConfig {
        RetentionConfig {
            events: Duration::from_secs(self.event_retention_secs),
            delivery_logs: Duration::from_secs(
                self.delivery_log_retention_days.saturating_mul(86_400),
            ),
            mail: Duration::from_secs(self.mail_retention_days.saturating_mul(86_400)),
            mail_bodies: Duration::from_secs(self.mail_body_retention_hours.saturating_mul(3_600)),
            batch_rows: self.retention_batch_rows.max(1),
            tenants_per_run: self.retention_tenants_per_run,
            ..RetentionConfig::default()
        }
    }
}
