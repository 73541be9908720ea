//! Checkout, returns and reconciliation: the paths that talk to providers.
//!
//! - [`Payments::checkout`]: a purchase's invoice (an open one for the very
//!   same purchase and total is reused, so a retry after a provider
//!   timeout takes no new number), an attempt stored *before* the provider
//!   is called, then the provider's initiation and what the browser does
//!   next.
//! - [`Payments::esewa_return`], [`Payments::khalti_return`]: the browser
//!   comes back; whatever it carries, only the provider's lookup is
//!   recorded (through the inbox).
//! - [`Payments::reconcile`]: attempts pending, ambiguous or unanswered
//!   past the configured delay are looked up again until final; a
//!   provider's failure reschedules them, never drops them.

use serde::Serialize;
use time::Duration;

use super::apply::{ProviderEvent, Recorded};
use super::inbox::{self, Attempt, AttemptStatus, NewAttempt, Provider};
use super::providers::{Initiation, Lookup, NextStep, PaymentProvider, ProviderError};
use super::service::Payments;
use super::store::{self, Invoice, InvoiceStatus};
use crate::billing::service::PurchaseRequest;
use crate::error::SoukError;
use crate::tenancy::Tenant;

/// What a checkout answers.
#[derive(Debug, Clone, Serialize)]
pub struct Checkout {
    /// The invoice (open, numbered).
    #[serde(skip)]
    pub invoice: Invoice,
    /// The payment attempt's id.
    pub attempt: String,
    /// The provider.
    pub provider: &'static str,
    /// What the browser does next.
    pub next: NextStep,
}

/// What a reconciliation run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileReport {
    /// Attempts looked up.
    pub checked: usize,
    /// `attempt: outcome` for each attempt whose lookup was recorded.
    pub outcomes: Vec<String>,
    /// `attempt: error` for each provider that failed; retried later.
    pub errors: Vec<String>,
}

/// Most attempts one reconciliation run looks up.
const RECONCILE_BATCH: u32 = 200;

fn provider_error(e: ProviderError) -> SoukError {
    match e {
        ProviderError::Refused { .. } => SoukError::Conflict(e.to_string()),
        e => SoukError::ProviderUnavailable(e.to_string()),
    }
}

