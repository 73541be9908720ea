//! Signed download URLs: `/f/{token}`, where the token names a tenant, a
//! module, a file and an expiry, and carries an HMAC-SHA256 over them under
//! a secret of the host.
//!
//! The secret is 32 random bytes in `<data>/file-url-key` (mode 0600),
//! created on first start. Whoever holds the token may download the file
//! until it expires; nothing else about the caller is checked. A token is
//! `base64url(payload) "." base64url(mac)`, the payload
//! `v1|<tenant id>|<module>|<file id>|<expiry, unix seconds>`. The MAC is
//! compared in constant time ([`TokenKey`], shared with the host's other
//! signed tokens) before the payload is
//! read.

use std::path::Path;

use time::OffsetDateTime;

use crate::secrets::TokenKey;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "file-url-key";

/// Longest token accepted.
const MAX_TOKEN_LEN: usize = 1024;

/// Longest lifetime of a signed URL, in seconds (one day).
pub const MAX_TTL_SECONDS: u32 = 86_400;

/// What a token lets its holder download, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The tenant's internal id.
    pub tenant_id: String,
    /// The module that stored the file.
    pub module: String,
    /// The file's id.
    pub file_id: String,
    /// Unix seconds after which the token is refused.
    pub expires: i64,
}

/// Signs and checks download tokens under the host's key.
#[derive(Debug)]
pub struct UrlSigner {
    key: TokenKey,
}

impl UrlSigner {
    /// The signer whose key is in `data_dir` ([`KEY_FILE`]), creating the
    /// key (0600) if there is none.
    ///
    /// # Errors
    /// I/O errors, or a key file that is not 64 hex digits.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        Ok(UrlSigner {
            key: TokenKey::open(data_dir, KEY_FILE)?,
        })
    }

    /// A signer with `key` (tests).
    pub fn with_key(key: [u8; 32]) -> Self {
        UrlSigner {
            key: TokenKey::from_bytes(key),
        }
    }

    /// The token for `grant`.
    pub fn sign(&self, grant: &Grant) -> String {
        self.key.sign(&format!(
            "v1|{}|{}|{}|{}",
            grant.tenant_id, grant.module, grant.file_id, grant.expires
        ))
    }

    /// The grant `token` carries if its MAC is right and it has not expired
    /// at `now`; `None` otherwise (which is all a caller learns).
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Option<Grant> {
        let payload = self.key.verify(token, MAX_TOKEN_LEN)?;
        let mut parts = payload.split('|');
        let (Some("v1"), Some(tenant), Some(module), Some(file), Some(expires), None) = (
            parts.next(),
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
        Some(Grant {
            tenant_id: tenant.to_owned(),
            module: module.to_owned(),
            file_id: file.to_owned(),
            expires,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            tenant_id: "t_0123".into(),
            module: "files-probe".into(),
            file_id: "f_abcd".into(),
            expires: 1_000,
        }
    }

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    #[test]
    fn a_token_is_good_until_it_expires() {
        let signer = UrlSigner::with_key([7; 32]);
        let token = signer.sign(&grant());
        assert_eq!(signer.verify(&token, at(1_000)), Some(grant()));
        assert_eq!(signer.verify(&token, at(1_001)), None);
    }

    #[test]
    fn tampered_or_foreign_tokens_are_refused() {
        let signer = UrlSigner::with_key([7; 32]);
        let token = signer.sign(&grant());
        assert_eq!(UrlSigner::with_key([8; 32]).verify(&token, at(0)), None);
        let (payload, tag) = token.split_once('.').unwrap();
        let other = Grant {
            file_id: "f_other".into(),
            ..grant()
        };
        let (forged_payload, _) = signer
            .sign(&other)
            .split_once('.')
            .map(|(p, t)| (p.to_owned(), t.to_owned()))
            .unwrap();
        assert_eq!(
            signer.verify(&format!("{forged_payload}.{tag}"), at(0)),
            None
        );
        let mut flipped = tag.as_bytes().to_vec();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let flipped = format!("{payload}.{}", String::from_utf8(flipped).unwrap());
        assert_eq!(signer.verify(&flipped, at(0)), None);
        assert_eq!(signer.verify(payload, at(0)), None);
        assert_eq!(signer.verify("", at(0)), None);
    }

    #[test]
    fn the_key_is_created_private_once() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let token = UrlSigner::open(dir.path()).unwrap().sign(&grant());
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            UrlSigner::open(dir.path())
                .unwrap()
                .verify(&token, at(0))
                .is_some()
        );
    }
}
