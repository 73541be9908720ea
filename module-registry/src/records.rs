//! Each module's signed history: a hash-chained log of publish, yank,
//! deprecate and revoke records.
//!
//! Every [`ModuleEntry`] names the hash of the entry before it in the same
//! module's log (`prev`), the key that signed it, and what it does. Its
//! hash ([`EntryHash`]) is the sha256 of its signed bytes, so the last
//! entry's hash (the log *head*) commits to the whole history; the snapshot
//! signs the heads of all modules.
//!
//! [`ModuleLog::validate`] replays a log and refuses it unless the chain is
//! intact, every signature verifies under a key the trust root grants that
//! module (revoked keys are refused, which distrusts everything such a key
//! ever signed), no version is published twice, and every state change
//! names a version published earlier in the log. The replay yields each
//! version's [`VersionStatus`].

use std::collections::BTreeMap;
use std::fmt;

use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::canonical::{CanonicalError, SignatureDomain, signing_bytes, text};
use crate::keys::{KeyError, KeyId, KeyPair, Signature};
use crate::manifest::{ApiVersion, Slug};
use crate::package::Digest;
use crate::trust::{TrustError, TrustState};

/// The sha256 of an entry's signed bytes, written `sha256:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryHash([u8; 32]);

impl EntryHash {
    /// Parses `sha256:<64 hex digits>`.
    ///
    /// # Errors
    /// A message when the text is not of that form.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(hex_part) = text.strip_prefix("sha256:") else {
            return Err(format!("entry hash {text:?} must start with \"sha256:\""));
        };
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out)
            .map_err(|_| format!("entry hash {text:?} must end in 64 hex digits"))?;
        Ok(EntryHash(out))
    }

    /// Lowercase hex, without prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for EntryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for EntryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryHash({self})")
    }
}

impl Serialize for EntryHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for EntryHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        EntryHash::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A version of a module becomes available.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// The module.
    #[serde(with = "text::slug")]
    pub module: Slug,
    /// The version published; never published again.
    pub version: Version,
    /// The sha256 of the package file.
    #[serde(with = "text::digest")]
    pub digest: Digest,
    /// The modules this version needs, as in its manifest.
    #[serde(with = "text::slug_map")]
    pub dependencies: BTreeMap<Slug, VersionReq>,
    /// The WIT API version the component targets.
    #[serde(with = "text::api_version")]
    pub api: ApiVersion,
    /// When it was published (unix seconds), as stated by the publisher.
    pub published_at: u64,
}

/// How a package's manifest disagrees with the signed publish record it
/// was served under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestMismatch {
    /// The field that differs (`slug`, `version`, `api`, `dependencies`).
    pub field: &'static str,
    /// The record's value.
    pub record: String,
    /// The manifest's value.
    pub package: String,
}

impl Publish {
    /// Checks that `package`'s manifest says what this signed record says:
    /// slug, version, WIT API version and dependencies.
    ///
    /// # Errors
    /// The first [`ManifestMismatch`] found.
    pub fn check_package(&self, package: &crate::package::Package) -> Result<(), ManifestMismatch> {
        let manifest = &package.manifest;
        let mismatch = |field, record: String, package: String| {
            Err(ManifestMismatch {
                field,
                record,
                package,
            })
        };
        if manifest.slug != self.module {
            return mismatch("slug", self.module.to_string(), manifest.slug.to_string());
        }
        if manifest.version != self.version {
            return mismatch(
                "version",
                self.version.to_string(),
                manifest.version.to_string(),
            );
        }
        if manifest.api != self.api {
            return mismatch("api", self.api.to_string(), manifest.api.to_string());
        }
        let dependencies: BTreeMap<Slug, VersionReq> = manifest
            .dependencies
            .iter()
            .map(|d| (d.slug.clone(), d.requirement.clone()))
            .collect();
        if dependencies != self.dependencies {
            return mismatch(
                "dependencies",
                show_dependencies(&self.dependencies),
                show_dependencies(&dependencies),
            );
        }
        Ok(())
    }
}

