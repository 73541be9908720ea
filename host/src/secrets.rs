//! Secret material on disk and in memory: private files (0600), random
//! tokens and their hashes.

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
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
