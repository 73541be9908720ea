//! Email: delivering what modules and the host queue in each tenant's
//! outbox (`_souk_mail`, see `capabilities::notify::outbox`) through the
//! operator's SMTP relay, the host's own notices to a tenant's admins, and
//! the tenant's mail log.
//!
//! - [`Mail`] is built once at start (`Souk::open`) from [`MailConfig`]: the
//!   relay (none without `--smtp-url`: mail stays queued, and the operator
//!   is told at start and in the delivery state), the retry policy and the
//!   tenant's user directory.
//! - [`worker`]: the delivery, a task started with the server; it finds
//!   the tenants with mail due through the work hints and sends, retries
//!   with backoff or fails each message.
//! - [`notices`]: host notices (trial ending, payment due, invitations)
//!   queued to the tenant's admins in the same outbox, not counted against
//!   any module's meter.
//!
//! Time comes from the host clock only: a queued message is due at its
//! `next_attempt_at`, and a manual clock's moves make retries due.

pub mod directory;
pub mod notices;
pub mod relay;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::SqliteConnection;
use time::OffsetDateTime;

use crate::capabilities::notify::outbox::{self, LogEntry};
use crate::capabilities::notify::{MessageLimits, NotifySetup, RecipientDirectory};
use crate::clock::Clock;
use relay::{Relay, RelayError};

/// The sender when `--mail-from` is not given.
pub const DEFAULT_MAIL_FROM: &str = "Souk <souk@localhost>";

/// How mail is delivered (`souk serve` flags; see docs/email.md).
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// The relay (`--smtp-url`): `smtp://host:port`, `smtps://user:pass@host`,
    /// `smtp+starttls://...`. `None`: mail is queued but not sent.
    pub smtp_url: Option<String>,
    /// The sender of every message (`--mail-from`).
    pub from: String,
    /// Bound on connecting to the relay and on each SMTP command
    /// (`--smtp-connect-timeout-secs`, default 10 s).
    pub connect_timeout: Duration,
    /// Bound on sending one message (`--smtp-send-timeout-secs`, default
    /// 60 s).
    pub send_timeout: Duration,
    /// How long a message is retried after transient failures before it
    /// fails (`--mail-retry-for-secs`, default one day).
    pub retry_for: Duration,
    /// How large a message may be.
    pub limits: MessageLimits,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            smtp_url: None,
            from: DEFAULT_MAIL_FROM.to_owned(),
            connect_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(60),
            retry_for: Duration::from_secs(24 * 60 * 60),
            limits: MessageLimits::default(),
        }
    }
}

/// When a message that failed transiently is tried again: 30 s after the
/// first attempt, doubling up to an hour between attempts, until
/// `give_up_after` has passed since it was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failed attempt.
    pub first: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
    /// How long after queueing a message is still tried.
    pub give_up_after: Duration,
}

impl RetryPolicy {
    /// The policy of `retry_for`.
    pub fn new(retry_for: Duration) -> Self {
        RetryPolicy {
            first: Duration::from_secs(30),
            max_delay: Duration::from_secs(60 * 60),
            give_up_after: retry_for,
        }
    }

    /// The outcome of a transient failure (`reason`) of a message queued at
    /// `queued_at` that had `attempts` attempts before this one, at `now`:
    /// tried again later, or failed when that would be past
    /// `give_up_after`.
    pub fn after_transient(
        &self,
        reason: String,
        attempts: u32,
        queued_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> outbox::Attempt {
        let delay = self
            .first
            .saturating_mul(1u32.checked_shl(attempts.min(20)).unwrap_or(u32::MAX))
            .min(self.max_delay);
        let retry_at = now + delay;
        if retry_at > queued_at + self.give_up_after {
            outbox::Attempt::Failed(format!(
                "gave up after {} attempts over {}s; last: {reason}",
                attempts.saturating_add(1),
                (now - queued_at).whole_seconds()
            ))
        } else {
            outbox::Attempt::Retry { reason, retry_at }
        }
    }
}

/// The host's mail: the relay (if configured), the policy, the directory.
pub struct Mail {
    config: MailConfig,
    relay: Option<Arc<Relay>>,
    directory: Arc<dyn RecipientDirectory>,
    clock: Arc<dyn Clock>,
}

/// What the tenant (and the operator) see of the delivery.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryState {
    /// Whether a relay is configured (`--smtp-url`).
    pub relay_configured: bool,
    /// The relay without credentials, when configured.
    pub relay: Option<String>,
    /// What this means for queued mail, in a sentence.
    pub note: String,
}

