//! The registry snapshot: a signed, versioned, expiring list of every
//! module's log head, and the client-side guard that uses it to notice
//! rollback, freeze and mix-and-match attacks.
//!
//! Snapshots are signed by the **snapshot keys** of the trust root (a
//! threshold of them), not by the root keys: a snapshot is re-issued every
//! time a module changes and before it expires, so its key has to be at
//! hand, while root keys can stay offline. An operator who runs everything
//! from one key lists that key as both root and snapshot key.
//!
//! What each check defends against:
//!
//! - **rollback**: a snapshot's version only grows; the guard refuses one
//!   older than the last it accepted, so a mirror cannot serve old metadata
//!   to hide a yank or revocation;
//! - **freeze**: a snapshot expires; the guard refuses an expired one, so a
//!   mirror cannot keep a host on stale metadata forever;
//! - **mix-and-match**: a module log is used only if its head equals the
//!   head the accepted snapshot lists for that module, so logs from
//!   different moments cannot be combined.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::canonical::{CanonicalError, SignatureDomain, signing_bytes, text};
use crate::keys::KeyPair;
use crate::manifest::Slug;
use crate::records::{EntryHash, ModuleLog};
use crate::trust::{KeySignature, TrustState};

/// Why a snapshot or a log was refused against a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The snapshot could not be encoded canonically.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    /// Too few valid signatures from the trust root's snapshot keys.
    #[error(
        "snapshot {version} carries {valid} valid signature(s) from the snapshot keys of trust root {root_version}, {threshold} required"
    )]
    BadSignature {
        version: u64,
        /// The trust root consulted.
        root_version: u64,
        /// Valid signatures found.
        valid: usize,
        /// Signatures required.
        threshold: u32,
    },
    /// The snapshot is older than the last one accepted.
    #[error(
        "snapshot {offered} is older than the last accepted snapshot {last_accepted}: possible rollback attack"
    )]
    Rollback {
        /// The version offered.
        offered: u64,
        /// The last version accepted.
        last_accepted: u64,
    },
    /// A different snapshot under the version already accepted.
    #[error(
        "snapshot {version} differs from the snapshot {version} already accepted: the registry is showing different clients different states"
    )]
    Equivocation { version: u64 },
    /// The snapshot has expired.
    #[error(
        "snapshot {version} expired at {expires} (now {now}): possible freeze attack, or the registry has stopped refreshing its snapshot"
    )]
    Expired {
        version: u64,
        /// When it expired (unix seconds).
        expires: u64,
        /// The time of the check (unix seconds).
        now: u64,
    },
    /// No snapshot has been accepted yet.
    #[error("no snapshot has been accepted yet; fetch and accept the registry's snapshot first")]
    NoSnapshot,
    /// The module is not in the snapshot.
    #[error("module `{module}` is not in snapshot {version}")]
    ModuleNotInSnapshot { module: Slug, version: u64 },
    /// The log's head differs from the snapshot's.
    #[error(
        "the log of module `{module}` ends at {found}, but snapshot {version} lists {expected}: the log is stale or from another snapshot (mix-and-match)"
    )]
    HeadMismatch {
        module: Slug,
        version: u64,
        /// The head in the snapshot.
        expected: EntryHash,
        /// The head of the log offered (`none` for an empty log).
        found: String,
    },
}

/// The state of the whole registry at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Grows by at least one with every snapshot the registry issues.
    pub version: u64,
    /// When the snapshot stops being trusted (unix seconds).
    pub expires: u64,
    /// The head of every module's log.
    #[serde(with = "text::slug_map")]
    pub heads: BTreeMap<Slug, EntryHash>,
}