fn show_dependencies(deps: &BTreeMap<Slug, VersionReq>) -> String {
    if deps.is_empty() {
        return "(none)".into();
    }
    deps.iter()
        .map(|(slug, req)| format!("{slug} {req}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A version is no longer chosen for new installs; existing installs and
/// lockfiles keep working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Yank {
    /// The module.
    #[serde(with = "text::slug")]
    pub module: Slug,
    /// The version yanked.
    pub version: Version,
    /// Why, for operators and tenants.
    pub reason: String,
}

/// The versions a deprecation covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeprecatedVersions {
    /// The whole module, including versions published later.
    All,
    /// One version.
    Version(Version),
}

impl Serialize for DeprecatedVersions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DeprecatedVersions::All => s.serialize_str("all"),
            DeprecatedVersions::Version(v) => s.serialize_str(&v.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for DeprecatedVersions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "all" {
            return Ok(DeprecatedVersions::All);
        }
        Version::parse(&text)
            .map(DeprecatedVersions::Version)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "{text:?} is neither \"all\" nor a semver version: {e}"
                ))
            })
    }
}

/// A version, or the whole module, should no longer be used; the
/// marketplace shows the reason and the replacement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deprecate {
    /// The module.
    #[serde(with = "text::slug")]
    pub module: Slug,
    /// Which versions.
    pub version: DeprecatedVersions,
    pub reason: String,
    /// The module to use instead, if any.
    #[serde(with = "text::opt_slug")]
    pub replacement: Option<Slug>,
}

/// A version is malicious or broken: hosts refuse to run it, even where it
/// is already installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    /// The module.
    #[serde(with = "text::slug")]
    pub module: Slug,
    /// The version revoked.
    pub version: Version,
    pub reason: String,
}

/// What an entry does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ModuleAction {
    /// Publishes a version.
    Publish(Publish),
    /// Yanks a version.
    Yank(Yank),
    /// Deprecates a version or the module.
    Deprecate(Deprecate),
    /// Revokes a version.
    Revoke(Revoke),
}

impl ModuleAction {
    /// The module the action is about.
    pub fn module(&self) -> &Slug {
        match self {
            ModuleAction::Publish(p) => &p.module,
            ModuleAction::Yank(y) => &y.module,
            ModuleAction::Deprecate(d) => &d.module,
            ModuleAction::Revoke(r) => &r.module,
        }
    }

    /// The signature domain of this kind of action.
    pub fn domain(&self) -> SignatureDomain {
        match self {
            ModuleAction::Publish(_) => SignatureDomain::Publish,
            ModuleAction::Yank(_) => SignatureDomain::Yank,
            ModuleAction::Deprecate(_) => SignatureDomain::Deprecate,
            ModuleAction::Revoke(_) => SignatureDomain::Revoke,
        }
    }
}

/// One entry of a module's log: the part that is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleEntry {
    /// The hash of the previous entry of the same module's log; `None` for
    /// the first.
    pub prev: Option<EntryHash>,
    /// The key that signs the entry.
    pub signer: KeyId,
    /// What the entry does.
    pub action: ModuleAction,
}

impl ModuleEntry {
    /// The bytes the signer signs: the action's domain prefix and the
    /// canonical JSON of the entry.
    ///
    /// # Errors
    /// [`CanonicalError`] if the entry cannot be encoded.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, CanonicalError> {
        signing_bytes(self.action.domain(), self)
    }
}

/// A module log entry and its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedEntry {
    /// The signed entry.
    pub entry: ModuleEntry,
    /// The signer's signature over [`ModuleEntry::signing_bytes`].
    pub signature: Signature,
}

