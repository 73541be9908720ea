//! Payment providers behind one trait, [`PaymentProvider`]: start a
//! payment (what the tenant's browser does next) and look one up (the only
//! proof of payment Souk accepts). Each adapter has its base URL, keys and
//! timeout from configuration and talks HTTP through reqwest (rustls).
//!
//! - [`esewa`]: eSewa ePay v2 — a signed form, a signed `data` on return
//!   (checked, never trusted alone), and the status API;
//! - [`khalti`]: Khalti ePayment — initiate, then lookup;
//! - [`stripe`]: Stripe Checkout Sessions (with an `Idempotency-Key`),
//!   lookup, and verified webhooks.
//!
//! Nothing here writes to the database; [`crate::payments::checkout`]
//! records what the providers answer through the payment inbox.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;

use super::inbox::{Attempt, PaymentStatus, Provider};
use crate::billing::plans::Currency;

pub mod esewa;
pub mod khalti;
pub mod stripe;

/// A secret from configuration: never printed (its `Debug` is redacted).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `text`.
    pub fn new(text: impl Into<String>) -> Self {
        Secret(text.into())
    }

    /// The secret itself, for signing and headers only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why a provider could not answer. The messages name the provider and
/// what happened, never a key.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// No answer within the configured timeout, or no connection: nothing
    /// is known; retry.
    #[error("{0} did not answer in time; try again")]
    Unavailable(&'static str),
    /// The provider answered something Souk cannot use (a server error, a
    /// malformed body); retry later.
    #[error("{provider} answered unexpectedly: {what}")]
    Unexpected {
        /// Which provider.
        provider: &'static str,
        /// What was wrong (no secrets, no bodies).
        what: String,
    },
    /// The provider refused the request (a 4xx that is not a payment
    /// status): the payment cannot go through it as asked.
    #[error("{provider} refused the payment: {what}")]
    Refused {
        /// Which provider.
        provider: &'static str,
        /// Its reason.
        what: String,
    },
}

/// What a payment is started with.
#[derive(Debug, Clone)]
pub struct Initiation<'a> {
    /// The attempt's id: eSewa's `transaction_uuid`, Khalti's
    /// `purchase_order_id`.
    pub attempt_id: &'a str,
    /// The invoice's number, shown by the provider.
    pub invoice_number: &'a str,
    /// The invoice's subtotal (before tax), minor units.
    pub subtotal: i64,
    /// The tax line, minor units.
    pub tax: i64,
    /// The total, minor units.
    pub total: i64,
    /// The invoice's currency.
    pub currency: Currency,
    /// Souk's public base URL (no trailing slash); return URLs hang off it.
    pub public_url: &'a str,
    /// Set when the payment starts a subscription the provider renews
    /// (Stripe's `subscription` mode); wallets ignore it.
    pub recurring: Option<Recurring<'a>>,
}

/// A subscription the provider renews: what Stripe's recurring price and
/// the subscription's metadata are made of.
#[derive(Debug, Clone, Copy)]
pub struct Recurring<'a> {
    /// The plan's billing interval.
    pub interval: crate::billing::plans::BillingInterval,
    /// The module's slug.
    pub module: &'a str,
    /// The plan's slug.
    pub plan: &'a str,
    /// The tenant's internal id.
    pub tenant_id: &'a str,
}

/// What the tenant's browser does next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NextStep {
    /// Go to `url` (Khalti's `payment_url`, Stripe's Checkout URL).
    Redirect {
        /// Where.
        url: String,
    },
    /// POST `fields` as a form to `action` (eSewa).
    FormPost {
        /// The form's action URL.
        action: String,
        /// The fields, in order.
        fields: Vec<(String, String)>,
    },
}

/// A started payment.
#[derive(Debug, Clone)]
pub struct Initiated {
    /// The provider's reference of the attempt (eSewa: the attempt id;
    /// Khalti: its `pidx`).
    pub provider_ref: String,
    /// What the browser does next.
    pub next: NextStep,
}

/// What a provider's lookup says about an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// Normalised.
    pub status: PaymentStatus,
    /// The provider's own word.
    pub raw_status: String,
    /// The amount it names, minor units.
    pub amount: Option<i64>,
    /// Its currency.
    pub currency: Option<Currency>,
    /// The payment's reference (eSewa `ref_id`, Khalti `transaction_id`).
    pub payment_reference: String,
    /// The provider-side subscription the payment started (Stripe's
    /// `sub_...` for a session in `subscription` mode); `None` otherwise.
    pub subscription: Option<String>,
}

