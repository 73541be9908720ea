//! eSewa ePay v2 (docs: PROTOCOLS.md, "eSewa ePay v2").
//!
//! - The form: `amount`, `tax_amount`, `product_service_charge`,
//!   `product_delivery_charge`, `total_amount`, `transaction_uuid`,
//!   `product_code`, `success_url`, `failure_url`, `signed_field_names`,
//!   `signature`; the signature is Base64(HMAC-SHA256(secret,
//!   `total_amount=..,transaction_uuid=..,product_code=..`)).
//! - The return: `data` is Base64 JSON; its signature is checked over the
//!   fields *its own* `signed_field_names` lists, with the values as the
//!   literal text that arrived (`1000.0` is not `1000`), in constant time.
//!   A `+` of the Base64 that arrived as a space is put back.
//! - The proof: the status API, always.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::{
    Initiated, Initiation, Lookup, NextStep, PaymentProvider, ProviderError, ProviderFuture,
    Secret, transport,
};
use crate::billing::plans::Currency;
use crate::payments::inbox::{Attempt, PaymentStatus, Provider};

const NAME: &str = "eSewa";

/// eSewa's configuration.
#[derive(Debug, Clone)]
pub struct EsewaConfig {
    /// e.g. `https://rc-epay.esewa.com.np` (test) or
    /// `https://epay.esewa.com.np` (live); no trailing slash.
    pub base_url: String,
    /// The merchant's product code (`EPAYTEST` for the test merchant).
    pub product_code: String,
    /// The merchant's secret key.
    pub secret_key: Secret,
}

/// The eSewa adapter.
#[derive(Debug, Clone)]
pub struct Esewa {
    config: EsewaConfig,
    client: reqwest::Client,
}

/// Minor units (paisa) as eSewa amounts: whole rupees without decimals
/// (`1000`), otherwise two decimals (`376.66`). Souk signs what it sends,
/// so the text only has to be the same in the form and the status query.
pub fn format_amount(minor: i64) -> String {
    if minor % 100 == 0 {
        format!("{}", minor / 100)
    } else {
        format!("{}.{:02}", minor / 100, (minor % 100).abs())
    }
}

/// An eSewa amount text (`1000`, `1000.0`, `2,700.50`) as minor units;
/// `None` for anything else (more than two decimals, signs, letters).
pub fn parse_amount(text: &str) -> Option<i64> {
    let plain: String = text.trim().chars().filter(|c| *c != ',').collect();
    let (whole, fraction) = match plain.split_once('.') {
        Some((w, f)) => (w, f),
        None => (plain.as_str(), ""),
    };
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > 2
    {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let mut cents: i64 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().ok()?
    };
    if fraction.len() == 1 {
        cents *= 10;
    }
    whole.checked_mul(100)?.checked_add(cents)
}

/// Base64(HMAC-SHA256(`key`, `message`)).
pub fn sign(key: &str, message: &str) -> String {
    STANDARD.encode(mac(key, message).finalize().into_bytes())
}

fn mac(key: &str, message: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(message.as_bytes());
    mac
}

/// What a verified return says (still to be confirmed by the status API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnData {
    /// The attempt's id as sent.
    pub transaction_uuid: String,
    /// eSewa's status word.
    pub status: String,
    /// eSewa's transaction code.
    pub transaction_code: Option<String>,
}

/// Why a return's `data` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReturnError {
    /// Not Base64 of a JSON object.
    #[error("the eSewa answer is not Base64 JSON")]
    Malformed,
    /// A field the signature or Souk needs is missing or not text.
    #[error("the eSewa answer lacks `{0}`")]
    Missing(String),
    /// The signature does not verify.
    #[error("the eSewa answer's signature does not verify")]
    BadSignature,
}

