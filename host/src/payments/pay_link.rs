//! Payment links: `/pay/{token}`, a page a person opens from the renewal
//! invoice's email (no sign-in) that shows the invoice and starts a
//! payment of that very invoice with a wallet.
//!
//! The token names the invoice, its tenant and an expiry, signed under a
//! key of the host ([`super::pay_token`]). A token that does not verify,
//! has expired or names an invoice that is gone is one answer: not found,
//! without saying which.
//!
//! Whoever holds the link may see the invoice and pay it (which is what it
//! is for); it grants nothing else. Paying goes through the same code as a
//! checkout ([`Payments::start_payment`]), so the attempt pays the very
//! invoice the link names and its confirmation goes through the inbox.

use time::Duration;

use super::checkout::Checkout;
use super::inbox::Provider;
use super::pay_token::PayLinkGrant;
pub use super::pay_token::PayLinkSigner;
use super::service::Payments;
use super::store::{self, Invoice, InvoiceStatus};
use crate::control_plane::tenants;
use crate::error::SoukError;

/// How long a payment link works after it is made.
pub const PAY_LINK_TTL: Duration = Duration::days(30);

/// The base of links in emails when `--payments-public-url` is not set
/// (the address `souk serve` listens on by default).
pub const FALLBACK_PUBLIC_URL: &str = "http://127.0.0.1:8080";

/// A payment link and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayLink {
    /// The absolute URL of the payment page.
    pub url: String,
    /// When the link stops working.
    pub expires_at: time::OffsetDateTime,
}

/// What the payment page shows.
#[derive(Debug, Clone)]
pub struct PayPage {
    /// The invoice, as it is now.
    pub invoice: Invoice,
    /// The providers it can be paid with here (none unless it is open).
    pub providers: Vec<Provider>,
}

/// What paying through a link did.
#[derive(Debug, Clone)]
pub enum LinkPayment {
    /// A payment attempt was started: the browser goes on to the provider.
    Started(Box<Checkout>),
    /// The invoice is not open (paid or void): nothing was started.
    NotOpen(Box<PayPage>),
}

fn no_link() -> SoukError {
    SoukError::NotFound("no such payment link".into())
}

impl Payments<'_> {
    /// The signer, or not found (a host without one has no links).
    fn signer(&self) -> Result<&PayLinkSigner, SoukError> {
        self.pay_links.ok_or_else(no_link)
    }

    /// The payment link of `invoice` (an absolute URL under
    /// `--payments-public-url`, or [`FALLBACK_PUBLIC_URL`], logged), valid
    /// for [`PAY_LINK_TTL`] from now; `None` on a host without a link key.
    pub fn pay_link(&self, invoice: &Invoice) -> Option<PayLink> {
        let signer = self.pay_links?;
        let expires_at = self.clock.now() + PAY_LINK_TTL;
        let token = signer.sign(&PayLinkGrant {
            invoice_id: invoice.id.clone(),
            tenant_id: invoice.tenant_id.clone(),
            expires: expires_at.unix_timestamp(),
        });
        let base = match self.providers.public_url.as_deref() {
            Some(base) => base,
            None => {
                tracing::warn!(
                    "--payments-public-url is not set: payment links in emails use {FALLBACK_PUBLIC_URL}"
                );
                FALLBACK_PUBLIC_URL
            }
        };
        Some(PayLink {
            url: format!("{}/pay/{token}", base.trim_end_matches('/')),
            expires_at,
        })
    }

    /// The providers an invoice in `currency` can be paid with through a
    /// link: eSewa and Khalti take NPR only; Stripe takes any currency.
    fn link_providers(&self, invoice: &Invoice) -> Vec<Provider> {
        let npr = invoice.currency.as_str() == "NPR";
        [Provider::Esewa, Provider::Khalti, Provider::Stripe]
            .into_iter()
            .filter(|p| self.providers.get(*p).is_some())
            .filter(|p| npr || *p == Provider::Stripe)
            .collect()
    }

    async fn linked_invoice(&self, token: &str) -> Result<Invoice, SoukError> {
        let grant = self
            .signer()?
            .verify(token, self.clock.now())
            .ok_or_else(no_link)?;
        let mut conn = self.control.pool().acquire().await?;
        store::load(&mut conn, &grant.invoice_id, Some(&grant.tenant_id))
            .await?
            .filter(|i| i.status != InvoiceStatus::Draft)
            .ok_or_else(no_link)
    }

    /// The page of payment link `token`: its invoice and, while it is
    /// open, the providers to pay it with.
    ///
    /// # Errors
    /// [`SoukError::NotFound`] for a token that does not verify, has
    /// expired, or names no invoice (one answer for all three); database
    /// failures.
    pub async fn pay_page(&self, token: &str) -> Result<PayPage, SoukError> {
        let invoice = self.linked_invoice(token).await?;
        let providers = if invoice.status == InvoiceStatus::Open {
            self.link_providers(&invoice)
        } else {
            Vec::new()
        };
        Ok(PayPage { invoice, providers })
    }

    /// Starts paying the invoice of link `token` with `provider`, as a
    /// checkout does (an attempt stored first, other open attempts of the
    /// invoice canceled, then the provider's initiation). `public_url` is
    /// Souk's base URL as the browser reaches it (the configured one wins).
    ///
    /// # Errors
    /// As [`Payments::pay_page`]; [`SoukError::Invalid`] for a provider not
    /// offered for this invoice; as [`Payments::checkout`] when the
    /// provider fails.
    pub async fn pay_by_link(
        &self,
        token: &str,
        provider: Provider,
        public_url: &str,
    ) -> Result<LinkPayment, SoukError> {
        let page = self.pay_page(token).await?;
        if page.invoice.status != InvoiceStatus::Open {
            return Ok(LinkPayment::NotOpen(Box::new(page)));
        }
        if !page.providers.contains(&provider) {
            return Err(SoukError::Invalid(format!(
                "this invoice cannot be paid with {} here",
                provider.as_str()
            )));
        }
        let mut conn = self.control.pool().acquire().await?;
        let tenant = tenants::by_id(&mut conn, &page.invoice.tenant_id)
            .await?
            .ok_or_else(|| SoukError::NotFound("no such payment link".into()))?;
        drop(conn);
        let started = self
            .start_payment(&tenant, page.invoice, provider, public_url)
            .await?;
        Ok(LinkPayment::Started(Box::new(started)))
    }
}
