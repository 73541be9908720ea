//! The email flags (docs/email.md): global, like the other host knobs,
//! so `souk serve` and the CLI commands that queue host notices read the
//! same limits; only `souk serve` delivers.

use std::time::Duration;

use clap::Args;

use crate::capabilities::notify::MessageLimits;
use crate::mail::{DEFAULT_MAIL_FROM, MailConfig};

// No doc comment: clap would take it as help text.
#[derive(Debug, Args)]
pub(super) struct MailArgs {
    /// The SMTP relay email is sent through: `smtp://host:port` (plain),
    /// `smtps://user:pass@host:465` (TLS) or
    /// `smtp+starttls://user:pass@host:587` (STARTTLS). Without it email
    /// stays queued in each tenant's outbox.
    #[arg(long, global = true, env = "SOUK_SMTP_URL")]
    smtp_url: Option<String>,
    /// The sender of every message (`Name <local@domain>`).
    #[arg(long, global = true, env = "SOUK_MAIL_FROM", default_value = DEFAULT_MAIL_FROM)]
    mail_from: String,
    /// Seconds allowed to connect to the relay and for each SMTP command.
    #[arg(
        long,
        global = true,
        env = "SOUK_SMTP_CONNECT_TIMEOUT_SECS",
        default_value_t = 10
    )]
    smtp_connect_timeout_secs: u64,
    /// Seconds allowed to send one message.
    #[arg(
        long,
        global = true,
        env = "SOUK_SMTP_SEND_TIMEOUT_SECS",
        default_value_t = 60
    )]
    smtp_send_timeout_secs: u64,
    /// Seconds a message is retried after transient failures (4xx,
    /// connection errors) before it fails.
    #[arg(
        long,
        global = true,
        env = "SOUK_MAIL_RETRY_FOR_SECS",
        default_value_t = 86_400
    )]
    mail_retry_for_secs: u64,
    /// Most bytes of a message's plain-text body.
    #[arg(long, global = true, env = "SOUK_MAIL_MAX_TEXT_BYTES", default_value_t = MessageLimits::default().max_text_bytes)]
    mail_max_text_bytes: usize,
    /// Most bytes of a message's HTML body.
    #[arg(long, global = true, env = "SOUK_MAIL_MAX_HTML_BYTES", default_value_t = MessageLimits::default().max_html_bytes)]
    mail_max_html_bytes: usize,
}

impl MailArgs {
    /// The mail configuration these flags give.
    pub(super) fn config(&self) -> MailConfig {
        MailConfig {
            smtp_url: self.smtp_url.clone().filter(|url| !url.is_empty()),
            from: self.mail_from.clone(),
            connect_timeout: Duration::from_secs(self.smtp_connect_timeout_secs.max(1)),
            send_timeout: Duration::from_secs(self.smtp_send_timeout_secs.max(1)),
            retry_for: Duration::from_secs(self.mail_retry_for_secs),
            limits: MessageLimits {
                max_text_bytes: self.mail_max_text_bytes.max(1),
                max_html_bytes: self.mail_max_html_bytes.max(1),
            },
        }
    }
}
