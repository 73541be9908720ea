//! The trust root: which keys the operator trusts for what, and how a host
//! follows the operator from one set of keys to the next.
//!
//! A [`TrustRoot`] names
//!
//! - the **root keys** and how many of them must sign a root document
//!   (threshold);
//! - the **snapshot keys** and their threshold. Snapshots must be re-signed
//!   often (they expire), so they get their own keys, which an operator can
//!   keep online while the root keys stay offline. A one-person registry may
//!   list its root key here too;
//! - the **publisher grants**: which key may publish and change the state of
//!   which modules (an exact slug such as `membership`, a namespace such as
//!   `acme-*`, or `*` for all);
//! - the **revoked** keys, which nothing may be signed with any more. The
//!   list only grows from one root version to the next.
//!
//! A root is valid when at least `threshold` of its own root keys signed it.
//! Version N+1 replaces version N only when it is signed by a threshold of
//! N's root keys *and* a threshold of its own: a host that pinned version 1
//! can therefore follow every rotation (1→2→3…) without ever being told the
//! new keys out of band, and a registry or mirror without the old keys
//! cannot hand it a root of its own.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::canonical::{CanonicalError, SignatureDomain, signing_bytes};
use crate::keys::{KeyId, KeyPair, PublicKey, Signature};
use crate::manifest::Slug;

/// Why a trust root, a rotation or an authorisation was refused.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The document could not be encoded canonically.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    /// The root document breaks a structural rule.
    #[error("trust root {version} is invalid: {reason}")]
    InvalidRoot {
        version: u64,
        /// The rule it breaks.
        reason: String,
    },
    /// A key set is unusable (no keys, or a threshold that cannot be met).
    #[error("key set is invalid: {0}")]
    InvalidKeySet(String),
    /// A module pattern in a grant does not parse.
    #[error("module pattern {pattern:?} is invalid: {reason}")]
    InvalidPattern {
        /// The pattern as written.
        pattern: String,
        reason: String,
    },
    /// A root carries too few valid signatures from its own root keys.
    #[error(
        "trust root {version} carries {valid} valid signature(s) from its own root keys, {threshold} required"
    )]
    NotSelfSigned {
        version: u64,
        /// Valid signatures found.
        valid: usize,
        /// Signatures required.
        threshold: u32,
    },
    /// A new root is not signed by enough keys of the root it replaces.
    #[error(
        "trust root {to} carries {valid} valid signature(s) from the root keys of trust root {from}, {threshold} required: a rotation must be signed by the old root keys"
    )]
    RotationNotSigned {
        /// The version being replaced.
        from: u64,
        /// The version offered.
        to: u64,
        /// Valid signatures found.
        valid: usize,
        /// Signatures required.
        threshold: u32,
    },
    /// A chain skips or repeats a version.
    #[error("trust root chain goes from version {current} to {found}; expected {expected}")]
    VersionGap {
        /// The version trusted now.
        current: u64,
        /// The version that must come next.
        expected: u64,
        /// The version offered.
        found: u64,
    },
    /// A root differs from the one already trusted at the same version.
    #[error(
        "trust root {version} differs from the trust root {version} already trusted: the registry is showing different clients different roots"
    )]
    Fork { version: u64 },
    /// A new root drops a key that an earlier root revoked.
    #[error(
        "trust root {version} no longer lists key {key} as revoked; a revocation cannot be withdrawn"
    )]
    RevocationWithdrawn { version: u64, key: KeyId },
    /// The newest trusted root has expired.
    #[error(
        "trust root {version} expired at {expires} (now {now}); the operator must publish a new root: possible freeze attack"
    )]
    Expired {
        version: u64,
        /// When it expired (unix seconds).
        expires: u64,
        /// The time of the check (unix seconds).
        now: u64,
    },
    /// The key is not a publisher in the trust root.
    #[error("key {key} is not a publisher key of trust root {root_version}")]
    UnknownKey {
        key: KeyId,
        /// The root consulted.
        root_version: u64,
    },
    /// The key may publish, but not this module.
    #[error("key {key} is not granted module `{module}` (it may publish: {granted})")]
    NotGranted {
        key: KeyId,
        module: Slug,
        /// The patterns it is granted, comma-separated.
        granted: String,
    },
    /// The key has been revoked.
    #[error("key {key} is revoked by trust root {root_version}; nothing signed by it is trusted")]
    RevokedKey {
        key: KeyId,
        /// The root consulted.
        root_version: u64,
    },
}

