//! Refunds: the operator refunds a paid invoice. A Stripe payment is
//! refunded through Stripe's API (`POST /v1/refunds` with an
//! `Idempotency-Key`, so a retry is one refund); a wallet or bank payment
//! is refunded outside Souk and recorded with the operator's reference.
//! Either way one transaction voids the invoice and issues a credit note
//! for its total, numbered without gaps per fiscal year (`CN-2026/27-…`),
//! audited.
//!
//! **A refund ends what it paid for** (unless the operator passes
//! `keep_access`): for each subscription the invoice's purchase names, on
//! the plan it bought, a prepaid period not yet begun is taken back if
//! there is one (the subscription is shortened by a period); otherwise,
//! when no later paid invoice bought the module, the refunded invoice paid
//! the current period and the subscription is canceled now — access ends,
//! and a subscription Stripe renews is canceled at Stripe first
//! (`DELETE`), so it is not charged again; an older invoice's period is
//! over and changes nothing. A subscription on another plan since, or
//! already canceled or expired, is left alone. Each change is in the subscription's history (actor
//! `operator`) and in the refund's audit event, in the same transaction
//! as the credit note.

use serde::Serialize;

use super::inbox::Provider;
use super::service::Payments;
use super::store::{self, InvoiceStatus};
use crate::clock::rfc3339;
use crate::control_plane::audit;
use crate::error::SoukError;
use crate::tenancy::Tenant;

/// A credit note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreditNote {
    /// `CN-2026/27-000001`.
    pub number: String,
    /// The voided invoice's id.
    pub invoice: String,
    /// Its total, minor units.
    pub amount: i64,
    /// Its currency.
    pub currency: String,
    /// Why.
    pub reason: String,
    /// Stripe's refund id, or the operator's reference.
    pub refund_reference: String,
    /// What the refund did to the subscriptions it paid for, as
    /// `module: change` (`canceled`, `prepaid_period_refunded`); empty
    /// with `keep_access`.
    pub subscriptions: Vec<String>,
}