impl SignedEntry {
    /// Builds and signs an entry that follows `prev`.
    ///
    /// # Errors
    /// [`CanonicalError`] if the entry cannot be encoded.
    pub fn sign(
        prev: Option<EntryHash>,
        action: ModuleAction,
        key: &KeyPair,
    ) -> Result<Self, CanonicalError> {
        let entry = ModuleEntry {
            prev,
            signer: key.id(),
            action,
        };
        let signature = key.sign(&entry.signing_bytes()?);
        Ok(SignedEntry { entry, signature })
    }

    /// Checks that `trust` lets the entry's signer sign for the module the
    /// entry is about, and that the signature verifies; returns the entry's
    /// hash. This is the part of [`ModuleLog::append`] that needs no log:
    /// the registry runs it on a publish before it reads the package.
    ///
    /// # Errors
    /// [`EntryRejection::Unauthorised`] (unknown, ungranted or revoked
    /// key), [`EntryRejection::BadSignature`], or
    /// [`EntryRejection::Canonical`].
    pub fn verify_signer(&self, trust: &TrustState) -> Result<EntryHash, EntryRejection> {
        let entry = &self.entry;
        let key = trust.authorises(&entry.signer, entry.action.module())?;
        let bytes = entry.signing_bytes()?;
        key.verify(&bytes, &self.signature)?;
        Ok(EntryHash(Sha256::digest(&bytes).into()))
    }

    /// The entry's hash: sha256 of its signed bytes.
    ///
    /// # Errors
    /// [`CanonicalError`] if the entry cannot be encoded.
    pub fn hash(&self) -> Result<EntryHash, CanonicalError> {
        Ok(EntryHash(
            Sha256::digest(self.entry.signing_bytes()?).into(),
        ))
    }
}

/// A version's deprecation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation {
    pub reason: String,
    /// The module to use instead, if any.
    pub replacement: Option<Slug>,
}

/// What the log says about one published version. A version can be both
/// yanked and deprecated; revocation overrides both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionStatus {
    /// The yank's reason, if yanked.
    pub yanked: Option<String>,
    /// The deprecation of the version or of the whole module.
    pub deprecated: Option<Deprecation>,
    /// The revocation's reason, if revoked.
    pub revoked: Option<String>,
}

/// The one-word summary of a [`VersionStatus`], most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    /// Hosts refuse to run it.
    Revoked,
    /// Not chosen for new installs; lockfiles still install it.
    Yanked,
    /// Usable, but the marketplace warns and may point to a replacement.
    Deprecated,
    /// Usable.
    Available,
}

impl VersionStatus {
    /// The most severe state that applies.
    pub fn state(&self) -> VersionState {
        if self.revoked.is_some() {
            VersionState::Revoked
        } else if self.yanked.is_some() {
            VersionState::Yanked
        } else if self.deprecated.is_some() {
            VersionState::Deprecated
        } else {
            VersionState::Available
        }
    }

    /// Whether a host may run the version (it is not revoked).
    pub fn may_run(&self) -> bool {
        self.revoked.is_none()
    }

    /// Whether a resolver may choose the version for a new install (it is
    /// neither revoked nor yanked).
    pub fn may_be_chosen(&self) -> bool {
        self.revoked.is_none() && self.yanked.is_none()
    }
}

/// A published version: its publish record and its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedVersion {
    /// The publish record.
    pub publish: Publish,
    /// Its status, without the module-wide deprecation (see
    /// [`ModuleLog::status`]).
    pub status: VersionStatus,
}

