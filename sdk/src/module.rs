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

    /// Runs one job queued with [`crate::jobs`] (API 0.3.0), after the
    /// request that queued it committed, in a transaction of its own with
    /// the host's job deadline. An error (or a panic, or the deadline)
    /// rolls the job's work back and the host retries it with backoff.
    /// Defaults to refusing every job: a module that queues jobs implements
    /// it.
    ///
    /// # Errors
    ///
    /// Return an error to fail this attempt; its message is kept in the
    /// job's record for the tenant.
    fn run_job(job: Job) -> Result<JobOutput, HookError> {
        Err(HookError::new(format!(
            "this module runs no jobs (asked to run {:?})",
            job.name
        )))
    }

    /// Handles one event of a module this one depends on and subscribes to
    /// in `module.yaml` (API 0.3.0): at least once (a retry after a failure
    /// repeats it: use [`Event::id`] to recognise one already handled) and
    /// in order per tenant, in a transaction of its own. Defaults to
    /// refusing: a module that subscribes implements it.
    ///
    /// # Errors
    ///
    /// Return an error to fail this delivery; the host rolls it back and
    /// retries it with backoff, holding later events for this module.
    fn on_event(event: Event) -> Result<(), HookError> {
        Err(HookError::new(format!(
            "this module handles no events (given {}.{})",
            event.source_module, event.event_type
        )))
    }
}

/// A job the host hands to [`Module::run_job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The job's id.
    pub id: String,
    /// The name it was queued under (or the schedule's name).
    pub name: String,
    /// Its JSON arguments, as queued (`{}` for a schedule).
    pub args: String,
    /// 1 on the first run, 2 on the first retry, ...
    pub attempt: u32,
}

impl Job {
    /// The arguments decoded from JSON.
    ///
    /// # Errors
    ///
    /// When they do not decode as `T` (the message says why).
    pub fn args<T: serde::de::DeserializeOwned>(&self) -> Result<T, HookError> {
        serde_json::from_str(&self.args)
            .map_err(|e| HookError::new(format!("job {:?}: arguments: {e}", self.name)))
    }
}

/// What a finished job leaves for the tenant to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobOutput {
    /// A JSON document, if any.
    pub result: Option<String>,
    /// A file (from [`crate::files`]) to download, if any.
    pub file_id: Option<String>,
}

impl JobOutput {
    /// No result.
    pub fn none() -> Self {
        Self::default()
    }

    /// A JSON result.
    ///
    /// # Errors
    ///
    /// When `value` does not serialise.
    pub fn json<T: serde::Serialize>(value: &T) -> Result<Self, HookError> {
        let text =
            serde_json::to_string(value).map_err(|e| HookError::new(format!("job result: {e}")))?;
        Ok(JobOutput {
            result: Some(text),
            file_id: None,
        })
    }

    /// A file to download.
    pub fn file(file_id: impl Into<String>) -> Self {
        JobOutput {
            result: None,
            file_id: Some(file_id.into()),
        }
    }
}

/// An event of a dependency, handed to [`Module::on_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event's id: the same on a redelivery.
    pub id: String,
    /// The module that emitted it (e.g. `membership`).
    pub source_module: String,
    /// Its type (e.g. `member_left`).
    pub event_type: String,
    /// Its JSON payload.
    pub payload: String,
    /// When it was emitted (RFC 3339, UTC).
    pub emitted_at: String,
}

impl Event {
    /// The payload decoded from JSON.
    ///
    /// # Errors
    ///
    /// When it does not decode as `T` (the message says why).
    pub fn payload<T: serde::de::DeserializeOwned>(&self) -> Result<T, HookError> {
        serde_json::from_str(&self.payload).map_err(|e| {
            HookError::new(format!(
                "event {}.{}: payload: {e}",
                self.source_module, self.event_type
            ))
        })
    }
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
    /// What it unlocks in the host (`kind:` in `module.yaml`).
    pub kind: FeatureKind,
}

/// What a [`Feature`] unlocks in the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FeatureKind {
    /// A capability the module checks itself, or a route's `feature`.
    #[default]
    Plain,
    /// Sign-in with the tenant's OpenID Connect provider (API 0.3.0).
    Sso,
}

/// How a [`Limit`] is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// A standing quantity (e.g. `max_members`): consumed and released.
    Count,
    /// A quantity per period (e.g. `exports_per_month`): reset each period.
    Meter,
    /// Bytes of files stored (API 0.3.0), counted by the host as files are
    /// put and deleted; a module cannot consume or release it itself.
    Storage,
    /// Emails per period (API 0.3.0), counted by the host as the module
    /// queues them; a module cannot record it itself.
    Email,
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

    /// Adds a plain feature.
    #[must_use]
    pub fn feature(self, key: &'static str, description: &'static str) -> Self {
        self.feature_of_kind(key, description, FeatureKind::Plain)
    }

    /// Adds a feature of `kind` (e.g. [`FeatureKind::Sso`]).
    #[must_use]
    pub fn feature_of_kind(
        mut self,
        key: &'static str,
        description: &'static str,
        kind: FeatureKind,
    ) -> Self {
        self.features.push(Feature {
            key,
            description,
            kind,
        });
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

/// Each error of the SDK's host interfaces becomes a hook's refusal with
/// its message, so `?` works on them in `install`, `upgrade`, `run_job` and
/// `on_event`.
macro_rules! hook_error_from {
    ($($error:ty),+ $(,)?) => {$(
        impl From<$error> for HookError {
            fn from(error: $error) -> Self {
                Self::new(error.to_string())
            }
        }
    )+};
}

hook_error_from!(
    DbError,
    QueryError,
    DecodeError,
    crate::files::FileError,
    crate::events::EmitError,
    crate::notify::NotifyError,
    crate::jobs::JobError,
);
