//! Bank transfers the operator records by hand: the invoice is paid
//! through the same inbox as every provider's confirmation (so the
//! subscription moves once, through the state machine), and the
//! operator's act is written to the tenant's audit trail in the
//! transaction that creates the payment attempt.

use super::apply::{PaymentStatus, ProviderEvent, Recorded};
use super::inbox::{self, AttemptStatus, NewAttempt, Provider};
use super::service::Payments;
use super::store::InvoiceStatus;
use crate::clock::rfc3339;
use crate::control_plane::audit;
use crate::error::SoukError;
use crate::tenancy::Tenant;

/// A bank transfer's reference: 1 to 100 printable characters.
///
/// # Errors
/// [`SoukError::Invalid`] otherwise.
pub fn parse_reference(text: &str) -> Result<String, SoukError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > 100 || text.chars().any(char::is_control) {
        return Err(SoukError::Invalid(
            "`reference` must be 1 to 100 printable characters (the bank transfer's reference)"
                .into(),
        ));
    }
    Ok(text.to_owned())
}

impl Payments<'_> {
    /// Operator: open invoice `invoice_id` of `tenant` was paid by bank
    /// transfer `reference`. The same reference twice changes nothing.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] for an invoice not the tenant's;
    /// [`SoukError::Conflict`] unless it is open (or already paid by this
    /// very reference); [`SoukError::Invalid`] for a reference that is
    /// not one.
    pub async fn mark_paid_by_transfer(
        &self,
        tenant: &Tenant,
        invoice_id: &str,
        reference: &str,
    ) -> Result<Recorded, SoukError> {
        let reference = parse_reference(reference)?;
        let invoice = self.invoice(Some(tenant), invoice_id).await?;
        let provider_ref = format!("{}:{reference}", invoice.id);
        let now = self.clock.now();
        let mut tx = self.control.pool().begin_with("BEGIN IMMEDIATE").await?;
        let existing = inbox::attempt_by_ref(&mut tx, Provider::Manual, &provider_ref)
            .await
            .map_err(super::apply::internal)?;
        if existing.is_none() {
            if invoice.status != InvoiceStatus::Open {
                return Err(SoukError::Conflict(format!(
                    "invoice {} is {}; only an open invoice can be marked paid",
                    invoice.number.as_deref().unwrap_or(&invoice.id),
                    invoice.status.as_str()
                )));
            }
            inbox::create_attempt(
                &mut tx,
                NewAttempt {
                    invoice_id: &invoice.id,
                    tenant_id: &tenant.id,
                    provider: Provider::Manual,
                    provider_ref: &provider_ref,
                    amount: invoice.totals.total,
                    currency: invoice.currency,
                    status: AttemptStatus::Pending,
                },
                now,
            )
            .await
            .map_err(super::apply::internal)?;
            let at = rfc3339(now);
            let detail = format!(
                "invoice {} ({} {}) marked paid by bank transfer, reference {reference}",
                invoice.number.as_deref().unwrap_or(&invoice.id),
                crate::billing::money::format_minor(
                    invoice.totals.total,
                    crate::billing::money::minor_digits(invoice.currency)
                ),
                invoice.currency
            );
            audit::record_host_event(
                &mut tx,
                &audit::NewAuditEvent {
                    at: &at,
                    tenant_id: &tenant.id,
                    module: "",
                    action: "payment_manual",
                    from: None,
                    to: None,
                    actor_kind: Some("operator"),
                    actor_id: "operator",
                    actor_name: "operator",
                    detail: Some(&detail),
                },
            )
            .await?;
        }
        tx.commit().await?;
        self.record_event(ProviderEvent {
            provider: Provider::Manual,
            event_id: &provider_ref,
            provider_ref: &provider_ref,
            status: PaymentStatus::Completed,
            raw_status: "bank_transfer",
            amount: Some(invoice.totals.total),
            currency: Some(invoice.currency),
            occurred_at: now,
            payment_reference: &reference,
            subscription: None,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::inbox::Outcome;
    use crate::payments::tests::{Host, plan};

    #[tokio::test]
    async fn a_bank_transfer_pays_once_and_is_audited() {
        let host = Host::new(2, "2026-01-01T00:00:00Z").await;
        let tenant = &host.tenants[0];
        let payments = host.payments();
        let invoice = payments
            .issue_invoice(tenant, plan("digital-card", "pro"), None)
            .await
            .unwrap();
        // Another tenant cannot be credited with it.
        let other = payments
            .mark_paid_by_transfer(&host.tenants[1], &invoice.id, "NIC-1")
            .await;
        assert!(matches!(other, Err(SoukError::NotFound(_))));
        assert!(matches!(
            payments
                .mark_paid_by_transfer(tenant, &invoice.id, " ")
                .await,
            Err(SoukError::Invalid(_))
        ));
        let done = payments
            .mark_paid_by_transfer(tenant, &invoice.id, "NIC-ASIA 000123")
            .await
            .unwrap();
        assert_eq!(done.outcome, Outcome::Granted);
        let again = payments
            .mark_paid_by_transfer(tenant, &invoice.id, "NIC-ASIA 000123")
            .await
            .unwrap();
        assert!(again.repeated);
        // Another reference for a paid invoice: refused.
        assert!(matches!(
            payments
                .mark_paid_by_transfer(tenant, &invoice.id, "OTHER")
                .await,
            Err(SoukError::Conflict(_))
        ));
        let paid = payments.invoice(Some(tenant), &invoice.id).await.unwrap();
        assert_eq!(paid.provider.as_deref(), Some("manual"));
        assert_eq!(paid.provider_reference.as_deref(), Some("NIC-ASIA 000123"));
        let record = host
            .billing
            .get(tenant, "digital-card")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.subscription.plan, "pro");
        let audited: Vec<String> =
            sqlx::query_scalar("SELECT detail FROM audit_events WHERE action = 'payment_manual'")
                .fetch_all(host.control.pool())
                .await
                .unwrap();
        assert_eq!(audited.len(), 1);
        assert!(audited[0].contains("NIC-ASIA 000123") && audited[0].contains("376.66"));
    }
}
