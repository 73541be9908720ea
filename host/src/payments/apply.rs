//! Every provider event and confirmation goes through
//! [`Payments::record_event`]: one `BEGIN IMMEDIATE` transaction writes
//! the inbox row (provider, event id) *and* everything the event changes —
//! the attempt, the invoice, the subscriptions through
//! [`Billing::apply_paid`](crate::billing::service::Billing::apply_paid).
//! So a process killed between a provider's confirmation and the grant
//! has done neither, and the next confirmation (a retried webhook, the
//! return page reloaded, reconciliation) does both, once; the same event
//! twice finds its inbox row and changes nothing.
//!
//! Rules, in order:
//! 1. an event already in the inbox changes nothing (its first outcome is
//!    answered again);
//! 2. an event for no known attempt is flagged;
//! 3. a confirmed payment: of an attempt already paid — ignored; of a
//!    canceled attempt, or of another amount or currency than the invoice's
//!    total, or whose subscriptions no longer allow it — flagged for the
//!    operator and never granted; otherwise granted;
//! 4. anything else older than the newest event applied to the attempt is
//!    ignored (it cannot move the attempt backwards), as is anything about
//!    an attempt already final;
//! 5. pending and ambiguous hold the attempt for reconciliation; a failure
//!    marks it failed (a later confirmed payment is still applied);
//!    a refund of a paid attempt is flagged for the operator.

use time::OffsetDateTime;

pub use super::inbox::PaymentStatus;
use super::inbox::{self, AttemptStatus, InboxEntry, Outcome, Provider};
use super::service::Payments;
use super::store::{self, InvoiceStatus};
use crate::billing::plans::Currency;
use crate::error::SoukError;

/// One provider event or confirmation, parsed at the boundary.
#[derive(Debug, Clone, Copy)]
pub struct ProviderEvent<'a> {
    /// Who says it.
    pub provider: Provider,
    /// The inbox key: Stripe's event id, eSewa's or Khalti's transaction
    /// id with the status, a bank transfer's reference.
    pub event_id: &'a str,
    /// Which attempt: the provider's reference of it.
    pub provider_ref: &'a str,
    /// What it says.
    pub status: PaymentStatus,
    /// The provider's own word for it, recorded as is.
    pub raw_status: &'a str,
    /// The amount it names, minor units.
    pub amount: Option<i64>,
    /// The currency it names.
    pub currency: Option<Currency>,
    /// When it happened by the provider's account (its event time), or
    /// when Souk learnt it.
    pub occurred_at: OffsetDateTime,
    /// The payment's reference printed on the invoice (eSewa `ref_id`,
    /// Khalti `transaction_id`, Stripe payment intent, bank reference).
    pub payment_reference: &'a str,
    /// The provider-side subscription a confirmed payment starts (Stripe's
    /// `sub_...` in `subscription` mode): linked to the subscription it
    /// grants, in the same transaction, so the provider's later renewals
    /// find it ([`super::stripe_links`]).
    pub subscription: Option<&'a str>,
}

/// What recording an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The outcome (the first one, for a repeated event).
    pub outcome: Outcome,
    /// Why, for ignored and flagged events.
    pub reason: Option<String>,
    /// The event was already in the inbox; nothing changed now.
    pub repeated: bool,
    /// The attempt it concerned, when known.
    pub attempt_id: Option<String>,
    /// The invoice it concerned, when known.
    pub invoice_id: Option<String>,
}

