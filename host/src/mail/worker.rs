//! The delivery: a task started with the server (`souk serve`, when a relay
//! is configured) that sends what tenants' outboxes hold.
//!
//! It learns which tenants have mail due from the work hints
//! (`WorkKind::Email`): a committed call that queued mail marked its tenant
//! before the commit (durably, so a restart finds it) and woke this task
//! after. For each due tenant it sends the due messages one by one, records
//! each attempt in the outbox, and settles the hint with the tenant's next
//! retry time (or none). It polls at least every second, so retries come
//! due under a manual clock too, and stops when `shutdown` resolves.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::SqlitePool;
use time::OffsetDateTime;

use super::RetryPolicy;
use super::relay::{Relay, Sent};
use crate::capabilities::notify::outbox::{self, Attempt, QueuedMail};
use crate::error::SoukError;
use crate::work::{WorkHints, WorkKind};

/// Messages read from one tenant's outbox at a time.
const BATCH: i64 = 16;

/// The longest the delivery sleeps between looks at the hints.
const POLL: Duration = Duration::from_secs(1);

/// How long a tenant whose outbox could not be read waits.
const TENANT_RETRY: time::Duration = time::Duration::minutes(1);

/// What the delivery asks of the host (implemented by `Souk`).
pub trait MailHost: Send + Sync {
    /// The database of tenant `tenant_id`; `None` when the tenant no
    /// longer exists (its mail is dropped with it).
    fn tenant_database<'a>(
        &'a self,
        tenant_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SqlitePool>, SoukError>>;

    /// The host clock's time.
    fn now(&self) -> OffsetDateTime;

    /// The work hints.
    fn work(&self) -> &WorkHints;
}

/// Sends queued mail until `shutdown` resolves.
pub async fn run(
    host: Arc<dyn MailHost>,
    relay: Arc<Relay>,
    policy: RetryPolicy,
    shutdown: impl Future<Output = ()>,
) {
    tracing::info!(relay = %relay.target(), "email delivery started");
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        pass(host.as_ref(), &relay, policy).await;
        let wait = host.work().next_due(WorkKind::Email).map_or(POLL, |at| {
            Duration::try_from(at - host.now())
                .unwrap_or(Duration::ZERO)
                .min(POLL)
        });
        tokio::select! {
            () = &mut shutdown => break,
            () = host.work().woken(WorkKind::Email) => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!("email delivery stopped");
}

/// One look at the hints (re-read from the file first): every tenant with
/// mail due is served once.
pub async fn pass(host: &dyn MailHost, relay: &Relay, policy: RetryPolicy) {
    // Hints another process wrote (the CLI's maintenance run queueing a
    // notice): one pragma when there are none.
    if let Err(error) = host.work().refresh().await {
        tracing::warn!(error = %error, "email delivery: the work hints could not be read");
    }
    for due in host.work().due(WorkKind::Email, host.now()) {
        let next = match deliver_tenant(host, relay, policy, &due.tenant_id).await {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(tenant = %due.tenant_id, error = %error, "email delivery: the tenant's outbox could not be served; retrying");
                Some(host.now() + TENANT_RETRY)
            }
        };
        if let Err(error) = host
            .work()
            .settle(&due.tenant_id, WorkKind::Email, due.seq, next)
            .await
        {
            tracing::warn!(tenant = %due.tenant_id, error = %error, "email delivery: the work hint could not be settled");
        }
    }
}

/// Sends every message of `tenant_id` due now; answers when the next one is
/// due (`None`: nothing is queued).
async fn deliver_tenant(
    host: &dyn MailHost,
    relay: &Relay,
    policy: RetryPolicy,
    tenant_id: &str,
) -> Result<Option<OffsetDateTime>, SoukError> {
    let Some(pool) = host.tenant_database(tenant_id).await? else {
        return Ok(None);
    };
    let mut conn = pool.acquire().await?;
    loop {
        let batch = outbox::due(&mut conn, host.now(), BATCH).await?;
        if batch.is_empty() {
            break;
        }
        for item in batch {
            match item {
                Ok(mail) => {
                    let attempt = attempt(relay, policy, &mail, host).await;
                    match &attempt {
                        Attempt::Sent(answer) => {
                            tracing::info!(tenant = %tenant_id, mail = %mail.id, %answer, "email sent");
                        }
                        Attempt::Retry { reason, .. } => {
                            tracing::info!(tenant = %tenant_id, mail = %mail.id, %reason, "email deferred");
                        }
                        Attempt::Failed(reason) => {
                            tracing::warn!(tenant = %tenant_id, mail = %mail.id, %reason, "email failed");
                        }
                    }
                    record(&mut conn, &mail.id, &attempt, host.now()).await?;
                }
                Err((id, reason)) => {
                    outbox::fail_unsendable(&mut conn, &id, &reason, host.now()).await?;
                }
            }
        }
    }
    Ok(outbox::next_due(&mut conn).await?)
}

/// Tries a little longer than a host statement's busy timeout to record an
/// attempt: a message the relay took but the outbox does not know as sent
/// would be sent again (delivery is at least once; a resend carries the
/// same Message-ID, so a receiver can tell).
const RECORD_TRIES: u32 = 4;

/// Records `attempt` of message `id`, retrying when the tenant database is
/// busy (a long job holding its write lock).
async fn record(
    conn: &mut sqlx::SqliteConnection,
    id: &str,
    attempt: &Attempt,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let mut tries = 1;
    loop {
        match outbox::record(conn, id, attempt, now).await {
            Ok(()) => return Ok(()),
            Err(error) if tries < RECORD_TRIES => {
                tracing::warn!(mail = %id, error = %error, "email delivery: the attempt could not be recorded yet; trying again");
                tries += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Tries `mail` once and classifies the outcome.
async fn attempt(
    relay: &Relay,
    policy: RetryPolicy,
    mail: &QueuedMail,
    host: &dyn MailHost,
) -> Attempt {
    // The backoff counts from when the attempt began.
    let began = host.now();
    let message = match relay.build(&mail.id, &mail.to, &mail.content, mail.queued_at) {
        Ok(message) => message,
        Err(reason) => return Attempt::Failed(reason),
    };
    match relay.send(message).await {
        Sent::Accepted(answer) => Attempt::Sent(answer),
        Sent::Permanent(reason) => Attempt::Failed(reason),
        Sent::Transient(reason) => {
            policy.after_transient(reason, mail.attempts, mail.queued_at, began)
        }
    }
}
