//! The host's own notices to a tenant's admins (trial ending, payment due,
//! a renewal invoice with its payment link, invitations): queued in the tenant's outbox like a module's mail, as
//! kind `notice`, never counted against a module's meter, and once per
//! dedupe key and admin, so a step that runs again queues nothing new.

use sqlx::SqlitePool;
use time::OffsetDateTime;

use crate::billing::service::Billing;
use crate::billing::store::OutboxEvent;
use crate::capabilities::notify::outbox::{self, NewMail, Origin};
use crate::capabilities::notify::{
    Addressee, Content, DirectoryEntry, MessageLimits, RecipientDirectory,
};
use crate::clock::Clock;
use crate::control_plane::{ControlPlane, mail_notices};
use crate::error::SoukError;
use crate::tenancy::Tenancy;
use crate::work::{WorkHints, WorkKind, WorkMarks};

/// The billing outbox kinds the host emails to a tenant's admins.
pub const EMAILED_KINDS: [&str; 3] = ["trial_ending", "payment_due", "renewal_invoice"];

/// A notice to send to every admin of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Queued once per key and admin (e.g. `trial_ending/<tenant>/<module>/<instant>`).
    pub key: String,
    /// The subject (one line).
    pub subject: String,
    /// The text.
    pub text: String,
}

/// The notice for a billing outbox event of `kind` about `module` (its
/// JSON `payload`), if the host emails that kind: `trial_ending`,
/// `payment_due` and `renewal_invoice` (with the invoice's payment link
/// when the payload has one). `key` is the event's own dedupe key.
pub fn for_billing_event(
    kind: &str,
    tenant_slug: &str,
    module: &str,
    payload: &serde_json::Value,
    key: String,
) -> Option<Notice> {
    let plan = payload.get("plan").and_then(|v| v.as_str()).unwrap_or("?");
    let period_end = payload
        .get("period_end")
        .and_then(|v| v.as_str())
        .unwrap_or("?");
    let (subject, text) = match kind {
        "trial_ending" => (
            format!("Your trial of {module} ends soon"),
            format!(
                "The trial of the {plan} plan of {module} for {tenant_slug} ends at {period_end}.\n\
                 Choose a paid plan before then to keep its features; otherwise the module \
                 falls back to its free plan.\n"
            ),
        ),
        "payment_due" => (
            format!("Payment due for {module}"),
            format!(
                "The {plan} plan of {module} for {tenant_slug} could not be renewed: a payment \
                 is due.\nPay before the grace period ends to keep its features.\n"
            ),
        ),
        "renewal_invoice" => renewal_invoice(tenant_slug, module, plan, period_end, payload),
        _ => return None,
    };
    Some(Notice { key, subject, text })
}

/// The subject and text of a renewal invoice's notice.
fn renewal_invoice(
    tenant_slug: &str,
    module: &str,
    plan: &str,
    period_end: &str,
    payload: &serde_json::Value,
) -> (String, String) {
    let text_of = |name: &str| payload.get(name).and_then(|v| v.as_str()).unwrap_or("?");
    let number = text_of("number");
    let total = format!("{} {}", text_of("currency"), text_of("total_text"));
    let how = match payload.get("pay_url").and_then(|v| v.as_str()) {
        Some(url) => format!(
            "Pay it online from this page (no sign-in needed; the link works \
             until {}):\n\n{url}\n",
            text_of("pay_url_expires")
        ),
        None => "Pay it from Souk's checkout for the same plan.\n".to_owned(),
    };
    (
        format!("Invoice {number} to renew {module}"),
        format!(
            "The {plan} plan of {module} for {tenant_slug} renews at {period_end}.\n\
             Invoice {number} for {total} is due before then.\n\n{how}\n\
             Unpaid at the end of the period, the subscription becomes past due and its \
             grace period starts.\n"
        ),
    )
}

/// Queues `notice` to every active admin of `tenant_id` in the tenant
/// database `pool` (see [`queue_to`]). Answers how many messages were
/// queued (0 when every admin has it already, or the tenant has no admin
/// with a usable address — each skipped admin is logged).
///
/// # Errors
/// As [`queue_to`]; directory failures.
pub async fn queue(
    pool: &SqlitePool,
    directory: &dyn RecipientDirectory,
    hints: &WorkHints,
    tenant_id: &str,
    notice: &Notice,
    now: OffsetDateTime,
) -> Result<usize, SoukError> {
    let admins = directory
        .admins(tenant_id)
        .await
        .map_err(|e| SoukError::Internal(anyhow::anyhow!("{e}")))?;
    queue_to(pool, hints, tenant_id, &admins, notice, now).await
}

/// Queues `notice` to each of `recipients` (users of `tenant_id`, e.g. the
/// one an invitation is for) in the tenant database `pool`, in one
/// transaction, once per notice key and user; marks the work hint before
/// the commit, and the delivery wakes after it. Answers how many messages
/// were queued; a recipient without a usable address is logged and
/// skipped.
///
/// # Errors
/// [`SoukError::Invalid`] for a notice whose subject or text breaks the
/// message rules (a host bug); database failures.
pub async fn queue_to(
    pool: &SqlitePool,
    hints: &WorkHints,
    tenant_id: &str,
    recipients: &[DirectoryEntry],
    notice: &Notice,
    now: OffsetDateTime,
) -> Result<usize, SoukError> {
    let content = Content::parse(
        &notice.subject,
        &notice.text,
        None,
        MessageLimits::default(),
    )
    .map_err(|e| SoukError::Invalid(format!("notice {}: {e}", notice.key)))?;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut queued = 0;
    for user in recipients {
        let to = match Addressee::parse(&user.address, &user.name) {
            Ok(to) => to,
            Err(error) => {
                tracing::warn!(tenant = %tenant_id, user = %user.user_id, error = %error, "notice not queued for a user without a usable address");
                continue;
            }
        };
        let origin = Origin::Notice {
            dedupe_key: format!("{}/{}", notice.key, user.user_id),
        };
        let id = outbox::new_id();
        let mail = NewMail {
            id: &id,
            origin: &origin,
            to_user: &user.user_id,
            to: &to,
            content: &content,
            at: now,
        };
        if outbox::queue(&mut tx, mail).await? {
            queued += 1;
        }
    }
    // Marked before the commit (durably); the guard wakes the delivery
    // when dropped, after the commit.
    let marked = if queued > 0 {
        let mut marks = WorkMarks::default();
        marks.mark(WorkKind::Email);
        Some(hints.mark(tenant_id, marks, now).await?)
    } else {
        None
    };
    tx.commit().await?;
    drop(marked);
    Ok(queued)
}

