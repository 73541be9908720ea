//! Khalti ePayment (docs: PROTOCOLS.md, "Khalti ePayment"): initiate with
//! `Authorization: Key <secret>` and paisa amounts (at least 1000, the
//! breakdown summing to the amount), then always confirm with lookup; only
//! `Completed` pays. `Expired` and `User canceled` come with HTTP 400.

use serde_json::{Value, json};

use super::{
    Initiated, Initiation, Lookup, NextStep, PaymentProvider, ProviderError, ProviderFuture,
    Secret, transport,
};
use crate::billing::plans::Currency;
use crate::payments::inbox::{Attempt, PaymentStatus, Provider};

const NAME: &str = "Khalti";

/// The smallest amount Khalti takes, paisa (NPR 10).
pub const MIN_AMOUNT: i64 = 1000;

/// Khalti's configuration.
#[derive(Debug, Clone)]
pub struct KhaltiConfig {
    /// e.g. `https://dev.khalti.com/api/v2/` (sandbox) or
    /// `https://khalti.com/api/v2/` (live); with its trailing slash.
    pub base_url: String,
    /// The merchant's live or test secret key.
    pub secret_key: Secret,
}

/// The Khalti adapter.
#[derive(Debug, Clone)]
pub struct Khalti {
    config: KhaltiConfig,
    client: reqwest::Client,
}

impl Khalti {
    /// The adapter over `config`, using `client`.
    pub fn new(mut config: KhaltiConfig, client: reqwest::Client) -> Self {
        if !config.base_url.ends_with('/') {
            config.base_url.push('/');
        }
        Khalti { config, client }
    }

    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.config.base_url))
            .header(
                reqwest::header::AUTHORIZATION,
                format!("Key {}", self.config.secret_key.expose()),
            )
            .json(body)
    }

    async fn start(&self, request: &Initiation<'_>) -> Result<Initiated, ProviderError> {
        if request.currency.as_str() != "NPR" {
            return Err(ProviderError::Refused {
                provider: NAME,
                what: format!("Khalti takes NPR, not {}", request.currency),
            });
        }
        if request.total < MIN_AMOUNT {
            return Err(ProviderError::Refused {
                provider: NAME,
                what: "Khalti takes at least NPR 10.00".into(),
            });
        }
        let mut breakdown = vec![json!({"label": "Subtotal", "amount": request.subtotal})];
        if request.tax != 0 {
            breakdown.push(json!({"label": "VAT", "amount": request.tax}));
        }
        let body = json!({
            "return_url": format!("{}/v1/payments/khalti/return", request.public_url),
            "website_url": request.public_url,
            "amount": request.total,
            "purchase_order_id": request.attempt_id,
            "purchase_order_name": request.invoice_number,
            "amount_breakdown": breakdown,
        });
        let answer = self
            .post("epayment/initiate/", &body)
            .send()
            .await
            .map_err(|e| transport(NAME, &e))?;
        let code = answer.status();
        let body: Value = answer.json().await.map_err(|e| transport(NAME, &e))?;
        if code.is_client_error() {
            return Err(ProviderError::Refused {
                provider: NAME,
                what: format!("initiation answered {}", code.as_u16()),
            });
        }
        let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
        match (code.is_success(), text("pidx"), text("payment_url")) {
            (true, Some(pidx), Some(url)) if !pidx.is_empty() => Ok(Initiated {
                provider_ref: pidx,
                next: NextStep::Redirect { url },
            }),
            _ => Err(ProviderError::Unexpected {
                provider: NAME,
                what: format!(
                    "initiation answered {} without pidx and payment_url",
                    code.as_u16()
                ),
            }),
        }
    }

    async fn find(&self, attempt: &Attempt) -> Result<Lookup, ProviderError> {
        let answer = self
            .post("epayment/lookup/", &json!({"pidx": attempt.provider_ref}))
            .send()
            .await
            .map_err(|e| transport(NAME, &e))?;
        let code = answer.status();
        let body: Value = answer.json().await.map_err(|e| transport(NAME, &e))?;
        let raw = body
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let status = match (code.as_u16(), raw.as_str()) {
            (200, "Completed") => PaymentStatus::Completed,
            (200, "Pending" | "Initiated") => PaymentStatus::Pending,
            (200, "Refunded" | "Partially Refunded") => PaymentStatus::Refunded,
            (200 | 400, "Expired" | "User canceled") => PaymentStatus::Failed,
            (status, _) => {
                return Err(ProviderError::Unexpected {
                    provider: NAME,
                    what: format!("lookup answered {status} without a known status"),
                });
            }
        };
        if body
            .get("pidx")
            .and_then(Value::as_str)
            .is_some_and(|p| p != attempt.provider_ref)
        {
            return Err(ProviderError::Unexpected {
                provider: NAME,
                what: "lookup answered about another payment".into(),
            });
        }
        Ok(Lookup {
            status,
            raw_status: raw,
            amount: body.get("total_amount").and_then(Value::as_i64),
            currency: Currency::parse("NPR").ok(),
            payment_reference: body
                .get("transaction_id")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .unwrap_or(&attempt.provider_ref)
                .to_owned(),
            subscription: None,
        })
    }
}

impl PaymentProvider for Khalti {
    fn provider(&self) -> Provider {
        Provider::Khalti
    }

    fn initiate<'a>(&'a self, request: &'a Initiation<'a>) -> ProviderFuture<'a, Initiated> {
        Box::pin(self.start(request))
    }

    fn lookup<'a>(&'a self, attempt: &'a Attempt) -> ProviderFuture<'a, Lookup> {
        Box::pin(self.find(attempt))
    }
}
