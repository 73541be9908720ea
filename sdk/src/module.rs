//! The [`Module`] trait a module author implements, and the values its
//! lifecycle functions return: migrations, gates and hook errors.

use crate::db::{DbError, DecodeError, QueryError};
use crate::http::{Request, Response};

/// A Souk module: its schema, its lifecycle hooks, what it can gate, and its
/// request handler.
///
/// Every function is an associated function: a component instance serves one
/// call at a time and keeps no state between calls that a module may rely
/// on, so there is no `self`. Keep state in the database.
///
/// Export the implementing type with [`crate::export_module!`].
pub trait Module {
    /// The module's migrations, oldest first.
    ///
    /// The host applies the ones its ledger does not hold yet, in this order,
    /// on install and upgrade, and runs their `down` SQL newest first on
    /// uninstall. Never edit or reorder a released migration: add a new one.
    /// Defaults to none, for a module without tables.
    fn migrations() -> Vec<Migration> {
        Vec::new()
    }

    /// Called once after the migrations of a fresh install, in the same
    /// transaction: seed data goes here. An error rolls the install back.
    ///
    /// # Errors
    ///
    /// Return an error to refuse the install; its message reaches the
    /// operator.
    fn install() -> Result<(), HookError> {
        Ok(())
    }

    /// Called before the down migrations of an uninstall, in the same
    /// transaction. An error rolls the uninstall back.
    ///
    /// # Errors
    ///
    /// Return an error to refuse the uninstall; its message reaches the
    /// operator.
    fn uninstall() -> Result<(), HookError> {
        Ok(())
    }

    /// Called after the new migrations of an upgrade from version `from`, in
    /// the same transaction. An error rolls the upgrade back.
    ///
    /// # Errors
    ///
    /// Return an error to refuse the upgrade; its message reaches the
    /// operator.
    fn upgrade(from: &str) -> Result<(), HookError> {
        let _ = from;
        Ok(())
    }

    /// The features and limits the host can gate per plan. Must list the
    /// same keys as the `features` and `limits` of `module.yaml`; the host
    /// refuses a package where they differ. Defaults to none.
    fn gates() -> Gates {
        Gates::new()
    }

    /// Serves one HTTP request routed to the module. The host forwards only
    /// requests that match a route of `module.yaml`; `request.path()` is
    /// relative to the module's mount point. A [`crate::Router`] does the
    /// dispatch.
    fn handle(request: Request) -> Response;
}

/// One schema migration: an ordered id with the SQL that applies it and the
/// SQL that reverts it.
///
/// `up` and `down` may hold several statements separated by `;`. DDL is only
/// allowed here, never from a request handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The id recorded in the host's ledger, e.g. `0001_members`. Ids sort in
    /// the order the migrations apply.
    pub id: &'static str,
    /// SQL that applies the migration.
    pub up: &'static str,
    /// SQL that reverts `up` exactly.
    pub down: &'static str,
}

impl Migration {
    /// A migration with the given id, up SQL and down SQL.
    pub const fn new(id: &'static str, up: &'static str, down: &'static str) -> Self {
        Self { id, up, down }
    }
}

/// A boolean capability the host can turn on or off per plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    /// The key, `[a-z][a-z0-9_]*`, as in `module.yaml`.
    pub key: &'static str,
    /// What the feature allows, shown to operators.
    pub description: &'static str,
}

/// How a [`Limit`] is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// A standing quantity (e.g. `max_members`): consumed and released.
    Count,
    /// A quantity per period (e.g. `exports_per_month`): reset each period.
    Meter,
}

/// A numeric limit the host can set per plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The key, `[a-z][a-z0-9_]*`, as in `module.yaml`.
    pub key: &'static str,
    /// What the limit counts, shown to operators.
    pub description: &'static str,
    /// How the limit is counted.
    pub kind: LimitKind,
}

/// The features and limits a module can gate, built with
/// [`Gates::feature`] and [`Gates::limit`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gates {
    features: Vec<Feature>,
    limits: Vec<Limit>,
}

impl Gates {
    /// No features and no limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a feature.
    #[must_use]
    pub fn feature(mut self, key: &'static str, description: &'static str) -> Self {
        self.features.push(Feature { key, description });
        self
    }

    /// Adds a limit.
    #[must_use]
    pub fn limit(mut self, key: &'static str, description: &'static str, kind: LimitKind) -> Self {
        self.limits.push(Limit {
            key,
            description,
            kind,
        });
        self
    }

    /// The features, in the order they were added.
    pub fn features(&self) -> &[Feature] {
        &self.features
    }

    /// The limits, in the order they were added.
    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }
}

/// Why a lifecycle hook ([`Module::install`], [`Module::uninstall`],
/// [`Module::upgrade`]) refused to complete. The host rolls the whole
/// lifecycle step back and reports the message to the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HookError {
    message: String,
}

impl HookError {
    /// A hook error with a message that says what failed and, where it
    /// helps, what the operator can do about it.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message reported to the operator.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<&str> for HookError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

impl From<String> for HookError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<DbError> for HookError {
    fn from(error: DbError) -> Self {
        Self::new(error.to_string())
    }
}

impl From<QueryError> for HookError {
    fn from(error: QueryError) -> Self {
        Self::new(error.to_string())
    }
}

impl From<DecodeError> for HookError {
    fn from(error: DecodeError) -> Self {
        Self::new(error.to_string())
    }
}