impl Payments<'_> {
    fn provider(&self, provider: Provider) -> Result<&dyn PaymentProvider, SoukError> {
        self.providers.get(provider).ok_or_else(|| {
            SoukError::Invalid(format!(
                "payments by {} are not offered on this host; offered: {}",
                provider.as_str(),
                self.providers.offered().join(", ")
            ))
        })
    }

    /// Buys `request` for `tenant` through `provider`: see the module docs.
    /// `public_url` is Souk's base URL as the browser reaches it (the
    /// configured one wins).
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for a provider not offered, and what
    /// [`Payments::issue_invoice`] answers; [`SoukError::ProviderUnavailable`]
    /// when the provider does not answer (the invoice stays open, the
    /// attempt is marked failed: retry); [`SoukError::Conflict`] when it
    /// refuses the payment.
    pub async fn checkout(
        &self,
        tenant: &Tenant,
        request: PurchaseRequest<'_>,
        provider: Provider,
        buyer_pan: Option<&str>,
        public_url: &str,
    ) -> Result<Checkout, SoukError> {
        self.provider(provider)?;
        let invoice = self.open_invoice(tenant, request, buyer_pan).await?;
        self.start_payment(tenant, invoice, provider, public_url)
            .await
    }

    /// Starts paying open `invoice` of `tenant` through
    /// `provider`: the attempt is stored (and the invoice's other open
    /// attempts canceled) *before* the provider is called, then the
    /// provider's initiation. Shared by [`Payments::checkout`] and the
    /// payment links ([`super::pay_link`]).
    ///
    /// # Errors
    /// As [`Payments::checkout`].
    pub(super) async fn start_payment(
        &self,
        tenant: &Tenant,
        invoice: Invoice,
        provider: Provider,
        public_url: &str,
    ) -> Result<Checkout, SoukError> {
        let adapter = self.provider(provider)?;
        let now = self.clock.now();
        let mut tx = self.control.pool().begin_with("BEGIN IMMEDIATE").await?;
        let provisional = format!("pay_{}", hex::encode(rand::random::<[u8; 12]>()));
        let attempt_id = inbox::create_attempt(
            &mut tx,
            NewAttempt {
                invoice_id: &invoice.id,
                tenant_id: &tenant.id,
                provider,
                provider_ref: &provisional,
                amount: invoice.totals.total,
                currency: invoice.currency,
                status: AttemptStatus::Initiating,
            },
            now,
        )
        .await
        .map_err(super::apply::internal)?;
        // eSewa knows the attempt by our id from the start.
        inbox::set_provider_ref(
            &mut tx,
            &attempt_id,
            &attempt_id,
            AttemptStatus::Initiating,
            Some((now + self.config.reconcile_after).unix_timestamp()),
            now,
        )
        .await
        .map_err(super::apply::internal)?;
        inbox::cancel_others(&mut tx, &invoice.id, &attempt_id, now)
            .await
            .map_err(super::apply::internal)?;
        tx.commit().await?;
        let public_url = self
            .providers
            .public_url
            .as_deref()
            .unwrap_or(public_url)
            .trim_end_matches('/');
        let number = invoice.number.clone().unwrap_or_default();
        let recurring = if provider == Provider::Stripe {
            self.stripe_recurring(tenant, &invoice).await?
        } else {
            None
        };
        let initiation = Initiation {
            attempt_id: &attempt_id,
            invoice_number: &number,
            subtotal: invoice.totals.subtotal,
            tax: invoice.totals.tax,
            total: invoice.totals.total,
            currency: invoice.currency,
            public_url,
            recurring: recurring.as_ref().map(|r| r.as_recurring(&tenant.id)),
        };
        let started = adapter.initiate(&initiation).await;
        let mut conn = self.control.pool().acquire().await?;
        let now = self.clock.now();
        match started {
            Ok(started) => {
                let next_check = (now + self.config.reconcile_after).unix_timestamp();
                inbox::set_provider_ref(
                    &mut conn,
                    &attempt_id,
                    &started.provider_ref,
                    AttemptStatus::Pending,
                    Some(next_check),
                    now,
                )
                .await
                .map_err(super::apply::internal)?;
                Ok(Checkout {
                    invoice,
                    attempt: attempt_id,
                    provider: provider.as_str(),
                    next: started.next,
                })
            }
            Err(e) => {
                // The browser never got a way to pay this attempt: it is
                // over; the invoice stays open for the retry.
                tracing::warn!(provider = provider.as_str(), attempt = %attempt_id, error = %e, "payment initiation failed");
                inbox::update_attempt(
                    &mut conn,
                    &attempt_id,
                    AttemptStatus::Failed,
                    None,
                    None,
                    now,
                )
                .await
                .map_err(super::apply::internal)?;
                Err(match provider_error(e) {
                    SoukError::ProviderUnavailable(why) => SoukError::ProviderUnavailable(format!(
                        "{why}; invoice {number} stays open and nothing was charged"
                    )),
                    other => other,
                })
            }
        }
    }

    /// The open invoice of `tenant` for exactly this purchase and total, or
    /// a new one.
    pub(super) async fn open_invoice(
        &self,
        tenant: &Tenant,
        request: PurchaseRequest<'_>,
        buyer_pan: Option<&str>,
    ) -> Result<Invoice, SoukError> {
        let priced = self.billing.price_purchase(tenant, request).await?;
        let mut conn = self.control.pool().acquire().await?;
        for invoice in store::list(&mut conn, Some(&tenant.id), 20).await? {
            if invoice.status == InvoiceStatus::Open
                && invoice.purchase == priced.purchase
                && invoice.currency == priced.currency
                && invoice
                    .lines
                    .iter()
                    .filter(|l| l.kind != crate::billing::invoice::LineKind::Tax)
                    .cloned()
                    .collect::<Vec<_>>()
                    == priced.lines
            {
                return Ok(invoice);
            }
        }
        drop(conn);
        self.issue_invoice(tenant, request, buyer_pan).await
    }

    /// Looks `attempt` up with its provider and records the answer.
    ///
    /// # Errors
    /// [`SoukError::ProviderUnavailable`] when the provider fails;
    /// database failures.
    pub async fn confirm(&self, attempt: &Attempt) -> Result<Recorded, SoukError> {
        let adapter = self.provider(attempt.provider)?;
        let lookup = adapter.lookup(attempt).await.map_err(provider_error)?;
        self.record_lookup(attempt, &lookup).await
    }

    async fn record_lookup(
        &self,
        attempt: &Attempt,
        lookup: &Lookup,
    ) -> Result<Recorded, SoukError> {
        // One inbox row per (attempt, status): the same answer twice is a
        // repeat; PENDING then COMPLETE are two events.
        let event_id = format!("{}:{}", attempt.provider_ref, lookup.raw_status);
        self.record_event(ProviderEvent {
            provider: attempt.provider,
            event_id: &event_id,
            provider_ref: &attempt.provider_ref,
            status: lookup.status,
            raw_status: &lookup.raw_status,
            amount: lookup.amount,
            currency: lookup.currency,
            occurred_at: self.clock.now(),
            payment_reference: &lookup.payment_reference,
            subscription: lookup.subscription.as_deref(),
        })
        .await
    }

    /// The browser is back from eSewa with `data`: verified, then confirmed
    /// with the status API (the `data` alone proves nothing).
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for `data` that does not verify (nothing is
    /// recorded); [`SoukError::NotFound`] for an unknown transaction;
    /// [`SoukError::ProviderUnavailable`] when the status API fails.
    pub async fn esewa_return(&self, data: &str) -> Result<(Recorded, Attempt), SoukError> {
        let esewa = self
            .providers
            .esewa()
            .ok_or_else(|| SoukError::NotFound("eSewa is not offered on this host".into()))?;
        let verified = esewa.verify(data).map_err(|e| {
            tracing::warn!(error = %e, "eSewa return refused");
            SoukError::Invalid(e.to_string())
        })?;
        self.confirm_by_ref(Provider::Esewa, &verified.transaction_uuid)
            .await
    }

    /// The browser is back from Khalti with `pidx` (the rest of its query is
    /// unsigned and ignored): confirmed with lookup.
    ///
    /// # Errors
    /// As [`Payments::esewa_return`].
    pub async fn khalti_return(&self, pidx: &str) -> Result<(Recorded, Attempt), SoukError> {
        self.confirm_by_ref(Provider::Khalti, pidx).await
    }

    async fn confirm_by_ref(
        &self,
        provider: Provider,
        reference: &str,
    ) -> Result<(Recorded, Attempt), SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        let attempt = inbox::attempt_by_ref(&mut conn, provider, reference)
            .await
            .map_err(super::apply::internal)?
            .ok_or_else(|| SoukError::NotFound("no such payment".into()))?;
        drop(conn);
        let recorded = self.confirm(&attempt).await?;
        Ok((recorded, attempt))
    }

    /// Reconciliation: looks up every attempt due (see the module docs).
    ///
    /// # Errors
    /// Database failures; a provider's failure is reported, not returned.
    pub async fn reconcile(&self) -> Result<ReconcileReport, SoukError> {
        let now = self.clock.now();
        let mut conn = self.control.pool().acquire().await?;
        let due = inbox::due_attempts(&mut conn, now.unix_timestamp(), RECONCILE_BATCH)
            .await
            .map_err(super::apply::internal)?;
        drop(conn);
        let mut report = ReconcileReport::default();
        for attempt in due {
            if self.providers.get(attempt.provider).is_none() {
                continue;
            }
            report.checked += 1;
            match self.confirm(&attempt).await {
                Ok(recorded) => {
                    report
                        .outcomes
                        .push(format!("{}: {}", attempt.id, recorded.outcome.as_str()))
                }
                Err(e) => {
                    tracing::warn!(attempt = %attempt.id, error = %e, "reconciliation lookup failed; retrying later");
                    report.errors.push(format!("{}: {e}", attempt.id));
                    let mut conn = self.control.pool().acquire().await?;
                    let next = (now + self.config.reconcile_after).unix_timestamp();
                    inbox::update_attempt(
                        &mut conn,
                        &attempt.id,
                        attempt.status,
                        attempt.last_event_at,
                        Some(next),
                        now,
                    )
                    .await
                    .map_err(super::apply::internal)?;
                }
            }
        }
        Ok(report)
    }

    /// Attempts still open and older than a day, for the operator.
    ///
    /// # Errors
    /// Database failures.
    pub async fn stuck_attempts(&self) -> Result<Vec<Attempt>, SoukError> {
        let before = self.clock.now() - Duration::days(1);
        let mut conn = self.control.pool().acquire().await?;
        inbox::stuck_attempts(&mut conn, &crate::clock::rfc3339(before))
            .await
            .map_err(super::apply::internal)
    }
}