/// Turns the billing outbox's events into email notices to each tenant's
/// admins (built per run by the composition root, `Souk::run_maintenance`).
pub struct BillingNotices<'a> {
    /// The cursor of events already handled.
    pub control: &'a ControlPlane,
    /// The billing outbox.
    pub billing: &'a Billing,
    /// The tenants and their databases.
    pub tenancy: &'a Tenancy,
    /// The directory of admins.
    pub directory: &'a dyn RecipientDirectory,
    /// Where queued mail is hinted.
    pub work: &'a WorkHints,
    /// The host clock.
    pub clock: &'a dyn Clock,
}

/// Billing outbox events read per step.
const EVENTS_PER_STEP: i64 = 500;

impl BillingNotices<'_> {
    /// Queues a notice for every billing event since the last run that the
    /// host emails ([`for_billing_event`]), then moves the cursor past
    /// them. Answers how many messages were queued. A failure stops the run
    /// at the event that failed (the cursor stays before it; a retried
    /// event queues nothing twice).
    ///
    /// # Errors
    /// Database and directory failures.
    pub async fn run(&self) -> Result<usize, SoukError> {
        let mut queued = 0;
        loop {
            let after = {
                let mut conn = self.control.pool().acquire().await?;
                mail_notices::cursor(&mut conn).await?
            };
            let events = self.billing.outbox(None, after, EVENTS_PER_STEP).await?;
            let Some(last) = events.last().map(|e| e.id) else {
                return Ok(queued);
            };
            let mut handled = after;
            let mut failure = None;
            for event in &events {
                match self.handle(event).await {
                    Ok(n) => {
                        queued += n;
                        handled = event.id;
                    }
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
            }
            let mut conn = self.control.pool().acquire().await?;
            mail_notices::advance(&mut conn, handled).await?;
            if let Some(error) = failure {
                return Err(error);
            }
            if (events.len() as i64) < EVENTS_PER_STEP || last == after {
                return Ok(queued);
            }
        }
    }

    async fn handle(&self, event: &OutboxEvent) -> Result<usize, SoukError> {
        if !EMAILED_KINDS.contains(&event.kind.as_str()) {
            return Ok(0);
        }
        let payload: serde_json::Value =
            serde_json::from_str(&event.payload).unwrap_or(serde_json::Value::Null);
        let tenant = match self.tenancy.by_id(&event.tenant_id).await {
            Ok(tenant) => tenant,
            // A tenant removed since: nobody to tell.
            Err(SoukError::NotFound(_)) => return Ok(0),
            Err(error) => return Err(error),
        };
        let Some(notice) = for_billing_event(
            &event.kind,
            &tenant.slug,
            &event.module_slug,
            &payload,
            format!("billing-outbox/{}", event.id),
        ) else {
            return Ok(0);
        };
        let pool = self.tenancy.database(&tenant).await?;
        queue(
            &pool,
            self.directory,
            self.work,
            &tenant.id,
            &notice,
            self.clock.now(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_invoice_notice_carries_the_total_and_the_payment_link() {
        let payload = serde_json::json!({
            "number": "INV-2082/83-000002",
            "plan": "pro",
            "currency": "NPR",
            "total_text": "563.87",
            "period_end": "2026-02-01T00:00:00Z",
            "pay_url": "https://souk.example/pay/abc.def",
            "pay_url_expires": "2026-02-28T00:00:00Z",
        });
        let notice =
            for_billing_event("renewal_invoice", "acme", "cards", &payload, "k".into()).unwrap();
        assert_eq!(notice.subject, "Invoice INV-2082/83-000002 to renew cards");
        for expected in [
            "NPR 563.87",
            "https://souk.example/pay/abc.def",
            "2026-02-28T00:00:00Z",
            "renews at 2026-02-01T00:00:00Z",
            "past due",
        ] {
            assert!(
                notice.text.contains(expected),
                "{expected:?} in {}",
                notice.text
            );
        }
        // The text passes the message rules (a notice that does not is
        // never queued).
        assert!(
            Content::parse(
                &notice.subject,
                &notice.text,
                None,
                MessageLimits::default()
            )
            .is_ok()
        );
        // Without a link (a host without a link key): the checkout instead.
        let mut bare = payload.clone();
        bare["pay_url"] = serde_json::Value::Null;
        let notice =
            for_billing_event("renewal_invoice", "acme", "cards", &bare, "k".into()).unwrap();
        assert!(!notice.text.contains("/pay/"), "{}", notice.text);
        assert!(notice.text.contains("checkout"), "{}", notice.text);
        assert!(for_billing_event("renewed", "acme", "cards", &payload, "k".into()).is_none());
    }
}