/// A signature together with the id of the key that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySignature {
    /// The signing key.
    pub key: KeyId,
    pub signature: Signature,
}

/// A set of keys and how many of them must sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawKeySet")]
pub struct KeySet {
    keys: Vec<PublicKey>,
    threshold: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeySet {
    keys: Vec<PublicKey>,
    threshold: u32,
}

impl TryFrom<RawKeySet> for KeySet {
    type Error = TrustError;

    fn try_from(raw: RawKeySet) -> Result<Self, TrustError> {
        KeySet::new(raw.keys, raw.threshold)
    }
}

impl KeySet {
    /// Builds a key set; keys are kept sorted by id.
    ///
    /// # Errors
    /// [`TrustError::InvalidKeySet`] when there are no keys, a key appears
    /// twice, or the threshold is 0 or larger than the number of keys.
    pub fn new(mut keys: Vec<PublicKey>, threshold: u32) -> Result<Self, TrustError> {
        keys.sort_by_key(PublicKey::id);
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return Err(TrustError::InvalidKeySet("a key is listed twice".into()));
        }
        if threshold == 0 || threshold as usize > keys.len() {
            return Err(TrustError::InvalidKeySet(format!(
                "threshold {threshold} must be between 1 and the number of keys ({})",
                keys.len()
            )));
        }
        Ok(KeySet { keys, threshold })
    }

    /// A set of one key with threshold 1.
    pub fn single(key: PublicKey) -> Self {
        KeySet {
            keys: vec![key],
            threshold: 1,
        }
    }

    /// The keys, sorted by id.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// How many distinct keys must sign.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// Whether the set holds the key.
    pub fn contains(&self, key: &KeyId) -> bool {
        self.keys.iter().any(|k| &k.id() == key)
    }

    /// How many distinct keys of this set, not in `revoked`, made a valid
    /// signature over `message`. Signatures by other keys are ignored.
    pub fn count_valid(
        &self,
        message: &[u8],
        signatures: &[KeySignature],
        revoked: &BTreeSet<KeyId>,
    ) -> usize {
        self.keys
            .iter()
            .filter(|key| {
                let id = key.id();
                !revoked.contains(&id)
                    && signatures
                        .iter()
                        .any(|s| s.key == id && key.verify(message, &s.signature).is_ok())
            })
            .count()
    }

    /// Whether the valid signatures meet the threshold.
    pub fn is_met(&self, valid: usize) -> bool {
        valid >= self.threshold as usize
    }
}

/// Which modules a publisher key may sign for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModulePattern {
    /// `*`: every module.
    Any,
    /// `acme-*`: every module whose slug starts with `acme-`.
    Namespace(String),
    /// `membership`: exactly this module.
    Exact(Slug),
}

impl ModulePattern {
    /// Parses `*`, `<slug>-*` or `<slug>`.
    ///
    /// # Errors
    /// [`TrustError::InvalidPattern`] when the text is none of these.
    pub fn parse(text: &str) -> Result<Self, TrustError> {
        let invalid = |reason: String| TrustError::InvalidPattern {
            pattern: text.to_owned(),
            reason,
        };
        if text == "*" {
            return Ok(ModulePattern::Any);
        }
        if let Some(namespace) = text.strip_suffix("-*") {
            Slug::parse(namespace).map_err(|e| invalid(format!("the namespace {e}")))?;
            return Ok(ModulePattern::Namespace(format!("{namespace}-")));
        }
        if text.contains('*') {
            return Err(invalid(
                "a wildcard may only be `*` or end a namespace as in `acme-*`".into(),
            ));
        }
        Slug::parse(text)
            .map(ModulePattern::Exact)
            .map_err(|e| invalid(format!("the slug {e}")))
    }

