//! [`Payments`]: invoices for purchases and confirmed payments applied
//! through the subscription state machine.

use std::sync::Arc;

use super::fiscal::FiscalYearStart;
use super::providers::{Providers, ProvidersConfig};
use super::store::{self, Invoice, InvoiceStoreError, NewInvoice, Seller};
use crate::billing::invoice::{self, InvoiceError};
use crate::billing::money::TaxRates;
use crate::billing::service::{Billing, PurchaseRequest};
use crate::clock::Clock;
use crate::control_plane::ControlPlane;
use crate::error::SoukError;
use crate::tenancy::Tenant;

/// How invoices are made and payments reconciled: from `souk serve` flags.
#[derive(Debug, Clone)]
pub struct PaymentsConfig {
    /// How long an attempt may stay pending, ambiguous or unanswered before
    /// reconciliation asks its provider again (`--payments-reconcile-after-secs`,
    /// default 300: eSewa asks merchants to check after 5 minutes).
    pub reconcile_after: time::Duration,
    /// Tax per currency (`--tax-rates`, default 13 % VAT on NPR).
    pub tax_rates: TaxRates,
    /// When a fiscal year starts (`--invoice-fiscal-year-start`,
    /// `--invoice-utc-offset`).
    pub fiscal_year: FiscalYearStart,
    /// The seller printed on invoices.
    pub seller: Seller,
    /// The payment providers offered.
    pub providers: ProvidersConfig,
}

/// Payments and invoices over the control plane and billing.
pub struct Payments<'a> {
    pub(super) control: &'a ControlPlane,
    pub(super) billing: &'a Billing,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) config: &'a PaymentsConfig,
    pub(super) providers: &'a Providers,
    /// Signs payment links; `None`: this host makes none.
    pub(super) pay_links: Option<&'a super::pay_token::PayLinkSigner>,
}

impl From<InvoiceStoreError> for SoukError {
    fn from(e: InvoiceStoreError) -> Self {
        match e {
            InvoiceStoreError::Database(e) => e.into(),
            InvoiceStoreError::WrongStatus {
                status, expected, ..
            } => SoukError::Conflict(format!("the invoice is {status}; this needs it {expected}")),
            e @ InvoiceStoreError::Corrupt { .. } => {
                SoukError::Internal(anyhow::anyhow!(e.to_string()))
            }
        }
    }
}

fn invoice_error(e: InvoiceError) -> SoukError {
    match e {
        InvoiceError::NothingDue => SoukError::Conflict(e.to_string()),
        e => SoukError::Invalid(e.to_string()),
    }
}

/// A tenant's PAN as printed on its invoices: 1 to 20 letters and digits.
///
/// # Errors
/// [`SoukError::Invalid`] otherwise.
pub fn parse_pan(text: &str) -> Result<String, SoukError> {
    let text = text.trim();
    if text.is_empty() || text.len() > 20 || !text.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(SoukError::Invalid(
            "`pan` must be 1 to 20 letters and digits".into(),
        ));
    }
    Ok(text.to_owned())
}

/// The default delay before reconciliation asks a provider again.
pub const DEFAULT_RECONCILE_AFTER_SECS: u64 = 300;

impl Default for PaymentsConfig {
    fn default() -> Self {
        PaymentsConfig {
            reconcile_after: time::Duration::seconds(DEFAULT_RECONCILE_AFTER_SECS as i64),
            tax_rates: TaxRates::default(),
            fiscal_year: FiscalYearStart::default(),
            seller: Seller::default(),
            providers: ProvidersConfig::default(),
        }
    }
}

impl<'a> Payments<'a> {
    /// Payments over `control` and `billing`, time from `clock`, paid
    /// through `providers`.
    pub fn new(
        control: &'a ControlPlane,
        billing: &'a Billing,
        clock: Arc<dyn Clock>,
        config: &'a PaymentsConfig,
        providers: &'a Providers,
    ) -> Self {
        Payments {
            control,
            billing,
            clock,
            config,
            providers,
            pay_links: None,
        }
    }

    /// The same, making and checking payment links with `signer`.
    pub fn with_pay_links(mut self, signer: &'a super::pay_token::PayLinkSigner) -> Self {
        self.pay_links = Some(signer);
        self
    }

    /// Prices `request` for `tenant` and issues its invoice (draft, then
    /// open with the next number of the fiscal year, in one transaction).
    ///
    /// # Errors
    /// What [`Billing::price_purchase`] answers; [`SoukError::Conflict`]
    /// when the purchase costs nothing now; database failures.
    pub async fn issue_invoice(
        &self,
        tenant: &Tenant,
        request: PurchaseRequest<'_>,
        buyer_pan: Option<&str>,
    ) -> Result<Invoice, SoukError> {
        let priced = self.billing.price_purchase(tenant, request).await?;
        let (lines, totals) =
            invoice::with_tax(priced.lines, priced.currency, &self.config.tax_rates)
                .map_err(invoice_error)?;
        let buyer_pan = buyer_pan.map(parse_pan).transpose()?;
        let new = NewInvoice {
            tenant_id: &tenant.id,
            currency: priced.currency,
            lines: &lines,
            totals,
            purchase: &priced.purchase,
            seller: &self.config.seller,
            buyer_name: &tenant.name,
            buyer_pan: buyer_pan.as_deref(),
        };
        let mut tx = self.control.pool().begin_with("BEGIN IMMEDIATE").await?;
        let now = self.clock.now();
        let id = store::insert_draft(&mut tx, &new, now).await?;
        store::issue(&mut tx, &id, self.config.fiscal_year.year_of(now), now).await?;
        let invoice = store::load(&mut tx, &id, None).await?;
        tx.commit().await?;
        invoice.ok_or_else(|| SoukError::Internal(anyhow::anyhow!("invoice {id} vanished")))
    }

    /// Invoice `id` of `tenant` (any tenant's for the operator: `None`).
    ///
    /// # Errors
    /// [`SoukError::NotFound`] when there is none (or another tenant's).
    pub async fn invoice(&self, tenant: Option<&Tenant>, id: &str) -> Result<Invoice, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        store::load(&mut conn, id, tenant.map(|t| t.id.as_str()))
            .await?
            .filter(|i| i.status != store::InvoiceStatus::Draft)
            .ok_or_else(|| SoukError::NotFound(format!("no invoice {id:?}")))
    }

    /// Issued invoices of `tenant` (every tenant's: `None`), newest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn invoices(
        &self,
        tenant: Option<&Tenant>,
        limit: u32,
    ) -> Result<Vec<Invoice>, SoukError> {
        let mut conn = self.control.pool().acquire().await?;
        Ok(store::list(&mut conn, tenant.map(|t| t.id.as_str()), limit).await?)
    }
}