/// The sentence an operator reads when no relay is configured.
pub const NO_RELAY_NOTE: &str = "no SMTP relay is configured (souk serve --smtp-url): email is queued in each tenant's outbox and sent once a relay is configured and the host restarted";

impl Mail {
    /// The mail of `config`, resolving recipients through `directory`,
    /// queueing at the times of `clock` (the host's).
    ///
    /// # Errors
    /// [`RelayError`] for a `--smtp-url` or `--mail-from` that cannot be
    /// used (the host refuses to start rather than lose mail quietly).
    pub fn new(
        config: MailConfig,
        directory: Arc<dyn RecipientDirectory>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, RelayError> {
        let relay = match &config.smtp_url {
            Some(url) => Some(Arc::new(Relay::new(
                url,
                &config.from,
                config.connect_timeout,
                config.send_timeout,
            )?)),
            None => {
                // Still check the sender, so a typo shows at start.
                relay::check_from(&config.from)?;
                None
            }
        };
        Ok(Mail {
            config,
            relay,
            directory,
            clock,
        })
    }

    /// The relay, when one is configured (the worker's).
    pub fn relay(&self) -> Option<Arc<Relay>> {
        self.relay.clone()
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::new(self.config.retry_for)
    }

    /// How large a message may be.
    pub fn limits(&self) -> MessageLimits {
        self.config.limits
    }

    /// The tenant's users, as mail needs them.
    pub fn directory(&self) -> Arc<dyn RecipientDirectory> {
        self.directory.clone()
    }

    /// The same, borrowed.
    pub fn directory_ref(&self) -> &dyn RecipientDirectory {
        self.directory.as_ref()
    }

    /// The `notify` setup of a call of a module whose manifest declares
    /// `limits` (requests and background calls alike).
    pub fn notify_setup<'a>(
        &self,
        limits: impl IntoIterator<Item = &'a souk_module_registry::LimitDecl>,
    ) -> NotifySetup {
        NotifySetup::for_module(
            self.directory.clone(),
            self.config.limits,
            self.clock.clone(),
            limits,
        )
    }

    /// The delivery state.
    pub fn delivery_state(&self) -> DeliveryState {
        match &self.relay {
            Some(relay) => DeliveryState {
                relay_configured: true,
                relay: Some(relay.target().to_string()),
                note: "queued email is sent through the relay, retried on transient failures"
                    .to_owned(),
            },
            None => DeliveryState {
                relay_configured: false,
                relay: None,
                note: NO_RELAY_NOTE.to_owned(),
            },
        }
    }
}

/// One page of a tenant's mail log.
#[derive(Debug, Clone, Serialize)]
pub struct MailLogPage {
    /// The messages, oldest first.
    pub messages: Vec<LogEntry>,
    /// Pass as `after` for the next page; `None` on the last one.
    pub next_after: Option<i64>,
    /// Whether and how mail leaves this host.
    pub delivery: DeliveryState,
}

/// A page of the mail log of the tenant database `conn`: messages after
/// `after`, at most `limit` (1 to 200).
///
/// # Errors
/// Database failures.
pub async fn log_page(
    mail: &Mail,
    conn: &mut SqliteConnection,
    after: i64,
    limit: i64,
) -> Result<MailLogPage, sqlx::Error> {
    let limit = limit.clamp(1, 200);
    let messages = outbox::log(conn, after, limit).await?;
    let next_after = (messages.len() as i64 == limit)
        .then(|| messages.last().map(|m| m.seq))
        .flatten();
    Ok(MailLogPage {
        messages,
        next_after,
        delivery: mail.delivery_state(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_give_up_after_the_retry_time() {
        let policy = RetryPolicy::new(Duration::from_secs(24 * 60 * 60));
        let queued = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let delay = |attempts, now: OffsetDateTime| match policy.after_transient(
            "451".to_owned(),
            attempts,
            queued,
            now,
        ) {
            outbox::Attempt::Retry { retry_at, .. } => Some((retry_at - now).whole_seconds()),
            _ => None,
        };
        assert_eq!(delay(0, queued), Some(30));
        assert_eq!(delay(1, queued), Some(60));
        assert_eq!(delay(2, queued), Some(120));
        assert_eq!(delay(12, queued), Some(3600));
        assert_eq!(delay(40, queued), Some(3600));
        let late = queued + time::Duration::hours(23) + time::Duration::minutes(30);
        assert_eq!(delay(30, late), None);
    }
}