impl Payments<'_> {
    /// The browser came back to eSewa's failure URL for `attempt_id`: the
    /// page carries nothing signed, so eSewa is asked.
    ///
    /// # Errors
    /// As [`Payments::esewa_return`].
    pub async fn esewa_failure(&self, attempt_id: &str) -> Result<(Recorded, Attempt), SoukError> {
        self.confirm_by_ref(Provider::Esewa, attempt_id).await
    }

    /// Flagged inbox rows, newest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn flagged(&self) -> Result<Vec<inbox::Flagged>, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        inbox::flagged(&mut conn, 500)
            .await
            .map_err(super::apply::internal)
    }
}

/// What a Stripe webhook did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Recorded through the inbox (maybe as a repeat).
    Recorded(Recorded),
    /// An event type Souk does not act on; acknowledged, nothing changed.
    Unhandled,
}

impl Payments<'_> {
    /// The browser is back from Stripe Checkout with its session id:
    /// confirmed by retrieving the session.
    ///
    /// # Errors
    /// As [`Payments::esewa_return`].
    pub async fn stripe_return(&self, session_id: &str) -> Result<(Recorded, Attempt), SoukError> {
        self.confirm_by_ref(Provider::Stripe, session_id).await
    }

    /// A Stripe webhook: `signature` (the `Stripe-Signature` header) is
    /// verified over the raw `body` before anything is read from it, then
    /// the event goes through the inbox keyed by its id:
    ///
    /// - `checkout.session.completed`, `checkout.session.async_payment_succeeded`,
    ///   `checkout.session.async_payment_failed`, `checkout.session.expired`:
    ///   the session's state, applied to its attempt;
    /// - `invoice.paid`, `invoice.payment_failed`,
    ///   `customer.subscription.updated`, `customer.subscription.deleted`:
    ///   a subscription Stripe renews, applied by
    ///   [`Payments::stripe_subscription_event`];
    /// - anything else: acknowledged, unrecorded.
    ///
    /// # Errors
    /// [`SoukError::Invalid`] for a webhook that does not verify (nothing
    /// recorded); [`SoukError::NotFound`] when Stripe is not offered.
    pub async fn stripe_webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<WebhookOutcome, SoukError> {
        use super::providers::stripe;
        let adapter = self
            .providers
            .stripe()
            .ok_or_else(|| SoukError::NotFound("Stripe is not offered on this host".into()))?;
        let refuse = |e: stripe::WebhookError| {
            tracing::warn!(error = %e, "Stripe webhook refused");
            SoukError::Invalid(e.to_string())
        };
        stripe::verify_signature(
            signature.unwrap_or(""),
            body,
            adapter.webhook_secrets(),
            self.clock.now(),
        )
        .map_err(refuse)?;
        let event = stripe::parse_event(body).map_err(refuse)?;
        let occurred_at = time::OffsetDateTime::from_unix_timestamp(event.created)
            .map_err(|_| SoukError::Invalid("the event's `created` is not an instant".into()))?;
        let session_events = [
            "checkout.session.completed",
            "checkout.session.async_payment_succeeded",
            "checkout.session.async_payment_failed",
            "checkout.session.expired",
        ];
        if !session_events.contains(&event.kind.as_str()) {
            return Ok(
                match self.stripe_subscription_event(&event, occurred_at).await? {
                    Some(recorded) => WebhookOutcome::Recorded(recorded),
                    None => WebhookOutcome::Unhandled,
                },
            );
        }
        let mut lookup = stripe::session_lookup(&event.object);
        if event.kind == "checkout.session.async_payment_failed" {
            lookup.status = super::inbox::PaymentStatus::Failed;
        }
        let reference = event.object["id"].as_str().unwrap_or("").to_owned();
        let recorded = self
            .record_event(ProviderEvent {
                provider: Provider::Stripe,
                event_id: &event.id,
                provider_ref: &reference,
                status: lookup.status,
                raw_status: &event.kind,
                amount: lookup.amount,
                currency: lookup.currency,
                occurred_at,
                payment_reference: &lookup.payment_reference,
                subscription: lookup.subscription.as_deref(),
            })
            .await?;
        Ok(WebhookOutcome::Recorded(recorded))
    }
}

impl Payments<'_> {
    /// The browser came back from Stripe's cancel URL for `attempt_id`:
    /// its session is retrieved (nothing from the browser counts).
    ///
    /// # Errors
    /// As [`Payments::esewa_return`].
    pub async fn stripe_cancel(&self, attempt_id: &str) -> Result<(Recorded, Attempt), SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        let attempt = inbox::attempt_by_id(&mut conn, attempt_id, None)
            .await
            .map_err(super::apply::internal)?
            .filter(|a| a.provider == Provider::Stripe)
            .ok_or_else(|| SoukError::NotFound("no such payment".into()))?;
        drop(conn);
        let recorded = self.confirm(&attempt).await?;
        Ok((recorded, attempt))
    }
}
