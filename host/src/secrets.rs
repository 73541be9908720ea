//! Secret material on disk and in memory: private files (0600), random
//! tokens and their hashes, and the keys that sign the host's own tokens
//! ([`TokenKey`]).

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};

/// Writes `bytes` to `path` so that only the owner can read it (0600),
/// replacing any existing file atomically.
///
/// # Errors
/// Any I/O error.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("secret")
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A fresh random secret of 32 bytes, URL-safe base64 encoded.
pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The sha256 hash of a token, hex encoded: what the host stores instead of
/// the token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A key of the host that signs short tokens it hands out and later takes
/// back (signed download URLs, payment links): 32 random bytes kept as 64
/// hex digits in a 0600 file of the data directory, made on first start.
///
/// A token is `base64url(payload) "." base64url(HMAC-SHA256(key, payload))`.
/// [`TokenKey::verify`] compares the MAC in constant time
/// ([`Mac::verify_slice`]) before anything reads the payload; what the
/// payload says (and when it expires) is its user's business.
pub struct TokenKey {
    key: [u8; 32],
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey")
    }
}

impl TokenKey {
    /// The key in `data_dir/file_name`, creating it (0600) if there is none.
    ///
    /// # Errors
    /// I/O errors, or a key file that is not 64 hex digits.
    pub fn open(data_dir: &Path, file_name: &str) -> std::io::Result<Self> {
        let path = data_dir.join(file_name);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let fresh = hex::encode(rand::random::<[u8; 32]>());
                write_private_file(&path, fresh.as_bytes())?;
                fresh
            }
            Err(e) => return Err(e),
        };
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{file_name} in the data directory is not 64 hex digits"),
            )
        })?;
        Ok(TokenKey { key })
    }

    /// A key with these bytes (tests).
    pub fn from_bytes(key: [u8; 32]) -> Self {
        TokenKey { key }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length; 32 bytes never fails.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!())
    }

    /// The token carrying `payload`.
    pub fn sign(&self, payload: &str) -> String {
        let mut m = self.mac();
        m.update(payload.as_bytes());
        let tag = m.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The payload of `token` when this key signed it; `None` for a token
    /// longer than `max_len`, malformed, or with a wrong MAC (all a caller
    /// learns).
    pub fn verify(&self, token: &str, max_len: usize) -> Option<String> {
        if token.len() > max_len {
            return None;
        }
        let (payload, tag) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut m = self.mac();
        m.update(&payload);
        m.verify_slice(&tag).ok()?;
        String::from_utf8(payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_under_its_key_only_and_not_once_altered() {
        let key = TokenKey::from_bytes([7; 32]);
        let token = key.sign("v1|a|b");
        assert_eq!(key.verify(&token, 512).as_deref(), Some("v1|a|b"));
        assert_eq!(TokenKey::from_bytes([8; 32]).verify(&token, 512), None);
        assert_eq!(key.verify(&token, token.len() - 1), None);
        let (payload, tag) = token.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("v1|a|c"));
        assert_eq!(key.verify(&forged, 512), None);
        assert_eq!(key.verify(payload, 512), None);
        assert_eq!(key.verify("", 512), None);
        assert_eq!(key.verify("!!.??", 512), None);
    }

    #[test]
    fn the_key_file_is_made_once_private_and_a_bad_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = TokenKey::open(dir.path(), "k").unwrap();
        let mode = std::fs::metadata(dir.path().join("k"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = TokenKey::open(dir.path(), "k").unwrap();
        assert_eq!(again.verify(&first.sign("x"), 64).as_deref(), Some("x"));
        std::fs::write(dir.path().join("bad"), "not hex").unwrap();
        let err = TokenKey::open(dir.path(), "bad").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