impl Payments<'_> {
    /// Operator: refunds paid invoice `invoice_id` of `tenant` (see the
    /// module docs). `reference` is required for payments refunded outside
    /// Souk (eSewa, Khalti, bank transfer) and ignored for Stripe;
    /// `keep_access` leaves the subscriptions it paid for as they are.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] for an invoice not the tenant's;
    /// [`SoukError::Conflict`] unless paid; [`SoukError::Invalid`] without a
    /// reason or a needed reference; [`SoukError::ProviderUnavailable`]
    /// when Stripe does not answer (nothing changed; retry).
    pub async fn refund(
        &self,
        tenant: &Tenant,
        invoice_id: &str,
        reason: &str,
        reference: Option<&str>,
        keep_access: bool,
    ) -> Result<CreditNote, SoukError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(SoukError::Invalid(
                "`reason` must be 1 to 500 characters".into(),
            ));
        }
        let invoice = self.invoice(Some(tenant), invoice_id).await?;
        if invoice.status != InvoiceStatus::Paid {
            return Err(SoukError::Conflict(format!(
                "invoice {} is {}; only a paid invoice is refunded",
                invoice.number.as_deref().unwrap_or(&invoice.id),
                invoice.status.as_str()
            )));
        }
        let provider = invoice.provider.as_deref().and_then(Provider::parse);
        let refund_reference = match (provider, self.providers.stripe()) {
            (Some(Provider::Stripe), Some(stripe)) => {
                let intent = invoice.provider_reference.as_deref().unwrap_or("");
                stripe
                    .refund(intent, &format!("refund-{}", invoice.id))
                    .await
                    .map_err(|e| match e {
                        super::providers::ProviderError::Refused { .. } => {
                            SoukError::Conflict(e.to_string())
                        }
                        e => SoukError::ProviderUnavailable(e.to_string()),
                    })?
            }
            _ => super::manual::parse_reference(reference.unwrap_or(""))?,
        };
        let items = if keep_access {
            Vec::new()
        } else {
            let mut conn = self.control.pool().acquire().await?;
            let paid = store::list(&mut conn, Some(&tenant.id), 500).await?;
            // Whether a later paid invoice bought the same module: then the
            // refunded one's period is over (or it was prepaid, see
            // `Billing::refund_ends`).
            let instant = |text: &Option<String>| {
                text.as_deref().and_then(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
            };
            let refunded_at = instant(&invoice.paid_at);
            let newer = |module: &str| {
                paid.iter().any(|other| {
                    other.id != invoice.id
                        && other.status == InvoiceStatus::Paid
                        && instant(&other.paid_at) > refunded_at
                        && other.purchase.items.iter().any(|i| i.module == module)
                })
            };
            invoice
                .purchase
                .items
                .iter()
                .map(|item| (item.clone(), !newer(&item.module)))
                .collect::<Vec<_>>()
        };
        // Stripe stops renewing what the refund cancels before anything of
        // ours changes; a retry after a failure here refunds nothing twice
        // (the refund's Idempotency-Key) and asks Stripe again.
        for (item, newest) in &items {
            if self
                .billing
                .refund_would_cancel(&tenant.id, &item.module, &item.plan, *newest)
                .await?
            {
                self.stripe_stop(&tenant.id, &item.module).await?;
            }
        }
        let now = self.clock.now();
        let mut tx = self.control.pool().begin_with("BEGIN IMMEDIATE").await?;
        store::void(&mut tx, &invoice.id, now).await?;
        let number_text = invoice.number.as_deref().unwrap_or(&invoice.id).to_owned();
        let mut ended = Vec::new();
        for (item, newest) in &items {
            let change = self
                .billing
                .refund_ends(
                    &mut tx,
                    &tenant.id,
                    &item.module,
                    &item.plan,
                    *newest,
                    &format!("refund of invoice {number_text}"),
                )
                .await?;
            if let Some(change) = change {
                ended.push(format!("{}: {}", item.module, change.as_str()));
            }
        }
        let year = self.config.fiscal_year.year_of(now).label();
        let key = format!("CN {year}");
        let sequence: i64 = sqlx::query_scalar(
            "INSERT INTO invoice_sequences (fiscal_year, last_number) VALUES (?, 1) \
             ON CONFLICT (fiscal_year) DO UPDATE SET last_number = last_number + 1 \
             RETURNING last_number",
        )
        .bind(&key)
        .fetch_one(&mut *tx)
        .await?;
        let number = format!("CN-{year}-{sequence:06}");
        sqlx::query(
            "INSERT INTO credit_notes (id, invoice_id, tenant_id, number, amount, currency, reason, \
             refund_reference, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(format!("cn_{}", hex::encode(rand::random::<[u8; 12]>())))
        .bind(&invoice.id)
        .bind(&tenant.id)
        .bind(&number)
        .bind(invoice.totals.total)
        .bind(invoice.currency.as_str())
        .bind(reason)
        .bind(&refund_reference)
        .bind(rfc3339(now))
        .execute(&mut *tx)
        .await?;
        let at = rfc3339(now);
        let effect = if keep_access {
            "access kept".to_owned()
        } else if ended.is_empty() {
            "no subscription changed".to_owned()
        } else {
            ended.join(", ")
        };
        let detail = format!(
            "invoice {number_text} refunded, credit note {number}, reference {refund_reference} ({effect}): {reason}"
        );
        audit::record_host_event(
            &mut tx,
            &audit::NewAuditEvent {
                at: &at,
                tenant_id: &tenant.id,
                module: "",
                action: "payment_refund",
                from: None,
                to: None,
                actor_kind: Some("operator"),
                actor_id: "operator",
                actor_name: "operator",
                detail: Some(&detail),
            },
        )
        .await?;
        tx.commit().await?;
        for (item, _) in &items {
            self.billing.forget_grant(&tenant.id, &item.module);
        }
        Ok(CreditNote {
            number,
            invoice: invoice.id,
            amount: invoice.totals.total,
            currency: invoice.currency.as_str().to_owned(),
            reason: reason.to_owned(),
            refund_reference,
            subscriptions: ended,
        })
    }
}
