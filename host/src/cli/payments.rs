//! Payments' knobs (docs/payments.md): invoices (seller, taxes, fiscal
//! year), the providers (base URLs, keys, timeout) and reconciliation.
//! Flags of every command, because every command opens the host with them
//! (as people's and single sign-on's are).

use std::time::Duration;

use clap::Args;

use crate::billing::money::{DEFAULT_TAX_RATES, TaxRates};
use crate::payments::fiscal::{DEFAULT_OFFSET, DEFAULT_START, FiscalYearStart};
use crate::payments::providers::esewa::EsewaConfig;
use crate::payments::providers::khalti::KhaltiConfig;
use crate::payments::providers::stripe::StripeConfig;
use crate::payments::providers::{ProvidersConfig, Secret};
use crate::payments::service::{DEFAULT_RECONCILE_AFTER_SECS, PaymentsConfig};
use crate::payments::store::Seller;

#[derive(Debug, Args)]
pub(super) struct PaymentsOptions {
    /// Tax per currency on invoices, `CUR=BASIS_POINTS[:LABEL],...`
    /// (1300 = 13 %); empty: no tax anywhere.
    #[arg(long, global = true, env = "SOUK_TAX_RATES", default_value = DEFAULT_TAX_RATES,
          value_parser = TaxRates::parse)]
    tax_rates: TaxRates,
    /// First day of the fiscal year invoices are numbered in: `bs`
    /// (Shrawan 1 of the Bikram Sambat calendar, Nepal's; years named
    /// `2082/83`) or a Gregorian `MM-DD` (years named `2026/27`).
    #[arg(long, global = true, env = "SOUK_INVOICE_FISCAL_YEAR_START", default_value = DEFAULT_START,
          value_parser = check_start)]
    invoice_fiscal_year_start: String,
    /// The UTC offset the fiscal year's first day is read in.
    #[arg(long, global = true, env = "SOUK_INVOICE_UTC_OFFSET", default_value = DEFAULT_OFFSET,
          allow_hyphen_values = true, value_parser = check_offset)]
    invoice_utc_offset: String,
    /// The seller's legal name, printed on invoices.
    #[arg(long, global = true, env = "SOUK_SELLER_NAME", default_value = "")]
    seller_name: String,
    /// The seller's address, printed on invoices.
    #[arg(long, global = true, env = "SOUK_SELLER_ADDRESS", default_value = "")]
    seller_address: String,
    /// The seller's PAN / VAT number, printed on invoices.
    #[arg(long, global = true, env = "SOUK_SELLER_PAN", default_value = "")]
    seller_pan: String,
    /// Seconds an attempt may stay pending, ambiguous or unanswered before
    /// the maintenance step asks its provider again.
    #[arg(long, global = true, env = "SOUK_PAYMENTS_RECONCILE_AFTER_SECS",
          default_value_t = DEFAULT_RECONCILE_AFTER_SECS)]
    payments_reconcile_after_secs: u64,
    /// Seconds one request to a payment provider may take.
    #[arg(
        long,
        global = true,
        env = "SOUK_PAYMENTS_HTTP_TIMEOUT_SECS",
        default_value_t = 10
    )]
    payments_http_timeout_secs: u64,
    /// Souk's public base URL, which providers send the browser back to;
    /// unset: from each checkout request's Host header.
    #[arg(long, global = true, env = "SOUK_PAYMENTS_PUBLIC_URL")]
    payments_public_url: Option<String>,
    /// eSewa's base URL (live: https://epay.esewa.com.np).
    #[arg(
        long,
        global = true,
        env = "SOUK_ESEWA_BASE_URL",
        default_value = "https://rc-epay.esewa.com.np"
    )]
    esewa_base_url: String,
    /// eSewa's merchant product code.
    #[arg(
        long,
        global = true,
        env = "SOUK_ESEWA_PRODUCT_CODE",
        default_value = "EPAYTEST"
    )]
    esewa_product_code: String,
    /// eSewa's secret key; unset: eSewa is not offered.
    #[arg(
        long,
        global = true,
        env = "SOUK_ESEWA_SECRET_KEY",
        hide_env_values = true
    )]
    esewa_secret_key: Option<String>,
    /// Khalti's base URL, with its trailing slash (live:
    /// https://khalti.com/api/v2/).
    #[arg(
        long,
        global = true,
        env = "SOUK_KHALTI_BASE_URL",
        default_value = "https://dev.khalti.com/api/v2/"
    )]
    khalti_base_url: String,
    /// Khalti's secret key; unset: Khalti is not offered.
    #[arg(
        long,
        global = true,
        env = "SOUK_KHALTI_SECRET_KEY",
        hide_env_values = true
    )]
    khalti_secret_key: Option<String>,
    /// Stripe's API base URL.
    #[arg(
        long,
        global = true,
        env = "SOUK_STRIPE_BASE_URL",
        default_value = "https://api.stripe.com"
    )]
    stripe_base_url: String,
    /// Stripe's secret API key (`sk_...`); unset: Stripe is not offered.
    #[arg(
        long,
        global = true,
        env = "SOUK_STRIPE_SECRET_KEY",
        hide_env_values = true
    )]
    stripe_secret_key: Option<String>,
    /// The webhook endpoint's signing secrets (`whsec_...`), comma
    /// separated: the current one, and the previous one while it rotates.
    #[arg(
        long,
        global = true,
        env = "SOUK_STRIPE_WEBHOOK_SECRETS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    stripe_webhook_secrets: Vec<String>,
}

fn check_start(text: &str) -> Result<String, String> {
    FiscalYearStart::parse(text, DEFAULT_OFFSET).map(|_| text.to_owned())
}

fn check_offset(text: &str) -> Result<String, String> {
    FiscalYearStart::parse(DEFAULT_START, text).map(|_| text.to_owned())
}

impl PaymentsOptions {
    /// The configuration these flags give (each flag was checked when
    /// parsed).
    pub(super) fn config(&self) -> PaymentsConfig {
        let fiscal_year =
            FiscalYearStart::parse(&self.invoice_fiscal_year_start, &self.invoice_utc_offset)
                .unwrap_or_default();
        let secs = i64::try_from(self.payments_reconcile_after_secs.max(1)).unwrap_or(i64::MAX);
        PaymentsConfig {
            reconcile_after: time::Duration::seconds(secs),
            tax_rates: self.tax_rates.clone(),
            fiscal_year,
            seller: Seller {
                name: self.seller_name.clone(),
                address: self.seller_address.clone(),
                pan: self.seller_pan.clone(),
            },
            providers: ProvidersConfig {
                esewa: self.esewa_secret_key.as_ref().map(|key| EsewaConfig {
                    base_url: self.esewa_base_url.trim_end_matches('/').to_owned(),
                    product_code: self.esewa_product_code.clone(),
                    secret_key: Secret::new(key.clone()),
                }),
                khalti: self.khalti_secret_key.as_ref().map(|key| KhaltiConfig {
                    base_url: self.khalti_base_url.clone(),
                    secret_key: Secret::new(key.clone()),
                }),
                stripe: self.stripe_secret_key.as_ref().map(|key| StripeConfig {
                    base_url: self.stripe_base_url.trim_end_matches('/').to_owned(),
                    secret_key: Secret::new(key.clone()),
                    webhook_secrets: self
                        .stripe_webhook_secrets
                        .iter()
                        .map(|s| s.trim())
                        .filter(|s| !s.is_empty())
                        .map(Secret::new)
                        .collect(),
                }),
                timeout: Duration::from_secs(self.payments_http_timeout_secs.max(1)),
                public_url: self.payments_public_url.clone(),
            },
        }
    }
}