    /// Whether `module` falls under this pattern.
    pub fn matches(&self, module: &Slug) -> bool {
        match self {
            ModulePattern::Any => true,
            ModulePattern::Namespace(prefix) => module.as_str().starts_with(prefix.as_str()),
            ModulePattern::Exact(slug) => slug == module,
        }
    }
}

impl fmt::Display for ModulePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModulePattern::Any => f.write_str("*"),
            ModulePattern::Namespace(prefix) => write!(f, "{prefix}*"),
            ModulePattern::Exact(slug) => f.write_str(slug.as_str()),
        }
    }
}

impl Serialize for ModulePattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ModulePattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ModulePattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A publisher key and the modules it may sign records for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublisherGrant {
    /// The publisher's key.
    pub key: PublicKey,
    /// The modules it may publish and change the state of.
    pub modules: Vec<ModulePattern>,
}

impl PublisherGrant {
    /// Whether the grant covers `module`.
    pub fn covers(&self, module: &Slug) -> bool {
        self.modules.iter().any(|p| p.matches(module))
    }
}

/// The operator's statement of which keys are trusted for what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRoot {
    /// Starts at 1 and grows by exactly one with each rotation.
    pub version: u64,
    /// When this root stops being trusted (unix seconds).
    pub expires: u64,
    /// The keys that sign trust roots.
    pub root: KeySet,
    /// The keys that sign snapshots.
    pub snapshot: KeySet,
    /// Who may publish which modules.
    pub publishers: Vec<PublisherGrant>,
    /// Keys nothing may be signed with any more.
    #[serde(default)]
    pub revoked: BTreeSet<KeyId>,
}

impl TrustRoot {
    /// Checks the structural rules: version at least 1, no publisher listed
    /// twice or without modules, and no revoked key still in use.
    ///
    /// # Errors
    /// [`TrustError::InvalidRoot`] naming the broken rule.
    pub fn check(&self) -> Result<(), TrustError> {
        let invalid = |reason: String| TrustError::InvalidRoot {
            version: self.version,
            reason,
        };
        if self.version == 0 {
            return Err(invalid("versions start at 1".into()));
        }
        let mut seen = BTreeSet::new();
        for grant in &self.publishers {
            let id = grant.key.id();
            if !seen.insert(id.clone()) {
                return Err(invalid(format!("publisher {id} is listed twice")));
            }
            if grant.modules.is_empty() {
                return Err(invalid(format!("publisher {id} is granted no modules")));
            }
        }
        let in_use = self
            .root
            .keys()
            .iter()
            .chain(self.snapshot.keys())
            .chain(self.publishers.iter().map(|g| &g.key));
        for key in in_use {
            if self.revoked.contains(&key.id()) {
                return Err(invalid(format!(
                    "key {} is revoked but still listed as a root, snapshot or publisher key",
                    key.id()
                )));
            }
        }
        Ok(())
    }

    /// The bytes root keys sign.
    ///
    /// # Errors
    /// [`TrustError::Canonical`] if the document cannot be encoded.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, TrustError> {
        Ok(signing_bytes(SignatureDomain::TrustRoot, self)?)
    }

    /// Signs this root with each of `keys` (old and new root keys for a
    /// rotation).
    ///
    /// # Errors
    /// [`TrustError::InvalidRoot`] when the root breaks a structural rule;
    /// [`TrustError::Canonical`] if it cannot be encoded.
    pub fn sign(self, keys: &[&KeyPair]) -> Result<SignedTrustRoot, TrustError> {
        self.check()?;
        let mut signed = SignedTrustRoot {
            root: self,
            signatures: Vec::new(),
        };
        for key in keys {
            signed.add_signature(key)?;
        }
        Ok(signed)
    }

    /// The grant of `key`, if it is a publisher.
    pub fn publisher(&self, key: &KeyId) -> Option<&PublisherGrant> {
        self.publishers.iter().find(|g| &g.key.id() == key)
    }

    /// Whether this root has expired at `now`.
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires
    }
}

/// A trust root with the signatures over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTrustRoot {
    pub root: TrustRoot,
    /// Signatures over [`TrustRoot::signing_bytes`].
    pub signatures: Vec<KeySignature>,
}

