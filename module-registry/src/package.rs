//! The package format: a deterministic tar archive holding exactly
//! `module.yaml` and `module.wasm`, addressed by the sha256 of its bytes.
//!
//! Packages arrive from outside (uploads, registries, disk), so reading one
//! enforces size limits before anything is allocated for it, refuses any
//! entry other than the two expected regular files, and parses the manifest.

use std::fmt;
use std::io::{Cursor, Read};

use sha2::{Digest as _, Sha256};

use crate::manifest::{Manifest, ManifestError};

/// The manifest's file name inside a package.
pub const MANIFEST_FILE: &str = "module.yaml";
/// The component's file name inside a package.
pub const COMPONENT_FILE: &str = "module.wasm";

/// A sha256 digest of a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// The digest whose sha256 output is `bytes` (for a hash computed
    /// while streaming).
    pub fn from_sha256(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    /// Parses `sha256:<64 hex>` or bare hex.
    ///
    /// # Errors
    /// Returns a message when the text is not 64 hex digits.
    pub fn parse(text: &str) -> Result<Self, String> {
        let hex_part = text.strip_prefix("sha256:").unwrap_or(text);
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out)
            .map_err(|_| format!("{text:?} is not a sha256 digest (64 hex digits)"))?;
        Ok(Digest(out))
    }

    /// Lowercase hex, without prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

/// Size limits applied while reading a package.
#[derive(Debug, Clone, Copy)]
pub struct PackageLimits {
    /// Largest accepted manifest. Default 64 KiB.
    pub max_manifest_bytes: u64,
    /// Largest accepted component. Default 32 MiB.
    pub max_component_bytes: u64,
}

impl Default for PackageLimits {
    fn default() -> Self {
        PackageLimits {
            max_manifest_bytes: 64 * 1024,
            max_component_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Why a package was refused.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The bytes are not a tar archive of the expected shape.
    #[error("not a Souk package: {0}")]
    Format(String),
    /// A file inside is larger than the limit.
    #[error("package file {file} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// Which file.
        file: &'static str,
        /// In bytes.
        limit: u64,
    },
    /// The manifest is not valid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The manifest is not UTF-8.
    #[error("module.yaml is not UTF-8 text")]
    ManifestEncoding,
    /// The component is not a WebAssembly binary at all.
    #[error("module.wasm is not a WebAssembly binary (missing \\0asm header)")]
    NotWasm,
}

/// A package read into memory with its manifest parsed.
#[derive(Debug, Clone)]
pub struct Package {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The manifest text as packaged.
    pub manifest_text: String,
    /// The component bytes (not yet validated as a component; the host does that).
    pub component: Vec<u8>,
    /// The digest of the whole package file.
    pub digest: Digest,
}

impl Package {
    /// Builds package bytes from a manifest and a component, after checking
    /// that the manifest parses and the component looks like WebAssembly.
    /// The archive is deterministic: the same inputs give the same digest.
    ///
    /// # Errors
    /// Any [`PackageError`] that reading the result would raise.
    pub fn build(manifest_text: &str, component: &[u8]) -> Result<Vec<u8>, PackageError> {
        Manifest::parse(manifest_text)?;
        if !component.starts_with(b"\0asm") {
            return Err(PackageError::NotWasm);
        }
        let mut builder = tar::Builder::new(Vec::new());
        builder.mode(tar::HeaderMode::Deterministic);
        for (name, bytes) in [
            (MANIFEST_FILE, manifest_text.as_bytes()),
            (COMPONENT_FILE, component),
        ] {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, name, bytes)
                .map_err(|e| PackageError::Format(e.to_string()))?;
        }
        builder
            .into_inner()
            .map_err(|e| PackageError::Format(e.to_string()))
    }

