//! Souk module packages.
//!
//! This crate owns what a module *is* before the host runs it: the manifest
//! model ([`Manifest`]), parsed from `module.yaml` into typed values with
//! errors that say which field is wrong, and the package format
//! ([`Package`]): a deterministic tar archive of the manifest and the compiled
//! component, addressed by its sha256 [`Digest`].
//!
//! It also owns registry trust: ed25519 keys ([`keys`]), the canonical bytes
//! every signature covers ([`canonical`]), the operator's trust root and its
//! rotations ([`trust`]), each module's signed, hash-chained history
//! ([`records`]), the signed snapshot that exposes rollback, freeze and
//! mix-and-match ([`snapshot`]), the registry's on-disk store
//! ([`store`]), its HTTP API ([`http`]) and the verifying client a host
//! uses to download from it ([`client`]).
//!
//! YAML from outside (manifests here, plan catalogs in the host) is read
//! only through [`yaml::from_str`], which refuses anchors, aliases, merge
//! keys and unbounded size or depth before anything is deserialized.
//!
//! It has no knowledge of wasmtime: checking that a component really
//! implements what its manifest claims is the host's job, because only the
//! host can load the component.

pub mod canonical;
pub mod client;
pub mod http;
pub mod keys;
mod layout;
pub mod manifest;
pub mod package;
pub mod records;
pub mod resolve;
pub mod snapshot;
pub mod store;
pub mod trust;
pub mod yaml;

pub use canonical::{CanonicalError, SignatureDomain};
pub use keys::{KeyError, KeyId, KeyPair, PublicKey, Signature};
pub use manifest::{
    Access, ApiKeysDecl, ApiVersion, Dependency, FeatureDecl, FeatureKind, FileType, FilesDecl,
    LimitDecl, LimitKind, MAX_VERSION_LEN, Manifest, ManifestError, Route, RouteLookup, RouteMatch,
    RoutePattern, Slug, TableName, parse_version,
};
pub use package::{Digest, Package, PackageError, PackageLimits};
pub use records::{
    Deprecate, DeprecatedVersions, Deprecation, EntryHash, EntryRejection, LogError, ModuleAction,
    ModuleEntry, ModuleLog, Publish, PublishedVersion, Revoke, SignedEntry, VersionState,
    VersionStatus, Yank,
};
pub use resolve::{
    Conflict, DuplicateVersion, InstallPlan, InstalledModule, LockedModule, Lockfile,
    LockfileError, LockfileRefusal, OfferedVersion, PlannedModule, RegistryIndex, RequestedModule,
    ResolveError, UnsupportedComparator, requirement_range, resolve_install, resolve_lockfile,
};
pub use snapshot::{SignedSnapshot, Snapshot, SnapshotError, SnapshotGuard};
pub use store::{PendingPackage, ReceivedPackage, RegistryStore, StoreError, StoreLimits};
pub use trust::{
    KeySet, KeySignature, ModulePattern, PublisherGrant, SignedTrustRoot, TrustError, TrustRoot,
    TrustState,
};
pub use yaml::{YamlError, YamlLimits};