/// Why an entry was refused.
#[derive(Debug, thiserror::Error)]
pub enum EntryRejection {
    /// The entry is about another module.
    #[error("it is about module `{found}`, not this log's module")]
    WrongModule {
        /// The module it names.
        found: Slug,
    },
    /// `prev` does not name the previous entry.
    #[error("its prev is {found}, but the log head is {expected}")]
    BrokenChain {
        /// The head the entry should follow (`none` for an empty log).
        expected: String,
        /// The `prev` it carries.
        found: String,
    },
    /// The signer is not allowed to sign for the module.
    #[error(transparent)]
    Unauthorised(#[from] TrustError),
    /// The signature does not verify.
    #[error(transparent)]
    BadSignature(#[from] KeyError),
    /// The version is already published.
    #[error(
        "version {version} is already published; versions are immutable, publish a new version"
    )]
    VersionExists { version: Version },
    /// A state change names a version that was never published.
    #[error("version {version} was never published")]
    UnknownVersion { version: Version },
    /// A state change that does not apply to the version's status.
    #[error("version {version} {reason}")]
    InvalidTransition {
        version: Version,
        /// Why the change does not apply.
        reason: &'static str,
    },
    /// A publish whose dependencies or deprecation name the module itself.
    #[error("it names the module itself as {what}")]
    SelfReference {
        /// `a dependency` or `its replacement`.
        what: &'static str,
    },
    /// The entry could not be encoded.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
}

/// An entry of a module log was refused.
#[derive(Debug, thiserror::Error)]
#[error("entry {index} of the log of module `{module}` is refused: {rejection}")]
pub struct LogError {
    pub module: Slug,
    /// The entry's position, from 0.
    pub index: usize,
    /// Why.
    #[source]
    pub rejection: EntryRejection,
}

/// A module's log, verified entry by entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleLog {
    module: Slug,
    entries: Vec<SignedEntry>,
    head: Option<EntryHash>,
    versions: BTreeMap<Version, PublishedVersion>,
    module_deprecation: Option<Deprecation>,
}

impl ModuleLog {
    /// An empty log for `module`.
    pub fn new(module: Slug) -> Self {
        ModuleLog {
            module,
            entries: Vec::new(),
            head: None,
            versions: BTreeMap::new(),
            module_deprecation: None,
        }
    }

    /// Replays and verifies `entries` as the log of `module` under `trust`.
    ///
    /// # Errors
    /// [`LogError`] naming the first refused entry and why.
    pub fn validate(
        module: Slug,
        entries: Vec<SignedEntry>,
        trust: &TrustState,
    ) -> Result<Self, LogError> {
        let mut log = ModuleLog::new(module);
        for entry in entries {
            log.append(entry, trust)?;
        }
        Ok(log)
    }

    /// Verifies `entry` as the next entry and appends it; returns its hash.
    /// On error the log is unchanged.
    ///
    /// # Errors
    /// [`LogError`] saying why the entry was refused.
    pub fn append(
        &mut self,
        entry: SignedEntry,
        trust: &TrustState,
    ) -> Result<EntryHash, LogError> {
        let index = self.entries.len();
        let hash = self.apply(&entry, trust).map_err(|rejection| LogError {
            module: self.module.clone(),
            index,
            rejection,
        })?;
        self.entries.push(entry);
        self.head = Some(hash);
        Ok(hash)
    }

