//! The on-disk cache of compiled components.
//!
//! A compiled component is keyed by the package's sha256 and the engine's
//! compatibility hash, so a restart reuses it and a wasmtime upgrade (or a
//! different CPU feature set) never loads an incompatible artifact.
//!
//! `Component::deserialize` trusts its input completely, so the cache only
//! deserializes files this host wrote: each file starts with an
//! HMAC-SHA256 tag over the artifact, keyed by a secret generated on first
//! use and kept in the data directory with 0600 permissions. A file that
//! fails the tag (tampered, truncated, planted) is discarded and recompiled.

use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};
use souk_module_registry::Digest;
use wasmtime::Engine;
use wasmtime::component::Component;

use super::LoadError;

type HmacSha256 = Hmac<Sha256>;
const TAG_LEN: usize = 32;

/// Compiled components on disk, authenticated with a host-local key.
pub struct ComponentCache {
    dir: PathBuf,
    key: [u8; 32],
}

/// Feeds `Hash` output into sha256, so the engine hash is stable across runs.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The engine's compatibility hash as hex.
pub(super) fn engine_hash(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    hex::encode(&hasher.0.finalize()[..16])
}

impl ComponentCache {
    /// Opens (creating if needed) the cache in `dir`, with its key in
    /// `dir/cache-key`.
    ///
    /// # Errors
    /// [`LoadError::Cache`] when the directory or key cannot be created or read.
    pub fn open(dir: &Path) -> Result<Self, LoadError> {
        let err = |e: std::io::Error| LoadError::Cache(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(err)?;
        let key_path = dir.join("cache-key");
        let key = match std::fs::read(&key_path) {
            Ok(bytes) if bytes.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                key
            }
            _ => {
                let key: [u8; 32] = rand::random();
                crate::secrets::write_private_file(&key_path, &key).map_err(err)?;
                key
            }
        };
        Ok(ComponentCache {
            dir: dir.to_owned(),
            key,
        })
    }

    fn path(&self, engine: &Engine, digest: &Digest) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", digest.hex(), engine_hash(engine)))
    }

    fn tag(&self, bytes: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(bytes);
        mac
    }

    /// Loads a cached compiled component, if a valid one exists.
    ///
    /// # Errors
    /// [`LoadError::Cache`] only for I/O errors other than "not found"; a
    /// file that fails authentication is removed and treated as a miss.
    pub fn get(&self, engine: &Engine, digest: &Digest) -> Result<Option<Component>, LoadError> {
        let path = self.path(engine, digest);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LoadError::Cache(format!("{}: {e}", path.display()))),
        };
        if bytes.len() < TAG_LEN
            || self
                .tag(&bytes[TAG_LEN..])
                .verify_slice(&bytes[..TAG_LEN])
                .is_err()
        {
            tracing::warn!(path = %path.display(), "discarding compiled component that fails authentication");
            let _ = std::fs::remove_file(&path);
            return Ok(None);
        }
        // SAFETY: the bytes carry a valid HMAC under this host's secret key,
        // so this host serialized them with an engine of the same
        // compatibility hash (part of the file name).
        let component = unsafe { Component::deserialize(engine, &bytes[TAG_LEN..]) };
        match component {
            Ok(component) => Ok(Some(component)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding unloadable compiled component");
                let _ = std::fs::remove_file(&path);
                Ok(None)
            }
        }
    }

    /// Stores a compiled component (atomically: write then rename).
    ///
    /// # Errors
    /// [`LoadError::Cache`] on I/O or serialization failure.
    pub fn put(
        &self,
        engine: &Engine,
        digest: &Digest,
        component: &Component,
    ) -> Result<(), LoadError> {
        let artifact = component
            .serialize()
            .map_err(|e| LoadError::Cache(format!("serialize: {e:#}")))?;
        let tag = self.tag(&artifact).finalize().into_bytes();
        let path = self.path(engine, digest);
        let err = |e: std::io::Error| LoadError::Cache(format!("{}: {e}", path.display()));
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(err)?;
        tmp.write_all(&tag).map_err(err)?;
        tmp.write_all(&artifact).map_err(err)?;
        tmp.persist(&path).map_err(|e| err(e.error))?;
        Ok(())
    }
}
