//! Voiding an open invoice (operator): the invoice goes `open -> void`
//! (it keeps its number, so numbering stays gap-free) and every attempt
//! to pay it that is not paid is canceled, in one transaction with the
//! audit event (`payment_void`). A payment that arrives later for it —
//! a wallet confirming, a Stripe session paid after all — finds a canceled
//! attempt and a void invoice: recorded in the inbox and flagged for the
//! operator, never granted. A paid invoice is not voided (a refund with
//! its credit note is); a void one is not voided twice.

use super::service::Payments;
use super::store::{self, Invoice, InvoiceStatus};
use crate::clock::rfc3339;
use crate::control_plane::audit;
use crate::error::SoukError;
use crate::tenancy::Tenant;

impl Payments<'_> {
    /// Operator: voids open invoice `invoice_id` of `tenant` for `reason`
    /// (see the module docs). Answers the voided invoice.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] for an invoice not the tenant's;
    /// [`SoukError::Conflict`] unless it is open (a paid one is refunded
    /// instead); [`SoukError::Invalid`] without a reason.
    pub async fn void_invoice(
        &self,
        tenant: &Tenant,
        invoice_id: &str,
        reason: &str,
    ) -> Result<Invoice, SoukError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 || reason.chars().any(char::is_control)
        {
            return Err(SoukError::Invalid(
                "`reason` must be 1 to 500 printable characters".into(),
            ));
        }
        let invoice = self.invoice(Some(tenant), invoice_id).await?;
        let number = invoice.number.clone().unwrap_or_else(|| invoice.id.clone());
        let now = self.clock.now();
        let mut tx = self.control.pool().begin_with("BEGIN IMMEDIATE").await?;
        // Read again under the write lock: a payment may have landed since.
        let current = store::load(&mut tx, &invoice.id, Some(&tenant.id))
            .await?
            .ok_or_else(|| SoukError::NotFound(format!("no invoice {invoice_id:?}")))?;
        match current.status {
            InvoiceStatus::Open => {}
            InvoiceStatus::Paid => {
                return Err(SoukError::Conflict(format!(
                    "invoice {number} is paid; a paid invoice is not voided, refund it (a credit note voids it)"
                )));
            }
            status => {
                return Err(SoukError::Conflict(format!(
                    "invoice {number} is {}; only an open invoice is voided",
                    status.as_str()
                )));
            }
        }
        store::void(&mut tx, &invoice.id, now).await?;
        let canceled = sqlx::query(
            "UPDATE payment_attempts SET status = 'canceled', next_check_at = NULL, \
             updated_at = ? WHERE invoice_id = ? AND status != 'paid'",
        )
        .bind(rfc3339(now))
        .bind(&invoice.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let at = rfc3339(now);
        let detail =
            format!("invoice {number} voided ({canceled} payment attempt(s) canceled): {reason}");
        audit::record_host_event(
            &mut tx,
            &audit::NewAuditEvent {
                at: &at,
                tenant_id: &tenant.id,
                module: "",
                action: "payment_void",
                from: None,
                to: None,
                actor_kind: Some("operator"),
                actor_id: "operator",
                actor_name: "operator",
                detail: Some(&detail),
            },
        )
        .await?;
        let voided = store::load(&mut tx, &invoice.id, Some(&tenant.id))
            .await?
            .ok_or_else(|| SoukError::Internal(anyhow::anyhow!("invoice {number} vanished")))?;
        tx.commit().await?;
        Ok(voided)
    }
}