    /// Checks `signed` and applies its effect on the version table; the
    /// table is only touched once every check has passed.
    fn apply(
        &mut self,
        signed: &SignedEntry,
        trust: &TrustState,
    ) -> Result<EntryHash, EntryRejection> {
        let entry = &signed.entry;
        if entry.action.module() != &self.module {
            return Err(EntryRejection::WrongModule {
                found: entry.action.module().clone(),
            });
        }
        if entry.prev != self.head {
            let show = |h: Option<EntryHash>| h.map_or("none".to_owned(), |h| h.to_string());
            return Err(EntryRejection::BrokenChain {
                expected: show(self.head),
                found: show(entry.prev),
            });
        }
        let hash = signed.verify_signer(trust)?;

        match &entry.action {
            ModuleAction::Publish(p) => {
                if self.versions.contains_key(&p.version) {
                    return Err(EntryRejection::VersionExists {
                        version: p.version.clone(),
                    });
                }
                if p.dependencies.contains_key(&self.module) {
                    return Err(EntryRejection::SelfReference {
                        what: "a dependency",
                    });
                }
                self.versions.insert(
                    p.version.clone(),
                    PublishedVersion {
                        publish: p.clone(),
                        status: VersionStatus::default(),
                    },
                );
            }
            ModuleAction::Yank(y) => {
                let status = self.live_status(&y.version)?;
                if status.yanked.is_some() {
                    return Err(EntryRejection::InvalidTransition {
                        version: y.version.clone(),
                        reason: "is already yanked",
                    });
                }
                status.yanked = Some(y.reason.clone());
            }
            ModuleAction::Revoke(r) => {
                let status = self.live_status(&r.version)?;
                status.revoked = Some(r.reason.clone());
            }
            ModuleAction::Deprecate(d) => {
                if d.replacement.as_ref() == Some(&self.module) {
                    return Err(EntryRejection::SelfReference {
                        what: "its replacement",
                    });
                }
                let deprecation = Deprecation {
                    reason: d.reason.clone(),
                    replacement: d.replacement.clone(),
                };
                match &d.version {
                    DeprecatedVersions::All => self.module_deprecation = Some(deprecation),
                    DeprecatedVersions::Version(v) => {
                        self.live_status(v)?.deprecated = Some(deprecation);
                    }
                }
            }
        }
        Ok(hash)
    }

    /// The status of a published, not revoked version, for a state change.
    fn live_status(&mut self, version: &Version) -> Result<&mut VersionStatus, EntryRejection> {
        let Some(published) = self.versions.get_mut(version) else {
            return Err(EntryRejection::UnknownVersion {
                version: version.clone(),
            });
        };
        if published.status.revoked.is_some() {
            return Err(EntryRejection::InvalidTransition {
                version: version.clone(),
                reason: "is revoked; a revoked version takes no further state changes",
            });
        }
        Ok(&mut published.status)
    }

    /// The module.
    pub fn module(&self) -> &Slug {
        &self.module
    }

    /// The verified entries, oldest first.
    pub fn entries(&self) -> &[SignedEntry] {
        &self.entries
    }

    /// The hash of the last entry; `None` for an empty log.
    pub fn head(&self) -> Option<EntryHash> {
        self.head
    }

    /// Every published version, in semver order.
    pub fn versions(&self) -> impl Iterator<Item = &PublishedVersion> {
        self.versions.values()
    }

    /// The publish record of `version`, if published.
    pub fn version(&self, version: &Version) -> Option<&PublishedVersion> {
        self.versions.get(version)
    }

    /// The deprecation of the whole module, if any.
    pub fn module_deprecation(&self) -> Option<&Deprecation> {
        self.module_deprecation.as_ref()
    }