/// A boxed future answering a provider call.
pub type ProviderFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, ProviderError>> + Send + 'a>>;

/// A payment provider.
pub trait PaymentProvider: Send + Sync {
    /// Which provider this is.
    fn provider(&self) -> Provider;

    /// Starts a payment. Called once per attempt, after the attempt is
    /// stored (so a crash during the call loses nothing: reconciliation
    /// finds the attempt).
    fn initiate<'a>(&'a self, request: &'a Initiation<'a>) -> ProviderFuture<'a, Initiated>;

    /// Asks the provider where `attempt` stands: the only proof of payment.
    fn lookup<'a>(&'a self, attempt: &'a Attempt) -> ProviderFuture<'a, Lookup>;
}

/// An HTTP client for providers: rustls, no redirects, `timeout` per
/// request.
///
/// # Errors
/// When the TLS backend cannot start.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// A reqwest failure as a provider error.
fn transport(provider: &'static str, e: &reqwest::Error) -> ProviderError {
    if e.is_timeout() || e.is_connect() || e.is_request() {
        ProviderError::Unavailable(provider)
    } else {
        ProviderError::Unexpected {
            provider,
            what: "the connection failed".into(),
        }
    }
}

/// Which providers this host offers, from `souk serve` flags: a provider
/// without its secret key is not offered.
#[derive(Debug, Clone)]
pub struct ProvidersConfig {
    /// eSewa, when configured.
    pub esewa: Option<esewa::EsewaConfig>,
    /// Khalti, when configured.
    pub khalti: Option<khalti::KhaltiConfig>,
    /// Stripe, when configured.
    pub stripe: Option<stripe::StripeConfig>,
    /// How long one request to a provider may take
    /// (`--payments-http-timeout-secs`, default 10).
    pub timeout: Duration,
    /// Souk's public base URL, which return URLs are made from
    /// (`--payments-public-url`); unset: from each checkout request's
    /// `Host` header.
    pub public_url: Option<String>,
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        ProvidersConfig {
            esewa: None,
            khalti: None,
            stripe: None,
            timeout: Duration::from_secs(10),
            public_url: None,
        }
    }
}

/// The configured providers, built once at start.
#[derive(Debug, Clone)]
pub struct Providers {
    esewa: Option<esewa::Esewa>,
    khalti: Option<khalti::Khalti>,
    stripe: Option<stripe::Stripe>,
    /// See [`ProvidersConfig::public_url`].
    pub public_url: Option<String>,
}

impl Providers {
    /// The providers `config` names, sharing one HTTP client.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(config: &ProvidersConfig) -> Result<Self, reqwest::Error> {
        let client = http_client(config.timeout)?;
        Ok(Providers {
            esewa: config
                .esewa
                .clone()
                .map(|c| esewa::Esewa::new(c, client.clone())),
            khalti: config
                .khalti
                .clone()
                .map(|c| khalti::Khalti::new(c, client.clone())),
            stripe: config
                .stripe
                .clone()
                .map(|c| stripe::Stripe::new(c, client.clone())),
            public_url: config
                .public_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_owned()),
        })
    }

    /// The adapter of `provider`, when configured.
    pub fn get(&self, provider: Provider) -> Option<&dyn PaymentProvider> {
        match provider {
            Provider::Esewa => self.esewa.as_ref().map(|p| p as &dyn PaymentProvider),
            Provider::Khalti => self.khalti.as_ref().map(|p| p as &dyn PaymentProvider),
            Provider::Stripe => self.stripe.as_ref().map(|p| p as &dyn PaymentProvider),
            Provider::Manual => None,
        }
    }

    /// eSewa, when configured (its return needs more than the trait).
    pub fn esewa(&self) -> Option<&esewa::Esewa> {
        self.esewa.as_ref()
    }

    /// Stripe, when configured (its webhooks need more than the trait).
    pub fn stripe(&self) -> Option<&stripe::Stripe> {
        self.stripe.as_ref()
    }

    /// The providers offered, by name.
    pub fn offered(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.esewa.is_some() {
            out.push(Provider::Esewa.as_str());
        }
        if self.khalti.is_some() {
            out.push(Provider::Khalti.as_str());
        }
        if self.stripe.is_some() {
            out.push(Provider::Stripe.as_str());
        }
        out
    }
}
