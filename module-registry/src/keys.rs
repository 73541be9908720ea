//! Ed25519 keys: generation, signing, verification and the text file
//! formats an operator keeps on disk.
//!
//! A private key file holds one line, `souk-ed25519-private:<base64 of the
//! 32-byte seed>`; a public key file holds `souk-ed25519-public:<base64 of
//! the 32-byte key>`. A key is named by its [`KeyId`], derived from the
//! public key, so trust roots and records can refer to keys by a short,
//! stable name.
//!
//! Key material never reaches a log: the `Debug` impls of [`KeyPair`] print
//! only the key id, and the private text is wiped from memory after use.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// Prefix of a private key file's single line.
pub const PRIVATE_KEY_PREFIX: &str = "souk-ed25519-private:";
/// Prefix of a public key's text form.
pub const PUBLIC_KEY_PREFIX: &str = "souk-ed25519-public:";
/// Prefix of a [`KeyId`].
pub const KEY_ID_PREFIX: &str = "ed25519:";

/// Key files are one short line; anything much longer is not a key file.
const MAX_KEY_FILE_BYTES: u64 = 1024;

/// Why a key, key file or signature was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is not a key of the expected kind.
    #[error("{what} is malformed: {reason}")]
    Malformed {
        /// What was being parsed (`private key`, `public key`, `key id`, `signature`).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Writing a private key would replace an existing file.
    #[error(
        "key file {path} already exists; refusing to overwrite a key (move it away first if you mean to replace it)"
    )]
    AlreadyExists { path: PathBuf },
    /// A private key file can be read by other users.
    #[error(
        "private key file {path} has permissions {mode:o}; it must be readable by its owner only (run `chmod 600` on it)"
    )]
    PermissionsTooOpen {
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A signature did not verify under the key.
    #[error("the signature does not verify under key {key}")]
    BadSignature {
        /// The key that was expected to have signed.
        key: KeyId,
    },
}

fn malformed(what: &'static str, reason: impl Into<String>) -> KeyError {
    KeyError::Malformed {
        what,
        reason: reason.into(),
    }
}

/// The stable name of a public key: `ed25519:` followed by the first 16
/// bytes of the sha256 of the key, in lowercase hex.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// Parses `ed25519:<32 lowercase hex digits>`.
    ///
    /// # Errors
    /// [`KeyError::Malformed`] saying which part is wrong.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let Some(hex_part) = text.strip_prefix(KEY_ID_PREFIX) else {
            return Err(malformed(
                "key id",
                format!("{text:?} does not start with {KEY_ID_PREFIX:?}"),
            ));
        };
        if hex_part.len() != 32
            || !hex_part
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        {
            return Err(malformed(
                "key id",
                format!("{text:?} must end in 32 lowercase hex digits"),
            ));
        }
        Ok(KeyId(text.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        KeyId::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Builds a key from its 32 bytes.
    ///
    /// # Errors
    /// [`KeyError::Malformed`] when the bytes are not a usable ed25519 point
    /// (not on the curve, or a weak key of small order, which would let
    /// one signature verify for many messages).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(bytes)
            .map_err(|_| malformed("public key", "the bytes are not an ed25519 point"))?;
        if key.is_weak() {
            return Err(malformed(
                "public key",
                "it is a weak key of small order and would accept forged signatures",
            ));
        }
        Ok(PublicKey(key))
    }

    /// The key's 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The key's stable id.
    pub fn id(&self) -> KeyId {
        let hash = Sha256::digest(self.0.as_bytes());
        KeyId(format!("{KEY_ID_PREFIX}{}", hex::encode(&hash[..16])))
    }

    /// The text form, `souk-ed25519-public:<base64>`.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_KEY_PREFIX}{}", BASE64.encode(self.0.as_bytes()))
    }

    /// Parses the text form; surrounding whitespace is ignored.
    ///
    /// # Errors
    /// [`KeyError::Malformed`] saying what is wrong, including when the text
    /// is a private key.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if text.starts_with(PRIVATE_KEY_PREFIX) {
            return Err(malformed(
                "public key",
                "this is a private key; give the public key (it starts with \"souk-ed25519-public:\")",
            ));
        }
        let bytes = decode_key_text(text, PUBLIC_KEY_PREFIX, "public key")?;
        PublicKey::from_bytes(&bytes)
    }

    /// Checks that `signature` is this key's signature over `message`.
    ///
    /// Verification is strict: non-canonical signatures are refused, so a
    /// signature cannot be altered into a second valid one.
    ///
    /// # Errors
    /// [`KeyError::BadSignature`] when it is not.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), KeyError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(message, &sig)
            .map_err(|_| KeyError::BadSignature { key: self.id() })
    }

    /// Reads a public key file.
    ///
    /// # Errors
    /// [`KeyError::Io`] when the file cannot be read; [`KeyError::Malformed`]
    /// when it does not hold a public key.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let text = read_key_file(path)?;
        PublicKey::parse(&text)
    }

    /// Writes the public key file (one line), replacing any existing file
    /// atomically.
    ///
    /// # Errors
    /// [`KeyError::Io`] when the file cannot be written.
    pub fn write(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let tmp = temp_path_beside(path);
        let result = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            file.write_all(format!("{}\n", self.to_text()).as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(io)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_text())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        PublicKey::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An ed25519 signature (64 bytes); its text form is base64.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; 64]);