impl SignedTrustRoot {
    /// Adds `key`'s signature (replacing an earlier one by the same key), so
    /// holders of different keys can sign one after the other.
    ///
    /// # Errors
    /// [`TrustError::Canonical`] if the root cannot be encoded.
    pub fn add_signature(&mut self, key: &KeyPair) -> Result<(), TrustError> {
        let bytes = self.root.signing_bytes()?;
        let id = key.id();
        self.signatures.retain(|s| s.key != id);
        self.signatures.push(KeySignature {
            key: id,
            signature: key.sign(&bytes),
        });
        Ok(())
    }

    /// Checks the structural rules and that a threshold of the root's own
    /// root keys signed it.
    ///
    /// # Errors
    /// [`TrustError::InvalidRoot`] or [`TrustError::NotSelfSigned`].
    pub fn verify_self_signed(&self) -> Result<(), TrustError> {
        self.root.check()?;
        let bytes = self.root.signing_bytes()?;
        let valid = self
            .root
            .root
            .count_valid(&bytes, &self.signatures, &self.root.revoked);
        if !self.root.root.is_met(valid) {
            return Err(TrustError::NotSelfSigned {
                version: self.root.version,
                valid,
                threshold: self.root.root.threshold(),
            });
        }
        Ok(())
    }

    /// Checks that this root may replace `previous`: it is the next version,
    /// keeps every revocation, is signed by a threshold of `previous`'s root
    /// keys and by a threshold of its own.
    ///
    /// # Errors
    /// [`TrustError::VersionGap`], [`TrustError::RevocationWithdrawn`],
    /// [`TrustError::RotationNotSigned`], or any error of
    /// [`SignedTrustRoot::verify_self_signed`].
    pub fn verify_rotation_from(&self, previous: &TrustRoot) -> Result<(), TrustError> {
        let expected = previous.version.saturating_add(1);
        if self.root.version != expected {
            return Err(TrustError::VersionGap {
                current: previous.version,
                expected,
                found: self.root.version,
            });
        }
        if let Some(key) = previous.revoked.difference(&self.root.revoked).next() {
            return Err(TrustError::RevocationWithdrawn {
                version: self.root.version,
                key: key.clone(),
            });
        }
        let bytes = self.root.signing_bytes()?;
        let valid = previous
            .root
            .count_valid(&bytes, &self.signatures, &previous.revoked);
        if !previous.root.is_met(valid) {
            return Err(TrustError::RotationNotSigned {
                from: previous.version,
                to: self.root.version,
                valid,
                threshold: previous.root.threshold(),
            });
        }
        self.verify_self_signed()
    }
}

/// What a client currently trusts: the newest root it verified, reached
/// from a root it pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustState {
    current: SignedTrustRoot,
}

impl TrustState {
    /// Trusts `root` as the starting point (shipped with the host, or
    /// created by the operator). It must be validly self-signed; its expiry
    /// is not checked here, so a host shipped with an old root can still
    /// follow the chain from it.
    ///
    /// # Errors
    /// Any error of [`SignedTrustRoot::verify_self_signed`].
    pub fn pin(root: SignedTrustRoot) -> Result<Self, TrustError> {
        root.verify_self_signed()?;
        Ok(TrustState { current: root })
    }

    /// Follows `chain` from the current root and then checks that the
    /// newest root has not expired at `now`. Roots at or below the current
    /// version are skipped (so a client may be handed the whole chain from
    /// version 1), except that the one at the current version must equal
    /// the trusted one. Either the whole chain is accepted or nothing
    /// changes.
    ///
    /// Returns the version trusted afterwards.
    ///
    /// # Errors
    /// Any error of [`TrustState::follow`]; [`TrustError::Expired`] when the
    /// resulting root has expired.
    pub fn update(&mut self, chain: &[SignedTrustRoot], now: u64) -> Result<u64, TrustError> {
        let mut next = self.clone();
        next.follow(chain)?;
        next.check_not_expired(now)?;
        *self = next;
        Ok(self.version())
    }

