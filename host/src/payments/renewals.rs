//! Renewal invoices for wallet payers: wallets have no card on file, so
//! before a paid period ends (three days ahead, as the trial-ending
//! notice) the maintenance step issues the renewal's invoice and lists it
//! in the tenant's notifications (`renewal_invoice`), with its payment
//! link (`pay_url`, [`super::pay_link`]) and what to POST to pay it
//! through the API. The notice is emailed to the tenant's admins once
//! (`mail/notices.rs`), with the link. Paying through the link, or a
//! checkout for the same renewal, pays that very invoice (an open invoice
//! for the same purchase and amount is reused). A subscription with a
//! prepaid period left needs no invoice; unpaid at the period end it goes
//! `past_due` with its grace, as before. A subscription Stripe renews (a
//! live link in `stripe_subscriptions`, [`super::stripe_links`]) gets no
//! wallet renewal invoice: Stripe charges the card on file and its
//! `invoice.paid` issues the invoice.

use serde_json::json;
use time::Duration;

use super::service::Payments;
use super::stripe_links::live_link;
use crate::billing::service::PurchaseRequest;
use crate::billing::store;
use crate::billing::subscription::SubscriptionState;
use crate::clock::rfc3339;
use crate::control_plane::tenants;
use crate::error::SoukError;

/// How long before a period ends its renewal invoice is issued.
pub const RENEWAL_NOTICE: Duration = Duration::days(3);

impl Payments<'_> {
    /// Issues the renewal invoices due now (see the module docs); answers
    /// `tenant/module: number` for each one newly listed.
    ///
    /// # Errors
    /// Database failures; a subscription that cannot be priced is skipped
    /// and logged.
    pub async fn renewal_invoices(&self) -> Result<Vec<String>, SoukError> {
        let now = self.clock.now();
        let mut conn = self.control.pool().acquire().await?;
        let due = store::ending_soon(&mut conn, now, RENEWAL_NOTICE).await?;
        drop(conn);
        let mut listed = Vec::new();
        for (tenant_id, module) in due {
            let mut conn = self.control.pool().acquire().await?;
            let Some(record) = store::load(&mut conn, &tenant_id, &module).await? else {
                continue;
            };
            drop(conn);
            let s = &record.subscription;
            if s.state != SubscriptionState::Active
                || s.price == 0
                || record.prepaid_periods > 0
                || s.period_end <= now
                || s.scheduled.is_some()
            {
                continue;
            }
            let mut conn = self.control.pool().acquire().await?;
            if live_link(&mut conn, &tenant_id, &module).await?.is_some() {
                continue;
            }
            let Some(tenant) = tenants::by_id(&mut conn, &s.tenant).await? else {
                continue;
            };
            drop(conn);
            let request = PurchaseRequest::Plan {
                module: &s.module,
                plan: &s.plan,
                currency: None,
            };
            let invoice = match self.open_invoice(&tenant, request, None).await {
                Ok(invoice) => invoice,
                Err(e) => {
                    tracing::warn!(tenant = %tenant.slug, module = %s.module, error = %e, "renewal invoice not issued");
                    continue;
                }
            };
            let number = invoice.number.clone().unwrap_or_default();
            let digits = crate::billing::money::minor_digits(invoice.currency);
            let link = self.pay_link(&invoice);
            let payload = json!({
                "invoice": invoice.id,
                "number": number,
                "plan": s.plan,
                "total": invoice.totals.total,
                "total_text": crate::billing::money::format_minor(invoice.totals.total, digits),
                "pay_url": link.as_ref().map(|l| l.url.clone()),
                "pay_url_expires": link.as_ref().map(|l| rfc3339(l.expires_at)),
                "currency": invoice.currency.as_str(),
                "period_end": rfc3339(s.period_end),
                "pay": {
                    "method": "POST",
                    "path": format!("/v1/tenants/{}/checkout", tenant.slug),
                    "body": {"module": s.module, "plan": s.plan, "provider": self.providers.offered()},
                },
            });
            let dedupe = format!(
                "renewal_invoice:{}:{}:{}",
                s.tenant,
                s.module,
                s.period_end.unix_timestamp()
            );
            let mut tx = self.control.pool().begin_with("BEGIN IMMEDIATE").await?;
            let new = store::push_outbox(
                &mut tx,
                now,
                "renewal_invoice",
                &s.tenant,
                &s.module,
                &dedupe,
                &payload,
            )
            .await?;
            tx.commit().await?;
            if new {
                listed.push(format!("{}/{}: {number}", tenant.slug, s.module));
            }
        }
        Ok(listed)
    }
}