impl Signature {
    /// The signature's bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }

    /// Builds a signature from its 64 bytes.
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Signature(bytes)
    }

    /// Parses base64 text.
    ///
    /// # Errors
    /// [`KeyError::Malformed`] when the text is not base64 of 64 bytes.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let bytes = BASE64
            .decode(text)
            .map_err(|e| malformed("signature", format!("not base64: {e}")))?;
        let bytes: [u8; 64] = bytes.try_into().map_err(|b: Vec<u8>| {
            malformed(
                "signature",
                format!("must decode to 64 bytes, found {}", b.len()),
            )
        })?;
        Ok(Signature(bytes))
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE64.encode(self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Signature::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An ed25519 key pair. The secret half is wiped from memory when the pair
/// is dropped and never appears in `Debug` output.
#[derive(Clone)]
pub struct KeyPair(SigningKey);

impl KeyPair {
    /// Generates a new key pair from the operating system's random source.
    pub fn generate() -> Self {
        let seed = Zeroizing::new(rand::random::<[u8; 32]>());
        KeyPair(SigningKey::from_bytes(&seed))
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The id of the public half.
    pub fn id(&self) -> KeyId {
        self.public().id()
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        use ed25519_dalek::Signer as _;
        Signature(self.0.sign(message).to_bytes())
    }

    /// Parses the private key text form; surrounding whitespace is ignored.
    ///
    /// # Errors
    /// [`KeyError::Malformed`] saying what is wrong (never echoing the key),
    /// including when the text is a public key.
    pub fn parse_private(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if text.starts_with(PUBLIC_KEY_PREFIX) {
            return Err(malformed(
                "private key",
                "this is a public key; a private key file starts with \"souk-ed25519-private:\"",
            ));
        }
        let seed = Zeroizing::new(decode_key_text(text, PRIVATE_KEY_PREFIX, "private key")?);
        Ok(KeyPair(SigningKey::from_bytes(&seed)))
    }

    /// Writes the private key file: one line, created with permissions 0600
    /// (owner read/write only) before any key material is written, then
    /// linked into place atomically so a crash never leaves a half-written
    /// key. An existing file is never overwritten.
    ///
    /// # Errors
    /// [`KeyError::AlreadyExists`] when `path` exists; [`KeyError::Io`]
    /// when the file cannot be written.
    pub fn write_private_key(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        if path.exists() {
            return Err(KeyError::AlreadyExists {
                path: path.to_owned(),
            });
        }
        let text = Zeroizing::new(format!(
            "{PRIVATE_KEY_PREFIX}{}\n",
            BASE64.encode(self.0.to_bytes())
        ));
        let tmp = temp_path_beside(path);
        let written = (|| {
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io(e));
        }
        // A hard link fails if the target exists, unlike rename, so two
        // concurrent writers cannot replace each other's key.
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(KeyError::AlreadyExists {
                    path: path.to_owned(),
                })
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Reads a private key file written by [`KeyPair::write_private_key`].
    ///
    /// # Errors
    /// [`KeyError::PermissionsTooOpen`] when group or others may access the
    /// file (Unix); [`KeyError::Io`] when it cannot be read;
    /// [`KeyError::Malformed`] when it does not hold a private key.
    pub fn read_private_key(path: &Path) -> Result<Self, KeyError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let meta = fs::metadata(path).map_err(|source| KeyError::Io {
                path: path.to_owned(),
                source,
            })?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::PermissionsTooOpen {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        let text = Zeroizing::new(read_key_file(path)?);
        KeyPair::parse_private(&text)
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair({}, secret redacted)", self.id())
    }
}

/// Decodes `<prefix><base64 of 32 bytes>`.
fn decode_key_text(text: &str, prefix: &str, what: &'static str) -> Result<[u8; 32], KeyError> {
    let Some(b64) = text.strip_prefix(prefix) else {
        return Err(malformed(what, format!("it must start with {prefix:?}")));
    };
    let bytes = Zeroizing::new(BASE64.decode(b64).map_err(|e| {
        malformed(
            what,
            format!("the part after the prefix is not base64: {e}"),
        )
    })?);
    let mut out = [0u8; 32];
    if bytes.len() != out.len() {
        return Err(malformed(
            what,
            format!("it must decode to 32 bytes, found {}", bytes.len()),
        ));
    }
    out.copy_from_slice(&bytes);
    Ok(out)
}

fn read_key_file(path: &Path) -> Result<String, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut buf = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(malformed(
            "key file",
            format!("it is larger than {MAX_KEY_FILE_BYTES} bytes, so it is not a key file"),
        ));
    }
    let text = std::str::from_utf8(&buf).map_err(|_| malformed("key file", "it is not text"))?;
    Ok(text.to_owned())
}

/// A fresh temporary name in the same directory as `path`, so the final
/// rename or link stays on one file system.
fn temp_path_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix: u64 = rand::random();
    path.with_file_name(format!(".{name}.{suffix:016x}.tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_the_signed_message_and_key() {
        let pair = KeyPair::generate();
        let other = KeyPair::generate();
        let sig = pair.sign(b"hello");
        assert!(pair.public().verify(b"hello", &sig).is_ok());
        assert!(matches!(
            pair.public().verify(b"hellO", &sig),
            Err(KeyError::BadSignature { .. })
        ));
        assert!(other.public().verify(b"hello", &sig).is_err());
    }

    #[test]
    fn key_id_is_stable_and_parses_back() {
        let seed = [7u8; 32];
        let pair = KeyPair(SigningKey::from_bytes(&seed));
        let id = pair.id();
        assert_eq!(id, pair.public().id());
        assert_eq!(id.as_str().len(), KEY_ID_PREFIX.len() + 32);
        assert_eq!(KeyId::parse(id.as_str()).unwrap(), id);
        assert!(KeyId::parse("ed25519:XYZ").is_err());
        assert!(KeyId::parse("rsa:00112233445566778899aabbccddeeff").is_err());
    }

    #[test]
    fn public_key_text_round_trips_and_names_mistakes() {
        let pair = KeyPair::generate();
        let text = pair.public().to_text();
        assert!(text.starts_with(PUBLIC_KEY_PREFIX));
        assert_eq!(PublicKey::parse(&text).unwrap(), pair.public());
        let e = PublicKey::parse("souk-ed25519-public:AAAA").unwrap_err();
        assert!(e.to_string().contains("32 bytes, found 3"), "{e}");
        let e = PublicKey::parse("souk-ed25519-public:!!").unwrap_err();
        assert!(e.to_string().contains("not base64"), "{e}");
        let e = PublicKey::parse("ssh-ed25519 AAAA").unwrap_err();
        assert!(e.to_string().contains("must start with"), "{e}");
        let e = PublicKey::parse("souk-ed25519-private:AAAA").unwrap_err();
        assert!(e.to_string().contains("this is a private key"), "{e}");
    }

    #[test]
    fn debug_output_never_contains_the_secret() {
        let pair = KeyPair::generate();
        let secret_b64 = BASE64.encode(pair.0.to_bytes());
        let debug = format!("{pair:?}");
        assert!(!debug.contains(&secret_b64), "{debug}");
        assert!(debug.contains("redacted"), "{debug}");
        assert!(debug.contains(pair.id().as_str()));
    }

    #[cfg(unix)]
    #[test]
    fn private_key_file_is_created_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("operator.key");
        let pair = KeyPair::generate();
        pair.write_private_key(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode was {mode:o}");
        let back = KeyPair::read_private_key(&path).unwrap();
        assert_eq!(back.public(), pair.public());
        // No temporary files are left beside the key.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn private_key_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("operator.key");
        let first = KeyPair::generate();
        first.write_private_key(&path).unwrap();
        let err = KeyPair::generate().write_private_key(&path).unwrap_err();
        assert!(matches!(err, KeyError::AlreadyExists { .. }), "{err}");
        assert_eq!(
            KeyPair::read_private_key(&path).unwrap().public(),
            first.public()
        );
    }

    #[cfg(unix)]
    #[test]
    fn private_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("operator.key");
        KeyPair::generate().write_private_key(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = KeyPair::read_private_key(&path).unwrap_err();
        assert!(matches!(
            err,
            KeyError::PermissionsTooOpen { mode: 0o644, .. }
        ));
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn private_key_parse_errors_say_what_is_wrong_without_echoing_it() {
        let e = KeyPair::parse_private("souk-ed25519-private:c2VjcmV0").unwrap_err();
        assert!(e.to_string().contains("32 bytes, found 6"), "{e}");
        assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
        let public = KeyPair::generate().public().to_text();
        let e = KeyPair::parse_private(&public).unwrap_err();
        assert!(e.to_string().contains("this is a public key"), "{e}");
    }

    #[test]
    fn public_key_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("operator.pub");
        let pair = KeyPair::generate();
        pair.public().write(&path).unwrap();
        assert_eq!(PublicKey::read(&path).unwrap(), pair.public());
    }

    #[test]
    fn signature_text_round_trips_and_rejects_wrong_lengths() {
        let sig = KeyPair::generate().sign(b"x");
        assert_eq!(Signature::parse(&sig.to_string()).unwrap(), sig);
        let e = Signature::parse("AAAA").unwrap_err();
        assert!(e.to_string().contains("64 bytes, found 3"), "{e}");
    }
}