/// A JSON value as the literal text eSewa sent: a string as is, a number
/// as written (serde_json keeps `1000.0` and `1000` apart).
fn literal(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Verifies the `data` of eSewa's redirect with `secret`.
///
/// # Errors
/// [`ReturnError`] for anything but a correctly signed answer.
pub fn verify_return(data: &str, secret: &str) -> Result<ReturnData, ReturnError> {
    // A `+` of the Base64 may arrive as a space (form decoding).
    let data = data.trim().replace(' ', "+");
    let bytes = STANDARD
        .decode(data.as_bytes())
        .map_err(|_| ReturnError::Malformed)?;
    let json: Value = serde_json::from_slice(&bytes).map_err(|_| ReturnError::Malformed)?;
    let object = json.as_object().ok_or(ReturnError::Malformed)?;
    let text = |name: &str| {
        object
            .get(name)
            .and_then(literal)
            .ok_or_else(|| ReturnError::Missing(name.to_owned()))
    };
    let names = text("signed_field_names")?;
    let signature = text("signature")?;
    let mut parts = Vec::new();
    for name in names.split(',') {
        parts.push(format!("{name}={}", text(name)?));
    }
    // The fields Souk acts on must be among those signed.
    for needed in ["transaction_uuid", "status"] {
        if !names.split(',').any(|n| n == needed) {
            return Err(ReturnError::Missing(needed.to_owned()));
        }
    }
    let expected = STANDARD
        .decode(signature.trim().as_bytes())
        .map_err(|_| ReturnError::BadSignature)?;
    mac(secret, &parts.join(","))
        .verify_slice(&expected)
        .map_err(|_| ReturnError::BadSignature)?;
    Ok(ReturnData {
        transaction_uuid: text("transaction_uuid")?,
        status: text("status")?,
        transaction_code: text("transaction_code").ok(),
    })
}

impl Esewa {
    /// The adapter over `config`, using `client`.
    pub fn new(config: EsewaConfig, client: reqwest::Client) -> Self {
        Esewa { config, client }
    }

    /// The form the browser posts for `request`.
    pub fn form(&self, request: &Initiation<'_>) -> NextStep {
        let total = format_amount(request.total);
        let uuid = request.attempt_id;
        let code = &self.config.product_code;
        let message = format!("total_amount={total},transaction_uuid={uuid},product_code={code}");
        let fields = [
            ("amount", format_amount(request.subtotal)),
            ("tax_amount", format_amount(request.tax)),
            ("product_service_charge", "0".to_owned()),
            ("product_delivery_charge", "0".to_owned()),
            ("total_amount", total.clone()),
            ("transaction_uuid", uuid.to_owned()),
            ("product_code", code.clone()),
            (
                "success_url",
                format!("{}/v1/payments/esewa/return", request.public_url),
            ),
            (
                "failure_url",
                format!("{}/v1/payments/esewa/failure/{uuid}", request.public_url),
            ),
            (
                "signed_field_names",
                "total_amount,transaction_uuid,product_code".to_owned(),
            ),
            ("signature", sign(self.config.secret_key.expose(), &message)),
        ];
        NextStep::FormPost {
            action: format!("{}/api/epay/main/v2/form", self.config.base_url),
            fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }

    /// Verifies a return's `data` with this merchant's key.
    ///
    /// # Errors
    /// As [`verify_return`].
    pub fn verify(&self, data: &str) -> Result<ReturnData, ReturnError> {
        verify_return(data, self.config.secret_key.expose())
    }

    async fn status(&self, attempt: &Attempt) -> Result<Lookup, ProviderError> {
        let url = format!("{}/api/epay/transaction/status/", self.config.base_url);
        let answer = self
            .client
            .get(url)
            .query(&[
                ("product_code", self.config.product_code.as_str()),
                ("total_amount", format_amount(attempt.amount).as_str()),
                ("transaction_uuid", attempt.provider_ref.as_str()),
            ])
            .send()
            .await
            .map_err(|e| transport(NAME, &e))?;
        let code = answer.status();
        let body: Value = answer.json().await.map_err(|e| transport(NAME, &e))?;
        if !code.is_success() && body.get("status").is_none() {
            return Err(ProviderError::Unexpected {
                provider: NAME,
                what: format!("the status API answered {}", code.as_u16()),
            });
        }
        let raw = body
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let status = match raw.as_str() {
            "COMPLETE" => PaymentStatus::Completed,
            "PENDING" => PaymentStatus::Pending,
            "AMBIGUOUS" => PaymentStatus::Ambiguous,
            "FULL_REFUND" | "PARTIAL_REFUND" => PaymentStatus::Refunded,
            "NOT_FOUND" | "CANCELED" => PaymentStatus::Failed,
            _ => {
                return Err(ProviderError::Unexpected {
                    provider: NAME,
                    what: "the status API named no known status".into(),
                });
            }
        };
        // The uuid and product must be ours: an answer about another
        // transaction proves nothing.
        let same =
            |field: &str, ours: &str| body.get(field).and_then(literal).is_none_or(|v| v == ours);
        if !same("transaction_uuid", &attempt.provider_ref)
            || !same("product_code", &self.config.product_code)
        {
            return Err(ProviderError::Unexpected {
                provider: NAME,
                what: "the status API answered about another transaction".into(),
            });
        }
        let amount = body
            .get("total_amount")
            .and_then(literal)
            .and_then(|t| parse_amount(&t));
        Ok(Lookup {
            status,
            raw_status: raw,
            amount,
            currency: Currency::parse("NPR").ok(),
            payment_reference: body
                .get("ref_id")
                .and_then(literal)
                .unwrap_or_else(|| attempt.provider_ref.clone()),
            subscription: None,
        })
    }
}

impl PaymentProvider for Esewa {
    fn provider(&self) -> Provider {
        Provider::Esewa
    }

    fn initiate<'a>(&'a self, request: &'a Initiation<'a>) -> ProviderFuture<'a, Initiated> {
        Box::pin(async move {
            if request.currency.as_str() != "NPR" {
                return Err(ProviderError::Refused {
                    provider: NAME,
                    what: format!("eSewa takes NPR, not {}", request.currency),
                });
            }
            Ok(Initiated {
                provider_ref: request.attempt_id.to_owned(),
                next: self.form(request),
            })
        })
    }

    fn lookup<'a>(&'a self, attempt: &'a Attempt) -> ProviderFuture<'a, Lookup> {
        Box::pin(self.status(attempt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "8gBm/:&EnhH.1/q";

    fn data(json: &str) -> String {
        STANDARD.encode(json)
    }

    fn signed(total: &str, uuid: &str) -> String {
        let message = format!(
            "transaction_code=000AWEO,status=COMPLETE,total_amount={total},transaction_uuid={uuid},product_code=EPAYTEST,signed_field_names=transaction_code,status,total_amount,transaction_uuid,product_code,signed_field_names"
        );
        let signature = sign(KEY, &message);
        format!(
            r#"{{"transaction_code":"000AWEO","status":"COMPLETE","total_amount":"{total}","transaction_uuid":"{uuid}","product_code":"EPAYTEST","signed_field_names":"transaction_code,status,total_amount,transaction_uuid,product_code,signed_field_names","signature":"{signature}"}}"#
        )
    }

    #[test]
    fn the_form_signature_matches_an_independent_hmac() {
        // Computed with Python's hmac/hashlib/base64 over the same message
        // and eSewa's published UAT key.
        assert_eq!(
            sign(
                KEY,
                "total_amount=100,transaction_uuid=11-201-13,product_code=EPAYTEST"
            ),
            "5DZywcrTKD0gia/rsSMcrRHmJl+4Tbol6S+lWgdJ94E="
        );
    }

    #[test]
    fn a_return_verifies_over_its_own_signed_fields_with_literal_values() {
        let ok = verify_return(&data(&signed("1000.0", "pay_1")), KEY).unwrap();
        assert_eq!(ok.transaction_uuid, "pay_1");
        assert_eq!(ok.status, "COMPLETE");
        let commas = verify_return(&data(&signed("2,700.0", "pay_2")), KEY).unwrap();
        assert_eq!(commas.transaction_uuid, "pay_2");
        // Signed over 1000.0, sent as 1000: refused.
        let altered = signed("1000.0", "pay_1").replace("\"1000.0\"", "\"1000\"");
        assert_eq!(
            verify_return(&data(&altered), KEY),
            Err(ReturnError::BadSignature)
        );
        // A number literal is its own text.
        let number = signed("1000.0", "pay_1").replace("\"1000.0\"", "1000.0");
        assert!(verify_return(&data(&number), KEY).is_ok());
        assert_eq!(
            verify_return(&data(&signed("1000.0", "pay_1")), "another key"),
            Err(ReturnError::BadSignature)
        );
        assert_eq!(verify_return("%%%", KEY), Err(ReturnError::Malformed));
    }

    #[test]
    fn a_plus_that_arrived_as_a_space_is_put_back() {
        // Find a uuid whose encoding contains '+'.
        let encoded = (0..500)
            .map(|i| data(&signed("1000", &format!("pay>>>?{i}"))))
            .find(|d| d.contains('+'))
            .unwrap();
        let spaced = encoded.replace('+', " ");
        assert!(verify_return(&spaced, KEY).is_ok());
    }

    #[test]
    fn unsigned_status_or_uuid_is_refused() {
        let message = "total_amount=100,product_code=EPAYTEST";
        let json = format!(
            r#"{{"status":"COMPLETE","total_amount":"100","transaction_uuid":"x","product_code":"EPAYTEST","signed_field_names":"total_amount,product_code","signature":"{}"}}"#,
            sign(KEY, message)
        );
        assert!(matches!(
            verify_return(&data(&json), KEY),
            Err(ReturnError::Missing(_))
        ));
    }

    #[test]
    fn amounts_format_and_parse() {
        assert_eq!(format_amount(100_000), "1000");
        assert_eq!(format_amount(37_666), "376.66");
        assert_eq!(format_amount(37_605), "376.05");
        assert_eq!(parse_amount("1000"), Some(100_000));
        assert_eq!(parse_amount("1000.0"), Some(100_000));
        assert_eq!(parse_amount("2,700.50"), Some(270_050));
        assert_eq!(parse_amount("376.66"), Some(37_666));
        for bad in ["", "-1", "1.234", "1e3", "abc", ".5"] {
            assert_eq!(parse_amount(bad), None, "{bad}");
        }
    }
}