    /// Follows `chain` like [`TrustState::update`] without looking at
    /// expiry; the registry uses it to load its own history.
    ///
    /// # Errors
    /// [`TrustError::Fork`], [`TrustError::VersionGap`] or any error of
    /// [`SignedTrustRoot::verify_rotation_from`]. On error nothing changes.
    pub fn follow(&mut self, chain: &[SignedTrustRoot]) -> Result<u64, TrustError> {
        let mut current = self.current.clone();
        for next in chain {
            let version = next.root.version;
            if version < current.root.version {
                continue;
            }
            if version == current.root.version {
                if next.root != current.root {
                    return Err(TrustError::Fork { version });
                }
                continue;
            }
            next.verify_rotation_from(&current.root)?;
            current = next.clone();
        }
        self.current = current;
        Ok(self.version())
    }

    /// Refuses a root that has expired at `now`.
    ///
    /// # Errors
    /// [`TrustError::Expired`].
    pub fn check_not_expired(&self, now: u64) -> Result<(), TrustError> {
        let root = &self.current.root;
        if root.is_expired(now) {
            return Err(TrustError::Expired {
                version: root.version,
                expires: root.expires,
                now,
            });
        }
        Ok(())
    }

    /// The trusted root document.
    pub fn root(&self) -> &TrustRoot {
        &self.current.root
    }

    /// The trusted root with its signatures, for a client to persist and
    /// [`TrustState::pin`] again on restart.
    pub fn signed_root(&self) -> &SignedTrustRoot {
        &self.current
    }

    /// The trusted root's version.
    pub fn version(&self) -> u64 {
        self.current.root.version
    }