    /// Reads and checks package bytes.
    ///
    /// # Errors
    /// [`PackageError::Format`] for anything but exactly the two expected
    /// regular files; [`PackageError::TooLarge`] when a file exceeds
    /// `limits`; [`PackageError::Manifest`] when the manifest is invalid;
    /// [`PackageError::NotWasm`] when the component lacks the wasm header.
    pub fn read(bytes: &[u8], limits: PackageLimits) -> Result<Package, PackageError> {
        let digest = Digest::of(bytes);
        let mut archive = tar::Archive::new(Cursor::new(bytes));
        let mut manifest_bytes = None;
        let mut component = None;
        let entries = archive
            .entries()
            .map_err(|e| PackageError::Format(e.to_string()))?;
        for entry in entries {
            let entry = entry.map_err(|e| PackageError::Format(e.to_string()))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err(PackageError::Format(
                    "the archive may hold only regular files".into(),
                ));
            }
            let path = entry
                .path()
                .map_err(|e| PackageError::Format(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            let (slot, file, limit) = match path.as_str() {
                MANIFEST_FILE => (
                    &mut manifest_bytes,
                    MANIFEST_FILE,
                    limits.max_manifest_bytes,
                ),
                COMPONENT_FILE => (&mut component, COMPONENT_FILE, limits.max_component_bytes),
                other => {
                    return Err(PackageError::Format(format!(
                        "unexpected file {other:?} (a package holds only {MANIFEST_FILE} and {COMPONENT_FILE})"
                    )));
                }
            };
            if slot.is_some() {
                return Err(PackageError::Format(format!("{file} appears twice")));
            }
            let size = entry
                .header()
                .size()
                .map_err(|e| PackageError::Format(e.to_string()))?;
            if size > limit {
                return Err(PackageError::TooLarge { file, limit });
            }
            let mut buf = Vec::with_capacity(size as usize);
            entry
                .take(limit + 1)
                .read_to_end(&mut buf)
                .map_err(|e| PackageError::Format(e.to_string()))?;
            if buf.len() as u64 > limit {
                return Err(PackageError::TooLarge { file, limit });
            }
            *slot = Some(buf);
        }
        let manifest_bytes = manifest_bytes
            .ok_or_else(|| PackageError::Format(format!("{MANIFEST_FILE} is missing")))?;
        let component = component
            .ok_or_else(|| PackageError::Format(format!("{COMPONENT_FILE} is missing")))?;
        let manifest_text =
            String::from_utf8(manifest_bytes).map_err(|_| PackageError::ManifestEncoding)?;
        let manifest = Manifest::parse(&manifest_text)?;
        if !component.starts_with(b"\0asm") {
            return Err(PackageError::NotWasm);
        }
        Ok(Package {
            manifest,
            manifest_text,
            component,
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "slug: demo\nname: Demo\nversion: 1.0.0\ncategory: tools\napi: 0.1.0\n";
    const WASM: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn round_trips_and_is_deterministic() {
        let a = Package::build(MANIFEST, WASM).unwrap();
        let b = Package::build(MANIFEST, WASM).unwrap();
        assert_eq!(a, b);
        let p = Package::read(&a, PackageLimits::default()).unwrap();
        assert_eq!(p.component, WASM);
        assert_eq!(p.digest, Digest::of(&a));
        assert_eq!(Digest::parse(&p.digest.to_string()).unwrap(), p.digest);
    }

    #[test]
    fn refuses_non_wasm_and_garbage() {
        assert!(matches!(
            Package::build(MANIFEST, b"hello"),
            Err(PackageError::NotWasm)
        ));
        assert!(Package::read(b"definitely not tar", PackageLimits::default()).is_err());
        assert!(Package::read(&[], PackageLimits::default()).is_err());
    }

    #[test]
    fn enforces_size_limits() {
        let bytes = Package::build(MANIFEST, &[WASM, &[0u8; 4096]].concat()).unwrap();
        let limits = PackageLimits {
            max_component_bytes: 1024,
            ..PackageLimits::default()
        };
        assert!(matches!(
            Package::read(&bytes, limits),
            Err(PackageError::TooLarge {
                file: COMPONENT_FILE,
                ..
            })
        ));
    }

    #[test]
    fn refuses_extra_and_missing_files() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(3);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "evil.sh", &b"abc"[..])
            .unwrap();
        let bytes = builder.into_inner().unwrap();
        let err = Package::read(&bytes, PackageLimits::default()).unwrap_err();
        assert!(err.to_string().contains("evil.sh"), "{err}");
    }
}