    /// The status of `version` including a module-wide deprecation (a
    /// version's own deprecation takes precedence); `None` if it was never
    /// published.
    pub fn status(&self, version: &Version) -> Option<VersionStatus> {
        let published = self.versions.get(version)?;
        let mut status = published.status.clone();
        if status.deprecated.is_none() {
            status.deprecated = self.module_deprecation.clone();
        }
        Some(status)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::trust::tests::Operator;
    use crate::trust::{KeySet, ModulePattern, PublisherGrant};

    pub(crate) fn slug(s: &str) -> Slug {
        Slug::parse(s).unwrap()
    }

    pub(crate) fn publish(module: &str, version: &str, digest: Digest) -> ModuleAction {
        ModuleAction::Publish(Publish {
            module: slug(module),
            version: Version::parse(version).unwrap(),
            digest,
            dependencies: BTreeMap::new(),
            api: ApiVersion::V0_1_0,
            published_at: 1_700_000_000,
        })
    }

    fn yank(version: &str) -> ModuleAction {
        ModuleAction::Yank(Yank {
            module: slug("membership"),
            version: Version::parse(version).unwrap(),
            reason: "data loss bug".into(),
        })
    }

    fn revoke(version: &str) -> ModuleAction {
        ModuleAction::Revoke(Revoke {
            module: slug("membership"),
            version: Version::parse(version).unwrap(),
            reason: "exfiltrates member emails".into(),
        })
    }

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    /// Signs `actions` as a chained log by `key`.
    fn chain(actions: Vec<ModuleAction>, key: &KeyPair) -> Vec<SignedEntry> {
        let mut prev = None;
        actions
            .into_iter()
            .map(|a| {
                let e = SignedEntry::sign(prev, a, key).unwrap();
                prev = Some(e.hash().unwrap());
                e
            })
            .collect()
    }

    fn rejection(err: LogError) -> EntryRejection {
        err.rejection
    }

    #[test]
    fn valid_log_replays_with_head_and_statuses() {
        let op = Operator::new();
        let entries = chain(
            vec![
                publish("membership", "1.0.0", Digest::of(b"a")),
                publish("membership", "1.1.0", Digest::of(b"b")),
            ],
            &op.publisher,
        );
        let head = entries[1].hash().unwrap();
        let log = ModuleLog::validate(slug("membership"), entries, &op.trust()).unwrap();
        assert_eq!(log.head(), Some(head));
        assert_eq!(log.versions().count(), 2);
        assert_eq!(
            log.status(&v("1.1.0")).unwrap().state(),
            VersionState::Available
        );
        assert!(log.status(&v("2.0.0")).is_none());
    }

    #[test]
    fn entry_signed_by_an_unknown_key_is_refused() {
        let op = Operator::new();
        let stranger = KeyPair::generate();
        let entries = chain(
            vec![publish("membership", "1.0.0", Digest::of(b"a"))],
            &stranger,
        );
        let err = ModuleLog::validate(slug("membership"), entries, &op.trust()).unwrap_err();
        assert!(err.to_string().contains("entry 0"), "{err}");
        assert!(matches!(
            rejection(err),
            EntryRejection::Unauthorised(TrustError::UnknownKey { .. })
        ));
    }

    #[test]
    fn entry_signed_by_a_key_not_granted_the_module_is_refused() {
        let op = Operator::new();
        let entries = chain(
            vec![publish("elections", "1.0.0", Digest::of(b"a"))],
            &op.publisher,
        );
        let err = ModuleLog::validate(slug("elections"), entries, &op.trust()).unwrap_err();
        assert!(matches!(
            rejection(err),
            EntryRejection::Unauthorised(TrustError::NotGranted { .. })
        ));
    }

    #[test]
    fn entry_signed_by_a_revoked_key_is_refused() {
        let op = Operator::new();
        let entries = chain(
            vec![publish("membership", "1.0.0", Digest::of(b"a"))],
            &op.publisher,
        );
        let mut trust = op.trust();
        let mut doc2 = op.root_v1();
        doc2.version = 2;
        doc2.publishers.clear();
        doc2.revoked.insert(op.publisher.id());
        trust.update(&[doc2.sign(&[&op.root]).unwrap()], 5).unwrap();
        let err = ModuleLog::validate(slug("membership"), entries, &trust).unwrap_err();
        assert!(matches!(
            rejection(err),
            EntryRejection::Unauthorised(TrustError::RevokedKey { .. })
        ));
    }

    #[test]
    fn forged_signature_is_refused() {
        let op = Operator::new();
        let mut entries = chain(
            vec![publish("membership", "1.0.0", Digest::of(b"a"))],
            &op.publisher,
        );
        // The entry claims the granted publisher but another key signed it.
        let forger = KeyPair::generate();
        entries[0].signature = forger.sign(&entries[0].entry.signing_bytes().unwrap());
        let err = ModuleLog::validate(slug("membership"), entries, &op.trust()).unwrap_err();
        assert!(matches!(rejection(err), EntryRejection::BadSignature(_)));
    }

    #[test]
    fn altered_record_no_longer_verifies() {
        let op = Operator::new();
        let mut entries = chain(
            vec![publish("membership", "1.0.0", Digest::of(b"a"))],
            &op.publisher,
        );
        if let ModuleAction::Publish(p) = &mut entries[0].entry.action {
            p.digest = Digest::of(b"evil");
        }
        let err = ModuleLog::validate(slug("membership"), entries, &op.trust()).unwrap_err();
        assert!(matches!(rejection(err), EntryRejection::BadSignature(_)));
    }

    #[test]
    fn signature_for_one_record_kind_does_not_verify_as_another() {
        let op = Operator::new();
        let entries = chain(
            vec![
                publish("membership", "1.0.0", Digest::of(b"a")),
                yank("1.0.0"),
            ],
            &op.publisher,
        );
        // Re-label the yank as a revoke with the same fields: the JSON
        // differs only in its type, and the domain prefix differs too.
        let mut forged = entries.clone();
        if let ModuleAction::Yank(y) = forged[1].entry.action.clone() {
            forged[1].entry.action = ModuleAction::Revoke(Revoke {
                module: y.module,
                version: y.version,
                reason: y.reason,
            });
        }
        let err = ModuleLog::validate(slug("membership"), forged, &op.trust()).unwrap_err();
        assert!(matches!(rejection(err), EntryRejection::BadSignature(_)));
    }

    #[test]
    fn broken_hash_chain_is_refused() {
        let op = Operator::new();
        let mut entries = chain(
            vec![
                publish("membership", "1.0.0", Digest::of(b"a")),
                publish("membership", "1.1.0", Digest::of(b"b")),
                publish("membership", "1.2.0", Digest::of(b"c")),
            ],
            &op.publisher,
        );
        // Drop the middle entry: the third no longer follows the first.
        entries.remove(1);
        let err = ModuleLog::validate(slug("membership"), entries, &op.trust()).unwrap_err();
        assert_eq!(err.index, 1);
        assert!(matches!(rejection(err), EntryRejection::BrokenChain { .. }));
    }

    #[test]
    fn republishing_an_existing_version_is_refused() {
        let op = Operator::new();
        let entries = chain(
            vec![
                publish("membership", "1.0.0", Digest::of(b"a")),
                publish("membership", "1.0.0", Digest::of(b"different bytes")),
            ],
            &op.publisher,
        );
        let err = ModuleLog::validate(slug("membership"), entries, &op.trust()).unwrap_err();
        assert!(err.to_string().contains("immutable"), "{err}");
        assert!(matches!(
            rejection(err),
            EntryRejection::VersionExists { .. }
        ));
    }

    #[test]
    fn yanked_version_is_not_chosen_but_may_run() {
        let op = Operator::new();
        let entries = chain(
            vec![
                publish("membership", "1.0.0", Digest::of(b"a")),
                yank("1.0.0"),
            ],
            &op.publisher,
        );
        let log = ModuleLog::validate(slug("membership"), entries, &op.trust()).unwrap();
        let status = log.status(&v("1.0.0")).unwrap();
        assert_eq!(status.state(), VersionState::Yanked);
        assert_eq!(status.yanked.as_deref(), Some("data loss bug"));
        assert!(!status.may_be_chosen());
        assert!(status.may_run());
    }

    #[test]
    fn revoked_version_may_not_run_and_takes_no_further_changes() {
        let op = Operator::new();
        let entries = chain(
            vec![
                publish("membership", "1.0.0", Digest::of(b"a")),
                yank("1.0.0"),
                revoke("1.0.0"),
            ],
            &op.publisher,
        );
        let mut log = ModuleLog::validate(slug("membership"), entries, &op.trust()).unwrap();
        let status = log.status(&v("1.0.0")).unwrap();
        assert_eq!(status.state(), VersionState::Revoked);
        assert!(!status.may_run());
        assert!(!status.may_be_chosen());

        let again = SignedEntry::sign(log.head(), revoke("1.0.0"), &op.publisher).unwrap();
        let head = log.head();
        let err = log.append(again, &op.trust()).unwrap_err();
        assert!(matches!(
            rejection(err),
            EntryRejection::InvalidTransition { .. }
        ));
        assert_eq!(log.head(), head, "a refused entry must not change the log");
    }

    #[test]
    fn deprecation_of_the_module_applies_to_every_version() {
        let op = Operator::new();
        let entries = chain(
            vec![
                publish("membership", "1.0.0", Digest::of(b"a")),
                ModuleAction::Deprecate(Deprecate {
                    module: slug("membership"),
                    version: DeprecatedVersions::All,
                    reason: "superseded".into(),
                    replacement: Some(slug("acme-members")),
                }),
                publish("membership", "1.0.1", Digest::of(b"b")),
            ],
            &op.publisher,
        );
        let log = ModuleLog::validate(slug("membership"), entries, &op.trust()).unwrap();
        for version in ["1.0.0", "1.0.1"] {
            let status = log.status(&v(version)).unwrap();
            assert_eq!(status.state(), VersionState::Deprecated);
            assert_eq!(
                status.deprecated.unwrap().replacement,
                Some(slug("acme-members"))
            );
        }
    }

    #[test]
    fn state_change_of_an_unpublished_version_is_refused() {
        let op = Operator::new();
        let entries = chain(
            vec![
                publish("membership", "1.0.0", Digest::of(b"a")),
                yank("9.9.9"),
            ],
            &op.publisher,
        );
        let err = ModuleLog::validate(slug("membership"), entries, &op.trust()).unwrap_err();
        assert!(matches!(
            rejection(err),
            EntryRejection::UnknownVersion { .. }
        ));
    }

    #[test]
    fn entry_for_another_module_is_refused() {
        let op = Operator::new();
        let entries = chain(
            vec![publish("acme-crm", "1.0.0", Digest::of(b"a"))],
            &op.publisher,
        );
        let err = ModuleLog::validate(slug("membership"), entries, &op.trust()).unwrap_err();
        assert!(matches!(rejection(err), EntryRejection::WrongModule { .. }));
    }

    #[test]
    fn namespace_grant_lets_a_second_publisher_sign_only_its_modules() {
        let op = Operator::new();
        let acme = KeyPair::generate();
        let mut doc = op.root_v1();
        doc.publishers.push(PublisherGrant {
            key: acme.public(),
            modules: vec![ModulePattern::parse("acme-*").unwrap()],
        });
        doc.snapshot = KeySet::single(op.snapshot.public());
        let trust = crate::trust::TrustState::pin(doc.sign(&[&op.root]).unwrap()).unwrap();
        let ok = chain(vec![publish("acme-crm", "1.0.0", Digest::of(b"a"))], &acme);
        assert!(ModuleLog::validate(slug("acme-crm"), ok, &trust).is_ok());
        let bad = chain(
            vec![publish("membership", "1.0.0", Digest::of(b"a"))],
            &acme,
        );
        assert!(ModuleLog::validate(slug("membership"), bad, &trust).is_err());
    }

    #[test]
    fn signed_entries_round_trip_through_json() {
        let op = Operator::new();
        let mut action = publish("membership", "1.2.3", Digest::of(b"a"));
        if let ModuleAction::Publish(p) = &mut action {
            p.dependencies
                .insert(slug("acme-crm"), VersionReq::parse(">=1.2, <2").unwrap());
        }
        let entries = chain(
            vec![
                action,
                ModuleAction::Deprecate(Deprecate {
                    module: slug("membership"),
                    version: DeprecatedVersions::Version(v("1.2.3")),
                    reason: "use 2.x".into(),
                    replacement: None,
                }),
            ],
            &op.publisher,
        );
        let json = serde_json::to_string(&entries).unwrap();
        let back: Vec<SignedEntry> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, entries);
        assert!(ModuleLog::validate(slug("membership"), back, &op.trust()).is_ok());
        assert!(json.contains("\"type\":\"publish\""), "{json}");
    }
}