    /// Whether `key` may sign records for `module`, and if so its public
    /// key (to verify the signature with).
    ///
    /// # Errors
    /// [`TrustError::RevokedKey`] when the key is revoked,
    /// [`TrustError::UnknownKey`] when it is not a publisher,
    /// [`TrustError::NotGranted`] when it is a publisher of other modules.
    pub fn authorises(&self, key: &KeyId, module: &Slug) -> Result<&PublicKey, TrustError> {
        let root = &self.current.root;
        if root.revoked.contains(key) {
            return Err(TrustError::RevokedKey {
                key: key.clone(),
                root_version: root.version,
            });
        }
        let Some(grant) = root.publisher(key) else {
            return Err(TrustError::UnknownKey {
                key: key.clone(),
                root_version: root.version,
            });
        };
        if !grant.covers(module) {
            return Err(TrustError::NotGranted {
                key: key.clone(),
                module: module.clone(),
                granted: grant
                    .modules
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(&grant.key)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Keys for one operator: root, snapshot and one publisher.
    pub(crate) struct Operator {
        pub root: KeyPair,
        pub snapshot: KeyPair,
        pub publisher: KeyPair,
    }

    impl Operator {
        pub fn new() -> Self {
            Operator {
                root: KeyPair::generate(),
                snapshot: KeyPair::generate(),
                publisher: KeyPair::generate(),
            }
        }

        /// Root version 1, publisher granted `membership` and `acme-*`.
        pub fn root_v1(&self) -> TrustRoot {
            TrustRoot {
                version: 1,
                expires: 10_000,
                root: KeySet::single(self.root.public()),
                snapshot: KeySet::single(self.snapshot.public()),
                publishers: vec![PublisherGrant {
                    key: self.publisher.public(),
                    modules: vec![
                        ModulePattern::parse("membership").unwrap(),
                        ModulePattern::parse("acme-*").unwrap(),
                    ],
                }],
                revoked: BTreeSet::new(),
            }
        }

        pub fn trust(&self) -> TrustState {
            TrustState::pin(self.root_v1().sign(&[&self.root]).unwrap()).unwrap()
        }
    }

    fn slug(s: &str) -> Slug {
        Slug::parse(s).unwrap()
    }

    #[test]
    fn root_signed_by_its_own_keys_is_pinned() {
        let op = Operator::new();
        let state = op.trust();
        assert_eq!(state.version(), 1);
    }

    #[test]
    fn root_not_signed_by_its_root_keys_is_refused() {
        let op = Operator::new();
        let signed = op.root_v1().sign(&[&op.publisher]).unwrap();
        let err = TrustState::pin(signed).unwrap_err();
        assert!(
            matches!(err, TrustError::NotSelfSigned { valid: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn tampered_root_does_not_verify() {
        let op = Operator::new();
        let mut signed = op.root_v1().sign(&[&op.root]).unwrap();
        signed.root.publishers[0].modules = vec![ModulePattern::Any];
        assert!(matches!(
            TrustState::pin(signed),
            Err(TrustError::NotSelfSigned { .. })
        ));
    }

    #[test]
    fn threshold_counts_distinct_keys_only() {
        let a = KeyPair::generate();
        let b = KeyPair::generate();
        let op = Operator::new();
        let mut root = op.root_v1();
        root.root = KeySet::new(vec![a.public(), b.public()], 2).unwrap();
        let mut signed = root.sign(&[&a]).unwrap();
        // The same key's signature twice does not make two.
        let dup = signed.signatures[0].clone();
        signed.signatures.push(dup);
        assert!(matches!(
            signed.verify_self_signed(),
            Err(TrustError::NotSelfSigned {
                valid: 1,
                threshold: 2,
                ..
            })
        ));
        signed.add_signature(&b).unwrap();
        assert!(signed.verify_self_signed().is_ok());
    }

    #[test]
    fn key_rotation_is_followed_across_two_rotations() {
        let op = Operator::new();
        let v1 = op.root_v1().sign(&[&op.root]).unwrap();
        let mut state = TrustState::pin(v1.clone()).unwrap();

        let root2 = KeyPair::generate();
        let mut doc2 = op.root_v1();
        doc2.version = 2;
        doc2.root = KeySet::single(root2.public());
        let v2 = doc2.sign(&[&op.root, &root2]).unwrap();

        let root3 = KeyPair::generate();
        let mut doc3 = v2.root.clone();
        doc3.version = 3;
        doc3.root = KeySet::single(root3.public());
        doc3.revoked.insert(op.root.id());
        let v3 = doc3.sign(&[&root2, &root3]).unwrap();

        let chain = [v1, v2, v3];
        assert_eq!(state.update(&chain, 5).unwrap(), 3);
        assert_eq!(state.root().root.keys()[0], root3.public());
        // Following the same chain again changes nothing.
        assert_eq!(state.update(&chain, 5).unwrap(), 3);
    }

    #[test]
    fn rotation_not_signed_by_the_old_root_is_refused() {
        let op = Operator::new();
        let mut state = op.trust();
        let attacker = KeyPair::generate();
        let mut doc2 = op.root_v1();
        doc2.version = 2;
        doc2.root = KeySet::single(attacker.public());
        doc2.publishers[0].modules = vec![ModulePattern::Any];
        let v2 = doc2.sign(&[&attacker]).unwrap();
        let err = state.update(&[v2], 5).unwrap_err();
        assert!(
            matches!(
                err,
                TrustError::RotationNotSigned {
                    from: 1,
                    to: 2,
                    valid: 0,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(state.version(), 1);
    }

    #[test]
    fn rotation_not_signed_by_the_new_root_is_refused() {
        let op = Operator::new();
        let mut state = op.trust();
        let new_root = KeyPair::generate();
        let mut doc2 = op.root_v1();
        doc2.version = 2;
        doc2.root = KeySet::single(new_root.public());
        let v2 = doc2.sign(&[&op.root]).unwrap();
        assert!(matches!(
            state.update(&[v2], 5),
            Err(TrustError::NotSelfSigned { version: 2, .. })
        ));
    }

    #[test]
    fn chain_that_skips_a_version_is_refused() {
        let op = Operator::new();
        let mut state = op.trust();
        let mut doc3 = op.root_v1();
        doc3.version = 3;
        let v3 = doc3.sign(&[&op.root]).unwrap();
        let err = state.update(&[v3], 5).unwrap_err();
        assert!(
            matches!(
                err,
                TrustError::VersionGap {
                    expected: 2,
                    found: 3,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_different_root_at_the_trusted_version_is_a_fork() {
        let op = Operator::new();
        let mut state = op.trust();
        let mut other = op.root_v1();
        other.expires = 20_000;
        let other = other.sign(&[&op.root]).unwrap();
        assert!(matches!(
            state.update(&[other], 5),
            Err(TrustError::Fork { version: 1 })
        ));
    }

    #[test]
    fn expired_root_is_refused_and_nothing_changes() {
        let op = Operator::new();
        let mut state = op.trust();
        let mut doc2 = op.root_v1();
        doc2.version = 2;
        doc2.expires = 100;
        let v2 = doc2.sign(&[&op.root]).unwrap();
        let err = state.update(&[v2], 100).unwrap_err();
        assert!(
            matches!(err, TrustError::Expired { version: 2, .. }),
            "{err}"
        );
        assert_eq!(state.version(), 1);
    }

    #[test]
    fn revocations_cannot_be_withdrawn() {
        let op = Operator::new();
        let old_publisher = KeyPair::generate();
        let mut doc1 = op.root_v1();
        doc1.revoked.insert(old_publisher.id());
        let mut state = TrustState::pin(doc1.clone().sign(&[&op.root]).unwrap()).unwrap();
        let mut doc2 = doc1;
        doc2.version = 2;
        doc2.revoked.clear();
        let v2 = doc2.sign(&[&op.root]).unwrap();
        assert!(matches!(
            state.update(&[v2], 5),
            Err(TrustError::RevocationWithdrawn { version: 2, .. })
        ));
    }

    #[test]
    fn authorisation_distinguishes_unknown_ungranted_and_revoked_keys() {
        let op = Operator::new();
        let state = op.trust();
        assert!(
            state
                .authorises(&op.publisher.id(), &slug("membership"))
                .is_ok()
        );
        assert!(
            state
                .authorises(&op.publisher.id(), &slug("acme-crm"))
                .is_ok()
        );

        let stranger = KeyPair::generate();
        assert!(matches!(
            state.authorises(&stranger.id(), &slug("membership")),
            Err(TrustError::UnknownKey { .. })
        ));
        let err = state
            .authorises(&op.publisher.id(), &slug("elections"))
            .unwrap_err();
        assert!(matches!(err, TrustError::NotGranted { .. }), "{err}");
        assert!(err.to_string().contains("membership, acme-*"), "{err}");
        // `acme-*` is a namespace: `acmex` is not in it.
        assert!(
            state
                .authorises(&op.publisher.id(), &slug("acmex"))
                .is_err()
        );

        let mut doc2 = op.root_v1();
        doc2.version = 2;
        doc2.publishers.clear();
        doc2.revoked.insert(op.publisher.id());
        let mut state = state;
        state.update(&[doc2.sign(&[&op.root]).unwrap()], 5).unwrap();
        assert!(matches!(
            state.authorises(&op.publisher.id(), &slug("membership")),
            Err(TrustError::RevokedKey { .. })
        ));
    }

    #[test]
    fn root_listing_a_revoked_key_as_publisher_is_invalid() {
        let op = Operator::new();
        let mut doc = op.root_v1();
        doc.revoked.insert(op.publisher.id());
        assert!(matches!(
            doc.sign(&[&op.root]),
            Err(TrustError::InvalidRoot { .. })
        ));
    }

    #[test]
    fn module_patterns_parse_and_refuse_odd_wildcards() {
        assert_eq!(ModulePattern::parse("*").unwrap(), ModulePattern::Any);
        assert_eq!(
            ModulePattern::parse("acme-*").unwrap().to_string(),
            "acme-*"
        );
        for bad in ["acme*", "*-acme", "a*b", "Acme-*", "-*", ""] {
            assert!(ModulePattern::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn signed_root_round_trips_through_json_and_still_verifies() {
        let op = Operator::new();
        let signed = op.root_v1().sign(&[&op.root]).unwrap();
        let json = serde_json::to_string(&signed).unwrap();
        let back: SignedTrustRoot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, signed);
        assert!(back.verify_self_signed().is_ok());
        let bad = json.replace("\"threshold\":1", "\"threshold\":0");
        assert!(serde_json::from_str::<SignedTrustRoot>(&bad).is_err());
    }
}
