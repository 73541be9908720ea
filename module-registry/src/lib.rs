//! Souk module packages.
//!
//! This crate owns what a module *is* before the host runs it: the manifest
//! model ([`Manifest`]), parsed from `module.yaml` into typed values with
//! errors that say which field is wrong, and the package format
//! ([`Package`]): a deterministic tar archive of the manifest and the compiled
//! component, addressed by its sha256 [`Digest`].
//!
//! It has no knowledge of wasmtime: checking that a component really
//! implements what its manifest claims is the host's job, because only the
//! host can load the component.

pub mod manifest;
pub mod package;

pub use manifest::{
    ApiVersion, Dependency, FeatureDecl, LimitDecl, LimitKind, Manifest, ManifestError, Route,
    RouteMatch, RoutePattern, Slug, TableName,
};
pub use package::{Digest, Package, PackageError, PackageLimits};
