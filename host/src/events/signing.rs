//! The webhook signature: `Souk-Signature: v1=<hex>`, where `<hex>` is
//! HMAC-SHA256 keyed with the endpoint's secret (its text, `whsec_`
//! included) over `<timestamp>.<body>` — the `Souk-Webhook-Timestamp`
//! header's value, a dot, and the exact body bytes. While a rotated
//! secret's grace period lasts, the header carries one `v1=` value per
//! secret, comma-separated, newest first; a receiver accepts the delivery
//! when any of them matches (docs/webhooks.md).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `v1` signature of `body` sent at `timestamp` (unix seconds) with
/// `secret`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The `Souk-Signature` header's value for `secrets` (newest first).
pub fn header(secrets: &[&str], timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| format!("v1={}", sign(secret, timestamp, body)))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        let expected = {
            let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_k").unwrap();
            mac.update(b"1700000000.{\"a\":1}");
            hex::encode(mac.finalize().into_bytes())
        };
        assert_eq!(sign("whsec_k", 1_700_000_000, b"{\"a\":1}"), expected);
        assert_ne!(sign("whsec_k", 1_700_000_001, b"{\"a\":1}"), expected);
        assert_ne!(sign("whsec_j", 1_700_000_000, b"{\"a\":1}"), expected);
        assert_eq!(expected.len(), 64);
    }

    #[test]
    fn a_rotation_signs_with_every_secret() {
        let h = header(&["new", "old"], 5, b"x");
        assert_eq!(
            h,
            format!("v1={},v1={}", sign("new", 5, b"x"), sign("old", 5, b"x"))
        );
    }
}
