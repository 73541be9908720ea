//! Payment-link tokens: `pay1|<invoice id>|<tenant id>|<expiry>` signed
//! with HMAC-SHA256 under a key of the host, 32 random bytes in
//! `<data>/pay-link-key` (mode 0600), created on first start. A token is
//! `base64url(payload) "." base64url(mac)`; the MAC is compared in
//! constant time ([`TokenKey`], shared with the host's other
//! signed tokens) before the payload is read. What
//! the links do: [`super::pay_link`].

use std::path::Path;

use time::OffsetDateTime;

use crate::secrets::TokenKey;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "pay-link-key";

/// Longest token accepted (a real one is about 120 characters).
const MAX_TOKEN_LEN: usize = 512;

/// What a verified token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayLinkGrant {
    /// The invoice's id.
    pub invoice_id: String,
    /// Its tenant's internal id.
    pub tenant_id: String,
    /// Unix seconds after which the token is refused.
    pub expires: i64,
}

/// Signs and checks payment-link tokens under the host's key.
#[derive(Debug)]
pub struct PayLinkSigner {
    key: TokenKey,
}

impl PayLinkSigner {
    /// The signer whose key is in `data_dir` ([`KEY_FILE`]), creating the
    /// key (0600) if there is none.
    ///
    /// # Errors
    /// I/O errors, or a key file that is not 64 hex digits.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        Ok(PayLinkSigner {
            key: TokenKey::open(data_dir, KEY_FILE)?,
        })
    }

    /// A signer with `key` (tests).
    pub fn with_key(key: [u8; 32]) -> Self {
        PayLinkSigner {
            key: TokenKey::from_bytes(key),
        }
    }

    /// The token for `grant`.
    pub fn sign(&self, grant: &PayLinkGrant) -> String {
        self.key.sign(&format!(
            "pay1|{}|{}|{}",
            grant.invoice_id, grant.tenant_id, grant.expires
        ))
    }

    /// The grant `token` carries if its MAC is right and it has not expired
    /// at `now`; `None` otherwise (which is all a caller learns).
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Option<PayLinkGrant> {
        let payload = self.key.verify(token, MAX_TOKEN_LEN)?;
        let mut parts = payload.split('|');
        let (Some("pay1"), Some(invoice), Some(tenant), Some(expires), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let expires: i64 = expires.parse().ok()?;
        if now.unix_timestamp() > expires {
            return None;
        }
        Some(PayLinkGrant {
            invoice_id: invoice.to_owned(),
            tenant_id: tenant.to_owned(),
            expires,
        })
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn grant(expires: i64) -> PayLinkGrant {
        PayLinkGrant {
            invoice_id: "inv_0123".into(),
            tenant_id: "t0".into(),
            expires,
        }
    }

    #[test]
    fn a_token_verifies_until_it_expires_and_not_when_tampered() {
        let signer = PayLinkSigner::with_key([7; 32]);
        let now = OffsetDateTime::from_unix_timestamp(1_000).unwrap();
        let token = signer.sign(&grant(2_000));
        assert_eq!(signer.verify(&token, now), Some(grant(2_000)));
        let later = OffsetDateTime::from_unix_timestamp(2_001).unwrap();
        assert_eq!(signer.verify(&token, later), None);
        // Another key.
        assert_eq!(PayLinkSigner::with_key([8; 32]).verify(&token, now), None);
        // A payload naming another invoice, with the old MAC.
        let (_, tag) = token.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("pay1|inv_9999|t0|2000"));
        assert_eq!(signer.verify(&forged, now), None);
        // A later expiry, with the old MAC.
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("pay1|inv_0123|t0|9999"));
        assert_eq!(signer.verify(&forged, now), None);
        // Every single character changed.
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            if changed != token {
                assert_eq!(signer.verify(&changed, now), None, "position {i}");
            }
        }
        for junk in ["", ".", "abc", "a.b.c", &"A".repeat(600)] {
            assert_eq!(signer.verify(junk, now), None, "{junk}");
        }
    }

    #[test]
    fn a_file_url_token_is_not_a_payment_link() {
        // Same shape, another payload tag: refused even under the same key.
        let signer = PayLinkSigner::with_key([7; 32]);
        let now = OffsetDateTime::from_unix_timestamp(1_000).unwrap();
        let token = TokenKey::from_bytes([7; 32]).sign("v1|t0|cards|inv_0123|2000");
        assert_eq!(signer.verify(&token, now), None);
    }

    #[test]
    fn the_key_file_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = PayLinkSigner::open(dir.path()).unwrap();
        let again = PayLinkSigner::open(dir.path()).unwrap();
        let token = first.sign(&grant(2_000));
        let now = OffsetDateTime::from_unix_timestamp(1_000).unwrap();
        assert_eq!(again.verify(&token, now), Some(grant(2_000)));
        std::fs::write(dir.path().join(KEY_FILE), "not hex").unwrap();
        assert!(PayLinkSigner::open(dir.path()).is_err());
    }
}