impl Snapshot {
    /// The bytes snapshot keys sign.
    ///
    /// # Errors
    /// [`SnapshotError::Canonical`] if the snapshot cannot be encoded.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, SnapshotError> {
        Ok(signing_bytes(SignatureDomain::Snapshot, self)?)
    }

    /// Signs the snapshot with each of `keys`.
    ///
    /// # Errors
    /// [`SnapshotError::Canonical`] if the snapshot cannot be encoded.
    pub fn sign(self, keys: &[&KeyPair]) -> Result<SignedSnapshot, SnapshotError> {
        let bytes = self.signing_bytes()?;
        let signatures = keys
            .iter()
            .map(|k| KeySignature {
                key: k.id(),
                signature: k.sign(&bytes),
            })
            .collect();
        Ok(SignedSnapshot {
            snapshot: self,
            signatures,
        })
    }
}

/// A snapshot with its signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedSnapshot {
    pub snapshot: Snapshot,
    /// Signatures over [`Snapshot::signing_bytes`].
    pub signatures: Vec<KeySignature>,
}

impl SignedSnapshot {
    /// Checks that a threshold of the trust root's snapshot keys signed it.
    ///
    /// # Errors
    /// [`SnapshotError::BadSignature`] when they did not.
    pub fn verify(&self, trust: &TrustState) -> Result<(), SnapshotError> {
        let root = trust.root();
        let bytes = self.snapshot.signing_bytes()?;
        let valid = root
            .snapshot
            .count_valid(&bytes, &self.signatures, &root.revoked);
        if !root.snapshot.is_met(valid) {
            return Err(SnapshotError::BadSignature {
                version: self.snapshot.version,
                root_version: root.version,
                valid,
                threshold: root.snapshot.threshold(),
            });
        }
        Ok(())
    }
}

/// A client's memory of the snapshots it accepted. The host persists
/// [`SnapshotGuard::last_accepted_version`] (and ideally the snapshot
/// itself) and restores it with [`SnapshotGuard::resume`] on restart, so a
/// restart does not open a window for rollback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotGuard {
    last_accepted_version: Option<u64>,
    current: Option<Snapshot>,
}

impl SnapshotGuard {
    /// A guard that has accepted nothing yet (first contact with a
    /// registry).
    pub fn new() -> Self {
        SnapshotGuard::default()
    }

    /// A guard that remembers accepting `last_accepted_version` but not the
    /// snapshot itself; logs can be checked once a snapshot is accepted
    /// again.
    pub fn resume(last_accepted_version: u64) -> Self {
        SnapshotGuard {
            last_accepted_version: Some(last_accepted_version),
            current: None,
        }
    }

    /// The version of the newest snapshot accepted, if any.
    pub fn last_accepted_version(&self) -> Option<u64> {
        self.last_accepted_version
    }

    /// The snapshot logs are checked against, if one was accepted.
    pub fn current(&self) -> Option<&Snapshot> {
        self.current.as_ref()
    }

    /// Accepts `signed` as the current snapshot when its signatures verify
    /// under `trust`, it is not older than the last accepted snapshot, and
    /// it has not expired at `now`. Re-accepting the current snapshot is
    /// allowed; a different snapshot under the same version is not. On
    /// error the guard is unchanged.
    ///
    /// # Errors
    /// [`SnapshotError::BadSignature`], [`SnapshotError::Rollback`],
    /// [`SnapshotError::Equivocation`] or [`SnapshotError::Expired`].
    pub fn accept(
        &mut self,
        signed: &SignedSnapshot,
        trust: &TrustState,
        now: u64,
    ) -> Result<&Snapshot, SnapshotError> {
        signed.verify(trust)?;
        let offered = &signed.snapshot;
        if let Some(last) = self.last_accepted_version {
            if offered.version < last {
                return Err(SnapshotError::Rollback {
                    offered: offered.version,
                    last_accepted: last,
                });
            }
            if offered.version == last
                && let Some(current) = &self.current
                && current != offered
            {
                return Err(SnapshotError::Equivocation {
                    version: offered.version,
                });
            }
        }
        if now >= offered.expires {
            return Err(SnapshotError::Expired {
                version: offered.version,
                expires: offered.expires,
                now,
            });
        }
        self.last_accepted_version = Some(offered.version);
        Ok(self.current.insert(offered.clone()))
    }