impl Payments<'_> {
    /// Records `event` in the inbox and applies it (see the module docs).
    ///
    /// # Errors
    /// Database failures only: every refusal is an outcome, recorded.
    pub async fn record_event(&self, event: ProviderEvent<'_>) -> Result<Recorded, SoukError> {
        let mut tx = self.control.pool().begin_with("BEGIN IMMEDIATE").await?;
        let now = self.clock.now();
        if let Some((outcome, reason)) = inbox::recorded(&mut tx, event.provider, event.event_id)
            .await
            .map_err(internal)?
        {
            return Ok(Recorded {
                outcome,
                reason,
                repeated: true,
                attempt_id: None,
                invoice_id: None,
            });
        }
        let occurred = event.occurred_at.unix_timestamp();
        let Some(attempt) = inbox::attempt_by_ref(&mut tx, event.provider, event.provider_ref)
            .await
            .map_err(internal)?
        else {
            let reason = "no payment attempt has this reference".to_owned();
            self.write(&mut tx, &event, None, Outcome::Flagged, Some(&reason))
                .await?;
            tx.commit().await?;
            tracing::warn!(
                provider = event.provider.as_str(),
                "payment event for an unknown attempt flagged"
            );
            return Ok(recorded(Outcome::Flagged, Some(reason), None, None));
        };
        let older = attempt.last_event_at.is_some_and(|last| occurred < last);
        let newest = Some(attempt.last_event_at.map_or(occurred, |l| l.max(occurred)));
        let (outcome, reason): (Outcome, Option<String>) = match event.status {
            PaymentStatus::Completed => match attempt.status {
                AttemptStatus::Paid => {
                    (Outcome::Ignored, Some("the attempt is already paid".into()))
                }
                AttemptStatus::Canceled => (
                    Outcome::Flagged,
                    Some("a payment arrived for a canceled attempt".into()),
                ),
                _ if event.amount.is_some_and(|a| a != attempt.amount)
                    || event.currency.is_some_and(|c| c != attempt.currency) =>
                {
                    (
                        Outcome::Flagged,
                        Some(format!(
                            "the provider confirmed {} {}, the invoice asks {} {}",
                            event.amount.map_or("?".into(), |a| a.to_string()),
                            event.currency.map_or(attempt.currency, |c| c),
                            attempt.amount,
                            attempt.currency
                        )),
                    )
                }
                _ => self.grant(&mut tx, &attempt, &event, newest, now).await?,
            },
            _ if !attempt.status.is_open() && attempt.status != AttemptStatus::Failed => {
                if event.status == PaymentStatus::Refunded && attempt.status == AttemptStatus::Paid
                {
                    (
                        Outcome::Flagged,
                        Some("the provider reports a refund of a paid attempt".into()),
                    )
                } else {
                    (
                        Outcome::Ignored,
                        Some(format!(
                            "the attempt is already {}",
                            attempt.status.as_str()
                        )),
                    )
                }
            }
            _ if older => (
                Outcome::Ignored,
                Some("older than the newest event applied to the attempt".into()),
            ),
            PaymentStatus::Pending | PaymentStatus::Ambiguous => {
                let status = if event.status == PaymentStatus::Pending {
                    AttemptStatus::Pending
                } else {
                    AttemptStatus::Ambiguous
                };
                let next = (now + self.config.reconcile_after).unix_timestamp();
                inbox::update_attempt(&mut tx, &attempt.id, status, newest, Some(next), now)
                    .await
                    .map_err(internal)?;
                (Outcome::Held, None)
            }
            PaymentStatus::Failed | PaymentStatus::Refunded => {
                inbox::update_attempt(
                    &mut tx,
                    &attempt.id,
                    AttemptStatus::Failed,
                    newest,
                    None,
                    now,
                )
                .await
                .map_err(internal)?;
                (Outcome::Failed, None)
            }
        };
        self.write(
            &mut tx,
            &event,
            Some(&attempt.id),
            outcome,
            reason.as_deref(),
        )
        .await?;
        tx.commit().await?;
        if outcome == Outcome::Flagged {
            tracing::warn!(
                provider = event.provider.as_str(),
                attempt = %attempt.id,
                reason = reason.as_deref().unwrap_or(""),
                "payment flagged for the operator"
            );
        }
        if outcome == Outcome::Granted
            && let Ok(Some(invoice)) = store::load(
                &mut *self.control.pool().acquire().await?,
                &attempt.invoice_id,
                None,
            )
            .await
        {
            self.billing
                .refresh_after_payment(&attempt.tenant_id, &invoice.purchase);
        }
        Ok(recorded(
            outcome,
            reason,
            Some(attempt.id),
            Some(attempt.invoice_id),
        ))
    }

    /// Applies a confirmed payment of `attempt` inside `tx`: the invoice
    /// paid, the subscriptions moved, the attempt paid — or, when the
    /// invoice or a subscription no longer allows it, nothing of that and a
    /// flag (a savepoint undoes a half-applied bundle).
    async fn grant(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        attempt: &inbox::Attempt,
        event: &ProviderEvent<'_>,
        newest: Option<i64>,
        now: OffsetDateTime,
    ) -> Result<(Outcome, Option<String>), SoukError> {
        let invoice = store::load(tx, &attempt.invoice_id, None)
            .await?
            .ok_or_else(|| SoukError::Internal(anyhow::anyhow!("attempt without its invoice")))?;
        if invoice.status != InvoiceStatus::Open {
            return Ok((
                Outcome::Flagged,
                Some(format!(
                    "a payment arrived for an invoice that is {}",
                    invoice.status.as_str()
                )),
            ));
        }
        let mut savepoint = sqlx::Acquire::begin(&mut **tx).await?;
        let reference = format!("{} {}", event.provider.as_str(), event.payment_reference);
        match self
            .billing
            .apply_paid(
                &mut savepoint,
                &attempt.tenant_id,
                &invoice.purchase,
                invoice.currency,
                &reference,
            )
            .await
        {
            Ok(()) => {
                if let (Provider::Stripe, Some(subscription)) = (event.provider, event.subscription)
                {
                    super::stripe_links::link(
                        &mut savepoint,
                        subscription,
                        attempt,
                        &invoice.purchase,
                        now,
                    )
                    .await?;
                }
                savepoint.commit().await?
            }
            Err(SoukError::Conflict(why) | SoukError::Invalid(why) | SoukError::NotFound(why)) => {
                savepoint.rollback().await?;
                return Ok((
                    Outcome::Flagged,
                    Some(format!("paid, but not granted: {why}")),
                ));
            }
            Err(e) => return Err(e),
        }
        store::mark_paid(
            tx,
            &invoice.id,
            event.provider.as_str(),
            event.payment_reference,
            now,
        )
        .await?;
        inbox::update_attempt(tx, &attempt.id, AttemptStatus::Paid, newest, None, now)
            .await
            .map_err(internal)?;
        inbox::cancel_others(tx, &invoice.id, &attempt.id, now)
            .await
            .map_err(internal)?;
        Ok((Outcome::Granted, None))
    }

    async fn write(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        event: &ProviderEvent<'_>,
        attempt_id: Option<&str>,
        outcome: Outcome,
        reason: Option<&str>,
    ) -> Result<(), SoukError> {
        let entry = InboxEntry {
            provider: event.provider,
            event_id: event.event_id,
            attempt_id,
            status: event.raw_status,
            amount: event.amount,
            currency: event.currency,
            occurred_at: event.occurred_at.unix_timestamp(),
            outcome,
            reason,
        };
        inbox::record(tx, entry, self.clock.now())
            .await
            .map_err(internal)?;
        Ok(())
    }
}

fn recorded(
    outcome: Outcome,
    reason: Option<String>,
    attempt_id: Option<String>,
    invoice_id: Option<String>,
) -> Recorded {
    Recorded {
        outcome,
        reason,
        repeated: false,
        attempt_id,
        invoice_id,
    }
}

/// An inbox store failure as the host's own.
pub(super) fn internal(e: inbox::InboxError) -> SoukError {
    match e {
        inbox::InboxError::Database(e) => e.into(),
        e => SoukError::Internal(anyhow::anyhow!(e.to_string())),
    }
}