    /// Checks that `log` is exactly the log the accepted snapshot lists:
    /// its head equals the snapshot's head for the module. Expiry is not
    /// re-checked, so a host can still install offline from what it
    /// verified earlier.
    ///
    /// # Errors
    /// [`SnapshotError::NoSnapshot`], [`SnapshotError::ModuleNotInSnapshot`]
    /// or [`SnapshotError::HeadMismatch`].
    pub fn check_log(&self, log: &ModuleLog) -> Result<(), SnapshotError> {
        let snapshot = self.current.as_ref().ok_or(SnapshotError::NoSnapshot)?;
        let module = log.module();
        let Some(expected) = snapshot.heads.get(module) else {
            return Err(SnapshotError::ModuleNotInSnapshot {
                module: module.clone(),
                version: snapshot.version,
            });
        };
        if log.head() != Some(*expected) {
            return Err(SnapshotError::HeadMismatch {
                module: module.clone(),
                version: snapshot.version,
                expected: *expected,
                found: log.head().map_or("none".to_owned(), |h| h.to_string()),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::Digest;
    use crate::records::tests::{publish, slug};
    use crate::records::{ModuleAction, SignedEntry};
    use crate::trust::tests::Operator;

    fn log_of(op: &Operator, versions: &[&str]) -> ModuleLog {
        let mut log = ModuleLog::new(slug("membership"));
        for version in versions {
            let action: ModuleAction =
                publish("membership", version, Digest::of(version.as_bytes()));
            let entry = SignedEntry::sign(log.head(), action, &op.publisher).unwrap();
            log.append(entry, &op.trust()).unwrap();
        }
        log
    }

    fn snapshot_of(
        op: &Operator,
        version: u64,
        expires: u64,
        logs: &[&ModuleLog],
    ) -> SignedSnapshot {
        Snapshot {
            version,
            expires,
            heads: logs
                .iter()
                .filter_map(|l| Some((l.module().clone(), l.head()?)))
                .collect(),
        }
        .sign(&[&op.snapshot])
        .unwrap()
    }

    #[test]
    fn fresh_signed_snapshot_is_accepted_and_checks_logs() {
        let op = Operator::new();
        let log = log_of(&op, &["1.0.0"]);
        let mut guard = SnapshotGuard::new();
        guard
            .accept(&snapshot_of(&op, 1, 1000, &[&log]), &op.trust(), 10)
            .unwrap();
        assert_eq!(guard.last_accepted_version(), Some(1));
        assert!(guard.check_log(&log).is_ok());
    }

    #[test]
    fn replay_of_an_older_snapshot_is_refused_as_rollback() {
        let op = Operator::new();
        let old_log = log_of(&op, &["1.0.0"]);
        let new_log = log_of(&op, &["1.0.0", "1.1.0"]);
        let old = snapshot_of(&op, 7, 1000, &[&old_log]);
        let new = snapshot_of(&op, 9, 1000, &[&new_log]);
        let mut guard = SnapshotGuard::new();
        guard.accept(&new, &op.trust(), 10).unwrap();
        let err = guard.accept(&old, &op.trust(), 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "snapshot 7 is older than the last accepted snapshot 9: possible rollback attack"
        );
        assert_eq!(guard.current().map(|s| s.version), Some(9));
    }

    #[test]
    fn rollback_is_refused_after_a_restart() {
        let op = Operator::new();
        let log = log_of(&op, &["1.0.0"]);
        let mut guard = SnapshotGuard::resume(9);
        assert!(matches!(
            guard.accept(&snapshot_of(&op, 8, 1000, &[&log]), &op.trust(), 10),
            Err(SnapshotError::Rollback { .. })
        ));
        assert!(matches!(
            guard.check_log(&log),
            Err(SnapshotError::NoSnapshot)
        ));
    }

    #[test]
    fn expired_snapshot_is_refused_as_freeze() {
        let op = Operator::new();
        let log = log_of(&op, &["1.0.0"]);
        let mut guard = SnapshotGuard::new();
        let err = guard
            .accept(&snapshot_of(&op, 1, 100, &[&log]), &op.trust(), 100)
            .unwrap_err();
        assert!(matches!(err, SnapshotError::Expired { .. }), "{err}");
        assert!(err.to_string().contains("freeze"), "{err}");
        assert_eq!(guard.last_accepted_version(), None);
    }

    #[test]
    fn snapshot_not_signed_by_a_snapshot_key_is_refused() {
        let op = Operator::new();
        let log = log_of(&op, &["1.0.0"]);
        // The publisher key is trusted, but not for snapshots.
        let signed = Snapshot {
            version: 1,
            expires: 1000,
            heads: BTreeMap::from([(slug("membership"), log.head().unwrap())]),
        }
        .sign(&[&op.publisher])
        .unwrap();
        assert!(matches!(
            SnapshotGuard::new().accept(&signed, &op.trust(), 10),
            Err(SnapshotError::BadSignature { valid: 0, .. })
        ));
    }

    #[test]
    fn tampered_snapshot_head_is_refused() {
        let op = Operator::new();
        let log = log_of(&op, &["1.0.0"]);
        let stale = log_of(&op, &["1.0.0", "1.1.0"]);
        let mut signed = snapshot_of(&op, 1, 1000, &[&log]);
        signed
            .snapshot
            .heads
            .insert(slug("membership"), stale.head().unwrap());
        assert!(matches!(
            SnapshotGuard::new().accept(&signed, &op.trust(), 10),
            Err(SnapshotError::BadSignature { .. })
        ));
    }

    #[test]
    fn log_from_another_snapshot_is_refused_as_mix_and_match() {
        let op = Operator::new();
        let old_log = log_of(&op, &["1.0.0"]);
        let new_log = log_of(&op, &["1.0.0", "1.1.0"]);
        let mut guard = SnapshotGuard::new();
        guard
            .accept(&snapshot_of(&op, 2, 1000, &[&new_log]), &op.trust(), 10)
            .unwrap();
        let err = guard.check_log(&old_log).unwrap_err();
        assert!(matches!(err, SnapshotError::HeadMismatch { .. }), "{err}");
        assert!(err.to_string().contains("mix-and-match"), "{err}");
        assert!(guard.check_log(&new_log).is_ok());
    }

    #[test]
    fn module_absent_from_the_snapshot_is_refused() {
        let op = Operator::new();
        let log = log_of(&op, &["1.0.0"]);
        let mut guard = SnapshotGuard::new();
        guard
            .accept(&snapshot_of(&op, 1, 1000, &[]), &op.trust(), 10)
            .unwrap();
        assert!(matches!(
            guard.check_log(&log),
            Err(SnapshotError::ModuleNotInSnapshot { .. })
        ));
    }

    #[test]
    fn two_different_snapshots_under_one_version_are_refused() {
        let op = Operator::new();
        let a = log_of(&op, &["1.0.0"]);
        let b = log_of(&op, &["1.0.0", "1.1.0"]);
        let mut guard = SnapshotGuard::new();
        let first = snapshot_of(&op, 3, 1000, &[&a]);
        guard.accept(&first, &op.trust(), 10).unwrap();
        guard.accept(&first, &op.trust(), 11).unwrap();
        assert!(matches!(
            guard.accept(&snapshot_of(&op, 3, 1000, &[&b]), &op.trust(), 12),
            Err(SnapshotError::Equivocation { version: 3 })
        ));
    }

    #[test]
    fn signed_snapshot_round_trips_through_json() {
        let op = Operator::new();
        let log = log_of(&op, &["1.0.0"]);
        let signed = snapshot_of(&op, 4, 1000, &[&log]);
        let json = serde_json::to_string(&signed).unwrap();
        let back: SignedSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, signed);
        assert!(back.verify(&op.trust()).is_ok());
    }
}
